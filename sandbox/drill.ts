/**
 * `gitops-failover drill`: a whole failover in the embedded sandbox. Starts the stand-ins,
 * injects the requested faults, starts executions through the Step Functions API (the real
 * SFN client against the emulator), shows each step live, and ends with a summary of what each
 * step did, how long it took here and how long it would have taken on AWS.
 */
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { FUNCTIONS } from "../functions/catalog.ts";
import { sfnClient } from "../functions/lib/aws.ts";
import { type FailoverReport, REPORT_FILES, STEPS } from "../functions/lib/report.ts";
import type { TriggerDecision } from "../functions/lib/trigger.ts";
import { aslText } from "../statemachine/definition.ts";
import type { AccountLayout } from "./accounts.ts";
import { SANDBOX_ACCOUNT } from "./aws/protocol.ts";
import { FAULTS, type FaultName } from "./faults.ts";
import {
  cleartextNotice,
  type Sandbox,
  type SandboxCalls,
  type SandboxState,
  startSandbox,
} from "./index.ts";
import { recoverRegion } from "./recovery.ts";
import { type AslState, allStates, invokeTrigger } from "./runner.ts";

/** What a drill does: the failover asked for, the sandbox's size, the faults, where it reports. */
export interface DrillOptions {
  target: string;
  mode: "graceful" | "ungraceful";
  dryRun: boolean;
  /** Spokes, at least one per region (see sizeProblems). */
  spokes: number;
  /** Argo CD Applications in total, a multiple of `spokes`. */
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
  /**
   * How the sandbox's resources are spread over AWS accounts: single by default, split when a
   * fault needs roles to refuse (assume-role-denied).
   */
  accounts?: AccountLayout;
  /** Lines for people; nothing is printed when absent (--json, tests). */
  print?: (line: string) => void;
  /** Redraws a live status line (a spinner on a terminal). */
  live?: (line: string) => void;
  /**
   * After the failover: the old region recovers (recovery.ts), then a failback to it (a graceful
   * failover with `failback: true`) must bring the active region, writer and dials back.
   */
  failback?: boolean;
  /** Aborting (Ctrl-C) stops the executions and the sandbox; runDrill then rejects. */
  signal?: AbortSignal;
  /**
   * Load on the source region: every HPA there asks for this many replicas (capacity parity then
   * commits that figure as the target's floor). Absent: no load beyond the Git baseline.
   */
  sourceLoad?: number;
  /** The topology's capacity.whenSourceUnknown (default baseline). */
  capacityWhenSourceUnknown?: "baseline" | "refuse";
  /** The target region's HPA maxReplicas in Git (default 30): a floor above it is capped there. */
  targetMaxReplicas?: number;
}

/** The plain drill: us-west-2 -> us-east-2, graceful, 3 spokes, 6 apps (what the tests start from). */
export const DRILL_DEFAULTS: Readonly<Omit<DrillOptions, "reportDir">> = {
  target: "us-east-2",
  mode: "graceful",
  dryRun: false,
  spokes: 3,
  apps: 6,
  repeat: 1,
  faults: [],
};

/** One step of an execution as the summary shows it. */
export interface StepTiming {
  name: string;
  /**
   * How the step ended: from the execution history when it ran (FAILED when its function's last
   * attempt failed, STOPPED when the execution ended while it ran), else from the report
   * (SKIPPED, NOT_RUN).
   */
  status: string;
  /** Function invocations, retries included (0 when the step did not run). */
  invocations: number;
  /** How many of them were the ASL's Retry. */
  retries: number;
  wallMs: number;
  /** What it would take on AWS: real Wait and Retry intervals instead of the compressed ones. */
  emulatedMs: number;
}

/** One execution of a drill. */
export interface DrillExecution {
  name: string;
  executionArn: string;
  status: string;
  error: string | null;
  cause: string | null;
  /** From StartExecution to the end of the execution. */
  wallMs: number;
  steps: StepTiming[];
  report: DrillReport | null;
  /** The platform just before the execution started. */
  before: SandboxState;
  /** The platform once it ended and Argo CD reconciled (the spokes run what Git says). */
  after: SandboxState;
  /** The failback of `drill --failback` (not a repeat). */
  failback?: boolean;
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

/** Everything a drill did, read from the stand-ins and the executions. */
export interface DrillResult {
  /** NOT_STARTED: the trigger decided not to fail over (kill switch, cooldown); `trigger` says why. */
  status: "SUCCEEDED" | "FAILED" | "NOT_STARTED";
  trigger: TriggerDecision[];
  failedStep: string | null;
  error: string | null;
  executions: DrillExecution[];
  before: SandboxState;
  after: SandboxState;
  /** What the stand-ins saw of the orchestrator's calls during the drill. */
  calls: SandboxCalls;
  reportDir: string;
  sandbox: { wallMs: number; startMs: number; peakRssMb: number };
}

/** The Task states, in the order the summary lists them. */
const TASK_STEPS: readonly string[] = FUNCTIONS.map((f) => f.state);
/** The steps that change (or check) the platform: on a repeat every one must be SKIPPED. */
const FAILOVER_STEPS: readonly string[] = STEPS;

const fmt = (ms: number) =>
  ms >= 60_000 ? `${(ms / 60_000).toFixed(1)} min` : `${(ms / 1000).toFixed(1)} s`;
const SPINNER = ["|", "/", "-", "\\"];

/** The ASL's states, and from them which Wait state belongs to which poller. */
function aslStates(): {
  states: Map<string, AslState>;
  waits: Map<string, { poller: string; seconds: number }>;
} {
  const states = allStates(JSON.parse(aslText()) as Record<string, unknown>);
  const waits = new Map<string, { poller: string; seconds: number }>();
  for (const [name, s] of states) {
    if (s.Type === "Wait" && s.Next) {
      const poller = s.Next === "ShiftTraffic" ? "VerifyTraffic" : s.Next;
      waits.set(name, { poller, seconds: s.Seconds ?? 0 });
    }
  }
  return { states, waits };
}

/** What AWS would wait before retry `attempt` (1-based) of `state` after `error`: the mean, in ms. */
function retryDelayMs(state: AslState | undefined, error: string, attempt: number): number {
  const retrier = state?.Retry?.find(
    (r) => r.ErrorEquals.includes(error) || r.ErrorEquals.includes("States.ALL"),
  );
  if (!retrier) return 0;
  const seconds = Math.min(
    (retrier.IntervalSeconds ?? 1) * (retrier.BackoffRate ?? 2) ** (attempt - 1),
    retrier.MaxDelaySeconds ?? Number.POSITIVE_INFINITY,
  );
  return seconds * 1000 * (retrier.JitterStrategy === "FULL" ? 0.5 : 1);
}

interface StepTrack {
  first: number;
  last: number;
  invocations: number;
  retries: number;
  /** Function attempts in the current entry of the state. */
  attempts: number;
  /** Retry attempts per retrier, in the current entry. */
  retrierAttempts: Map<string, number>;
  waits: number;
  waitSeconds: number;
  /** Emulated minus real time spent before retries. */
  retryExtraMs: number;
  open: boolean;
  failed: boolean;
  lastError: string;
  status: string;
}

/** The outcome of one step from its own output (status, skipped, a no-op plan), and a detail. */
function stepOutcome(name: string, state: Record<string, unknown>): [string, string] {
  const key: Record<string, string> = {
    VerifySpoke: "spoke",
    CommitRetarget: "retarget",
    AwaitArgoSync: "argo",
    AwaitCapacity: "capacityGate",
    PromoteAurora: "promotion",
    AwaitAurora: "aurora",
    ShiftTraffic: "traffic",
    VerifyTraffic: "trafficHealth",
    DemoteSource: "demotion",
    Fence: "fence",
    Compensate: "compensation",
  };
  if (name === "Plan") {
    const plan = state.plan as { noop?: boolean; actions?: string[] } | undefined;
    return plan?.noop
      ? ["SKIPPED", "already on target"]
      : ["SUCCEEDED", `${plan?.actions?.length ?? 0} actions`];
  }
  const field = key[name];
  const result = (field ? state[field] : undefined) as
    | { status?: string; skipped?: boolean; hub?: string }
    | undefined;
  if (result?.skipped) return ["SKIPPED", ""];
  // Report, RecordFailure, Notify, Approval: the function returning is the step succeeding.
  return [result?.status ?? "SUCCEEDED", result?.hub ? `via ${result.hub}` : ""];
}

/** Reads an execution's history as it grows: steps, attempts, retries, waits. */
class HistoryReader {
  readonly tracks = new Map<string, StepTrack>();
  startedAt: number | undefined;
  private readonly stateOf = new Map<number, string>();
  private readonly asl = aslStates();
  private tick = 0;

  constructor(
    private readonly options: DrillOptions,
    private readonly waitMs: number,
  ) {}

  private track(name: string, at: number): StepTrack {
    let t = this.tracks.get(name);
    if (!t) {
      t = {
        first: at,
        last: at,
        invocations: 0,
        retries: 0,
        attempts: 0,
        retrierAttempts: new Map(),
        waits: 0,
        waitSeconds: 0,
        retryExtraMs: 0,
        open: false,
        failed: false,
        lastError: "",
        status: "",
      };
      this.tracks.set(name, t);
    }
    return t;
  }

  private elapsed(at: number): string {
    return fmt(at - (this.startedAt ?? at)).padStart(7);
  }

  read(e: HistoryEvent): void {
    const at = e.timestamp ? new Date(e.timestamp).getTime() : Date.now();
    if (e.type === "ExecutionStarted") this.startedAt ??= at;
    const name =
      e.stateEnteredEventDetails?.name ??
      e.stateExitedEventDetails?.name ??
      this.stateOf.get(e.previousEventId ?? 0);
    if (!name) return;
    if (e.id !== undefined) this.stateOf.set(e.id, name);
    const wait = this.asl.waits.get(name);
    if (wait) {
      const t = e.type?.endsWith("StateEntered") ? this.tracks.get(wait.poller) : undefined;
      if (t) {
        t.waits += 1;
        t.waitSeconds = wait.seconds;
      }
      return;
    }
    if (!TASK_STEPS.includes(name)) return;
    const t = this.track(name, at);
    t.last = at;
    switch (e.type) {
      case "TaskStateEntered":
        t.open = true;
        t.attempts = 0;
        t.retrierAttempts.clear();
        return;
      case "LambdaFunctionScheduled":
      case "TaskScheduled":
        t.invocations += 1;
        t.attempts += 1;
        if (t.attempts > 1) this.retried(name, t, at);
        t.failed = false;
        return;
      case "LambdaFunctionFailed":
      case "TaskFailed":
        t.failed = true;
        t.lastError =
          e.lambdaFunctionFailedEventDetails?.error ?? e.taskFailedEventDetails?.error ?? "";
        return;
      case "TaskStateExited": {
        t.open = false;
        const output = JSON.parse(e.stateExitedEventDetails?.output ?? "{}") as Record<
          string,
          unknown
        >;
        const [status, detail] = t.failed ? ["FAILED", t.lastError] : stepOutcome(name, output);
        t.status = status;
        if (status === "IN_PROGRESS") {
          this.options.live?.(
            `${SPINNER[this.tick++ % SPINNER.length]} ${name}: poll ${t.invocations} (${fmt(Date.now() - (this.startedAt ?? at))})`,
          );
        } else {
          this.options.print?.(
            `[${this.elapsed(at)}] ${name.padEnd(14)} ${status}${detail ? ` (${detail})` : ""}`,
          );
        }
        return;
      }
      default:
        return;
    }
  }

  /** A new attempt after a failed one in the same entry: the ASL's Retry. */
  private retried(name: string, t: StepTrack, at: number): void {
    t.retries += 1;
    const n = (t.retrierAttempts.get(t.lastError) ?? 0) + 1;
    t.retrierAttempts.set(t.lastError, n);
    const onAws = retryDelayMs(this.asl.states.get(name), t.lastError, n);
    t.retryExtraMs += Math.max(0, onAws - this.waitMs);
    this.options.print?.(
      `[${this.elapsed(at)}] ${name.padEnd(14)} retry ${n} after ${t.lastError}`,
    );
  }

  /** The steps that ran, once the execution ended. */
  steps(): Map<string, StepTiming> {
    const out = new Map<string, StepTiming>();
    for (const [name, t] of this.tracks) {
      const wallMs = t.last - t.first;
      out.set(name, {
        name,
        status: t.open || t.status === "IN_PROGRESS" || !t.status ? "STOPPED" : t.status,
        invocations: t.invocations,
        retries: t.retries,
        wallMs,
        emulatedMs:
          wallMs + t.waits * Math.max(0, t.waitSeconds * 1000 - this.waitMs) + t.retryExtraMs,
      });
    }
    return out;
  }
}

/** Resolves after the delay; rejects at once when the drill is interrupted. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return sleep(ms, undefined, signal ? { signal } : {});
}

/**
 * How often (at most) the follower reads the history while the execution runs. Each read
 * returns every event so far, in the process that also runs the execution: reading it at the
 * 25 ms status poll made a long execution's drill spend most of its time serializing history.
 * Step timings come from the events' timestamps, so this only delays the live lines.
 */
const HISTORY_EVERY_MS = 250;

/**
 * Follows one execution's history until it ends, reporting each step as it finishes. A read
 * takes at most a tenth of the time (the next waits 9x as long as the last one took).
 */
async function follow(
  executionArn: string,
  options: DrillOptions,
  waitMs: number,
): Promise<{
  status: string;
  error: string | null;
  cause: string | null;
  steps: Map<string, StepTiming>;
  wallMs: number;
  output: string | undefined;
}> {
  const reader = new HistoryReader(options, waitMs);
  let seen = 0;
  let nextRead = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    if (Date.now() >= nextRead) {
      const readStart = Date.now();
      const history = await sfnClient().send(
        new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }),
      );
      const events: HistoryEvent[] = history.events ?? [];
      for (const e of events.slice(seen)) reader.read(e);
      seen = events.length;
      nextRead = Date.now() + Math.max(HISTORY_EVERY_MS, 9 * (Date.now() - readStart));
    }
    const done = await sfnClient().send(new DescribeExecutionCommand({ executionArn }));
    if (done.status && done.status !== "RUNNING") {
      // Events recorded since the last read.
      const rest = await sfnClient().send(
        new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }),
      );
      for (const e of (rest.events ?? []).slice(seen)) reader.read(e);
      const start = done.startDate?.getTime() ?? reader.startedAt ?? Date.now();
      return {
        status: done.status,
        error: done.error ?? null,
        cause: done.cause ?? null,
        steps: reader.steps(),
        wallMs: (done.stopDate?.getTime() ?? Date.now()) - start,
        output: done.output,
      };
    }
    await pause(25, options.signal);
  }
}

async function readReport(dir: string): Promise<DrillReport | null> {
  try {
    return JSON.parse(await readFile(join(dir, "report.json"), "utf8")) as DrillReport;
  } catch {
    return null;
  }
}

/** The platform as the report shows it: without the sandbox-only views (workloads, history). */
function platformOf(state: SandboxState): Omit<SandboxState, "workloads" | "gitLog"> {
  const { workloads: _w, gitLog: _g, ...platform } = state;
  return platform;
}

async function startByApi(
  sandbox: Sandbox,
  name: string,
  options: DrillOptions,
  failbackTo?: string,
): Promise<string | undefined> {
  const input = {
    targetRegion: failbackTo ?? options.target,
    reason: `sandbox drill${failbackTo ? " failback" : ""}${options.faults.length ? ` with ${options.faults.join(", ")}` : ""}`,
    mode: failbackTo ? "graceful" : options.mode,
    dryRun: options.dryRun,
    requestedBy: "drill",
    ...(failbackTo ? { failback: true } : {}),
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

/** The platform once Argo CD has reconciled: what the spokes run is what Git says. */
async function settledState(sandbox: Sandbox): Promise<SandboxState> {
  await sandbox.settle();
  return sandbox.state();
}

/** The summary's rows: every step that ran (from the history) or that the report lists. */
function stepRows(ran: Map<string, StepTiming>, report: DrillReport | null): StepTiming[] {
  const reported = new Map(report?.steps.map((s) => [s.name, s.status]) ?? []);
  return TASK_STEPS.flatMap((name) => {
    const step = ran.get(name);
    if (step) return [step];
    const status = reported.get(name);
    return status ? [{ name, status, invocations: 0, retries: 0, wallMs: 0, emulatedMs: 0 }] : [];
  });
}

/** Follows an execution to its end and reads back what it reported and what it left. */
async function observe(
  sandbox: Sandbox,
  name: string,
  executionArn: string,
  before: SandboxState,
  options: DrillOptions,
  waitMs: number,
): Promise<DrillExecution> {
  const run = await follow(executionArn, options, waitMs);
  const after = await settledState(sandbox);
  const report = await readReport(options.reportDir);
  return {
    name,
    executionArn,
    status: run.status,
    error: run.error,
    cause: run.cause,
    wallMs: run.wallMs,
    steps: stepRows(run.steps, report),
    report,
    before,
    after,
  };
}

/** The CloudWatch alarm state change EventBridge delivers when a region's health check fails. */
export function alarmEvent(sandbox: Sandbox, region: string, at: Date): Record<string, unknown> {
  const healthCheckId = sandbox.topology.regions[region]?.route53.healthCheckId ?? "";
  return {
    version: "0",
    id: `drill-${at.getTime()}`,
    "detail-type": "CloudWatch Alarm State Change",
    source: "aws.cloudwatch",
    account: SANDBOX_ACCOUNT,
    time: at.toISOString(),
    region: "us-east-1",
    resources: [`arn:aws:cloudwatch:us-east-1:${SANDBOX_ACCOUNT}:alarm:gitops-failover-${region}`],
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

type Execute = (
  name: string,
  start: () => Promise<string | undefined>,
  before?: SandboxState,
) => Promise<void>;

/**
 * The automatic path: the active region's health check fails, its alarm reaches the trigger
 * (`alarmRepeats` times), and whatever the trigger decides is what happens.
 */
async function alarmDrill(
  sandbox: Sandbox,
  options: DrillOptions,
  decisions: TriggerDecision[],
  execute: Execute,
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
  const before = await sandbox.state();
  sandbox.aws.route53.setFailingFraction(
    sandbox.topology.regions[region]?.route53.healthCheckId ?? "",
    1,
  );
  options.print?.(`${region}: every Route 53 checker now reports failure; the alarm fires`);
  const event = alarmEvent(sandbox, region, new Date());
  for (let i = 1; i <= (options.alarmRepeats ?? 1); i++) {
    options.signal?.throwIfAborted();
    const decision = (await invokeTrigger(event)) as TriggerDecision;
    decisions.push(decision);
    options.print?.(`alarm delivery ${i}: trigger ${decision.decision}: ${decision.reason}`);
  }
  const started = decisions.find((d) => d.decision === "started");
  if (started?.incident && started.executionArn) {
    const arn = started.executionArn;
    await execute(started.incident, async () => arn, before);
  }
}

/** When the trigger started nothing, the report is its decisions and an unchanged platform. */
async function notStartedReport(
  dir: string,
  decisions: TriggerDecision[],
  before: SandboxState,
  after: SandboxState,
): Promise<void> {
  const report = {
    status: "NOT_STARTED",
    failedStep: null,
    error: null,
    reason: decisions.map((d) => `${d.decision}: ${d.reason}`).join("; "),
    trigger: decisions,
    steps: [],
    before: platformOf(before),
    after: platformOf(after),
  };
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "report.json"), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(
    join(dir, "report.md"),
    `# No failover\n\nThe trigger started no execution.\n\n${decisions.map((d) => `- ${d.decision}: ${d.reason}`).join("\n")}\n`,
  );
}

/** Copies an execution's report files into `<dir>/<execution>/` before the next one overwrites them. */
async function keepReport(dir: string, execution: string): Promise<void> {
  const into = join(dir, execution);
  await mkdir(into, { recursive: true });
  for (const f of REPORT_FILES) await copyFile(join(dir, f), join(into, f)).catch(() => undefined);
}

/** Every HPA of the source region asks for `replicas` (the HPA clamps it to its min/max). */
async function applySourceLoad(sandbox: Sandbox, replicas: number): Promise<void> {
  for (const spoke of sandbox.spokes.filter((s) => s.region === sandbox.activeRegion))
    for (const app of sandbox.topology.capacity?.apps ?? [])
      if (app.hpa) spoke.setHpaDemand(app.namespace, app.hpa, replicas);
  await sandbox.settle();
}

/** Runs `repeat` executions against one sandbox and returns what each did. */
export async function runDrill(options: DrillOptions): Promise<DrillResult> {
  const t0 = Date.now();
  const waitMs = 20;
  options.signal?.throwIfAborted();
  // The report directory is this drill's alone: nothing from an earlier run may be read as ours.
  await Promise.all(REPORT_FILES.map((f) => rm(join(options.reportDir, f), { force: true })));
  const sandbox: Sandbox = await startSandbox({
    spokes: options.spokes,
    apps: options.apps,
    reportDir: options.reportDir,
    waitMs,
    accounts:
      options.accounts ?? (options.faults.includes("assume-role-denied") ? "split" : "single"),
    ...(options.capacityWhenSourceUnknown
      ? { capacityWhenSourceUnknown: options.capacityWhenSourceUnknown }
      : {}),
    ...(options.targetMaxReplicas !== undefined
      ? { hpaMaxReplicas: { [options.target]: options.targetMaxReplicas } }
      : {}),
  });
  const startMs = Date.now() - t0;
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 100);
  try {
    options.signal?.throwIfAborted();
    options.print?.(
      `sandbox up in ${fmt(startMs)}: ${sandbox.spokes.length} spokes, ${sandbox.argo.applications().length} Argo CD apps, regions ${Object.keys(sandbox.topology.regions).join(", ")}`,
    );
    const notice = cleartextNotice(sandbox.topology);
    if (notice) options.print?.(notice);
    if (options.sourceLoad !== undefined) {
      await applySourceLoad(sandbox, options.sourceLoad);
      options.print?.(
        `load: every HPA in ${sandbox.activeRegion} asks for ${options.sourceLoad} replicas`,
      );
    }
    for (const fault of options.faults) {
      sandbox.injectFault(fault, options.target);
      options.print?.(`fault ${fault}: ${FAULTS[fault]}`);
    }
    const before = await sandbox.state();
    const executions: DrillExecution[] = [];
    const trigger: TriggerDecision[] = [];
    const execute: Execute = async (name, start, stateBefore) => {
      options.signal?.throwIfAborted();
      const at = stateBefore ?? (await sandbox.state());
      const executionArn = await start();
      if (executionArn)
        executions.push(await observe(sandbox, name, executionArn, at, options, waitMs));
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
      const [failover] = executions;
      const home = before.activeRegion;
      if (options.failback && failover?.status === "SUCCEEDED" && home) {
        await keepReport(options.reportDir, failover.name);
        const recovery = await recoverRegion(sandbox, home, {
          auroraRejoins: !options.faults.includes("aurora-not-rejoined"),
        });
        for (const line of recovery) options.print?.(`recovery: ${line}`);
        const name = `${failover.name}-failback`;
        options.print?.(`execution ${name}: failback to ${home} (graceful)`);
        await execute(name, () => startByApi(sandbox, name, options, home));
        const last = executions.at(-1);
        if (last?.name === name) last.failback = true;
      }
    }
    const after = await settledState(sandbox);
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
      calls: sandbox.calls(),
      reportDir: options.reportDir,
      sandbox: { wallMs: Date.now() - t0, startMs, peakRssMb: Math.round(peakRss / 1024 / 1024) },
    };
  } finally {
    clearInterval(sampler);
    await sandbox.stop();
  }
}

/** The parts of the platform a repeat must leave alone. */
function unchanged(a: SandboxState, b: SandboxState): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Why the drill did not show what it was asked to (empty: it did). A failover must succeed;
 * every repeat must skip every step and change nothing; with the kill switch or a cooldown the
 * trigger must start nothing, for that reason and no other.
 */
export function drillProblems(
  result: DrillResult,
  options: Pick<DrillOptions, "killSwitch" | "cooldownHit" | "failback">,
): string[] {
  const problems: string[] = [];
  if (options.killSwitch || options.cooldownHit) {
    const expected = options.killSwitch ? "kill-switch-on" : "cooldown";
    if (result.status !== "NOT_STARTED")
      problems.push(`the trigger must start nothing, but the drill ended ${result.status}`);
    if (!result.trigger.length) problems.push("no alarm reached the trigger");
    result.trigger.forEach((d, i) => {
      if (d.decision !== expected)
        problems.push(
          `alarm delivery ${i + 1}: trigger decided ${d.decision} (${d.reason}), expected ${expected}`,
        );
    });
    if (options.cooldownHit && !options.killSwitch && result.executions[0]?.status !== "SUCCEEDED")
      problems.push("the failover before the cooldown did not succeed");
    return problems;
  }
  if (result.status !== "SUCCEEDED")
    problems.push(`the failover ${result.status} at ${result.failedStep ?? "?"}`);
  const failback = result.executions.find((e) => e.failback);
  if (options.failback) {
    if (!failback) problems.push("no failback ran (the failover before it did not succeed)");
    const b = result.before;
    const a = result.after;
    if (
      a.activeRegion !== b.activeRegion ||
      a.auroraWriterRegion !== b.auroraWriterRegion ||
      JSON.stringify(a.trafficDials) !== JSON.stringify(b.trafficDials)
    )
      problems.push(
        `after the failback: active ${a.activeRegion}, writer ${a.auroraWriterRegion}, dials ${JSON.stringify(a.trafficDials)}; expected where they started (${b.activeRegion}, ${b.auroraWriterRegion}, ${JSON.stringify(b.trafficDials)})`,
      );
  }
  for (const e of result.executions.slice(1).filter((x) => !x.failback)) {
    const acted = e.steps.filter((s) => FAILOVER_STEPS.includes(s.name) && s.status !== "SKIPPED");
    if (acted.length)
      problems.push(
        `repeat ${e.name}: ${acted.map((s) => `${s.name} ${s.status}`).join(", ")}; every step must be SKIPPED`,
      );
    if (!unchanged(e.before, e.after)) problems.push(`repeat ${e.name} changed the platform`);
  }
  return problems;
}

/** The summary table printed at the end of a drill. */
export function summaryTable(result: DrillResult): string[] {
  const lines: string[] = result.trigger.map((d) => `trigger: ${d.decision}: ${d.reason}`);
  for (const e of result.executions) {
    lines.push("", `${e.name}: ${e.status}${e.error ? ` (${e.error})` : ""}`);
    const plan = e.report?.plan as { actions?: string[] } | null | undefined;
    const capacity = e.report?.capacity as FailoverReport["capacity"];
    if (capacity) {
      const n = (v: number | null) => (v === null ? "-" : String(v));
      lines.push(`${capacity.source === "unknown" ? "WARNING: " : ""}${capacity.line}`);
      for (const a of capacity.apps)
        lines.push(
          `  ${a.app}: observed ${n(a.observed)}, committed ${n(a.committed)}/spoke, Ready ${n(a.ready)}`,
        );
    }
    const aurora = e.report?.auroraCapacity as FailoverReport["auroraCapacity"];
    if (aurora) {
      lines.push(`${aurora.warnings.length ? "WARNING: " : ""}${aurora.line}`);
      const raise = aurora.raise;
      if (raise?.after)
        lines.push(
          `  ${aurora.targetRegion} MinCapacity ${raise.before?.min ?? "?"} -> ${raise.after.min} ACU (observed ${aurora.observedAcu ?? "-"}, committed ${aurora.committed ?? "-"}) before the promotion`,
        );
      else if (raise)
        lines.push(
          `  ${aurora.targetRegion} MinCapacity not modified: ${raise.skipped ?? raise.warning ?? "?"}`,
        );
      if (aurora.restore)
        lines.push(
          `  given back: ${aurora.restore.region} MinCapacity ${aurora.restore.restored ? `restored ${aurora.restore.from} -> ${aurora.restore.to}` : `not restored: ${aurora.restore.detail}`}`,
        );
    }
    if (e.report?.dryRun && plan?.actions) {
      lines.push("plan (dry run: nothing was changed):");
      for (const action of plan.actions) lines.push(`  - ${action}`);
    }
    lines.push(
      `${"step".padEnd(15)}${"outcome".padEnd(11)}${"on AWS ~".padStart(10)}${"here".padStart(9)}  calls`,
    );
    for (const s of e.steps) {
      const ran = s.invocations > 0;
      const calls = `${s.invocations}${s.retries ? ` (${s.retries} ${s.retries === 1 ? "retry" : "retries"})` : ""}`;
      lines.push(
        `${s.name.padEnd(15)}${s.status.padEnd(11)}${(ran ? fmt(s.emulatedMs) : "-").padStart(10)}${(ran ? fmt(s.wallMs) : "-").padStart(9)}  ${ran ? calls : "-"}`,
      );
    }
  }
  const b = result.before;
  const a = result.after;
  const dials = (d: Record<string, number>) =>
    Object.entries(d)
      .map(([r, v]) => `${r}=${v}%`)
      .join(" ");
  const pods = (s: SandboxState) =>
    Object.entries(s.workloads)
      .map(([r, w]) => `${r}=${w.ready}/${w.replicas}`)
      .join(" ");
  lines.push(
    "",
    `before: active ${b.activeRegion}, Aurora writer ${b.auroraWriterRegion}, dials ${dials(b.trafficDials)}, ready pods ${pods(b)}, git ${b.gitHead.slice(0, 12)}`,
    `after:  active ${a.activeRegion}, Aurora writer ${a.auroraWriterRegion}, dials ${dials(a.trafficDials)}, ready pods ${pods(a)}, git ${a.gitHead.slice(0, 12)}`,
    `drill ${result.status} in ${fmt(result.sandbox.wallMs)} wall (sandbox start ${fmt(result.sandbox.startMs)}), peak RSS ${result.sandbox.peakRssMb} MB; report in ${result.reportDir}/`,
  );
  if (result.status === "FAILED")
    lines.push(`failed step: ${result.failedStep ?? "?"}: ${result.error ?? ""}`);
  return lines;
}
