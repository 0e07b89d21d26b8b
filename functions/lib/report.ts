/**
 * The runbook report: what was asked, what each step saw and did, the platform before and
 * after, and — when a step failed — everything changed before it and what to do by hand.
 * Written as JSON and Markdown to S3 (`REPORT_BUCKET`) or a directory (`REPORT_DIR`).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PutMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { type AuditEvent, appendAuditEvent, readAuditTrail, verifyChain } from "./audit.ts";
import { awsError, cloudWatchClient, s3Client } from "./aws.ts";
import { runtimeTopology, type Topology } from "./config.ts";
import { UnexpectedError } from "./errors.ts";
import { releaseLock } from "./lock.ts";
import { redact, redactDeep } from "./redact.ts";
import type { CaughtError, ExecutionRef, FailoverState, PlatformSnapshot } from "./state.ts";
import { snapshot } from "./steps.ts";

export type StepOutcome = "SUCCEEDED" | "SKIPPED" | "FAILED" | "NOT_RUN";

/** The workflow's steps in order, as named in the ASL. */
export const STEPS = [
  "Plan",
  "Approval",
  "VerifySpoke",
  "CommitRetarget",
  "AwaitArgoSync",
  "PromoteAurora",
  "AwaitAurora",
  "ShiftTraffic",
  "VerifyTraffic",
] as const;
export type StepName = (typeof STEPS)[number];

export interface FailoverReport {
  status: "SUCCEEDED" | "FAILED";
  execution: ExecutionRef;
  platform: string;
  sourceRegion: string | null;
  targetRegion: string | null;
  mode: string | null;
  reason: string | null;
  requestedBy: string | null;
  failedStep: StepName | null;
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
  timeline: {
    seq: number;
    at: string;
    step: string;
    outcome: string;
    action: string;
    detail: string;
  }[];
  audit: { events: number; head: string | null; intact: boolean };
  links: { execution: string; commit: string | null };
  before: PlatformSnapshot | null;
  after: PlatformSnapshot | null;
  commit: { sha: string; previousSha: string; subject: string } | null;
  changed: string[];
  manualSteps: string[];
  rto: { from: string; trafficShiftedAt: string | null; seconds: number | null };
  generatedAt: string;
}

/** Lambda puts `{"errorType","errorMessage",...}` in Cause; local runs put the message. */
export function errorOf(caught: CaughtError): { name: string; message: string } {
  let message = caught.Cause ?? "";
  try {
    const doc = JSON.parse(message) as { errorMessage?: unknown };
    if (typeof doc.errorMessage === "string") message = doc.errorMessage;
  } catch {
    // Cause was a plain message.
  }
  return { name: caught.Error, message: redact(message) };
}

const STEP_TAG = /^\[([A-Za-z]+)\]/;

/** The step that failed: named in the message by our middleware, else deduced from the state. */
export function failedStepOf(
  state: Partial<FailoverState>,
  error: { name: string; message: string },
): StepName {
  const tagged = STEP_TAG.exec(error.message)?.[1];
  if (tagged && (STEPS as readonly string[]).includes(tagged)) return tagged as StepName;
  if (!state.plan) return "Plan";
  if (state.input?.requireApproval && !state.approval) return "Approval";
  if (!state.spoke) return "VerifySpoke";
  if (!state.converge) {
    if (/^Aurora/.test(error.name)) return "AwaitAurora";
    if (/^Git/.test(error.name)) return "CommitRetarget";
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

function stepOutcomes(
  state: Partial<FailoverState>,
  failed: StepName | null,
  spans: Map<string, Span>,
): FailoverReport["steps"] {
  const c = state.converge;
  const retarget = c?.retarget ?? state.retarget;
  const known: Partial<Record<StepName, [StepOutcome, string]>> = {
    Plan: state.plan ? ["SUCCEEDED", state.plan.actions.join("; ") || "nothing to do"] : undefined,
    Approval: state.approval
      ? ["SUCCEEDED", "approved"]
      : state.input?.requireApproval
        ? undefined
        : ["SKIPPED", "not required"],
    VerifySpoke: state.spoke
      ? [
          "SUCCEEDED",
          state.spoke.spokes.map((s) => `${s.spoke}: ${s.readyNodes} nodes Ready`).join(", "),
        ]
      : undefined,
    CommitRetarget: retarget
      ? [
          retarget.skipped ? "SKIPPED" : "SUCCEEDED",
          `${retarget.skipped ? "already at" : "committed"} ${retarget.sha.slice(0, 12)}`,
        ]
      : undefined,
    AwaitArgoSync: c?.argo
      ? ["SUCCEEDED", `${c.argo.done}/${c.argo.total} apps Synced and Healthy via ${c.argo.hub}`]
      : undefined,
    PromoteAurora: c?.promotion
      ? [
          c.promotion.skipped ? "SKIPPED" : "SUCCEEDED",
          c.promotion.skipped ? "target already writer" : c.promotion.action,
        ]
      : undefined,
    AwaitAurora: c?.aurora ? ["SUCCEEDED", `writer ${c.aurora.writerRegion}`] : undefined,
    ShiftTraffic: state.traffic
      ? [
          state.traffic.skipped ? "SKIPPED" : "SUCCEEDED",
          `stage ${state.traffic.stage + 1}: ${state.traffic.percent}%`,
        ]
      : undefined,
    VerifyTraffic:
      state.trafficHealth?.status === "SUCCEEDED"
        ? ["SUCCEEDED", "target endpoints healthy"]
        : undefined,
  };
  return STEPS.map((name) => {
    const span = spans.get(name) ?? { startedAt: null, endedAt: null };
    if (name === failed) return { name, status: "FAILED" as const, detail: "see error", ...span };
    if (state.plan?.noop && name !== "Plan")
      return { name, status: "SKIPPED" as const, detail: "already on target", ...span };
    const [status, detail] = known[name] ?? ["NOT_RUN", ""];
    return { name, status, detail, ...span };
  });
}

const APPS_BRANCH: StepName[] = ["CommitRetarget", "AwaitArgoSync"];
const DATA_BRANCH: StepName[] = ["PromoteAurora", "AwaitAurora"];

/** The steps that bounded the duration: everything in sequence, plus the Parallel branch that ended last. */
function criticalPath(steps: FailoverReport["steps"]): StepName[] {
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

function changesBetween(before: PlatformSnapshot | null, after: PlatformSnapshot | null): string[] {
  if (!before || !after) return [];
  const out: string[] = [];
  if (before.gitHead !== after.gitHead)
    out.push(`Git: branch moved ${before.gitHead.slice(0, 12)} -> ${after.gitHead.slice(0, 12)}`);
  if (before.activeRegion !== after.activeRegion)
    out.push(`Git: active region ${before.activeRegion} -> ${after.activeRegion}`);
  if (before.auroraWriterRegion !== after.auroraWriterRegion) {
    out.push(`Aurora: writer ${before.auroraWriterRegion} -> ${after.auroraWriterRegion}`);
  }
  for (const [region, dial] of Object.entries(after.trafficDials)) {
    const was = before.trafficDials[region];
    if (was !== dial) out.push(`Traffic: ${region} dial ${was}% -> ${dial}%`);
  }
  return out;
}

function manualSteps(report: Omit<FailoverReport, "manualSteps">, t: Topology): string[] {
  if (report.status === "SUCCEEDED") return [];
  const steps: string[] = [];
  const source = report.sourceRegion ?? "the previous region";
  const target = report.targetRegion ?? "the target region";
  const moved = (prefix: string) => report.changed.some((c) => c.startsWith(prefix));
  if (report.after === null)
    steps.push(
      "The platform could not be read after the failure: check Git, Aurora and traffic by hand.",
    );
  if (moved("Traffic")) {
    steps.push(
      `Traffic already moved: finish the shift to ${target} (Redrive the execution) or set the dials back to ${source}.`,
    );
  } else {
    steps.push(`Traffic was not moved: users are still served by ${source}.`);
  }
  if (moved("Git")) {
    steps.push(
      `Git already points at ${target} (commit ${report.commit?.sha.slice(0, 12) ?? "?"}): Redrive the execution to finish, or \`git revert\` that commit on ${t.git.branch} to return the apps to ${source}.`,
    );
  }
  if (moved("Aurora")) {
    steps.push(
      `Aurora's writer is now ${report.after?.auroraWriterRegion}: applications must write there; switch back only with a planned switchover.`,
    );
  } else if (report.failedStep === "PromoteAurora" || report.failedStep === "AwaitAurora") {
    steps.push(
      `Check global cluster ${t.aurora.globalClusterIdentifier}: a promotion may still be under way (DescribeGlobalClusters FailoverState).`,
    );
  }
  steps.push(
    `Fix the cause (${report.error?.name ?? "unknown"}), then Redrive the execution: every step skips what is already done.`,
  );
  return steps;
}

async function afterSnapshot(t: Topology, target: string | null): Promise<PlatformSnapshot | null> {
  try {
    return await snapshot(t, target ?? Object.keys(t.regions)[0] ?? "");
  } catch {
    return null;
  }
}

function consoleLink(execution: ExecutionRef): string {
  const region = execution.id.split(":")[3] ?? "us-east-1";
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
): FailoverReport {
  const error = state.error ? errorOf(state.error) : null;
  const failedStep = error ? failedStepOf(state, error) : null;
  const retarget = state.converge?.retarget ?? state.retarget;
  const before = state.plan?.before ?? null;
  const from = state.input?.detectedAt ?? execution.startTime;
  const shifted =
    state.trafficHealth?.status === "SUCCEEDED" &&
    state.traffic?.complete &&
    !state.traffic.skipped;
  const trafficShiftedAt = shifted ? (state.trafficHealth?.checkedAt ?? null) : null;
  const steps = stepOutcomes(state, failedStep, spansOf(events));
  const chain = verifyChain(events);
  const partial: Omit<FailoverReport, "manualSteps"> = {
    status: error ? "FAILED" : "SUCCEEDED",
    execution,
    platform: t.platform,
    sourceRegion: state.plan?.sourceRegion ?? null,
    targetRegion: state.plan?.targetRegion ?? state.input?.targetRegion ?? null,
    mode: state.input?.mode ?? null,
    reason: state.input?.reason ?? null,
    requestedBy: state.input?.requestedBy ?? null,
    failedStep,
    error,
    steps,
    criticalPath: criticalPath(steps),
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
      commit: retarget ? commitLink(t, retarget.sha) : null,
    },
    before,
    after,
    commit: retarget
      ? { sha: retarget.sha, previousSha: retarget.previousSha, subject: retarget.subject }
      : null,
    changed: changesBetween(before, after),
    rto: {
      from,
      trafficShiftedAt,
      seconds: trafficShiftedAt
        ? Math.round((Date.parse(trafficShiftedAt) - Date.parse(from)) / 1000)
        : null,
    },
    generatedAt: new Date().toISOString(),
  };
  return redactDeep({ ...partial, manualSteps: manualSteps(partial, t) });
}

/** A Mermaid gantt of the steps from their audit timestamps; the critical path is marked `crit`. */
export function renderGantt(r: FailoverReport): string[] {
  const timed = r.steps.filter((s) => s.startedAt && s.endedAt);
  if (!timed.length) return [];
  const section = (name: StepName) =>
    APPS_BRANCH.includes(name)
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
    "  axisFormat %M:%S",
  ];
  let current = "";
  for (const s of timed) {
    if (section(s.name) !== current) {
      current = section(s.name);
      lines.push(`  section ${current}`);
    }
    const tags = [
      s.status === "FAILED" ? "crit" : r.criticalPath.includes(s.name) ? "crit" : "",
      s.status === "FAILED" ? "active" : "done",
    ].filter(Boolean);
    const start = Date.parse(s.startedAt ?? "");
    const end = Math.max(Date.parse(s.endedAt ?? ""), start + 1);
    lines.push(`  ${s.name} (${s.status}) :${tags.join(", ")}, ${s.name}, ${start}, ${end}`);
  }
  lines.push("```");
  return lines;
}

const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");
const seconds = (s: { startedAt: string | null; endedAt: string | null }) =>
  s.startedAt && s.endedAt
    ? `${((Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1)} s`
    : "";

/** Renders the report as Markdown for people. */
export function renderMarkdown(r: FailoverReport): string {
  const lines = [
    `# Failover ${r.status === "SUCCEEDED" ? "succeeded" : "FAILED"}: ${r.sourceRegion ?? "?"} -> ${r.targetRegion ?? "?"}`,
    "",
    "## Summary",
    "",
    `- Outcome: **${r.status}**${r.error ? ` at ${r.failedStep}: ${r.error.name}: ${cell(r.error.message)}` : ""}`,
    `- Platform: ${r.platform}; mode: ${r.mode ?? "?"}; requested by: ${r.requestedBy ?? "?"}`,
    `- Reason: ${r.reason ?? "?"}`,
    `- Execution: [${r.execution.name}](${r.links.execution})`,
    ...(r.commit
      ? [`- Commit: [${r.commit.sha.slice(0, 12)}](${r.links.commit ?? ""}) ${r.commit.subject}`]
      : []),
    `- RTO: ${r.rto.seconds !== null ? `${r.rto.seconds} s from ${r.rto.from} to traffic shifted` : "traffic was not shifted by this execution"}`,
    `- Critical path: ${r.criticalPath.join(" -> ") || "none"}`,
    `- Audit trail: ${r.audit.events} events, chain ${r.audit.intact ? "intact" : "BROKEN"}, head ${r.audit.head ?? "none"}`,
    "",
    "## Steps",
    "",
    "| step | outcome | duration | detail |",
    "| --- | --- | --- | --- |",
    ...r.steps.map((s) => `| ${s.name} | ${s.status} | ${seconds(s)} | ${cell(s.detail)} |`),
    "",
    ...renderGantt(r),
    "",
    "## Before / after",
    "",
    "| | before | after |",
    "| --- | --- | --- |",
    `| Git active region | ${r.before?.activeRegion ?? "?"} | ${r.after?.activeRegion ?? "?"} |`,
    `| Git head | ${r.before?.gitHead.slice(0, 12) ?? "?"} | ${r.after?.gitHead.slice(0, 12) ?? "?"} |`,
    `| Aurora writer | ${r.before?.auroraWriterRegion ?? "?"} | ${r.after?.auroraWriterRegion ?? "?"} |`,
    `| Traffic dials | ${dials(r.before)} | ${dials(r.after)} |`,
    `| Argo CD apps on the target | | ${r.steps.find((s) => s.name === "AwaitArgoSync")?.detail || "not checked"} |`,
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
        `| ${e.seq} | ${e.at} | ${e.step} | ${e.outcome} | ${cell(e.action)} | ${cell(e.detail)} |`,
    ),
  ];
  if (r.manualSteps.length)
    lines.push("", "## Manual steps", "", ...r.manualSteps.map((s, i) => `${i + 1}. ${s}`));
  return `${lines.join("\n")}\n`;
}

function dials(s: PlatformSnapshot | null): string {
  return s
    ? Object.entries(s.trafficDials)
        .map(([r, d]) => `${r} ${d}%`)
        .join(", ")
    : "?";
}

/** The audit trail as JSON lines: one event a line, exactly as hashed. */
export function auditJsonl(events: AuditEvent[]): string {
  return events.map((e) => JSON.stringify(e)).join("\n") + (events.length ? "\n" : "");
}

/** Where the report went: `s3://bucket/reports/<execution>/` or a directory. */
async function writeReport(r: FailoverReport, events: AuditEvent[]): Promise<string> {
  const files: [string, string, string][] = [
    ["report.json", `${JSON.stringify(r, null, 2)}\n`, "application/json"],
    ["report.md", renderMarkdown(r), "text/markdown"],
    ["audit.jsonl", auditJsonl(events), "application/x-ndjson"],
  ];
  const dir = process.env.REPORT_DIR;
  if (dir) {
    await mkdir(dir, { recursive: true });
    await Promise.all(files.map(([name, body]) => writeFile(join(dir, name), body)));
    return dir;
  }
  const bucket = process.env.REPORT_BUCKET;
  if (!bucket) return "not written (neither REPORT_BUCKET nor REPORT_DIR is set)";
  const prefix = `reports/${r.execution.name}`;
  try {
    await Promise.all(
      files.map(([name, body, type]) =>
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
    throw awsError(e, `writing the report to s3://${bucket}/${prefix}`, UnexpectedError);
  }
  return `s3://${bucket}/${prefix}/`;
}

async function emitRto(r: FailoverReport): Promise<void> {
  const namespace = process.env.METRICS_NAMESPACE;
  if (!namespace || r.rto.seconds === null) return;
  try {
    await cloudWatchClient().send(
      new PutMetricDataCommand({
        Namespace: namespace,
        MetricData: [
          {
            MetricName: "RtoSeconds",
            Value: r.rto.seconds,
            Unit: "Seconds",
            Dimensions: [{ Name: "Platform", Value: r.platform }],
          },
        ],
      }),
    );
  } catch (e) {
    throw awsError(e, `emitting the RTO metric to ${namespace}`, UnexpectedError);
  }
}

export interface ReportSummary {
  status: "SUCCEEDED" | "FAILED";
  location: string;
  failedStep: StepName | null;
  error: { name: string; message: string } | null;
  rtoSeconds: number | null;
  changed: string[];
}

function summary(r: FailoverReport, location: string): ReportSummary {
  return {
    status: r.status,
    location,
    failedStep: r.failedStep,
    error: r.error,
    rtoSeconds: r.rto.seconds,
    changed: r.changed,
  };
}

/**
 * Closes the execution's audit chain with one last event, then writes the report from the
 * whole chain and releases the single-flight lock. Shared by Report and RecordFailure.
 */
async function closeAndReport(
  state: Partial<FailoverState>,
  execution: ExecutionRef,
  step: "Report" | "RecordFailure",
): Promise<ReportSummary> {
  const t = runtimeTopology();
  const after = await afterSnapshot(t, state.plan?.targetRegion ?? null);
  const draft = buildReport(state, execution, t, after, []);
  await appendAuditEvent({
    execution: execution.name,
    step,
    actor: state.input?.requestedBy ?? "unknown",
    action:
      step === "Report"
        ? "close the audit chain and write the report"
        : "record the failure and write the report",
    outcome: draft.status === "SUCCEEDED" ? "SUCCEEDED" : "FAILED",
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
  const events = await readAuditTrail(execution.name);
  const report = buildReport(state, execution, t, after, events);
  const location = await writeReport(report, events);
  await releaseLock(t.platform, execution.name);
  await emitRto(report);
  return summary(report, location);
}

/** Report: the after-snapshot, the closed audit chain, the report, the RTO metric. */
export async function reportStep(state: FailoverState): Promise<ReportSummary> {
  return closeAndReport(state, state.execution, "Report");
}

/**
 * RecordFailure: runs on any caught error, possibly before Plan produced anything, so every
 * part of the state is optional; the after-snapshot is best effort.
 */
export async function recordFailureStep(event: {
  state: Partial<FailoverState>;
  execution: ExecutionRef;
}): Promise<ReportSummary> {
  return closeAndReport(event.state, event.execution, "RecordFailure");
}
