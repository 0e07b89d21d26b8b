/**
 * The runbook report: what was asked, what each step saw and did, the platform before and
 * after, and — when a step failed — everything changed before it and what to do by hand.
 * Written as JSON and Markdown to S3 (`REPORT_BUCKET`) or a directory (`REPORT_DIR`).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PutMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { awsError, cloudWatchClient, s3Client } from "./aws.ts";
import { runtimeTopology, type Topology } from "./config.ts";
import { UnexpectedError } from "./errors.ts";
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
  steps: { name: StepName; status: StepOutcome; detail: string }[];
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
export function failedStepOf(state: Partial<FailoverState>, error: { name: string; message: string }): StepName {
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

function stepOutcomes(state: Partial<FailoverState>, failed: StepName | null): FailoverReport["steps"] {
  const c = state.converge;
  const retarget = c?.retarget ?? state.retarget;
  const known: Partial<Record<StepName, [StepOutcome, string]>> = {
    Plan: state.plan ? ["SUCCEEDED", state.plan.actions.join("; ") || "nothing to do"] : undefined,
    Approval: state.approval ? ["SUCCEEDED", "approved"] : state.input?.requireApproval ? undefined : ["SKIPPED", "not required"],
    VerifySpoke: state.spoke
      ? ["SUCCEEDED", state.spoke.spokes.map((s) => `${s.spoke}: ${s.readyNodes} nodes Ready`).join(", ")]
      : undefined,
    CommitRetarget: retarget
      ? [retarget.skipped ? "SKIPPED" : "SUCCEEDED", `${retarget.skipped ? "already at" : "committed"} ${retarget.sha.slice(0, 12)}`]
      : undefined,
    AwaitArgoSync: c?.argo ? ["SUCCEEDED", `${c.argo.done}/${c.argo.total} apps Synced and Healthy via ${c.argo.hub}`] : undefined,
    PromoteAurora: c?.promotion
      ? [c.promotion.skipped ? "SKIPPED" : "SUCCEEDED", c.promotion.skipped ? "target already writer" : c.promotion.action]
      : undefined,
    AwaitAurora: c?.aurora ? ["SUCCEEDED", `writer ${c.aurora.writerRegion}`] : undefined,
    ShiftTraffic: state.traffic
      ? [state.traffic.skipped ? "SKIPPED" : "SUCCEEDED", `stage ${state.traffic.stage + 1}: ${state.traffic.percent}%`]
      : undefined,
    VerifyTraffic: state.trafficHealth?.status === "SUCCEEDED" ? ["SUCCEEDED", "target endpoints healthy"] : undefined,
  };
  return STEPS.map((name) => {
    if (name === failed) return { name, status: "FAILED" as const, detail: "see error" };
    if (state.plan?.noop && name !== "Plan") return { name, status: "SKIPPED" as const, detail: "already on target" };
    const [status, detail] = known[name] ?? ["NOT_RUN", ""];
    return { name, status, detail };
  });
}

function changesBetween(before: PlatformSnapshot | null, after: PlatformSnapshot | null): string[] {
  if (!before || !after) return [];
  const out: string[] = [];
  if (before.gitHead !== after.gitHead) out.push(`Git: branch moved ${before.gitHead.slice(0, 12)} -> ${after.gitHead.slice(0, 12)}`);
  if (before.activeRegion !== after.activeRegion) out.push(`Git: active region ${before.activeRegion} -> ${after.activeRegion}`);
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
  if (report.after === null) steps.push("The platform could not be read after the failure: check Git, Aurora and traffic by hand.");
  if (moved("Traffic")) {
    steps.push(`Traffic already moved: finish the shift to ${target} (re-run or Redrive) or set the dials back to ${source}.`);
  } else {
    steps.push(`Traffic was not moved: users are still served by ${source}.`);
  }
  if (moved("Git")) {
    steps.push(
      `Git already points at ${target} (commit ${report.commit?.sha.slice(0, 12) ?? "?"}): Redrive/re-run to finish, or revert that commit on ${t.git.branch} to return to ${source}.`,
    );
  }
  if (moved("Aurora")) {
    steps.push(`Aurora's writer is now ${report.after?.auroraWriterRegion}: applications must write there; switch back only with a planned switchover.`);
  } else if (report.failedStep === "PromoteAurora" || report.failedStep === "AwaitAurora") {
    steps.push(`Check global cluster ${t.aurora.globalClusterIdentifier}: a promotion may still be under way (DescribeGlobalClusters FailoverState).`);
  }
  steps.push(`Fix the cause (${report.error?.name ?? "unknown"}), then Redrive the execution: every step skips what is already done.`);
  return steps;
}

async function afterSnapshot(t: Topology, target: string | null): Promise<PlatformSnapshot | null> {
  try {
    return await snapshot(t, target ?? Object.keys(t.regions)[0] ?? "");
  } catch {
    return null;
  }
}

function buildReport(state: Partial<FailoverState>, execution: ExecutionRef, t: Topology, after: PlatformSnapshot | null): FailoverReport {
  const error = state.error ? errorOf(state.error) : null;
  const failedStep = error ? failedStepOf(state, error) : null;
  const retarget = state.converge?.retarget ?? state.retarget;
  const before = state.plan?.before ?? null;
  const from = state.input?.detectedAt ?? execution.startTime;
  const shifted = state.trafficHealth?.status === "SUCCEEDED" && state.traffic?.complete && !state.traffic.skipped;
  const trafficShiftedAt = shifted ? (state.trafficHealth?.checkedAt ?? null) : null;
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
    steps: stepOutcomes(state, failedStep),
    before,
    after,
    commit: retarget ? { sha: retarget.sha, previousSha: retarget.previousSha, subject: retarget.subject } : null,
    changed: changesBetween(before, after),
    rto: {
      from,
      trafficShiftedAt,
      seconds: trafficShiftedAt ? Math.round((Date.parse(trafficShiftedAt) - Date.parse(from)) / 1000) : null,
    },
    generatedAt: new Date().toISOString(),
  };
  return redactDeep({ ...partial, manualSteps: manualSteps(partial, t) });
}

/** Renders the report as Markdown for people. */
export function renderMarkdown(r: FailoverReport): string {
  const lines = [
    `# Failover ${r.status === "SUCCEEDED" ? "succeeded" : "FAILED"}: ${r.sourceRegion ?? "?"} -> ${r.targetRegion ?? "?"}`,
    "",
    `- Platform: ${r.platform}; mode: ${r.mode ?? "?"}; requested by: ${r.requestedBy ?? "?"}`,
    `- Reason: ${r.reason ?? "?"}`,
    `- Execution: ${r.execution.id}`,
    ...(r.commit ? [`- Commit: ${r.commit.sha} (${r.commit.subject})`] : []),
    ...(r.rto.seconds !== null ? [`- RTO: ${r.rto.seconds}s from ${r.rto.from} to traffic shifted`] : []),
    ...(r.error ? [`- Failed step: ${r.failedStep} — ${r.error.name}: ${r.error.message}`] : []),
    "",
    "## Steps",
    "",
    "| step | outcome | detail |",
    "| --- | --- | --- |",
    ...r.steps.map((s) => `| ${s.name} | ${s.status} | ${s.detail.replaceAll("|", "\\|")} |`),
    "",
    "## Before / after",
    "",
    "| | before | after |",
    "| --- | --- | --- |",
    `| Git active region | ${r.before?.activeRegion ?? "?"} | ${r.after?.activeRegion ?? "?"} |`,
    `| Git head | ${r.before?.gitHead.slice(0, 12) ?? "?"} | ${r.after?.gitHead.slice(0, 12) ?? "?"} |`,
    `| Aurora writer | ${r.before?.auroraWriterRegion ?? "?"} | ${r.after?.auroraWriterRegion ?? "?"} |`,
    `| Traffic dials | ${dials(r.before)} | ${dials(r.after)} |`,
    "",
    "## Changed",
    "",
    ...(r.changed.length ? r.changed.map((c) => `- ${c}`) : ["- nothing"]),
  ];
  if (r.manualSteps.length) lines.push("", "## Manual steps", "", ...r.manualSteps.map((s, i) => `${i + 1}. ${s}`));
  return `${lines.join("\n")}\n`;
}

function dials(s: PlatformSnapshot | null): string {
  return s ? Object.entries(s.trafficDials).map(([r, d]) => `${r} ${d}%`).join(", ") : "?";
}

/** Where the report went: `s3://bucket/key` or a directory. */
async function writeReport(r: FailoverReport): Promise<string> {
  const json = `${JSON.stringify(r, null, 2)}\n`;
  const md = renderMarkdown(r);
  const dir = process.env.REPORT_DIR;
  if (dir) {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "report.json"), json);
    await writeFile(join(dir, "report.md"), md);
    return dir;
  }
  const bucket = process.env.REPORT_BUCKET;
  if (!bucket) return "not written (neither REPORT_BUCKET nor REPORT_DIR is set)";
  const prefix = `reports/${r.execution.name}`;
  try {
    await Promise.all([
      s3Client().send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/report.json`, Body: json, ContentType: "application/json" })),
      s3Client().send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/report.md`, Body: md, ContentType: "text/markdown" })),
    ]);
  } catch (e) {
    throw awsError(e, `writing the report to s3://${bucket}/${prefix}`, UnexpectedError);
  }
  return `s3://${bucket}/${prefix}/`;
}

async function emitRto(r: FailoverReport): Promise<void> {
  const namespace = process.env.METRICS_NAMESPACE;
  if (!namespace || r.rto.seconds === null) return;
  await cloudWatchClient().send(
    new PutMetricDataCommand({
      Namespace: namespace,
      MetricData: [
        { MetricName: "RtoSeconds", Value: r.rto.seconds, Unit: "Seconds", Dimensions: [{ Name: "Platform", Value: r.platform }] },
      ],
    }),
  );
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
  return { status: r.status, location, failedStep: r.failedStep, error: r.error, rtoSeconds: r.rto.seconds, changed: r.changed };
}

/** Report: the after-snapshot, the report, the RTO metric. */
export async function reportStep(state: FailoverState): Promise<ReportSummary> {
  const t = runtimeTopology();
  const report = buildReport(state, state.execution, t, await afterSnapshot(t, state.plan.targetRegion));
  const location = await writeReport(report);
  await emitRto(report);
  return summary(report, location);
}

/**
 * RecordFailure: runs on any caught error, possibly before Plan produced anything, so every
 * part of the state is optional; the after-snapshot is best effort.
 */
export async function recordFailureStep(event: { state: Partial<FailoverState>; execution: ExecutionRef }): Promise<ReportSummary> {
  const t = runtimeTopology();
  const target = event.state.plan?.targetRegion ?? null;
  const report = buildReport(event.state, event.execution, t, await afterSnapshot(t, target));
  return summary(report, await writeReport(report));
}
