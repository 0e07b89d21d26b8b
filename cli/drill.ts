/**
 * The sandbox commands: `drill` (a whole failover on this machine) and `sandbox up` (the same
 * stand-ins kept running for poking at with git, kubectl and the AWS CLI).
 */
import { rm } from "node:fs/promises";
import { resolve } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { InputValidationError } from "../functions/lib/errors.ts";
import { ACCOUNT_LAYOUTS, type AccountLayout } from "../sandbox/accounts.ts";
import {
  FAULTS,
  MIN_SPOKES,
  READINESS_FAULTS,
  type ReadinessFaultName,
  SANDBOX_REGIONS,
  sizeProblems,
} from "../sandbox/faults.ts";
import type { Sandbox } from "../sandbox/index.ts";
import { writeSandboxFile } from "./sandbox-file.ts";

/** How a command talks back: lines on stdout and the process's exit code. */
export interface CliIo {
  out: (line: string) => void;
  setExit: (code: number) => void;
}

function intIn(min: number, max: number, why = "") {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a whole number from ${min}${why} to ${max}`);
    }
    return n;
  };
}

/** --spokes: every region needs one. */
const spokeCount = intIn(MIN_SPOKES, 300, " (one spoke per region)");

function collectFault(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The sandbox's size, exactly as asked, or an InputValidationError saying why not. */
function sizeOf(flags: { spokes: number; apps?: number }): { spokes: number; apps: number } {
  const size = { spokes: flags.spokes, apps: flags.apps ?? flags.spokes * 2 };
  const problems = sizeProblems(size.spokes, size.apps);
  if (problems.length) throw new InputValidationError("impossible sandbox size", problems);
  return size;
}

const SIZE_HELP = `spokes across the three regions, round-robin (at least ${MIN_SPOKES}: one per region)`;
const APPS_HELP =
  "Argo CD Applications in total: every component runs on every spoke, so a multiple of --spokes (default 2 per spoke)";

/**
 * Runs `work` with Ctrl-C / SIGTERM turned into an abort: the work stops what it started, then
 * the command exits 130. A second signal kills the process as usual.
 */
async function interruptible<T>(
  io: CliIo,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T | undefined> {
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    io.out(`\n${signal}: stopping the sandbox`);
    controller.abort(new Error(`interrupted by ${signal}`));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    return await work(controller.signal);
  } catch (e) {
    if (!controller.signal.aborted) throw e;
    io.setExit(130);
    return undefined;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
}

/** The faults named, checked against `known` (FAULTS, or READINESS_FAULTS with --readiness). */
function faultsOf<K extends string>(names: string[], known: Record<K, string>): K[] {
  const unknown = names.filter((n) => !(n in known));
  if (unknown.length) {
    throw new InputValidationError("unknown fault", [
      `--fault ${unknown.join(", ")}: not a fault (known: ${Object.keys(known).join(", ")}; see --fault list)`,
    ]);
  }
  return names as K[];
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
  readiness: boolean;
  accounts?: AccountLayout;
  failback: boolean;
  sourceLoad?: number;
  capacityWhenSourceUnknown?: "baseline" | "refuse";
  targetMaxReplicas?: number;
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
    .option("--spokes <n>", SIZE_HELP, spokeCount, MIN_SPOKES)
    .option("--apps <n>", APPS_HELP, intIn(1, 20_000))
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
    .option(
      "--readiness",
      "run the readiness evaluation instead of a failover (--fault takes the readiness faults; --target is where they hit)",
      false,
    )
    .addOption(
      new Option(
        "--accounts <layout>",
        `AWS accounts (default single; assume-role-denied implies split): ${Object.entries(
          ACCOUNT_LAYOUTS,
        )
          .map(([k, v]) => `${k}: ${v}`)
          .join("; ")}`,
      ).choices(Object.keys(ACCOUNT_LAYOUTS)),
    )
    .option(
      "--failback",
      "after the failover, the old region recovers and a failback returns to it (ends where it started)",
      false,
    )
    .option(
      "--source-load <n>",
      "capacity parity: the source region's HPA asks for n replicas (the target's floor follows)",
      intIn(1, 30),
    )
    .addOption(
      new Option(
        "--capacity-when-source-unknown <what>",
        "capacity parity: the topology's capacity.whenSourceUnknown",
      ).choices(["baseline", "refuse"]),
    )
    .option(
      "--target-max-replicas <n>",
      "capacity parity: the target region's HPA maxReplicas in Git (default 30); a floor above it is capped there",
      intIn(1, 30),
    )
    .option("--json", "print the result as JSON", false)
    .action(async (flags: DrillFlags) => {
      if (flags.fault.includes("list")) {
        const known = flags.readiness ? READINESS_FAULTS : FAULTS;
        for (const [name, what] of Object.entries(known)) io.out(`${name.padEnd(30)}${what}`);
        return;
      }
      if (flags.readiness) {
        await readinessDrill(io, flags, faultsOf(flags.fault, READINESS_FAULTS));
        return;
      }
      const faults = faultsOf(flags.fault, FAULTS);
      if (faults.includes("assume-role-denied") && flags.accounts === "single") {
        throw new InputValidationError("fault needs another layout", [
          "--fault assume-role-denied: with --accounts single no role is assumed; add --accounts split",
        ]);
      }
      if (
        faults.includes("aurora-not-rejoined") &&
        !(flags.failback && flags.mode === "ungraceful")
      )
        throw new InputValidationError(
          "fault aurora-not-rejoined needs a failback after an unplanned failover",
          [
            "add --mode ungraceful --failback (only an ungraceful failover leaves the old Aurora primary to rejoin)",
          ],
        );
      const size = sizeOf(flags);
      const viaAlarm =
        flags.via === "alarm" || flags.alarmRepeats > 1 || flags.killSwitch || flags.cooldownHit;
      const { drillProblems, runDrill, summaryTable } = await import("../sandbox/drill.ts");
      const live = process.stdout.isTTY && !flags.json;
      const options = {
        target: flags.target,
        mode: flags.mode,
        dryRun: flags.dryRun,
        ...size,
        repeat: flags.repeat,
        faults,
        reportDir: resolve(flags.reportDir),
        via: viaAlarm ? ("alarm" as const) : ("api" as const),
        alarmRepeats: flags.alarmRepeats,
        killSwitch: flags.killSwitch,
        cooldownHit: flags.cooldownHit,
        ...(flags.accounts ? { accounts: flags.accounts } : {}),
        failback: flags.failback,
        ...(flags.sourceLoad !== undefined ? { sourceLoad: flags.sourceLoad } : {}),
        ...(flags.capacityWhenSourceUnknown
          ? { capacityWhenSourceUnknown: flags.capacityWhenSourceUnknown }
          : {}),
        ...(flags.targetMaxReplicas !== undefined
          ? { targetMaxReplicas: flags.targetMaxReplicas }
          : {}),
        ...(flags.json
          ? {}
          : {
              print: (line: string) => {
                if (live) process.stdout.write("\r\x1b[K");
                io.out(line);
              },
            }),
        ...(live ? { live: (line: string) => process.stdout.write(`\r\x1b[K${line}`) } : {}),
      };
      const result = await interruptible(io, (signal) => runDrill({ ...options, signal }));
      if (!result) return;
      if (flags.json) io.out(JSON.stringify(result, null, 2));
      else for (const line of summaryTable(result)) io.out(line);
      const problems = drillProblems(result, flags);
      if (!flags.json) for (const p of problems) io.out(`verdict: ${p}`);
      io.setExit(problems.length ? 1 : 0);
    });

  cli
    .command("sandbox")
    .description("the embedded sandbox")
    .command("up")
    .description(
      "start the sandbox and keep it running, printing every endpoint and credential, until interrupted",
    )
    .option("--spokes <n>", SIZE_HELP, spokeCount, MIN_SPOKES)
    .option("--apps <n>", APPS_HELP, intIn(1, 20_000))
    .option(
      "--endpoint-file <file>",
      "where to write the endpoints for `--sandbox <file>` (removed on stop)",
      "sandbox.json",
    )
    .option("--report-dir <dir>", "where executions write their reports", "drill-report")
    .action(
      async (flags: { spokes: number; apps?: number; endpointFile: string; reportDir: string }) => {
        const size = sizeOf(flags);
        const { startSandbox, GLOBAL_CLUSTER, LISTENER_ARN } = await import("../sandbox/index.ts");
        const sandbox = await startSandbox({
          ...size,
          reportDir: resolve(flags.reportDir),
          waitMs: 1000,
        });
        const endpointFile = resolve(flags.endpointFile);
        try {
          await writeSandboxFile(endpointFile, {
            stateMachineArn: sandbox.stateMachineArn,
            region: sandbox.env.AWS_REGION ?? "us-east-1",
            env: sandbox.env,
            reportDir: resolve(flags.reportDir),
          });
          for (const line of sandboxLines(sandbox, endpointFile, GLOBAL_CLUSTER, LISTENER_ARN))
            io.out(line);
          await new Promise<void>((resolveStop) => {
            process.once("SIGINT", () => resolveStop());
            process.once("SIGTERM", () => resolveStop());
          });
        } finally {
          await sandbox.stop();
          await rm(endpointFile, { force: true });
        }
        io.out("sandbox stopped");
      },
    );
}

/** `drill --readiness`: the readiness function once, in a fresh sandbox, with the faults asked. */
async function readinessDrill(
  io: CliIo,
  flags: DrillFlags,
  faults: ReadinessFaultName[],
): Promise<void> {
  const { runReadinessDrill } = await import("../sandbox/readiness-drill.ts");
  const { progressLine, readinessExit, readinessTable } = await import("./readiness.ts");
  const live = process.stdout.isTTY && !flags.json;
  const result = await runReadinessDrill({
    target: flags.target,
    faults,
    ...sizeOf(flags),
    ...(live
      ? {
          onResult: (r, done, total) =>
            process.stdout.write(`\r\x1b[K${progressLine(r, done, total)}`),
        }
      : {}),
  });
  if (live) process.stdout.write("\r\x1b[K");
  if (flags.json) io.out(JSON.stringify(result, null, 2));
  else for (const line of readinessTable(result.evaluation)) io.out(line);
  io.setExit(readinessExit(result.evaluation));
}

/** What `sandbox up` prints: every endpoint and credential, with a command to try each. */
function sandboxLines(
  sandbox: Sandbox,
  endpointFile: string,
  globalCluster: string,
  listenerArn: string,
): string[] {
  const c = sandbox.credentials;
  const env = sandbox.env;
  const ca = sandbox.caFile;
  const [firstHub] = Object.values(sandbox.argo.urls);
  const [firstSpoke] = sandbox.spokes;
  const aws = `aws --endpoint-url ${sandbox.aws.endpoint}`;
  return [
    `sandbox up (${sandbox.spokes.length} spokes); endpoint file: ${endpointFile}`,
    `Git:        ${sandbox.git.url}  (user ${c.git.username}, password ${c.git.password})`,
    `            git clone http://${c.git.username}:${c.git.password}@${sandbox.git.url.replace(/^http:\/\//, "")}`,
    `            read-only (git.readCredentialsSecretArn): user ${c.gitReader.username}, password ${c.gitReader.password}`,
    ...Object.entries(sandbox.argo.urls).map(
      ([hub, url]) => `Argo CD:    ${hub} ${url}  (Authorization: Bearer ${c.argocdToken})`,
    ),
    `            admin login: user ${c.argocdAdmin.username}, password ${c.argocdAdmin.password}`,
    `            curl --cacert ${ca} -d '{"username":"${c.argocdAdmin.username}","password":"${c.argocdAdmin.password}"}' ${firstHub}/api/v1/session`,
    ...sandbox.spokes.map(
      (s) => `Spoke:      ${s.name} (${s.region}) ${s.url}  (bearer token ${c.spokeToken})`,
    ),
    `            kubectl --server ${firstSpoke?.url} --token ${c.spokeToken} --certificate-authority ${ca} get deploy -A`,
    `CA:         ${ca} (kubectl --certificate-authority, curl --cacert)`,
    `AWS:        ${sandbox.aws.endpoint}  (one endpoint for every service; DynamoDB ${sandbox.aws.dynamo.endpoint}, table ${env.AUDIT_TABLE})`,
    `            export AWS_ACCESS_KEY_ID=${env.AWS_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=${env.AWS_SECRET_ACCESS_KEY} AWS_REGION=${env.AWS_REGION} AWS_DEFAULT_REGION=${env.AWS_REGION}`,
    `Traffic:    Global Accelerator listener ${listenerArn} (its API is only in us-west-2)`,
    ...Object.entries(sandbox.topology.regions).map(
      ([region, r]) =>
        `            ${region.padEnd(10)} endpoint group ${r.globalAccelerator?.endpointGroupArn}`,
    ),
    `            ${aws} --region us-west-2 globalaccelerator list-endpoint-groups --listener-arn ${listenerArn}`,
    `Aurora:     global cluster ${globalCluster}`,
    `            ${aws} rds describe-global-clusters --global-cluster-identifier ${globalCluster}`,
    `Workflow:   ${sandbox.stateMachineArn}`,
    `            npx gitops-failover start --sandbox ${endpointFile} --target us-east-2 --reason "try it"`,
    "Ctrl-C stops everything and removes the endpoint file.",
  ];
}
