/**
 * What the orchestrator measures, as CloudWatch metrics in the `GitopsFailover` namespace
 * (README, "Metrics"): per execution the RTO, its outcome and the three physical phases (Argo CD
 * sync, Aurora promotion, traffic shift); per step its duration and outcome; per alarm the
 * trigger's decision. Emitted as EMF through Powertools Metrics, so a dashboard (the orchestrator
 * stack's) and alarms read them without any PutMetricData call or IAM grant.
 */
import { MetricUnit } from "@aws-lambda-powertools/metrics";
import type { FailoverReport, StepName } from "./report.ts";
import { metrics, newMetrics } from "./telemetry.ts";
import type { TriggerOutcome } from "./trigger.ts";

/** Metric names; the dashboard (infra/lib/dashboard.ts) reads the same ones. */
export const METRIC = {
  rto: "RTOSeconds",
  succeeded: "FailoverSucceeded",
  failed: "FailoverFailed",
  argoSync: "ArgoSyncSeconds",
  auroraPromotion: "AuroraPromotionSeconds",
  trafficShift: "TrafficShiftSeconds",
  stepSeconds: "StepSeconds",
  triggerDecisions: "TriggerDecisions",
} as const;

/** The count metric of each step outcome (a step that did not run has none). */
export const STEP_OUTCOME_METRIC = {
  SUCCEEDED: "StepSucceeded",
  SKIPPED: "StepSkipped",
  FAILED: "StepFailed",
  STOPPED: "StepStopped",
} as const;

type Span = { startedAt: string | null; endedAt: string | null };

/** Seconds from the first span's start to the last span's end; null unless both are known. */
function secondsBetween(from: Span | undefined, to: Span | undefined): number | null {
  if (!from?.startedAt || !to?.endedAt) return null;
  return (Date.parse(to.endedAt) - Date.parse(from.startedAt)) / 1000;
}

/**
 * The physical phases this execution performed (a skipped or failed phase has no duration):
 * Argo CD from the retarget commit to every app Synced and Healthy, Aurora from the promotion
 * call to the target being writer, traffic from the first dial change to verified healthy.
 */
function phases(r: FailoverReport): [string, number | null][] {
  const step = (name: StepName) => r.steps.find((s) => s.name === name);
  const did = (...names: StepName[]) => names.every((n) => step(n)?.status === "SUCCEEDED");
  const commit = step("CommitRetarget");
  const from = commit?.status === "SUCCEEDED" ? commit : step("AwaitArgoSync");
  return [
    [METRIC.argoSync, did("AwaitArgoSync") ? secondsBetween(from, step("AwaitArgoSync")) : null],
    [
      METRIC.auroraPromotion,
      did("PromoteAurora", "AwaitAurora")
        ? secondsBetween(step("PromoteAurora"), step("AwaitAurora"))
        : null,
    ],
    [
      METRIC.trafficShift,
      did("ShiftTraffic", "VerifyTraffic")
        ? secondsBetween(step("ShiftTraffic"), step("VerifyTraffic"))
        : null,
    ],
  ];
}

/**
 * Records a finished execution's metrics. The execution's own go into the invocation's buffer
 * (flushed by the middleware) with the dimension sets [Platform] (the platform as the default
 * dimension, alone) and [Platform, TargetRegion];
 * each step's go out at once as their own EMF line with [Platform, Step] (one line holds one
 * value per dimension).
 */
export function recordFailoverMetrics(r: FailoverReport): void {
  metrics.setDefaultDimensions({ Platform: r.platform });
  metrics.addDimensions({});
  if (r.targetRegion) metrics.addDimensions({ TargetRegion: r.targetRegion });
  metrics.addMetric(METRIC.succeeded, MetricUnit.Count, r.status === "SUCCEEDED" ? 1 : 0);
  metrics.addMetric(METRIC.failed, MetricUnit.Count, r.status === "FAILED" ? 1 : 0);
  if (r.rto.seconds !== null) metrics.addMetric(METRIC.rto, MetricUnit.Seconds, r.rto.seconds);
  for (const [name, seconds] of phases(r))
    if (seconds !== null) metrics.addMetric(name, MetricUnit.Seconds, seconds);
  for (const s of r.steps) {
    if (s.status === "NOT_RUN") continue;
    const seconds = secondsBetween(s, s);
    publishLine({ Platform: r.platform, Step: s.name }, [
      [STEP_OUTCOME_METRIC[s.status], MetricUnit.Count, 1],
      ...(seconds !== null ? [[METRIC.stepSeconds, MetricUnit.Seconds, seconds] as const] : []),
    ]);
  }
}

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];
type Datum = readonly [name: string, unit: Unit, value: number];

/** One EMF line now, with its own dimension values, apart from the invocation's buffer. */
function publishLine(dimensions: Record<string, string>, data: Datum[]): void {
  const line = newMetrics();
  line.addDimensions(dimensions);
  for (const [name, unit, value] of data) line.addMetric(name, unit, value);
  line.publishStoredMetrics();
}

/**
 * Counts one trigger decision by kind ([Platform, Decision]), as its own line: the trigger also
 * runs outside its handler (the drill, the tests), where no middleware would flush a buffer.
 */
export function recordTriggerDecision(platform: string, decision: TriggerOutcome): void {
  publishLine({ Platform: platform, Decision: decision }, [
    [METRIC.triggerDecisions, MetricUnit.Count, 1],
  ]);
}
