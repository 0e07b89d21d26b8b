/**
 * The orchestrator's CloudWatch dashboard: what an on-call opens first. Executions by status
 * (Step Functions' own metrics), the RTO per target region, the three physical phases and each
 * step's duration (p50, p90), step failures, the trigger's decisions by kind, each region's
 * Route 53 health check (us-east-1, where Route 53 publishes it) and its readiness. The metric
 * names and dimensions are the functions' own (functions/lib/metrics.ts), so the two cannot drift.
 */
import { Duration, Stack } from "aws-cdk-lib";
import {
  Dashboard,
  GraphWidget,
  type IMetric,
  Metric,
  PeriodOverride,
  Stats,
  TextWidget,
} from "aws-cdk-lib/aws-cloudwatch";
import type { StateMachine } from "aws-cdk-lib/aws-stepfunctions";
import { Construct } from "constructs";
import type { Topology } from "../../functions/lib/config.ts";
import { METRIC, STEP_OUTCOME_METRIC } from "../../functions/lib/metrics.ts";
import { readinessMetricDimensions, TARGET_READY_METRIC } from "../../functions/lib/readiness.ts";
import { STEPS } from "../../functions/lib/report.ts";
import { TRIGGER_OUTCOMES } from "../../functions/lib/trigger.ts";
import { HEALTH_REGION, METRICS_NAMESPACE, namePrefix } from "./naming.ts";

export interface FailoverDashboardProps {
  topology: Topology;
  stateMachine: StateMachine;
}

/** A failover is rare: an hour per point keeps one on the graph without hiding it. */
const PERIOD = Duration.hours(1);
const WIDTH = 12;
const HEIGHT = 6;

export class FailoverDashboard extends Construct {
  readonly dashboard: Dashboard;
  /** The console page of the dashboard (a stack output). */
  readonly url: string;

  constructor(scope: Construct, id: string, props: FailoverDashboardProps) {
    super(scope, id);
    const { topology: t, stateMachine } = props;
    const region = Stack.of(this).region;
    const regions = Object.keys(t.regions);
    const ours = (metricName: string, dimensionsMap: Record<string, string>, statistic: string) =>
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName,
        dimensionsMap: { Platform: t.platform, ...dimensionsMap },
        statistic,
        period: PERIOD,
      });
    const perTarget = (metricName: string, statistic: string) =>
      regions.map((r) => ours(metricName, { TargetRegion: r }, statistic).with({ label: r }));
    const perStep = (metricName: string, statistic: string) =>
      STEPS.map((s) => ours(metricName, { Step: s }, statistic).with({ label: s }));
    const graph = (title: string, left: IMetric[], extra: { stacked?: boolean } = {}) =>
      new GraphWidget({
        title,
        left,
        width: WIDTH,
        height: HEIGHT,
        period: PERIOD,
        setPeriodToTimeRange: false,
        ...extra,
      });
    const executions = { period: PERIOD, statistic: Stats.SUM };
    const name = `${namePrefix(t.platform)}-${region}`;

    this.dashboard = new Dashboard(this, "Dashboard", {
      dashboardName: name,
      defaultInterval: Duration.days(30),
      periodOverride: PeriodOverride.INHERIT,
      widgets: [
        [
          new TextWidget({
            markdown: `# gitops-failover ${t.platform} (${region})\nMetrics: namespace \`${METRICS_NAMESPACE}\`, dimensions Platform, TargetRegion, Step, Decision (README, "Metrics"). Every execution's report is in the report bucket under \`reports/<execution>/report.html\`.`,
            width: 24,
            height: 2,
          }),
        ],
        [
          graph(
            "Executions by status",
            [
              stateMachine.metricStarted(executions).with({ label: "started" }),
              stateMachine.metricSucceeded(executions).with({ label: "succeeded" }),
              stateMachine.metricFailed(executions).with({ label: "failed" }),
              stateMachine.metricAborted(executions).with({ label: "aborted" }),
              stateMachine.metricTimedOut(executions).with({ label: "timed out" }),
            ],
            { stacked: true },
          ),
          graph(
            "RTO (s) by target region, alarm to traffic shifted",
            perTarget(METRIC.rto, Stats.MAXIMUM),
          ),
        ],
        [
          graph("Step duration (s), p50", perStep(METRIC.stepSeconds, Stats.p(50))),
          graph("Step duration (s), p90", perStep(METRIC.stepSeconds, Stats.p(90))),
        ],
        [
          graph(
            "Phases (s): Argo CD sync, Aurora promotion, traffic shift; p50 and p90",
            [METRIC.argoSync, METRIC.auroraPromotion, METRIC.trafficShift].flatMap((m) =>
              [50, 90].map((p) => ours(m, {}, Stats.p(p)).with({ label: `${m} p${p}` })),
            ),
          ),
          graph("Failed steps", perStep(STEP_OUTCOME_METRIC.FAILED, Stats.SUM), { stacked: true }),
        ],
        [
          graph(
            "Trigger decisions by kind",
            TRIGGER_OUTCOMES.map((d) =>
              ours(METRIC.triggerDecisions, { Decision: d }, Stats.SUM).with({ label: d }),
            ),
            { stacked: true },
          ),
          graph(
            "Route 53 health check per region (1 healthy, 0 unhealthy)",
            Object.entries(t.regions).map(
              ([r, spec]) =>
                new Metric({
                  namespace: "AWS/Route53",
                  metricName: "HealthCheckStatus",
                  dimensionsMap: { HealthCheckId: spec.route53.healthCheckId },
                  statistic: Stats.MINIMUM,
                  period: Duration.minutes(1),
                  region: HEALTH_REGION,
                  label: r,
                }),
            ),
          ),
        ],
        [
          graph(
            "Readiness per region (TargetReady: 1 ready, 0 not)",
            regions.map((r) =>
              new Metric({
                namespace: METRICS_NAMESPACE,
                metricName: TARGET_READY_METRIC,
                // The readiness function's own dimensions, as its alarms use them.
                dimensionsMap: readinessMetricDimensions(t.platform, r),
                statistic: Stats.MINIMUM,
                period: PERIOD,
              }).with({ label: r }),
            ),
          ),
        ],
      ],
    });
    this.url = `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#dashboards/dashboard/${name}`;
  }
}
