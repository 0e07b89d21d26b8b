/**
 * The sandbox commands: `drill` (a whole failover on this machine) and `sandbox up` (the same
 * stand-ins kept running for poking at with git, kubectl and the AWS CLI).
 */
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { InputValidationError } from "../functions/lib/errors.ts";
import { FAULTS, type FaultName, SANDBOX_REGIONS } from "../sandbox/faults.ts";

export interface CliIo {
  out: (line: string) => void;
  setExit: (code: number) => void;
}

function intIn(min: number, max: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

function collectFault(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function faultsOf(names: string[]): FaultName[] {
  const unknown = names.filter((n) => !(n in FAULTS));
  if (unknown.length) {
    throw new InputValidationError("unknown fault", [
      `--fault ${unknown.join(", ")}: not a fault (known: ${Object.keys(FAULTS).join(", ")}; see --fault list)`,
    ]);
  }
  return names as FaultName[];
}

interface DrillFlags {
  target: string;
  mode: "graceful" | "ungraceful";
  dryRun: boolean;
  spokes: number;
  apps?: number;
  repeat: number;
  fault: string[];
  json: boolean;
  reportDir: string;
  via: "api" | "alarm";
  alarmRepeats: number;
  killSwitch: boolean;
  cooldownHit: boolean;
}

/** Registers `drill` and `sandbox up` on the CLI. */
export function registerSandboxCommands(cli: Command, io: CliIo): void {
  cli
    .command("drill")
    .description(
      "run a whole failover in the embedded sandbox: real ASL, real functions, local stand-ins",
    )
    .addOption(
      new Option("--target <region>", "region to fail over to")
        .choices([...SANDBOX_REGIONS])
        .default("us-east-2"),
    )
    .addOption(
      new Option("--mode <mode>", "Aurora promotion mode")
        .choices(["graceful", "ungraceful"])
        .default("graceful"),
    )
    .option("--dry-run", "plan only: change nothing", false)
    .option("--spokes <n>", "spokes across the three regions", intIn(1, 300), 3)
    .option("--apps <n>", "Argo CD Applications in total (default 2 per spoke)", intIn(1, 20_000))
    .option(
      "--repeat <n>",
      "executions against the same sandbox (every one after the first must change nothing)",
      intIn(1, 10),
      1,
    )
    .option("--fault <name>", "inject a fault (repeatable; 'list' prints them)", collectFault, [])
    .option("--report-dir <dir>", "where report.md, report.json and audit.jsonl go", "drill-report")
    .addOption(
      new Option(
        "--via <path>",
        "api: start like an operator; alarm: the active region's health check fails and the trigger decides",
      )
        .choices(["api", "alarm"])
        .default("api"),
    )
    .option(
      "--alarm-repeats <n>",
      "deliver the same alarm event n times (implies --via alarm)",
      intIn(1, 10),
      1,
    )
    .option(
      "--kill-switch",
      "operators flipped the kill switch: no execution may start (implies --via alarm)",
      false,
    )
    .option(
      "--cooldown-hit",
      "an alarm right after a failover: no execution may start (implies --via alarm)",
      false,
    )
    .option("--json", "print the result as JSON", false)
    .action(async (flags: DrillFlags) => {
      if (flags.fault.includes("list")) {
        for (const [name, what] of Object.entries(FAULTS)) io.out(`${name.padEnd(24)}${what}`);
        return;
      }
      const faults = faultsOf(flags.fault);
      const viaAlarm =
        flags.via === "alarm" || flags.alarmRepeats > 1 || flags.killSwitch || flags.cooldownHit;
      const { runDrill, summaryTable } = await import("../sandbox/drill.ts");
      const live = process.stdout.isTTY && !flags.json;
      const result = await runDrill({
        target: flags.target,
        mode: flags.mode,
        dryRun: flags.dryRun,
        spokes: flags.spokes,
        apps: flags.apps ?? flags.spokes * 2,
        repeat: flags.repeat,
        faults,
        reportDir: resolve(flags.reportDir),
        via: viaAlarm ? "alarm" : "api",
        alarmRepeats: flags.alarmRepeats,
        killSwitch: flags.killSwitch,
        cooldownHit: flags.cooldownHit,
        ...(flags.json
          ? {}
          : {
              print: (line: string) => {
                if (live) process.stdout.write("\r\x1b[K");
                io.out(line);
              },
            }),
        ...(live ? { live: (line: string) => process.stdout.write(`\r\x1b[K${line}`) } : {}),
      });
      if (flags.json) io.out(JSON.stringify(result, null, 2));
      else for (const line of summaryTable(result)) io.out(line);
      const laterChanged = result.executions
        .slice(1)
        .filter((e) => e.report?.steps.some((s) => s.status !== "SKIPPED" && s.name !== "Plan"));
      if (laterChanged.length) {
        io.out(
          `repeat: ${laterChanged.map((e) => e.name).join(", ")} changed something; every run after the first must skip every step`,
        );
      }
      const guarded = flags.killSwitch || flags.cooldownHit;
      const expected = guarded ? result.status === "NOT_STARTED" : result.status === "SUCCEEDED";
      io.setExit(expected && !laterChanged.length ? 0 : 1);
    });

  cli
    .command("sandbox")
    .description("the embedded sandbox")
    .command("up")
    .description(
      "start the sandbox and keep it running, printing every endpoint and credential, until interrupted",
    )
    .option("--spokes <n>", "spokes across the three regions", intIn(1, 300), 3)
    .option("--apps <n>", "Argo CD Applications in total", intIn(1, 20_000))
    .option(
      "--endpoint-file <file>",
      "where to write the endpoints for `--sandbox <file>`",
      "sandbox.json",
    )
    .option("--report-dir <dir>", "where executions write their reports", "drill-report")
    .action(
      async (flags: { spokes: number; apps?: number; endpointFile: string; reportDir: string }) => {
        const { startSandbox } = await import("../sandbox/index.ts");
        const sandbox = await startSandbox({
          spokes: flags.spokes,
          apps: flags.apps ?? flags.spokes * 2,
          reportDir: resolve(flags.reportDir),
          waitMs: 1000,
        });
        const endpointFile = resolve(flags.endpointFile);
        await writeFile(
          endpointFile,
          `${JSON.stringify({ stateMachineArn: sandbox.stateMachineArn, region: sandbox.env.AWS_REGION, env: sandbox.env, reportDir: resolve(flags.reportDir) }, null, 2)}\n`,
          { mode: 0o600 },
        );
        const c = sandbox.credentials;
        const lines = [
          `sandbox up (${sandbox.spokes.length} spokes); endpoint file: ${endpointFile}`,
          `Git:        ${sandbox.git.url}  (user ${c.git.username}, password ${c.git.password})`,
          `            git clone http://${c.git.username}:${c.git.password}@${sandbox.git.url.replace(/^http:\/\//, "")}`,
          ...Object.entries(sandbox.argo.urls).map(
            ([hub, url]) => `Argo CD:    ${hub} ${url}  (Authorization: Bearer ${c.argocdToken})`,
          ),
          ...sandbox.spokes.map(
            (s) => `Spoke:      ${s.name} (${s.region}) ${s.url}  (bearer token ${c.spokeToken})`,
          ),
          `CA:         ${sandbox.dir}/ca/ca.pem (kubectl --certificate-authority, curl --cacert)`,
          `AWS:        ${sandbox.aws.endpoint}  (AWS_ACCESS_KEY_ID=${sandbox.env.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${sandbox.env.AWS_SECRET_ACCESS_KEY} AWS_REGION=${sandbox.env.AWS_REGION})`,
          `            aws --endpoint-url ${sandbox.aws.endpoint} globalaccelerator describe-endpoint-group --region us-west-2 --endpoint-group-arn ...`,
          `DynamoDB:   ${sandbox.aws.dynamo.endpoint} (table ${sandbox.env.AUDIT_TABLE})`,
          `Workflow:   ${sandbox.stateMachineArn}`,
          `            npx gitops-failover start --sandbox ${endpointFile} --target us-east-2 --reason "try it"`,
          "Ctrl-C stops everything.",
        ];
        for (const line of lines) io.out(line);
        await new Promise<void>((resolveStop) => {
          process.once("SIGINT", () => resolveStop());
          process.once("SIGTERM", () => resolveStop());
        });
        await sandbox.stop();
        io.out("sandbox stopped");
      },
    );
}
