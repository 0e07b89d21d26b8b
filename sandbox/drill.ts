/**
 * `gitops-failover drill`: a whole failover in the embedded sandbox. Starts the stand-ins,
 * injects the requested faults, starts executions through the Step Functions API (the real
 * SFN client against the emulator), shows each step live, and ends with a summary of what each
 * step did, how long it took here and how long it would have taken on AWS.
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { sfnClient } from "../functions/lib/aws.ts";
import { type TriggerDecision, triggerOnAlarm } from "../functions/lib/trigger.ts";
import { aslText } from "../statemachine/definition.ts";
import { FAULTS, type FaultName } from "./faults.ts";
import { type Sandbox, type SandboxState, startSandbox } from "./index.ts";

export interface DrillOptions {
  target: string;
  mode: "graceful" | "ungraceful";
  dryRun: boolean;
  spokes: number;
  apps: number;
  repeat: number;
  faults: FaultName[];
  reportDir: string;
  /** `api`: StartExecution as an operator would; `alarm`: the source region's health check fails and its alarm reaches the trigger. */
  via?: "api" | "alarm";
  /** How many times the same alarm event is delivered (duplicates must start one execution). */
  alarmRepeats?: number;
  /** Operators flipped the kill switch: the trigger must start nothing. */
  killSwitch?: boolean;
  /** A failover just happened: a new alarm inside the cooldown must start nothing. */
  cooldownHit?: boolean;
  /** Lines for people; nothing is printed when absent (--json, tests). */
  print?: (line: string) => void;
  /** Redraws a live status line (a spinner on a terminal). */
  live?: (line: string) => void;
}

export interface StepTiming {
  name: string;
  status: string;
  invocations: number;
  wallMs: number;
  emulatedMs: number;
}

export interface DrillExecution {
  name: string;
  executionArn: string;
  status: string;
  error: string | null;
  cause: string | null;
  wallMs: number;
  steps: StepTiming[];
  report: DrillReport | null;
}

/** report.json as the drill reads it back (written by the Report / RecordFailure function). */
export interface DrillReport {
  status: "SUCCEEDED" | "FAILED";
  failedStep: string | null;
  error: { name: string; message: string } | null;
  steps: { name: string; status: string }[];
  before: unknown;
  after: unknown;
  [key: string]: unknown;
}

export interface DrillResult {
  /** NOT_STARTED: the trigger decided not to fail over (kill switch, cooldown); `trigger` says why. */
  status: "SUCCEEDED" | "FAILED" | "NOT_STARTED";
  trigger: TriggerDecision[];
  failedStep: string | null;
  error: string | null;
  executions: DrillExecution[];
  before: SandboxState;
  after: SandboxState;
  reportDir: string;
  sandbox: { wallMs: number; startMs: number; peakRssMb: number };
}

interface AslState {
  Type: string;
  Next?: string;
  Seconds?: number;
  ResultPath?: string;
  Branches?: { States: Record<string, AslState> }[];
}

/** From the ASL: which Wait state belongs to which poller, and how long it waits on AWS. */
function waitsOfPollers(): Map<string, { poller: string; seconds: number }> {
  const waits = new Map<string, { poller: string; seconds: number }>();
  const visit = (states: Record<string, AslState>) => {
    for (const [name, s] of Object.entries(states)) {
      if (s.Type === "Wait" && s.Next) {
        const poller = s.Next === "ShiftTraffic" ? "VerifyTraffic" : s.Next;
        waits.set(name, { poller, seconds: s.Seconds ?? 0 });
      }
      for (const b of s.Branches ?? []) visit(b.States);
    }
  };
  visit((JSON.parse(aslText()) as { States: Record<string, AslState> }).States);
  return waits;
}

const TASK_STEPS = [
  "Plan",
  "Approval",
  "VerifySpoke",
  "CommitRetarget",
  "AwaitArgoSync",
  "PromoteAurora",
  "AwaitAurora",
  "ShiftTraffic",
  "VerifyTraffic",
  "Report",
  "RecordFailure",
  "Notify",
];

const fmt = (ms: number) =>
  ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`;
const SPINNER = ["|", "/", "-", "\\"];

/** Follows one execution's history until it ends, reporting each step as it finishes. */
async function follow(
  executionArn: string,
  options: DrillOptions,
  waitMs: number,
): Promise<{
  status: string;
  error: string | null;
  cause: string | null;
  steps: StepTiming[];
  wallMs: number;
}> {
  const waits = waitsOfPollers();
  const started = Date.now();
  const timings = new Map<
    string,
    { first: number; last: number; invocations: number; waits: number; waitSeconds: number }
  >();
  let seen = 0;
  let tick = 0;
  for (;;) {
    const history = await sfnClient().send(
      new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }),
    );
    const events: HistoryEvent[] = history.events ?? [];
    for (const e of events.slice(seen)) {
      const name = e.stateEnteredEventDetails?.name ?? e.stateExitedEventDetails?.name;
      if (!name) continue;
      const at = e.timestamp ? new Date(e.timestamp).getTime() : Date.now();
      const wait = waits.get(name);
      if (wait && e.type?.endsWith("Entered")) {
        const t = timings.get(wait.poller);
        if (t) {
          t.waits += 1;
          t.waitSeconds = wait.seconds;
        }
        continue;
      }
      if (!TASK_STEPS.includes(name)) continue;
      const t = timings.get(name) ?? {
        first: at,
        last: at,
        invocations: 0,
        waits: 0,
        waitSeconds: 0,
      };
      if (e.type?.endsWith("Entered")) t.invocations += 1;
      t.last = at;
      timings.set(name, t);
      if (e.type?.endsWith("Exited")) {
        const output = JSON.parse(e.stateExitedEventDetails?.output ?? "{}") as Record<
          string,
          unknown
        >;
        const status = stepStatus(name, output);
        if (status === "IN_PROGRESS") {
          options.live?.(
            `${SPINNER[tick++ % SPINNER.length]} ${name}: poll ${t.invocations} (${fmt(Date.now() - started)})`,
          );
        } else {
          options.print?.(`[${fmt(at - started).padStart(7)}] ${name.padEnd(14)} ${status}`);
        }
      }
    }
    seen = events.length;
    const done = await sfnClient().send(new DescribeExecutionCommand({ executionArn }));
    if (done.status && done.status !== "RUNNING") {
      const steps = [...timings.entries()].map(([name, t]) => {
        const wallMs = t.last - t.first;
        return {
          name,
          status: "",
          invocations: t.invocations,
          wallMs,
          emulatedMs: wallMs + t.waits * Math.max(0, t.waitSeconds * 1000 - waitMs),
        };
      });
      return {
        status: done.status,
        error: done.error ?? null,
        cause: done.cause ?? null,
        steps,
        wallMs: Date.now() - started,
      };
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The outcome of one step as its own output says it (status, skipped) — for the live lines. */
function stepStatus(name: string, state: Record<string, unknown>): string {
  const key: Record<string, string> = {
    VerifySpoke: "spoke",
    CommitRetarget: "retarget",
    AwaitArgoSync: "argo",
    PromoteAurora: "promotion",
    AwaitAurora: "aurora",
    ShiftTraffic: "traffic",
    VerifyTraffic: "trafficHealth",
    Report: "report",
    RecordFailure: "report",
  };
  const result = (key[name] ? state[key[name] as string] : undefined) as
    | { status?: string; skipped?: boolean }
    | undefined;
  if (name === "Plan") {
    const plan = state.plan as { noop?: boolean; actions?: string[] } | undefined;
    return plan?.noop
      ? "SKIPPED (already on target)"
      : `SUCCEEDED (${plan?.actions?.length ?? 0} actions)`;
  }
  if (!result) return "done";
  if (result.skipped) return "SKIPPED";
  return result.status ?? "done";
}

async function readReport(dir: string): Promise<DrillReport | null> {
  try {
    return JSON.parse(await readFile(join(dir, "report.json"), "utf8")) as DrillReport;
  } catch {
    return null;
  }
}

/** A dry run stops after Plan, before Report: its report is the plan and an unchanged platform. */
async function dryRunReport(dir: string, plan: unknown, after: SandboxState): Promise<DrillReport> {
  const { replicas: _replicas, ...platform } = after;
  const report: DrillReport = {
    status: "SUCCEEDED",
    dryRun: true,
    failedStep: null,
    error: null,
    steps: TASK_STEPS.slice(0, 9).map((name) => ({
      name,
      status: name === "Plan" ? "SUCCEEDED" : "NOT_RUN",
    })),
    plan,
    before: (plan as { before?: unknown } | undefined)?.before ?? null,
    after: platform,
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  return report;
}

async function startByApi(
  sandbox: Sandbox,
  name: string,
  options: DrillOptions,
): Promise<string | undefined> {
  const input = {
    targetRegion: options.target,
    reason: `sandbox drill${options.faults.length ? ` with ${options.faults.join(", ")}` : ""}`,
    mode: options.mode,
    dryRun: options.dryRun,
    requestedBy: "drill",
  };
  const started = await sfnClient().send(
    new StartExecutionCommand({
      stateMachineArn: sandbox.stateMachineArn,
      name,
      input: JSON.stringify(input),
    }),
  );
  return started.executionArn;
}

/** Follows an execution to its end and reads back what it reported. */
async function observe(
  sandbox: Sandbox,
  name: string,
  executionArn: string,
  options: DrillOptions,
  waitMs: number,
): Promise<DrillExecution> {
  const run = await follow(executionArn, options, waitMs);
  const output = await sfnClient().send(new DescribeExecutionCommand({ executionArn }));
  const report = options.dryRun
    ? await dryRunReport(
        options.reportDir,
        (JSON.parse(output.output ?? "{}") as { plan?: unknown }).plan,
        await sandbox.state(),
      )
    : await readReport(options.reportDir);
  const statusOf = new Map(report?.steps.map((s) => [s.name, s.status]) ?? []);
  return {
    name,
    executionArn,
    status: run.status,
    error: run.error,
    cause: run.cause,
    wallMs: run.wallMs,
    steps: run.steps.map((s) => ({
      ...s,
      status: statusOf.get(s.name) ?? (s.name === "Notify" ? "SUCCEEDED" : run.status),
    })),
    report,
  };
}

/** The CloudWatch alarm state change EventBridge delivers when a region's health check fails. */
function alarmEvent(sandbox: Sandbox, region: string, at: Date): Record<string, unknown> {
  const healthCheckId = sandbox.topology.regions[region]?.route53.healthCheckId ?? "";
  return {
    version: "0",
    id: `drill-${at.getTime()}`,
    "detail-type": "CloudWatch Alarm State Change",
    source: "aws.cloudwatch",
    account: sandbox.stateMachineArn.split(":")[4],
    time: at.toISOString(),
    region: "us-east-1",
    resources: [`arn:aws:cloudwatch:us-east-1:000000000000:alarm:gitops-failover-${region}`],
    detail: {
      alarmName: `gitops-failover-${region}`,
      state: { value: "ALARM", reason: "Threshold Crossed", timestamp: at.toISOString() },
      previousState: { value: "OK", timestamp: new Date(at.getTime() - 60_000).toISOString() },
      configuration: {
        metrics: [
          {
            id: "m1",
            metricStat: {
              metric: {
                namespace: "AWS/Route53",
                name: "HealthCheckStatus",
                dimensions: { HealthCheckId: healthCheckId },
              },
              period: 60,
              stat: "Minimum",
            },
            returnData: true,
          },
        ],
      },
    },
  };
}

/**
 * The automatic path: the active region's health check fails, its alarm reaches the trigger
 * (`alarmRepeats` times), and whatever the trigger decides is what happens.
 */
async function alarmDrill(
  sandbox: Sandbox,
  options: DrillOptions,
  decisions: TriggerDecision[],
  execute: (name: string, start: () => Promise<string | undefined>) => Promise<void>,
): Promise<void> {
  const failing = (await sandbox.state()).activeRegion ?? "us-west-2";
  if (options.killSwitch) {
    sandbox.aws.ssm.set(sandbox.topology.trigger.killSwitchParameter, "on");
    options.print?.(`kill switch ${sandbox.topology.trigger.killSwitchParameter} = on`);
  }
  if (options.cooldownHit) {
    options.print?.("cooldown: a failover to the drill target happens first");
    await execute("drill-before-cooldown", () =>
      startByApi(sandbox, "drill-before-cooldown", options),
    );
  }
  const region = options.cooldownHit ? options.target : failing;
  sandbox.aws.route53.setFailingFraction(
    sandbox.topology.regions[region]?.route53.healthCheckId ?? "",
    1,
  );
  options.print?.(`${region}: every Route 53 checker now reports failure; the alarm fires`);
  const event = alarmEvent(sandbox, region, new Date());
  for (let i = 1; i <= (options.alarmRepeats ?? 1); i++) {
    const decision = await triggerOnAlarm(event);
    decisions.push(decision);
    options.print?.(`alarm delivery ${i}: trigger ${decision.decision}: ${decision.reason}`);
  }
  const started = decisions.find((d) => d.decision === "started");
  if (started?.incident && started.executionArn) {
    const arn = started.executionArn;
    await execute(started.incident, async () => arn);
  }
}

/** When the trigger started nothing, the report is its decisions and an unchanged platform. */
async function notStartedReport(
  dir: string,
  decisions: TriggerDecision[],
  before: SandboxState,
  after: SandboxState,
): Promise<void> {
  const { replicas: _b, ...platformBefore } = before;
  const { replicas: _a, ...platformAfter } = after;
  const report = {
    status: "NOT_STARTED",
    failedStep: null,
    error: null,
    reason: decisions.map((d) => `${d.decision}: ${d.reason}`).join("; "),
    trigger: decisions,
    steps: [],
    before: platformBefore,
    after: platformAfter,
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(
    join(dir, "report.md"),
    `# No failover\n\nThe trigger started no execution.\n\n${decisions.map((d) => `- ${d.decision}: ${d.reason}`).join("\n")}\n`,
  );
}

/** Runs `repeat` executions against one sandbox and returns what each did. */
export async function runDrill(options: DrillOptions): Promise<DrillResult> {
  const t0 = Date.now();
  const waitMs = 20;
  const sandbox: Sandbox = await startSandbox({
    spokes: options.spokes,
    apps: options.apps,
    reportDir: options.reportDir,
    waitMs,
  });
  const startMs = Date.now() - t0;
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 100);
  try {
    options.print?.(
      `sandbox up in ${fmt(startMs)}: ${sandbox.spokes.length} spokes, ${sandbox.argo.applications().length} Argo CD apps, regions ${Object.keys(sandbox.topology.regions).join(", ")}`,
    );
    for (const fault of options.faults) {
      sandbox.injectFault(fault, options.target);
      options.print?.(`fault ${fault}: ${FAULTS[fault]}`);
    }
    const before = await sandbox.state();
    const executions: DrillExecution[] = [];
    const trigger: TriggerDecision[] = [];
    const execute = async (name: string, start: () => Promise<string | undefined>) => {
      const executionArn = await start();
      if (executionArn)
        executions.push(await observe(sandbox, name, executionArn, options, waitMs));
    };
    if (options.via === "alarm") {
      await alarmDrill(sandbox, options, trigger, execute);
    } else {
      for (let i = 1; i <= options.repeat; i++) {
        const name = `drill-${new Date()
          .toISOString()
          .replace(/[-:.TZ]/g, "")
          .slice(0, 14)}-${i}`;
        options.print?.(
          `execution ${name}: failover to ${options.target} (${options.mode}${options.dryRun ? ", dry run" : ""})`,
        );
        await execute(name, () => startByApi(sandbox, name, options));
      }
    }
    const after = await sandbox.state();
    const failed = executions.find((e) => e.status !== "SUCCEEDED");
    const notStarted = options.via === "alarm" && !trigger.some((d) => d.decision === "started");
    if (notStarted) await notStartedReport(options.reportDir, trigger, before, after);
    return {
      status: failed ? "FAILED" : notStarted ? "NOT_STARTED" : "SUCCEEDED",
      trigger,
      failedStep: failed?.report?.failedStep ?? null,
      error: failed ? `${failed.error ?? "unknown"}: ${failed.cause ?? ""}` : null,
      executions,
      before,
      after,
      reportDir: options.reportDir,
      sandbox: { wallMs: Date.now() - t0, startMs, peakRssMb: Math.round(peakRss / 1024 / 1024) },
    };
  } finally {
    clearInterval(sampler);
    await sandbox.stop();
  }
}

/** The summary table printed at the end of a drill. */
export function summaryTable(result: DrillResult): string[] {
  const lines: string[] = result.trigger.map((d) => `trigger: ${d.decision}: ${d.reason}`);
  for (const e of result.executions) {
    lines.push("", `${e.name}: ${e.status}${e.error ? ` (${e.error})` : ""}`);
    lines.push(
      `${"step".padEnd(15)}${"outcome".padEnd(11)}${"on AWS ~".padStart(10)}${"here".padStart(9)}  calls`,
    );
    for (const s of e.steps) {
      lines.push(
        `${s.name.padEnd(15)}${s.status.padEnd(11)}${fmt(s.emulatedMs).padStart(10)}${fmt(s.wallMs).padStart(9)}  ${s.invocations}`,
      );
    }
  }
  const b = result.before;
  const a = result.after;
  const dials = (d: Record<string, number>) =>
    Object.entries(d)
      .map(([r, v]) => `${r}=${v}%`)
      .join(" ");
  lines.push(
    "",
    `before: active ${b.activeRegion}, Aurora writer ${b.auroraWriterRegion}, dials ${dials(b.trafficDials)}, git ${b.gitHead.slice(0, 12)}`,
    `after:  active ${a.activeRegion}, Aurora writer ${a.auroraWriterRegion}, dials ${dials(a.trafficDials)}, git ${a.gitHead.slice(0, 12)}`,
    `drill ${result.status} in ${fmt(result.sandbox.wallMs)} wall (sandbox start ${fmt(result.sandbox.startMs)}), peak RSS ${result.sandbox.peakRssMb} MB; report in ${result.reportDir}/`,
  );
  if (result.status === "FAILED")
    lines.push(`failed step: ${result.failedStep ?? "?"}: ${result.error ?? ""}`);
  return lines;
}
