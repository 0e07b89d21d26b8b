/**
 * The runbook report: what was asked, what each step saw and did, the platform before and
 * after, and — when a step failed — everything changed before it and what to do by hand.
 * Written as JSON, Markdown and self-contained HTML (report-html.ts) to S3 (`REPORT_BUCKET`) or
 * a directory (`REPORT_DIR`); its metrics go out as EMF (metrics.ts).
 *
 * The execution state is the first source; the audit trail fills in what the state lost (a
 * Catch on the Parallel state keeps neither branch's output, so after a failure in one branch
 * only the trail knows that the other committed, or promoted Aurora).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { type AnchorPayload, type SignedAnchor, signAnchor } from "./anchor.ts";
import {
  type AuditEvent,
  type AuditOutcome,
  appendAuditEvent,
  readAuditTrail,
  verifyChain,
} from "./audit.ts";
import {
  type AuroraCapacityReport,
  auroraCapacityMarkdown,
  auroraCapacityReport,
} from "./aurora-capacity.ts";
import { awsError, regionOfArn, s3Client } from "./aws.ts";
import { capacityLine } from "./capacity.ts";
import { runtimeTopology, type Topology } from "./config.ts";
import { describe, UnexpectedError } from "./errors.ts";
import { type FailedPlan, failedPlanOf } from "./failed-plan.ts";
import { releaseLock } from "./lock.ts";
import { recordFailoverMetrics } from "./metrics.ts";
import { readinessLine } from "./readiness.ts";
import { redact, redactDeep } from "./redact.ts";
import { renderHtml } from "./report-html.ts";
import type {
  CaughtError,
  CompensationAction,
  ExecutionRef,
  FailoverState,
  Plan,
  PlatformSnapshot,
} from "./state.ts";
import { dialsText, maxDialRegion, type PartialSnapshot, snapshot } from "./steps.ts";
import { logger } from "./telemetry.ts";

/** STOPPED: the step was still polling when the other Parallel branch failed. */
export type StepOutcome = "SUCCEEDED" | "SKIPPED" | "FAILED" | "NOT_RUN" | "STOPPED";

/** The workflow's steps in order, as named in the ASL. */
export const STEPS = [
  "Plan",
  "Approval",
  "VerifySpoke",
  "CommitRetarget",
  "AwaitCapacity",
  "AwaitArgoSync",
  "PromoteAurora",
  "AwaitAurora",
  "ShiftTraffic",
  "VerifyTraffic",
  "DemoteSource",
  "Fence",
  "Compensate",
] as const;
export type StepName = (typeof STEPS)[number];
/** A failover fails at one of its steps, or — after everything was done — at Report itself. */
export type FailedStep = StepName | "Report";

/** The files a report is made of, in S3 or in a directory. */
export const REPORT_FILES = ["report.json", "report.md", "report.html", "audit.jsonl"] as const;

export interface FailoverReport {
  status: "SUCCEEDED" | "FAILED";
  /** A dry run: Plan ran, nothing was changed, the plan is the report. */
  dryRun: boolean;
  /** What Plan decided (null when Plan did not get that far). */
  plan: { needs: Plan["needs"]; actions: string[]; noop: boolean } | null;
  execution: ExecutionRef;
  platform: string;
  sourceRegion: string | null;
  targetRegion: string | null;
  mode: string | null;
  reason: string | null;
  requestedBy: string | null;
  failedStep: FailedStep | null;
  error: { name: string; message: string } | null;
  steps: {
    name: StepName;
    status: StepOutcome;
    detail: string;
    startedAt: string | null;
    endedAt: string | null;
  }[];
  /** The longer of the two Parallel branches: what bounded the failover's duration. */
  criticalPath: StepName[];
  /** The target's latest readiness as Plan found it (readinessLine), or null. */
  targetReadiness: string | null;
  /**
   * Capacity parity, when the topology has it: where the source's figures came from and how old
   * they were, and per app the observed replicas, the committed floor and the Ready replicas the
   * gate last saw on the target (null: not checked).
   */
  capacity?: {
    line: string;
    source: "live" | "stored" | "unknown";
    ageSeconds: number | null;
    minimumSuccessPercent: number;
    apps: {
      app: string;
      observed: number | null;
      committed: number | null;
      ready: number | null;
    }[];
  };
  /** Capacity parity for Aurora: the source's peak ACUs, the MinCapacity committed, a failback's restore. */
  auroraCapacity?: AuroraCapacityReport;
  timeline: {
    seq: number;
    at: string;
    step: string;
    outcome: string;
    action: string;
    detail: string;
  }[];
  /** The chain this report closes: `audit verify` checks audit.jsonl against it. */
  audit: {
    events: number;
    head: string | null;
    intact: boolean;
    /** The signed anchor (anchor.ts): in report.json only, added once the other files are written. */
    signed?: SignedAnchor | null;
  };
  links: { execution: string; commit: string | null };
  /** When Plan failed: what could be read of the platform then (Plan changes nothing). */
  before: PlatformSnapshot | PartialSnapshot | null;
  after: PlatformSnapshot | null;
  /** The first-phase (retarget) commit. */
  commit: { sha: string; previousSha: string; subject: string } | null;
  /** Every commit this execution made, in order: activate, demote, compensate. */
  commits: {
    phase: "activate" | "demote" | "compensate";
    sha: string;
    subject: string;
    url: string;
  }[];
  /**
   * How apps and data were ordered, and the time users' region and the Aurora writer were apart
   * (from the promotion call to the traffic stage that completed the move, or to compensation).
   */
  order: {
    kind: "sequential" | "parallel" | null;
    why: string;
    split: { from: string; to: string | null; seconds: number | null } | null;
  };
  /** Who approved, when and after how long a wait; null when no approval was asked. */
  approval: {
    by: string;
    at: string | null;
    waitedSeconds: number | null;
    /** The caller's verified principal, when the approval came through an authenticated entry point. */
    principal: string | null;
  } | null;
  /** What compensation did after the failure, in order (empty when it did not run). */
  compensation: { at: string; action: string; outcome: string; detail: string }[];
  changed: string[];
  manualSteps: string[];
  /** RTO counts from the alarm's `detectedAt` when the input has one, else the execution start. */
  rto: {
    from: string;
    start: "detectedAt" | "executionStart";
    trafficShiftedAt: string | null;
    seconds: number | null;
  };
  generatedAt: string;
  /**
   * Each old region's fence as the Fence step last saw it (`verified`, `pending (unreachable)`,
   * `not fenced`), what is still live there and the commands that fence it; empty when it did not run.
   */
  /** Set on a failover's report once a failback undid it: that failback (name and console link). */
  undoneBy?: { execution: string; link: string };
  /** A failback: the failover it undoes (execution name and console link). */
  failback?: { undoes: { execution: string; link: string } | null; checks: string[] } | null;
  fence?: { region: string; fence: string; detail: string; live: string[]; commands: string[] }[];
}

/** Lambda puts `{"errorType","errorMessage",...}` in Cause; local runs put the message. */
function errorOf(caught: CaughtError): { name: string; message: string } {
  let message = caught.Cause ?? "";
  try {
    const doc = JSON.parse(message) as { errorMessage?: unknown };
    if (typeof doc.errorMessage === "string") message = doc.errorMessage;
  } catch {
    // Cause was a plain message.
  }
  return { name: caught.Error, message: redact(message) };
}

type Fields = Record<string, unknown>;
const fields = (v: unknown): Fields => (v && typeof v === "object" ? (v as Fields) : {});
const isStep = (name: string): name is StepName => (STEPS as readonly string[]).includes(name);

/** Each step's last audit event: a poller's last poll, a retried step's final attempt. */
function lastEvents(events: AuditEvent[]): Map<StepName, AuditEvent> {
  const last = new Map<StepName, AuditEvent>();
  for (const e of events) if (isStep(e.step)) last.set(e.step, e);
  return last;
}

const STEP_TAG = /^\[([A-Za-z]+)\]/;

/**
 * The step that failed: named in the message by our middleware; else the latest step whose
 * last audit event failed; else Report when its closing event is there or everything before it
 * was done; else deduced from what the state holds.
 */
function failedStepOf(
  state: Partial<FailoverState>,
  error: { name: string; message: string },
  events: AuditEvent[] = [],
): FailedStep {
  const tagged = STEP_TAG.exec(error.message)?.[1];
  if (tagged === "Report" || (tagged && isStep(tagged))) return tagged;
  if (events.some((e) => e.step === "Report")) return "Report";
  const failed = [...lastEvents(events).values()]
    .filter((e) => e.outcome === "FAILED" && e.step !== "Compensate")
    .sort((a, b) => b.seq - a.seq)[0];
  if (failed && isStep(failed.step)) return failed.step;
  if (!state.plan) return "Plan";
  const health = state.trafficHealth;
  if (
    state.plan.noop ||
    (state.traffic?.complete &&
      health?.status === "SUCCEEDED" &&
      health.stage === state.traffic.stage)
  )
    return state.traffic?.complete && !state.demotion ? "DemoteSource" : "Report";
  if (state.input?.requireApproval && !state.approval) return "Approval";
  if (!state.spoke) return "VerifySpoke";
  if (!state.converge) {
    if (/^Aurora/.test(error.name)) return "AwaitAurora";
    if (/^Git/.test(error.name)) return "CommitRetarget";
    if (error.name === "TargetCapacityShort") return "AwaitCapacity";
    return "AwaitArgoSync";
  }
  return state.traffic ? "VerifyTraffic" : "ShiftTraffic";
}

type Span = { startedAt: string | null; endedAt: string | null };

/** Each step's first start and last end, from its audit events (a poller spans all its polls). */
function spansOf(events: AuditEvent[]): Map<string, Span> {
  const spans = new Map<string, Span>();
  for (const e of events) {
    const span = spans.get(e.step) ?? { startedAt: null, endedAt: null };
    const start = e.startedAt ?? e.recordedAt;
    const end = e.endedAt ?? e.recordedAt;
    if (!span.startedAt || start < span.startedAt) span.startedAt = start;
    if (!span.endedAt || end > span.endedAt) span.endedAt = end;
    spans.set(e.step, span);
  }
  return spans;
}

/** A step's outcome and result, shaped as its audit event's `after` (see middleware.ts). */
interface StepRecord {
  outcome: AuditOutcome;
  after: Fields;
  detail?: string;
}

/** What the state says each step did (absent: the state does not know). */
function recordsFromState(state: Partial<FailoverState>): Partial<Record<StepName, StepRecord>> {
  const c = state.converge;
  const retarget = c?.retarget ?? state.retarget;
  const done = (skipped: boolean): AuditOutcome => (skipped ? "SKIPPED" : "SUCCEEDED");
  const out: Partial<Record<StepName, StepRecord>> = {};
  if (state.plan) out.Plan = { outcome: "SUCCEEDED", after: { actions: state.plan.actions } };
  if (state.approval) out.Approval = { outcome: "SUCCEEDED", after: {} };
  if (state.spoke) out.VerifySpoke = { outcome: "SUCCEEDED", after: { ...state.spoke } };
  if (retarget)
    out.CommitRetarget = { outcome: done(retarget.skipped), after: { gitHead: retarget.sha } };
  if (c?.argo) out.AwaitArgoSync = { outcome: "SUCCEEDED", after: { ...c.argo } };
  if (c?.capacityGate)
    out.AwaitCapacity = {
      outcome: done(c.capacityGate.skipped ?? false),
      after: { ...c.capacityGate },
    };
  if (c?.promotion && c.promotion.status !== "DEFERRED") {
    out.PromoteAurora = { outcome: done(c.promotion.skipped), after: { ...c.promotion } };
    if (c.aurora) out.AwaitAurora = { outcome: "SUCCEEDED", after: { ...c.aurora } };
  }
  if (state.traffic)
    out.ShiftTraffic = { outcome: done(state.traffic.skipped), after: { ...state.traffic } };
  if (state.trafficHealth?.status === "SUCCEEDED")
    out.VerifyTraffic = { outcome: "SUCCEEDED", after: {} };
  if (state.demotion)
    out.DemoteSource = { outcome: done(state.demotion.skipped), after: { ...state.demotion } };
  if (state.fence && state.fence.status !== "IN_PROGRESS")
    out.Fence = {
      outcome: state.fence.status === "FAILED" ? "FAILED" : done(state.fence.skipped),
      after: { ...state.fence },
    };
  if (state.compensation && state.compensation.status !== "IN_PROGRESS")
    out.Compensate = {
      outcome: state.compensation.status === "FAILED" ? "FAILED" : "SUCCEEDED",
      after: { ...state.compensation },
    };
  return out;
}

/**
 * What the audit trail says each step did. Approval is left out: its event records that the
 * request went out, not the operator's answer (the state's `approval` holds that).
 */
function recordsFromEvents(events: AuditEvent[]): Partial<Record<StepName, StepRecord>> {
  const out: Partial<Record<StepName, StepRecord>> = {};
  for (const [name, e] of lastEvents(events)) {
    if (name === "Approval") continue;
    out[name] = {
      outcome: e.outcome,
      after: fields(e.after),
      ...(e.detail ? { detail: e.detail } : {}),
    };
  }
  return out;
}

const OUTCOME: Record<AuditOutcome, StepOutcome> = {
  SUCCEEDED: "SUCCEEDED",
  SKIPPED: "SKIPPED",
  FAILED: "FAILED",
  IN_PROGRESS: "STOPPED",
  DECIDED: "SUCCEEDED",
};

/** The one-line detail of a step that ran, from its result. */
function detailOf(name: StepName, r: StepRecord): string {
  const a = r.after;
  if (r.outcome === "IN_PROGRESS") return `stopped while in progress (poll ${String(a.polls)})`;
  if (r.outcome === "FAILED") return r.detail ?? "failed";
  const skipped = r.outcome === "SKIPPED";
  switch (name) {
    case "Plan":
      return (Array.isArray(a.actions) ? a.actions.join("; ") : "") || "nothing to do";
    case "Approval":
      return "approved";
    case "VerifySpoke":
      return (Array.isArray(a.spokes) ? a.spokes : [])
        .map(
          (s) =>
            `${String(fields(s).spoke)}: ${String(fields(s).readyNodes)} nodes Ready and schedulable`,
        )
        .join(", ");
    case "CommitRetarget":
      return `${skipped ? "already at" : "committed"} ${String(a.gitHead ?? "?").slice(0, 12)}`;
    case "AwaitArgoSync": {
      const onTop = Array.isArray(a.acceptedRevisions)
        ? a.acceptedRevisions.map((r) => String(r).slice(0, 12))
        : [];
      const at = onTop.length
        ? `, at ${onTop.join(", ")} pushed on top of the retarget commit (still making the target active)`
        : "";
      const progressing =
        typeof a.progressingCount === "number"
          ? `, ${a.progressingCount} of them still Progressing (ungraceful: the capacity gate holds their Ready replicas to its minimum)`
          : "";
      return `${String(a.done)}/${String(a.total)} apps Synced and Healthy via ${String(a.hub)}${at}${progressing}`;
    }
    case "AwaitCapacity":
      return skipped
        ? "no capacity floor committed"
        : (Array.isArray(a.apps) ? a.apps : [])
            .map((x) => {
              const f = fields(x);
              return `${String(f.app)} ${String(f.ready)} Ready of ${String(f.committed)}/spoke`;
            })
            .join(", ");
    case "PromoteAurora":
      return skipped ? "target already writer" : String(a.action ?? "");
    case "AwaitAurora":
      return `writer ${String(a.writerRegion ?? "?")}`;
    case "ShiftTraffic":
      return typeof a.stage === "number"
        ? `stage ${a.stage + 1}: ${String(a.percent)}%`
        : `dials ${dialsText(fields(a.trafficDials))}`;
    case "VerifyTraffic":
      return "target endpoints healthy";
    case "DemoteSource":
      return skipped
        ? String(a.reason ?? "nothing to commit")
        : `committed ${String(a.gitHead ?? a.sha ?? "?").slice(0, 12)}: ${(Array.isArray(a.regions) ? a.regions : []).join(", ")} passive`;
    case "Fence":
      return skipped
        ? "no old region to fence"
        : (Array.isArray(a.regions) ? a.regions : [])
            .map((x) => `${String(fields(x).region)} fence: ${String(fields(x).fence)}`)
            .join("; ");
    case "Compensate":
      return (
        (Array.isArray(a.actions) ? a.actions : [])
          .map((x) => `${String(fields(x).action)} ${String(fields(x).outcome)}`)
          .join("; ") || "nothing to do"
      );
  }
}

function stepOutcomes(
  state: Partial<FailoverState>,
  failed: FailedStep | null,
  events: AuditEvent[],
): FailoverReport["steps"] {
  const spans = spansOf(events);
  const fromState = recordsFromState(state);
  const fromTrail = recordsFromEvents(events);
  return STEPS.map((name) => {
    const span = spans.get(name) ?? { startedAt: null, endedAt: null };
    if (name === failed) return { name, status: "FAILED" as const, detail: "see error", ...span };
    if (state.plan?.noop && name !== "Plan")
      return { name, status: "SKIPPED" as const, detail: "already on target", ...span };
    if (state.input?.dryRun && name !== "Plan")
      return { name, status: "SKIPPED" as const, detail: "dry run", ...span };
    if (name === "Approval" && !state.approval)
      return state.input?.requireApproval
        ? { name, status: "NOT_RUN" as const, detail: "", ...span }
        : { name, status: "SKIPPED" as const, detail: "not required", ...span };
    const found = fromState[name] ?? fromTrail[name];
    if (!found) return { name, status: "NOT_RUN" as const, detail: "", ...span };
    return { name, status: OUTCOME[found.outcome], detail: detailOf(name, found), ...span };
  });
}

/** The retarget commit: from the state, else from CommitRetarget's audit event. */
function commitOf(state: Partial<FailoverState>, events: AuditEvent[]): FailoverReport["commit"] {
  const r = state.converge?.retarget ?? state.retarget;
  if (r) return { sha: r.sha, previousSha: r.previousSha, subject: r.subject };
  const e = lastEvents(events).get("CommitRetarget");
  const sha = fields(e?.after).gitHead;
  if (!e || e.outcome === "FAILED" || typeof sha !== "string") return null;
  return {
    sha,
    previousSha: String(fields(e.before).gitHead ?? ""),
    subject: String(fields(e.after).subject ?? ""),
  };
}

const PHASES = {
  CommitRetarget: "activate",
  DemoteSource: "demote",
  Compensate: "compensate",
} as const;

/**
 * Every commit the execution made, from the audit trail (the state, for the first two). The
 * compensation's commit is in its action detail (`<sha> <subject>`).
 */
function commitsOf(
  state: Partial<FailoverState>,
  events: AuditEvent[],
  t: Topology,
): FailoverReport["commits"] {
  const out: FailoverReport["commits"] = [];
  const add = (
    phase: FailoverReport["commits"][number]["phase"],
    sha: unknown,
    subject: unknown,
  ) => {
    if (typeof sha === "string" && /^[0-9a-f]{40}$/.test(sha) && !out.some((c) => c.sha === sha))
      out.push({ phase, sha, subject: String(subject ?? ""), url: commitLink(t, sha) });
  };
  const first = commitOf(state, events);
  const retargetSkipped = lastEvents(events).get("CommitRetarget")?.outcome === "SKIPPED";
  if (first && !retargetSkipped && !(state.converge?.retarget ?? state.retarget)?.skipped)
    add("activate", first.sha, first.subject);
  for (const e of events) {
    if (e.outcome !== "SUCCEEDED" && e.outcome !== "FAILED") continue;
    const a = fields(e.after);
    if (e.step === "DemoteSource" && e.outcome === "SUCCEEDED")
      add(PHASES.DemoteSource, a.gitHead, a.subject);
    if (e.step === "Compensate") {
      const revert = fields(a.revertCommit);
      add(PHASES.Compensate, revert.sha, revert.subject);
    }
  }
  if (state.demotion && !state.demotion.skipped)
    add("demote", state.demotion.sha, state.demotion.subject);
  return out;
}

/** The Parallel state's branches; CommitRetarget runs just before it (the push is the guard). */
const APPS_BRANCH: StepName[] = ["AwaitCapacity", "AwaitArgoSync"];
const DATA_BRANCH: StepName[] = ["PromoteAurora", "AwaitAurora"];

/**
 * The steps that bounded the duration: everything in sequence, plus (parallel order) the branch
 * that ended last; in sequential order both branches are on it.
 */
function criticalPath(
  steps: FailoverReport["steps"],
  order: FailoverReport["order"]["kind"],
): StepName[] {
  if (order === "sequential") return steps.filter((s) => s.startedAt).map((s) => s.name);
  const end = (names: StepName[]) =>
    Math.max(
      0,
      ...names.map((n) => Date.parse(steps.find((s) => s.name === n)?.endedAt ?? "") || 0),
    );
  const branch = end(APPS_BRANCH) >= end(DATA_BRANCH) ? APPS_BRANCH : DATA_BRANCH;
  return steps
    .filter(
      (s) =>
        s.startedAt &&
        (!APPS_BRANCH.includes(s.name) && !DATA_BRANCH.includes(s.name)
          ? true
          : branch.includes(s.name)),
    )
    .map((s) => s.name);
}

/** Compensation's actions from its last audit event (when the state lost them). */
function compensationFromTrail(events: AuditEvent[]): CompensationAction[] {
  const actions = fields(lastEvents(events).get("Compensate")?.after).actions;
  return Array.isArray(actions) ? (actions as CompensationAction[]) : [];
}

/**
 * The order the plan chose and why, and the split window: from the promotion call (the writer
 * starts leaving the serving region) to the end of the ShiftTraffic that completed the move, or
 * to the end of compensation when it brought them back together; open (`to: null`) otherwise.
 */
function orderOf(
  state: Partial<FailoverState>,
  steps: FailoverReport["steps"],
): FailoverReport["order"] {
  const kind = state.plan?.order ?? null;
  const why =
    kind === "sequential"
      ? "graceful: the Aurora switchover started only once the target's apps were Synced and Healthy, and traffic followed it at once, so users and the writer were apart only for the switchover"
      : kind === "parallel"
        ? "ungraceful: the source region is down, so apps and data converged on the target in parallel (promoting early cannot hurt users the source no longer serves)"
        : "no plan";
  const step = (n: StepName) => steps.find((s) => s.name === n);
  const promoted = step("PromoteAurora");
  if (promoted?.status !== "SUCCEEDED" || !promoted.startedAt) return { kind, why, split: null };
  const shift = step("ShiftTraffic");
  const together =
    state.traffic?.complete && shift?.endedAt
      ? shift.endedAt
      : state.compensation?.status === "SUCCEEDED"
        ? (step("Compensate")?.endedAt ?? null)
        : null;
  const from = promoted.startedAt;
  return {
    kind,
    why,
    split: {
      from,
      to: together,
      seconds: together ? Math.round((Date.parse(together) - Date.parse(from)) / 100) / 10 : null,
    },
  };
}

/** Who approved, when, and how long the request waited: the answer's audit record. */
function approvalOf(
  state: Partial<FailoverState>,
  events: AuditEvent[],
): FailoverReport["approval"] {
  const decided = events.find((e) => e.step === "Approval" && e.outcome === "DECIDED");
  const a = fields(decided?.after);
  if (!decided && !state.approval) return null;
  const waited = a.waitedSeconds;
  return {
    by: String(a.approvedBy ?? state.approval?.approvedBy ?? "unknown"),
    at: typeof a.approvedAt === "string" ? a.approvedAt : null,
    waitedSeconds: typeof waited === "number" ? waited : null,
    principal: typeof a.principal === "string" ? a.principal : null,
  };
}

function changesBetween(
  before: PlatformSnapshot | PartialSnapshot | null,
  after: PlatformSnapshot | null,
): string[] {
  // A partial before-state is read after a failed Plan, which changed nothing.
  if (!before || !after || "unreadable" in before) return [];
  const out: string[] = [];
  if (before.gitHead !== after.gitHead)
    out.push(`Git: branch moved ${before.gitHead.slice(0, 12)} -> ${after.gitHead.slice(0, 12)}`);
  const active = (x: PlatformSnapshot) => x.activeRegions?.join("+") || String(x.activeRegion);
  if (active(before) !== active(after))
    out.push(`Git: active region ${active(before)} -> ${active(after)}`);
  if (before.auroraWriterRegion !== after.auroraWriterRegion) {
    out.push(`Aurora: writer ${before.auroraWriterRegion} -> ${after.auroraWriterRegion}`);
  }
  for (const [region, dial] of Object.entries(after.trafficDials)) {
    const was = before.trafficDials[region];
    if (was !== dial) out.push(`Traffic: ${region} dial ${was}% -> ${dial}%`);
  }
  return out;
}

/** Global Accelerator's control-plane API exists in us-west-2 only, whatever the endpoints' regions. */
const GA_API_REGION = "us-west-2";
/** Steps that only read: a failure there (or before them) has changed nothing. */
const READ_ONLY: FailedStep[] = ["Plan", "Approval", "VerifySpoke"];

type ReportDraft = Omit<FailoverReport, "manualSteps">;

/** What this execution changed, per resource: from the snapshots, else from the steps. */
function movedBy(r: ReportDraft): { traffic: boolean; git: boolean; aurora: boolean } {
  if (r.failedStep && READ_ONLY.includes(r.failedStep))
    return { traffic: false, git: false, aurora: false };
  const did = (n: StepName) => r.steps.find((s) => s.name === n)?.status === "SUCCEEDED";
  const has = (prefix: string) => r.changed.some((c) => c.startsWith(prefix));
  if (!r.after || !r.before)
    return {
      traffic: did("ShiftTraffic") || r.failedStep === "ShiftTraffic",
      git: did("CommitRetarget"),
      aurora: did("PromoteAurora"),
    };
  const target = r.targetRegion ?? "";
  return {
    traffic: has("Traffic"),
    // Still made active by Git, after compensation had its go at it.
    git: r.after.activeRegions.includes(target) && !(r.before.activeRegions ?? []).includes(target),
    aurora: has("Aurora"),
  };
}

/** Only what a shell and Markdown can take literally: our names, ARNs, hex SHAs. */
const safe = (text: string) => text.replace(/[^A-Za-z0-9_.:/@+=,-]/g, "?");

function trafficUndo(r: ReportDraft, t: Topology, source: string, target: string): string {
  const before = r.before?.trafficDials ?? {};
  const after = r.after?.trafficDials;
  // Highest dial first: the source is raised before the target is lowered, so someone serves.
  const regions = Object.keys(before)
    .filter((region) => after?.[region] !== before[region])
    .sort((a, b) => (before[b] ?? 0) - (before[a] ?? 0));
  const to = regions.map((region) => `${region} ${before[region]}%`).join(", ");
  const head = `Undo traffic first (users are being sent to ${target}): set the dials back to ${to || `${source} 100%, every other region 0%`}, in this order`;
  if (t.traffic.mode === "route53") {
    const weights = regions
      .map((region) => `${t.regions[region]?.route53.setIdentifier ?? region}=${before[region]}`)
      .join(", ");
    return `${head}: UPSERT each region's weighted record ${safe(t.traffic.recordName ?? "?")} with its Weight (SetIdentifier=Weight: ${weights}), keeping its type and target: \`aws route53 list-resource-record-sets --hosted-zone-id ${safe(t.traffic.hostedZoneId ?? "?")} --start-record-name ${safe(t.traffic.recordName ?? "?")}\`, then \`aws route53 change-resource-record-sets --hosted-zone-id ${safe(t.traffic.hostedZoneId ?? "?")} --change-batch file://weights.json\`.`;
  }
  const commands = regions.map(
    (region) =>
      `\`aws globalaccelerator update-endpoint-group --region ${GA_API_REGION} --endpoint-group-arn ${t.regions[region]?.globalAccelerator?.endpointGroupArn ?? "?"} --traffic-dial-percentage ${before[region]}\``,
  );
  return `${head}: ${commands.join(", then ")}. (Global Accelerator's API is in ${GA_API_REGION} only; without --endpoint-configurations every endpoint keeps its weight.)`;
}

function gitUndo(r: ReportDraft, t: Topology, source: string): string {
  const sha = r.commit && /^[0-9a-f]{7,64}$/.test(r.commit.sha) ? r.commit.sha : null;
  const find = sha
    ? ""
    : `find it with \`git log --grep "Failover-Execution: ${safe(r.execution.id)}" origin/${safe(t.git.branch)}\`, then `;
  return `Undo Git next: revert the retarget commit ${sha ?? "(its SHA is not recorded)"} on ${safe(t.git.branch)} of ${safe(t.git.url)} so Argo CD moves the apps back to ${source}: ${find}\`git revert --no-edit ${sha ?? "<sha>"} && git push origin ${safe(t.git.branch)}\` in a clone at the branch head; wait until Argo CD shows the apps on ${source} Synced and Healthy.`;
}

/** `pending`: the promotion may still complete, so the writer to move back from is the target. */
function auroraUndo(
  r: ReportDraft,
  t: Topology,
  source: string,
  target: string,
  pending: boolean,
): string {
  const id = t.aurora.globalClusterIdentifier;
  const writer = pending ? target : (r.after?.auroraWriterRegion ?? target);
  const rejoin =
    r.mode === "ungraceful"
      ? ` After an ungraceful failover ${source}'s cluster rejoins as a secondary only once ${source} has recovered: switch over only when it is listed as a member again.`
      : "";
  const when = pending
    ? `If the promotion completes (${target} IsWriter), undo Aurora last`
    : "Undo Aurora last";
  return `${when}: switch the writer back to ${source} with \`aws rds switchover-global-cluster --region ${writer} --global-cluster-identifier ${id} --target-db-cluster-identifier ${t.regions[source]?.aurora.clusterArn ?? "?"}\` (asked in the current writer's region), and wait until \`aws rds describe-global-clusters --region ${source} --global-cluster-identifier ${id}\` shows no FailoverState and ${source}'s member IsWriter.${rejoin}`;
}

/**
 * What to do by hand after a failure, in order: undo per changed resource (traffic first, then
 * Git, then Aurora) with the commands, or finish forward with a new execution. Never a redrive:
 * every failure ends in the ASL's Fail state, and a redrive resumes there.
 */
function manualSteps(r: ReportDraft, t: Topology, allowDataLoss: boolean): string[] {
  if (r.status === "SUCCEEDED") return [];
  const source = r.sourceRegion ?? "the previous region";
  const target = r.targetRegion ?? "the target region";
  const cause = safe(r.error?.name ?? "unknown");
  const rerun = `\`gitops-failover start --target ${r.targetRegion ?? "<region>"} --mode ${r.mode ?? "graceful"}${allowDataLoss ? " --allow-data-loss" : ""} --reason "<why>"\``;
  if (r.failedStep === "Report")
    return [
      `The failover itself completed (${target} is active, with Aurora's writer and the traffic): nothing to undo. Only the Report step failed (${cause}); this report was written by RecordFailure instead.`,
    ];
  if (r.failedStep === "Fence") return fenceSteps(r, target);
  const moved = movedBy(r);
  const status = (n: StepName) => r.steps.find((s) => s.name === n)?.status;
  const auroraPending = r.after
    ? !!r.after.auroraFailoverState
    : !moved.aurora &&
      status("AwaitAurora") !== "SUCCEEDED" &&
      (status("PromoteAurora") === "SUCCEEDED" ||
        (r.failedStep === "PromoteAurora" && cause !== "AuroraPromotionRefused"));
  const steps: string[] = [];
  const serving = r.after ? maxDialRegion(r.after.trafficDials) : null;
  const writer = r.after?.auroraWriterRegion ?? null;
  const compensated = r.compensation.some((a) => a.outcome === "DONE" || a.outcome === "STARTED");
  if (serving === target && writer === target && moved.traffic) {
    return [
      `Compensation finished the move instead of undoing it: users and Aurora's writer are both on ${target} (its apps were Synced and Healthy); nothing to undo. ${source} is still active in Git: start a new execution to make it passive (${rerun}), once the cause (${cause}) is understood.`,
    ];
  }
  if (!moved.traffic && !moved.git && !moved.aurora && !auroraPending) {
    steps.push(
      compensated
        ? `Compensation restored the platform (${r.compensation.map((a) => `${a.action} ${a.outcome}`).join(", ")}): nothing left to undo. Users and Aurora's writer are on ${source}.`
        : `Nothing was changed: nothing to undo. Users are still served by ${source}.`,
    );
    if (cause === "ApprovalRejected")
      steps.push("The failover was rejected at Approval: start a new one only if still wanted.");
    else if (r.failedStep === "Approval")
      steps.push(
        `No one approved in time (${cause}): start a new execution if it is still wanted: ${rerun} --require-approval.`,
      );
    else steps.push(`Fix the cause (${cause}), then start a new execution: ${rerun}.`);
    return steps;
  }
  const id = t.aurora.globalClusterIdentifier;
  if (!r.after)
    steps.push(
      `The platform could not be read after the failure: check it before acting on the steps below (\`git ls-remote ${safe(t.git.url)} ${safe(t.git.branch)}\`, \`aws rds describe-global-clusters --region ${target} --global-cluster-identifier ${id}\`, \`aws globalaccelerator describe-endpoint-group --region ${GA_API_REGION} --endpoint-group-arn <each region's>\`).`,
    );
  const apart = !!serving && !!writer && serving !== writer;
  if (apart && !auroraPending)
    steps.push(
      `Data first: users are served by ${serving} but Aurora's writer is ${writer}, so their database is read-only. Switch the writer back: \`aws rds switchover-global-cluster --region ${writer} --global-cluster-identifier ${id} --target-db-cluster-identifier ${t.regions[serving]?.aurora.clusterArn ?? "?"}\` (asked in the writer's region) and wait until ${serving}'s member IsWriter — or, only if ${writer}'s apps are Synced and Healthy, move all traffic to ${writer} instead.`,
    );
  if (auroraPending)
    steps.push(
      `Check Aurora before anything else: the promotion to ${target} may still complete. Run \`aws rds describe-global-clusters --region ${target} --global-cluster-identifier ${id}\`: while FailoverState is set it is under way; revert nothing until it has ended and you know which member IsWriter. If ${target} became the writer, undo that last (below) or finish forward.`,
    );
  steps.push(
    moved.traffic
      ? trafficUndo(r, t, source, target)
      : `Traffic was not moved: users are still served by ${source}.`,
  );
  if (moved.git) steps.push(gitUndo(r, t, source));
  if ((moved.aurora && !apart) || auroraPending)
    steps.push(auroraUndo(r, t, source, target, auroraPending));
  steps.push(
    `Or finish forward instead of undoing: fix the cause (${cause}) and start a new execution with the same input, ${rerun}; it skips what is already done and goes on from ${r.failedStep ?? "the failed step"}. (A new execution, not a redrive: this one ended in its Fail state, where a redrive would resume.)`,
  );
  return steps;
}

/**
 * After the Fence step failed: nothing to undo (traffic and the writer are on the target); what
 * is still live in each old region, the commands that fence it, and how to check it again.
 */
function fenceSteps(r: ReportDraft, target: string): string[] {
  const live = (r.fence ?? []).filter((f) => f.fence === "not fenced");
  const regions = live.map((f) => f.region).join(", ") || "an old region";
  return [
    `The failover itself completed: traffic is on ${target}; do not undo it. But ${regions} can still serve or write, so users or writes may reach the old region.`,
    ...live.flatMap((f) => [
      `${f.region} is still live: ${f.live.join("; ")}.`,
      ...f.commands.map((c) => `Fence ${f.region}: \`${c}\``),
      `Then check it again: \`gitops-failover readiness --region ${f.region}\` (its fence check must be READY).`,
    ]),
  ];
}

async function afterSnapshot(t: Topology, target: string | null): Promise<PlatformSnapshot | null> {
  try {
    return await snapshot(t, target ?? Object.keys(t.regions)[0] ?? "");
  } catch {
    return null;
  }
}

function consoleLink(execution: ExecutionRef): string {
  const region = regionOfArn(execution.id) ?? "us-east-1";
  return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${execution.id}`;
}

function commitLink(t: Topology, sha: string): string {
  return `${t.git.url.replace(/\.git$/, "")}/commit/${sha}`;
}

function buildReport(
  state: Partial<FailoverState>,
  execution: ExecutionRef,
  t: Topology,
  after: PlatformSnapshot | null,
  events: AuditEvent[],
  failedPlan?: FailedPlan,
): FailoverReport {
  const error = state.error ? errorOf(state.error) : null;
  const failedStep = error ? failedStepOf(state, error, events) : null;
  const commit = commitOf(state, events);
  const input = state.input ?? failedPlan?.input;
  const before = state.plan?.before ?? failedPlan?.before ?? null;
  const from = input?.detectedAt ?? execution.startTime;
  const shifted =
    state.trafficHealth?.status === "SUCCEEDED" &&
    state.traffic?.complete &&
    !state.traffic.skipped;
  const trafficShiftedAt = shifted ? (state.trafficHealth?.checkedAt ?? null) : null;
  const steps = stepOutcomes(state, failedStep, events);
  const chain = verifyChain(events);
  const partial: ReportDraft = {
    status: error ? "FAILED" : "SUCCEEDED",
    dryRun: state.input?.dryRun ?? false,
    plan: state.plan
      ? { needs: state.plan.needs, actions: state.plan.actions, noop: state.plan.noop }
      : null,
    execution,
    platform: t.platform,
    sourceRegion: state.plan?.sourceRegion ?? failedPlan?.sourceRegion ?? null,
    targetRegion: state.plan?.targetRegion ?? input?.targetRegion ?? null,
    mode: input?.mode ?? null,
    reason: input?.reason ?? null,
    requestedBy: input?.requestedBy ?? null,
    failedStep,
    error,
    steps,
    criticalPath: criticalPath(steps, state.plan?.order ?? null),
    targetReadiness: state.plan ? readinessLine(state.plan.readiness) : null,
    ...capacityOf(state, events),
    ...auroraCapacityOf(state, events),
    timeline: events.map((e) => ({
      seq: e.seq,
      at: e.endedAt ?? e.recordedAt,
      step: e.step,
      outcome: e.outcome,
      action: e.action,
      detail: e.detail ?? "",
    })),
    audit: { events: events.length, head: events.at(-1)?.hash ?? null, intact: chain.intact },
    links: {
      execution: consoleLink(execution),
      commit: commit ? commitLink(t, commit.sha) : null,
    },
    before,
    after,
    commit,
    commits: commitsOf(state, events, t),
    order: orderOf(state, steps),
    approval: approvalOf(state, events),
    compensation: (state.compensation?.actions ?? compensationFromTrail(events)).map((a) => ({
      at: a.at,
      action: a.action,
      outcome: a.outcome,
      detail: a.detail,
    })),
    changed: changesBetween(before, after),
    rto: {
      from,
      start: input?.detectedAt ? "detectedAt" : "executionStart",
      trafficShiftedAt,
      seconds: trafficShiftedAt
        ? Math.round((Date.parse(trafficShiftedAt) - Date.parse(from)) / 1000)
        : null,
    },
    generatedAt: new Date().toISOString(),
    failback: state.plan?.failback
      ? {
          undoes: state.plan.failback.undoes
            ? {
                execution: state.plan.failback.undoes.split(":").at(-1) ?? "",
                link: consoleLink({
                  id: state.plan.failback.undoes,
                  name: "",
                  startTime: "",
                }),
              }
            : null,
          checks: state.spoke?.failbackChecks ?? [],
        }
      : null,
    fence: (state.fence?.regions ?? []).map((f) => ({
      region: f.region,
      fence: f.fence,
      detail: f.detail,
      live: f.live,
      commands: f.commands,
    })),
  };
  return redactDeep({
    ...partial,
    manualSteps: manualSteps(partial, t, input?.allowDataLoss ?? false),
  });
}

/** The report's capacity section: Plan's figures and what the gate last saw on the target. */
function capacityOf(
  state: Partial<FailoverState>,
  events: AuditEvent[],
): Pick<FailoverReport, "capacity"> {
  const plan = state.plan?.capacity;
  if (!plan) return {};
  const last = events.filter((e) => e.step === "AwaitCapacity").at(-1);
  const seen = fields(last?.after).apps;
  const gate = Array.isArray(seen) ? seen.map((a) => fields(a)) : [];
  const ready = (app: string) => {
    const n = gate.find((a) => a.app === app)?.ready;
    return typeof n === "number" ? n : null;
  };
  return {
    capacity: {
      line: capacityLine(plan),
      source: plan.source,
      ageSeconds: plan.ageSeconds ?? null,
      minimumSuccessPercent: plan.minimumSuccessPercent,
      apps: plan.apps.map((a) => ({
        app: a.app,
        observed: a.observed,
        committed: a.committed,
        ready: ready(a.app),
      })),
    },
  };
}

/** The report's Aurora capacity: Plan's figures and what PromoteAurora's audit event recorded. */
function auroraCapacityOf(
  state: Partial<FailoverState>,
  events: AuditEvent[],
): Pick<FailoverReport, "auroraCapacity"> {
  const promoted = events.filter((e) => e.step === "PromoteAurora").at(-1)?.after;
  const r = auroraCapacityReport(state.plan?.auroraCapacity, promoted ?? state.promotion);
  return r ? { auroraCapacity: r } : {};
}

/** The Markdown capacity table: per app observed, committed and Ready. */
function capacitySection(r: FailoverReport): string[] {
  const c = r.capacity;
  if (!c) return [];
  const n = (v: number | null) => (v === null ? "-" : String(v));
  return [
    "",
    "## Capacity",
    "",
    markdownText(c.line),
    "",
    "| app | observed (source) | committed (per target spoke) | Ready (target) |",
    "| --- | --- | --- | --- |",
    ...c.apps.map(
      (a) => `| ${markdownText(a.app)} | ${n(a.observed)} | ${n(a.committed)} | ${n(a.ready)} |`,
    ),
  ];
}

/**
 * A Mermaid gantt of the steps from their audit timestamps: the critical path is `crit, done`,
 * the failed step `crit`. The axis shows wall-clock time, so runs over an hour do not wrap.
 */
function renderGantt(r: FailoverReport): string[] {
  const timed = r.steps.filter((s) => s.startedAt && s.endedAt);
  if (!timed.length) return [];
  const section = (name: StepName) =>
    name === "CommitRetarget" || APPS_BRANCH.includes(name)
      ? "Apps"
      : DATA_BRANCH.includes(name)
        ? "Data"
        : name === "ShiftTraffic" || name === "VerifyTraffic"
          ? "Traffic"
          : "Prepare";
  const lines = [
    "```mermaid",
    "gantt",
    `  title Failover ${r.sourceRegion ?? "?"} -> ${r.targetRegion ?? "?"}`,
    "  dateFormat x",
    "  axisFormat %H:%M:%S",
  ];
  let current = "";
  for (const s of timed) {
    if (section(s.name) !== current) {
      current = section(s.name);
      lines.push(`  section ${current}`);
    }
    const tags =
      s.status === "FAILED"
        ? ["crit"]
        : [
            ...(r.criticalPath.includes(s.name) ? ["crit"] : []),
            ...(s.status === "STOPPED" ? [] : ["done"]),
          ];
    const start = Date.parse(s.startedAt ?? "");
    const end = Math.max(Date.parse(s.endedAt ?? ""), start + 1);
    lines.push(`  ${s.name} (${s.status}) :${[...tags, s.name, start, end].join(", ")}`);
  }
  lines.push("```");
  return lines;
}

/**
 * Text from outside (the input's reason and requestedBy, error messages, details) on one line
 * with Markdown and HTML made literal: it cannot start a line, a heading, a link or a tag.
 */
function markdownText(text: string): string {
  return text.replace(/[\p{Cc}\u2028\u2029]+/gu, " ").replace(/[\\`*_[\]<|]/g, "\\$&");
}

const seconds = (s: { startedAt: string | null; endedAt: string | null }) =>
  s.startedAt && s.endedAt
    ? `${((Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1)} s`
    : "";

function rtoLine(r: FailoverReport): string {
  const start =
    r.rto.start === "detectedAt"
      ? `the alarm's detectedAt (${r.rto.from})`
      : `the execution start (${r.rto.from}; the input had no detectedAt)`;
  return r.rto.seconds !== null
    ? `${r.rto.seconds} s, from ${start} to traffic shifted (${r.rto.trafficShiftedAt})`
    : `not measured: traffic was not shifted by this execution (it counts from ${start})`;
}

/** Renders the report as Markdown for people. */
function renderMarkdown(r: FailoverReport): string {
  const md = markdownText;
  const lines = [
    `# ${r.dryRun ? `Dry run of a ${r.failback ? "failback" : "failover"}` : `${r.failback ? "Failback" : "Failover"} ${r.status === "SUCCEEDED" ? "succeeded" : "FAILED"}`}: ${r.sourceRegion ?? "?"} -> ${r.targetRegion ?? "?"}`,
    ...(r.dryRun
      ? [
          "",
          "Nothing was changed. The plan:",
          "",
          ...(r.plan?.actions ?? []).map((a) => `- ${md(a)}`),
        ]
      : []),
    "",
    "## Summary",
    "",
    `- Outcome: **${r.status}**${r.error ? ` at ${r.failedStep}: ${md(r.error.name)}: ${md(r.error.message)}` : ""}`,
    `- Platform: ${r.platform}; mode: ${r.mode ?? "?"}; requested by: ${md(r.requestedBy ?? "?")}`,
    `- Reason: ${md(r.reason ?? "?")}`,
    ...(r.undoneBy
      ? [`- Undone by: the failback [${md(r.undoneBy.execution)}](${r.undoneBy.link})`]
      : []),
    ...(r.failback
      ? [
          `- Failback: ${r.failback.undoes ? `undoes the failover [${md(r.failback.undoes.execution)}](${r.failback.undoes.link})` : "no earlier failover to this region found in the branch history"}; pre-checks passed: ${r.failback.checks.map((c) => md(c.split(":")[0] ?? c)).join(", ") || "none needed"}`,
        ]
      : []),
    `- Execution: [${r.execution.name}](${r.links.execution})`,
    ...(r.commits.length
      ? r.commits.map(
          (c) => `- Commit (${c.phase}): [${c.sha.slice(0, 12)}](${c.url}) ${md(c.subject)}`,
        )
      : r.commit
        ? [
            `- Commit: [${r.commit.sha.slice(0, 12)}](${r.links.commit ?? ""}) ${md(r.commit.subject)}`,
          ]
        : []),
    `- Order: ${r.order.kind ?? "?"}: ${r.order.why}`,
    `- Users and writer apart: ${splitLine(r)}`,
    ...(r.approval
      ? [
          `- Approved by: ${md(r.approval.by)}${r.approval.principal ? ` (verified principal ${md(r.approval.principal)})` : " (as typed; no verified principal)"}${r.approval.at ? ` at ${r.approval.at}` : ""}${r.approval.waitedSeconds !== null ? `, after waiting ${r.approval.waitedSeconds} s` : ""}`,
        ]
      : []),
    `- RTO: ${rtoLine(r)}`,
    `- Critical path: ${r.criticalPath.join(" -> ") || "none"}`,
    ...(r.fence ?? []).map((f) => `- ${f.region} fence: ${f.fence} (${md(f.detail)})`),
    `- Target readiness at Plan: ${md(r.targetReadiness ?? "not planned")}`,
    `- Audit trail: ${r.audit.events} events, chain ${r.audit.intact ? "intact" : "BROKEN"}, head ${r.audit.head ?? "none"}`,
    "",
    "## Steps",
    "",
    "| step | outcome | duration | detail |",
    "| --- | --- | --- | --- |",
    ...r.steps.map((s) => `| ${s.name} | ${s.status} | ${seconds(s)} | ${md(s.detail)} |`),
    "",
    ...renderGantt(r),
    ...capacitySection(r),
    ...auroraCapacityMarkdown(r.auroraCapacity),
    "",
    "## Before / after",
    "",
    "| | before | after |",
    "| --- | --- | --- |",
    `| Git active region(s) | ${activeText(r.before)} | ${activeText(r.after)} |`,
    `| Git head | ${r.before?.gitHead?.slice(0, 12) ?? "?"} | ${r.after?.gitHead.slice(0, 12) ?? "?"} |`,
    `| Aurora writer | ${r.before?.auroraWriterRegion ?? "?"} | ${r.after?.auroraWriterRegion ?? "?"} |`,
    `| Traffic dials | ${dials(r.before)} | ${dials(r.after)} |`,
    `| Argo CD apps on the target | | ${md(r.steps.find((s) => s.name === "AwaitArgoSync")?.detail || "not checked")} |`,
    ...(r.before && "unreadable" in r.before
      ? r.before.unreadable.map((u) => `\nBefore: could not read ${md(u)}`)
      : []),
    "",
    "## Changed",
    "",
    ...(r.changed.length ? r.changed.map((c) => `- ${c}`) : ["- nothing"]),
    "",
    "## Timeline",
    "",
    "| # | time | step | outcome | action | detail |",
    "| --- | --- | --- | --- | --- | --- |",
    ...r.timeline.map(
      (e) =>
        `| ${e.seq} | ${e.at} | ${md(e.step)} | ${e.outcome} | ${md(e.action)} | ${md(e.detail)} |`,
    ),
  ];
  if (r.compensation.length)
    lines.push(
      "",
      "## Compensation",
      "",
      "| time | action | outcome | detail |",
      "| --- | --- | --- | --- |",
      ...r.compensation.map((a) => `| ${a.at} | ${a.action} | ${a.outcome} | ${md(a.detail)} |`),
    );
  if (r.manualSteps.length)
    lines.push("", "## Manual steps", "", ...r.manualSteps.map((s, i) => `${i + 1}. ${s}`));
  return `${lines.join("\n")}\n`;
}

function activeText(s: PlatformSnapshot | PartialSnapshot | null): string {
  return s?.activeRegions ? s.activeRegions.join(", ") || "none" : "?";
}

function splitLine(r: FailoverReport): string {
  const split = r.order.split;
  if (!split) return "never (Aurora's writer was not moved by this execution)";
  return split.seconds !== null
    ? `${split.seconds} s, from the promotion call (${split.from}) until ${split.to}`
    : `since ${split.from}, and still apart when this report was written (see the manual steps)`;
}

function dials(s: PlatformSnapshot | PartialSnapshot | null): string {
  return s?.trafficDials ? dialsText(s.trafficDials) : "?";
}

/** The audit trail as JSON lines: one event a line, exactly as hashed. */
function auditJsonl(events: AuditEvent[]): string {
  return events.map((e) => JSON.stringify(e)).join("\n") + (events.length ? "\n" : "");
}

/**
 * Writes the report: first report.md, report.html and audit.jsonl (their S3 VersionIds go into the
 * anchor), then the anchor is signed, then report.json with the signed anchor in it. Returns
 * where it went (`s3://bucket/reports/<execution>/` or the directory) and the signed anchor.
 */
async function writeReport(
  r: FailoverReport,
  events: AuditEvent[],
): Promise<{ location: string; signed: SignedAnchor | null }> {
  const files: [(typeof REPORT_FILES)[number], string, string][] = [
    ["report.md", renderMarkdown(r), "text/markdown"],
    ["report.html", renderHtml(r), "text/html; charset=utf-8"],
    ["audit.jsonl", auditJsonl(events), "application/x-ndjson"],
  ];
  const anchor = (location: string, objects: AnchorPayload["objects"]) =>
    signAnchor({
      execution: r.execution.id,
      events: r.audit.events,
      head: r.audit.head,
      objects,
      location,
    });
  const json = (signed: SignedAnchor) =>
    `${JSON.stringify({ ...r, audit: { ...r.audit, signed } }, null, 2)}\n`;
  const dir = process.env.REPORT_DIR;
  if (dir) {
    await mkdir(dir, { recursive: true });
    await Promise.all(files.map(([name, body]) => writeFile(join(dir, name), body)));
    // A directory keeps no versions: the anchor says so rather than inventing ids.
    const signed = await anchor(dir, Object.fromEntries(files.map(([name]) => [name, null])));
    await writeFile(join(dir, "report.json"), json(signed));
    return { location: dir, signed };
  }
  const bucket = process.env.REPORT_BUCKET;
  if (!bucket)
    return { location: "not written (neither REPORT_BUCKET nor REPORT_DIR is set)", signed: null };
  const prefix = `reports/${r.execution.name}`;
  const put = (name: string, body: string, type: string) =>
    s3Client().send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `${prefix}/${name}`,
        Body: body,
        ContentType: type,
      }),
    );
  let versions: [string, string | null][];
  try {
    versions = await Promise.all(
      files.map(
        async ([name, body, type]) =>
          [name, (await put(name, body, type)).VersionId ?? null] as [string, string | null],
      ),
    );
  } catch (e) {
    throw awsError(e, `writing the report to s3://${bucket}/${prefix}`, UnexpectedError);
  }
  const location = `s3://${bucket}/${prefix}/`;
  const signed = await anchor(location, Object.fromEntries(versions));
  try {
    await put("report.json", json(signed), "application/json");
  } catch (e) {
    throw awsError(e, `writing the report to s3://${bucket}/${prefix}`, UnexpectedError);
  }
  return { location, signed };
}

/**
 * After a failback's report: the report of the failover it undoes (same store, its own prefix)
 * gets `undoneBy`, so each of the two links the other. Best effort: a report that is not there
 * (expired, another bucket) or cannot be rewritten leaves the failback's own report as it is.
 */
async function linkUndone(r: FailoverReport): Promise<void> {
  const undone = r.failback?.undoes?.execution;
  if (!undone) return;
  const by = { execution: r.execution.name, link: consoleLink(r.execution) };
  const render = (old: FailoverReport): [string, string, string][] => {
    const linked = { ...old, undoneBy: by };
    return [
      ["report.json", `${JSON.stringify(linked, null, 2)}\n`, "application/json"],
      ["report.md", renderMarkdown(linked), "text/markdown"],
      ["report.html", renderHtml(linked), "text/html; charset=utf-8"],
    ];
  };
  try {
    const dir = process.env.REPORT_DIR;
    if (dir) {
      const at = join(dir, undone);
      const old = JSON.parse(await readFile(join(at, "report.json"), "utf8")) as FailoverReport;
      await Promise.all(render(old).map(([name, body]) => writeFile(join(at, name), body)));
      return;
    }
    const bucket = process.env.REPORT_BUCKET;
    if (!bucket) return;
    const prefix = `reports/${undone}`;
    const got = await s3Client().send(
      new GetObjectCommand({ Bucket: bucket, Key: `${prefix}/report.json` }),
    );
    const old = JSON.parse((await got.Body?.transformToString()) ?? "{}") as FailoverReport;
    await Promise.all(
      render(old).map(([name, body, type]) =>
        s3Client().send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `${prefix}/${name}`,
            Body: body,
            ContentType: type,
          }),
        ),
      ),
    );
  } catch (e) {
    logger.warn("could not link the undone failover's report", {
      undone,
      error: describe(e),
    });
  }
}

/**
 * The step's output. `audit` is the closed chain's length and head: in the execution history,
 * it anchors the chain (`audit verify <execution>` compares the table with it).
 */
export interface ReportSummary {
  status: "SUCCEEDED" | "FAILED";
  location: string;
  failedStep: FailedStep | null;
  error: { name: string; message: string } | null;
  rtoSeconds: number | null;
  changed: string[];
  /** `signed`: the same signed anchor as report.json's, kept where no one can edit it. */
  audit: { events: number; head: string | null; signed?: SignedAnchor };
}

function summary(r: FailoverReport, location: string, signed: SignedAnchor | null): ReportSummary {
  return {
    status: r.status,
    location,
    failedStep: r.failedStep,
    error: r.error,
    rtoSeconds: r.rto.seconds,
    changed: r.changed,
    audit: { events: r.audit.events, head: r.audit.head, ...(signed?.signature ? { signed } : {}) },
  };
}

/**
 * Appends the closing event (once: a retried attempt finds its own close already there) and
 * returns the whole chain, which nothing after it appends to (Notify does not).
 */
async function closeChain(
  state: Partial<FailoverState>,
  execution: ExecutionRef,
  step: "Report" | "RecordFailure",
  t: Topology,
  after: PlatformSnapshot | null,
  failedPlan?: FailedPlan,
): Promise<AuditEvent[]> {
  const prior = await readAuditTrail(execution.name);
  const draft = buildReport(state, execution, t, after, prior, failedPlan);
  const outcome = draft.status === "SUCCEEDED" ? "SUCCEEDED" : "FAILED";
  const last = prior.at(-1);
  if (last?.step === step && last.outcome === outcome) return prior;
  await appendAuditEvent({
    execution: execution.name,
    step,
    actor: draft.requestedBy ?? "unknown",
    action:
      step === "Report"
        ? "close the audit chain and write the report"
        : "record the failure and write the report",
    outcome,
    before: draft.before,
    after: {
      snapshot: after,
      changed: draft.changed,
      failedStep: draft.failedStep,
      error: draft.error,
    },
    ...(draft.error
      ? { detail: `${draft.failedStep}: ${draft.error.name}: ${draft.error.message}` }
      : {}),
    startedAt: draft.generatedAt,
    endedAt: new Date().toISOString(),
  });
  return readAuditTrail(execution.name);
}

/**
 * What the cooldown marker records. When the after-snapshot could not be read the diff is
 * empty, yet a failure past Approval may have moved something: the steps that ran say what.
 */
function changesForCooldown(r: ReportDraft): string[] {
  if (r.changed.length || r.after) return r.changed;
  return Object.entries(movedBy(r))
    .filter(([, moved]) => moved)
    .map(([resource]) => `${resource}: may have changed (the after-state could not be read)`);
}

/**
 * Closes the execution's audit chain, writes the report from the whole chain and releases the
 * single-flight lock — in a `finally`, so a DynamoDB or S3 error on the way does not leave the
 * platform locked until the lease runs out. Shared by Report and RecordFailure.
 */
async function closeAndReport(
  state: Partial<FailoverState>,
  execution: ExecutionRef,
  step: "Report" | "RecordFailure",
  failedPlan?: FailedPlan,
): Promise<ReportSummary> {
  const t = runtimeTopology();
  const after = await afterSnapshot(t, state.plan?.targetRegion ?? null);
  let report = buildReport(state, execution, t, after, [], failedPlan);
  let written: Awaited<ReturnType<typeof writeReport>>;
  try {
    const events = await closeChain(state, execution, step, t, after, failedPlan);
    report = buildReport(state, execution, t, after, events, failedPlan);
    written = await writeReport(report, events);
    if (step === "Report") await linkUndone(report);
  } finally {
    await releaseLock(t.platform, execution.name, { changed: changesForCooldown(report) });
  }
  recordFailoverMetrics(report);
  return summary(report, written.location, written.signed);
}

/** Report: the after-snapshot, the closed audit chain, the report, the execution's metrics. */
export async function reportStep(state: FailoverState): Promise<ReportSummary> {
  return closeAndReport(state, state.execution, "Report");
}

/**
 * RecordFailure: runs on any caught error, possibly before Plan produced anything, so every
 * part of the state is optional; the after-snapshot is best effort. Without a plan (Plan
 * failed, and the state is the raw input) the report takes the requested target and the
 * platform as far as it can be read from {@link failedPlanOf}.
 */
export async function recordFailureStep(event: {
  state: Partial<FailoverState>;
  execution: ExecutionRef;
}): Promise<ReportSummary> {
  const failedPlan = event.state.plan
    ? undefined
    : await failedPlanOf(event.state, runtimeTopology());
  return closeAndReport(event.state, event.execution, "RecordFailure", failedPlan);
}
