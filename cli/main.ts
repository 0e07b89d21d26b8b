/**
 * `gitops-failover`: the operator CLI. Exit codes: 0 success, 1 the operation failed,
 * 2 invalid usage, configuration or input (one line per problem, never a stack trace).
 */
import { Command, CommanderError } from "commander";
import { ConfigError, FailoverError, InputValidationError } from "../functions/lib/errors.ts";
import { redact } from "../functions/lib/redact.ts";
import type { CliIo } from "./drill.ts";
import { validateConfig, validateInput } from "./validate.ts";

const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

/**
 * Commands that need only the schemas: their runs skip loading the other commands (the AWS SDK
 * clients, the sandbox, the Kubernetes client), which took ~3 s of a ~4 s `validate-config`,
 * the check CI and pre-commit hooks run on every topology change.
 */
const SCHEMA_ONLY = new Set(["validate-config", "validate-input"]);

async function program(io: CliIo, argv: string[]): Promise<Command> {
  const { out } = io;
  const cli = new Command("gitops-failover")
    .description("Regional failover for a GitOps-managed multi-cluster Kubernetes platform on AWS")
    .exitOverride()
    .showHelpAfterError();
  cli
    .command("validate-config")
    .description(
      "validate a topology file (YAML or JSON) against the schema the functions and CDK use",
    )
    .argument("<topology>", "topology file, e.g. config/topology.example.yaml")
    .action((path: string) => out(validateConfig(path)));
  cli
    .command("validate-input")
    .description("validate an execution input (the console's JSON) against a topology")
    .argument("<input>", "input JSON file")
    .requiredOption("-c, --config <topology>", "topology file")
    .action((path: string, opts: { config: string }) => out(validateInput(path, opts.config)));
  if (SCHEMA_ONLY.has(argv[2] ?? "")) return cli;
  const [{ registerSandboxCommands }, { registerAuditCommands }, ops, readiness] =
    await Promise.all([
      import("./drill.ts"),
      import("./audit.ts"),
      import("./ops.ts"),
      import("./readiness.ts"),
    ]);
  registerSandboxCommands(cli, io);
  registerAuditCommands(cli, io);
  ops.registerOperatorCommands(cli, out);
  readiness.registerReadinessCommand(cli, io, async (env, region, onResult) =>
    (await import("../sandbox/readiness-drill.ts")).readinessOnSandbox(env, region, onResult),
  );
  return cli;
}

/** Runs the CLI and returns the exit code, printing errors as one line per problem. */
export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok;
  const io: CliIo = {
    out: (line: string) => process.stdout.write(`${line}\n`),
    setExit: (c: number) => {
      code = c;
    },
  };
  try {
    await (await program(io, argv)).parseAsync(argv);
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.invalid;
    if (e instanceof FailoverError) {
      const lines = e.details.length
        ? [e.message.split(": ")[0] ?? e.message, ...e.details.map((d) => `  ${d}`)]
        : [e.message];
      process.stderr.write(`${lines.join("\n")}\n`);
      return e instanceof ConfigError || e instanceof InputValidationError
        ? EXIT.invalid
        : EXIT.failed;
    }
    process.stderr.write(`error: ${redact(e instanceof Error ? e.message : String(e))}\n`);
    return EXIT.failed;
  }
}
