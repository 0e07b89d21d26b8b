/**
 * The endpoint file `sandbox up` writes and the operator commands read (`--sandbox <file>`):
 * where a running sandbox's emulators listen. One schema for both sides.
 */
import { writeFile } from "node:fs/promises";
import { z } from "zod";
import { formatIssues, parseDocumentText, readConfigFile } from "../functions/lib/config.ts";
import { ConfigError } from "../functions/lib/errors.ts";

/** A Step Functions state machine ARN (names: 1-80 of `[A-Za-z0-9_-]`). */
export const STATE_MACHINE_ARN =
  /^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$/;
/** A Step Functions execution ARN: the state machine's name, then the execution's. */
export const EXECUTION_ARN =
  /^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[A-Za-z0-9_-]{1,80}:[A-Za-z0-9_-]{1,80}$/;

const SandboxFileSchema = z.object({
  stateMachineArn: z.string().regex(STATE_MACHINE_ARN, "must be a state machine ARN"),
  region: z.string().min(1),
  /** The environment the sandbox's functions run with: endpoints, credentials, table names. */
  env: z.record(z.string(), z.string()),
  reportDir: z.string().optional(),
});
export type SandboxFile = z.infer<typeof SandboxFileSchema>;

/** Reads and validates an endpoint file; a clear ConfigError when it is missing or not one. */
export function readSandboxFile(path: string): SandboxFile {
  let data: unknown;
  try {
    data = parseDocumentText(readConfigFile(path), path);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new ConfigError(
      `cannot read the sandbox endpoint file (is \`sandbox up\` running?): ${why}`,
      [],
      { cause: e },
    );
  }
  const parsed = SandboxFileSchema.safeParse(data);
  if (!parsed.success)
    throw new ConfigError(`${path} is not a sandbox endpoint file`, formatIssues(parsed.error));
  return parsed.data;
}

/** Writes an endpoint file readable by its owner only: it holds the sandbox's credentials. */
export async function writeSandboxFile(path: string, file: SandboxFile): Promise<void> {
  await writeFile(path, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600 });
}
