/**
 * `gitops-failover`: the operator CLI. Exit codes: 0 success, 1 the operation failed,
 * 2 invalid usage, configuration or input (one line per problem, never a stack trace).
 */
import { Command, CommanderError } from "commander";
import { ConfigError, FailoverError, InputValidationError } from "../functions/lib/errors.ts";
import { redact } from "../functions/lib/redact.ts";
import { registerAuditCommands } from "./audit.ts";
import { type CliIo, registerSandboxCommands } from "./drill.ts";
import { registerOperatorCommands } from "./ops.ts";
import { registerReadinessCommand } from "./readiness.ts";
import { validateConfig, validateInput } from "./validate.ts";

const EXIT = { ok: 0, failed: 1, invalid: 2 } as const;

function program(io: CliIo): Command {
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
  registerSandboxCommands(cli, io);
  registerAuditCommands(cli, io);
  registerOperatorCommands(cli, out);
  registerReadinessCommand(cli, io, async (env, region, onResult) =>
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
    await program(io).parseAsync(argv);
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
