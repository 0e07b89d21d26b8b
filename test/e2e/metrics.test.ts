/**
 * The metrics a drill's functions emit: CloudWatch Embedded Metric Format lines in each
 * function's log (the sandbox keeps them in <report dir>/logs/, as Lambda sends stdout to
 * CloudWatch Logs). Each line is checked against the EMF specification
 * (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
 * `_aws.Timestamp` in epoch milliseconds, `CloudWatchMetrics` directives with a Namespace, at
 * most 30 dimensions per set, each dimension a string member of the root and each metric a
 * number member of the root; CloudWatch would drop a line that breaks one of these.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STEPS } from "../../functions/lib/report.ts";
import { DRILL_DEFAULTS, type DrillResult, runDrill } from "../../sandbox/drill.ts";

const root = mkdtempSync(join(tmpdir(), "gf-metrics-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Emf {
  Namespace: string;
  dimensions: string[][];
  /** Metric name -> unit and value. */
  metrics: Record<string, { unit?: string; value: number }>;
  root: Record<string, unknown>;
}

/** Parses one EMF line strictly; throws naming the rule it breaks. */
function parseEmf(line: string): Emf {
  const doc = JSON.parse(line) as Record<string, unknown>;
  const aws = doc._aws as { Timestamp?: unknown; CloudWatchMetrics?: unknown };
  if (typeof aws?.Timestamp !== "number" || aws.Timestamp < 1e12)
    throw new Error(`_aws.Timestamp must be epoch milliseconds: ${line}`);
  const directives = aws.CloudWatchMetrics as {
    Namespace?: unknown;
    Dimensions?: unknown;
    Metrics?: { Name?: unknown; Unit?: unknown }[];
  }[];
  if (!Array.isArray(directives) || directives.length !== 1)
    throw new Error(`one CloudWatchMetrics directive expected: ${line}`);
  const [d] = directives;
  if (typeof d?.Namespace !== "string" || !d.Namespace) throw new Error(`no Namespace: ${line}`);
  const dimensions = d.Dimensions as string[][];
  for (const set of dimensions) {
    if (set.length > 30) throw new Error(`more than 30 dimensions in a set: ${line}`);
    for (const name of set)
      if (typeof doc[name] !== "string") throw new Error(`dimension ${name} not a root string`);
  }
  const metrics: Emf["metrics"] = {};
  for (const m of d.Metrics ?? []) {
    const name = String(m.Name);
    const value = doc[name];
    if (typeof value !== "number") throw new Error(`metric ${name} not a root number: ${line}`);
    metrics[name] = { ...(typeof m.Unit === "string" ? { unit: m.Unit } : {}), value };
  }
  return { Namespace: d.Namespace, dimensions, metrics, root: doc };
}

/** Every EMF line of one function's log in the drill's report directory. */
function emfOf(dir: string, functionName: string): Emf[] {
  const file = join(dir, "logs", `${functionName}.log`);
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.includes('"_aws"'))
    .map(parseEmf);
}

describe("EMF metrics of a drill started by the alarm (us-west-2 -> us-east-2)", () => {
  let result: DrillResult;
  let report: Emf[];
  beforeAll(async () => {
    result = await runDrill({ ...DRILL_DEFAULTS, via: "alarm", reportDir: join(root, "alarm") });
    report = emfOf(result.reportDir, "gitops-failover-report");
  });

  it("Report emits the execution's outcome, RTO and phases with [Platform] and [Platform, TargetRegion]", () => {
    expect(result.status).toBe("SUCCEEDED");
    const execution = report.find((e) => "RTOSeconds" in e.metrics);
    expect(execution).toBeDefined();
    expect(execution?.Namespace).toBe("GitopsFailover");
    expect(execution?.dimensions).toEqual([["Platform"], ["Platform", "TargetRegion"]]);
    expect(execution?.root).toMatchObject({ Platform: "payments", TargetRegion: "us-east-2" });
    expect(execution?.metrics).toMatchObject({
      FailoverSucceeded: { unit: "Count", value: 1 },
      FailoverFailed: { unit: "Count", value: 0 },
      RTOSeconds: { unit: "Seconds" },
      ArgoSyncSeconds: { unit: "Seconds" },
      AuroraPromotionSeconds: { unit: "Seconds" },
      TrafficShiftSeconds: { unit: "Seconds" },
    });
    const json = JSON.parse(readFileSync(join(result.reportDir, "report.json"), "utf8")) as {
      rto: { seconds: number };
    };
    expect(execution?.metrics.RTOSeconds?.value).toBe(json.rto.seconds);
    for (const m of ["ArgoSyncSeconds", "AuroraPromotionSeconds", "TrafficShiftSeconds"])
      expect(execution?.metrics[m]?.value, m).toBeGreaterThan(0);
  });

  it("Report emits each step's duration and outcome with [Platform, Step]", () => {
    const steps = report.filter((e) => typeof e.root.Step === "string");
    expect(steps.every((e) => JSON.stringify(e.dimensions) === '[["Platform","Step"]]')).toBe(true);
    const byStep = new Map(steps.map((e) => [e.root.Step, e.metrics]));
    expect(byStep.get("Plan")?.StepSucceeded?.value).toBe(1);
    expect(byStep.get("Approval")?.StepSkipped?.value).toBe(1);
    // Compensate runs only after a failure.
    for (const name of STEPS.filter((s) => s !== "Approval" && s !== "Compensate")) {
      expect(byStep.get(name)?.StepSucceeded?.value, name).toBe(1);
      expect(byStep.get(name)?.StepSeconds?.value, name).toBeGreaterThanOrEqual(0);
    }
  });

  it("the trigger counts its decision by kind with [Platform, Decision]", () => {
    const [decision, ...more] = emfOf(result.reportDir, "gitops-failover-trigger");
    expect(more).toEqual([]);
    expect(decision?.dimensions).toEqual([["Platform", "Decision"]]);
    expect(decision?.root).toMatchObject({ Platform: "payments", Decision: "started" });
    expect(decision?.metrics.TriggerDecisions).toEqual({ unit: "Count", value: 1 });
  });

  it("functions that measure nothing write no metric line", () => {
    expect(emfOf(result.reportDir, "gitops-failover-verify-spoke")).toEqual([]);
  });
});

describe("EMF metrics of a failed drill (argocd-degraded, into the alarm drill's directory)", () => {
  it("RecordFailure counts the failure, the failed step, and no RTO; the earlier sandbox's logs are gone", async () => {
    const result = await runDrill({
      ...DRILL_DEFAULTS,
      faults: ["argocd-degraded"],
      reportDir: join(root, "alarm"),
    });
    const lines = emfOf(result.reportDir, "gitops-failover-record-failure");
    const execution = lines.find((e) => "FailoverFailed" in e.metrics);

    expect(result.status).toBe("FAILED");
    expect(execution?.metrics).toMatchObject({
      FailoverFailed: { value: 1 },
      FailoverSucceeded: { value: 0 },
    });
    expect(execution?.metrics.RTOSeconds).toBeUndefined();
    expect(execution?.metrics.TrafficShiftSeconds).toBeUndefined();
    const failed = lines.filter((e) => "StepFailed" in e.metrics).map((e) => e.root.Step);
    expect(failed).toEqual(["AwaitArgoSync"]);
    expect(emfOf(result.reportDir, "gitops-failover-trigger")).toEqual([]);
    expect(emfOf(result.reportDir, "gitops-failover-report")).toEqual([]);
  });
});
