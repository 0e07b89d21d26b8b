/**
 * `readiness`: runs the readiness evaluation now and prints it as a table, region x check.
 * Against AWS it invokes the orchestrator's readiness function (which evaluates with its own
 * least-privilege role, stores the result and emits the metrics, as the schedule does), so
 * operators need only lambda:InvokeFunction on it; against a running `sandbox up`
 * (`--sandbox <file>`) it runs the same function in-process against the sandbox's endpoints.
 *
 * Exit codes: 0 every target READY; 1 any target NOT_READY or UNKNOWN (or the run failed);
 * 2 invalid usage.
 */
import { InvokeCommand, type InvokeCommandOutput, LambdaClient } from "@aws-sdk/client-lambda";
import { type Command, Option } from "commander";
import { loadTopology, RegionName } from "../functions/lib/config.ts";
import { describe, InputValidationError, UnexpectedError } from "../functions/lib/errors.ts";
import {
  type CheckResult,
  type Evaluation,
  PLATFORM_ROW,
  type RecordedReadiness,
} from "../functions/lib/readiness.ts";
import { readinessFunctionName } from "../infra/lib/naming.ts";
import type { CliIo } from "./drill.ts";
import { readSandboxFile } from "./sandbox-file.ts";

const EXIT_CODES_HELP = `
Exit codes:
  0  every target region READY
  1  a target NOT_READY or UNKNOWN, or the evaluation could not run
  2  invalid usage`;

interface ReadinessFlags {
  region?: string;
  json: boolean;
  sandbox?: string;
  config?: string;
  function?: string;
  orchestratorRegion?: string;
  profile?: string;
}

const COLUMNS = { region: 10, check: 24, status: 10 };

/** The evaluation as a table, region x check, then each target's verdict. */
export function readinessTable(e: Evaluation): string[] {
  const row = (region: string, check: string, status: string, detail: string) =>
    `${region.padEnd(COLUMNS.region)} ${check.padEnd(COLUMNS.check)} ${status.padEnd(COLUMNS.status)} ${detail}`;
  const order = (r: CheckResult) => (r.region === PLATFORM_ROW ? 1 : 0);
  const rows = [...e.results].sort(
    (a, b) =>
      order(a) - order(b) ||
      Object.keys(e.verdicts).indexOf(a.region) - Object.keys(e.verdicts).indexOf(b.region),
  );
  return [
    `readiness of ${e.platform} from ${e.evaluatedIn}: active region ${e.activeRegion ?? "unknown"}, ${e.results.length} checks in ${(e.durationMs / 1000).toFixed(1)} s`,
    row("REGION", "CHECK", "STATUS", "DETAIL"),
    ...rows.map((r) => row(r.region, r.check, r.status, r.detail)),
    "",
    ...Object.entries(e.verdicts).map(
      ([region, verdict]) =>
        `target ${region}: ${verdict}${verdict === "READY" ? "" : " (act on each line above that is not READY)"}`,
    ),
  ];
}

/** 0 when every target is READY, else 1. */
export function readinessExit(e: Evaluation): number {
  return Object.values(e.verdicts).every((v) => v === "READY") ? 0 : 1;
}

/** One progress line, rewritten in place on a terminal. */
export function progressLine(r: CheckResult, done: number, total: number): string {
  return `[${String(done).padStart(String(total).length)}/${total}] ${r.region} ${r.check}: ${r.status}`;
}

/** Runs the deployed readiness function and returns what it recorded. */
async function invokeOnAws(flags: ReadinessFlags): Promise<RecordedReadiness> {
  const name =
    flags.function ??
    (flags.config ? readinessFunctionName(loadTopology(flags.config).platform) : undefined) ??
    process.env.GITOPS_FAILOVER_READINESS_FUNCTION;
  if (!name) {
    throw new InputValidationError(
      "no readiness function: pass --config <topology> (the function is named after the platform), --function <name|arn>, or --sandbox <file>",
    );
  }
  const client = new LambdaClient({
    maxAttempts: 2,
    ...(flags.orchestratorRegion ? { region: flags.orchestratorRegion } : {}),
    ...(flags.profile ? { profile: flags.profile } : {}),
  });
  let out: InvokeCommandOutput;
  try {
    out = await client.send(
      new InvokeCommand({
        FunctionName: name,
        Payload: Buffer.from(JSON.stringify(flags.region ? { region: flags.region } : {})),
      }),
    );
  } catch (e) {
    throw new UnexpectedError(`invoking ${name}: ${describe(e)}`, [], { cause: e });
  }
  const text = Buffer.from(out.Payload ?? new Uint8Array()).toString("utf8");
  if (out.FunctionError) {
    let why = text;
    try {
      const body = JSON.parse(text) as { errorType?: string; errorMessage?: string };
      why = `${body.errorType ?? "error"}: ${body.errorMessage ?? text}`;
    } catch {
      // not JSON: print it as it came
    }
    throw new UnexpectedError(`the readiness function ${name} failed: ${why}`);
  }
  return JSON.parse(text) as RecordedReadiness;
}

/**
 * Runs the readiness function in-process with a running sandbox's environment. Passed in by
 * main.ts and loaded only when used: the operator policy is derived from this module's AWS
 * calls, which must be the Lambda invoke alone.
 */
export type SandboxReadiness = (
  env: Record<string, string>,
  region: string | undefined,
  onResult: (r: CheckResult, done: number, total: number) => void,
) => Promise<RecordedReadiness>;

/** Registers `readiness` on the CLI. */
export function registerReadinessCommand(
  cli: Command,
  io: CliIo,
  inSandbox: SandboxReadiness,
): void {
  cli
    .command("readiness")
    .description(
      "evaluate every failover target now: spokes, GitOps on every hub, Git, Aurora, traffic, health checks, secret replicas, hub backups",
    )
    .option("--region <region>", "evaluate only this target region (and the platform checks)")
    .option("--json", "print the evaluation as JSON", false)
    .option("--sandbox <file>", "a running `sandbox up`'s endpoint file")
    .option("--config <topology>", "the topology (names the platform's readiness function)")
    .option("--function <name>", "the readiness function (default: from --config)")
    .addOption(new Option("--orchestrator-region <region>", "AWS region of the readiness function"))
    .option("--profile <profile>", "AWS profile from ~/.aws/config (default: $AWS_PROFILE)")
    .addHelpText("after", EXIT_CODES_HELP)
    .action(async (flags: ReadinessFlags) => {
      if (flags.region !== undefined && !RegionName.safeParse(flags.region).success) {
        throw new InputValidationError(
          `--region: "${flags.region}" is not a region name such as us-east-2`,
        );
      }
      const live = process.stdout.isTTY && !flags.json;
      const onResult = (r: CheckResult, done: number, total: number) => {
        if (live) process.stdout.write(`\r\x1b[K${progressLine(r, done, total)}`);
      };
      if (live && !flags.sandbox) process.stdout.write("evaluating (the readiness function)…");
      const recorded = flags.sandbox
        ? await inSandbox(readSandboxFile(flags.sandbox).env, flags.region, onResult)
        : await invokeOnAws(flags);
      if (live) process.stdout.write("\r\x1b[K");
      if (flags.json) io.out(JSON.stringify(recorded.evaluation, null, 2));
      else for (const line of readinessTable(recorded.evaluation)) io.out(line);
      io.setExit(readinessExit(recorded.evaluation));
    });
}
