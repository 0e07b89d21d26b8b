/**
 * DR readiness signals of one orchestrator: an EventBridge Scheduler schedule that runs the
 * readiness function every `readiness.rateMinutes`, and per target region an alarm to the
 * notification topic when TargetReady (the function's EMF metric) stays 0 for two evaluations,
 * plus one when the function itself fails twice running (then nothing is being evaluated).
 */
import { Duration, Stack } from "aws-cdk-lib";
import {
  Alarm,
  ComparisonOperator,
  Metric,
  Stats,
  TreatMissingData,
} from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import { PolicyDocument, PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import type { Key } from "aws-cdk-lib/aws-kms";
import type { IFunction } from "aws-cdk-lib/aws-lambda";
import {
  type IScheduleTarget,
  Schedule,
  ScheduleExpression,
  ScheduleTargetInput,
} from "aws-cdk-lib/aws-scheduler";
import type { Topic } from "aws-cdk-lib/aws-sns";
import { Construct } from "constructs";
import type { SecretKind } from "../../functions/catalog.ts";
import type { Topology } from "../../functions/lib/config.ts";
import {
  readinessMetricDimensions,
  TARGET_READY_METRIC,
  UNFENCED_METRIC,
} from "../../functions/lib/readiness.ts";
import { METRICS_NAMESPACE, namePrefix, readinessAlarmName, unfencedAlarmName } from "./naming.ts";

/** The readiness function: not a Task state; it shares everything else with the step functions. */
export const READINESS = {
  name: "Readiness",
  entry: "functions/readiness/handler.ts",
  secrets: ["git", "argocd", "spoke", "backup"] as readonly SecretKind[],
} as const;

/** Its Lambda timeout: the evaluation's own bound, then storing, auditing and the early stop. */
export function readinessTimeoutSeconds(t: Topology): number {
  return t.readiness.timeoutSeconds + 60;
}

/** How many evaluations in a row a target must be NOT_READY (or the function fail) to alarm. */
export const EVALUATIONS_TO_ALARM = 2;

export interface ReadinessSignalsProps {
  topology: Topology;
  fn: IFunction;
  topic: Topic;
  /** The customer-managed key of the topic: CloudWatch must be allowed to publish with it. */
  key: Key;
}

export class ReadinessSignals extends Construct {
  readonly schedule: Schedule;
  /** Per region of the topology (any of them can be a target), the NOT_READY alarm. */
  readonly alarms: Map<string, Alarm>;
  readonly errorsAlarm: Alarm;
  /**
   * Per region, the alarm on an old region that answers while not fenced (the readiness
   * function's OldRegionUnfenced): on the first such evaluation, not after two.
   */
  readonly unfencedAlarms: Map<string, Alarm>;

  constructor(scope: Construct, id: string, props: ReadinessSignalsProps) {
    super(scope, id);
    const { topology: t, fn, topic } = props;
    const rate = Duration.minutes(t.readiness.rateMinutes);
    // Its own role, allowed to invoke exactly this function (scheduler-targets' LambdaInvoke also
    // grants every version, `<arn>:*`, which the schedule never calls).
    const role = new Role(this, "ScheduleRole", {
      assumedBy: new ServicePrincipal("scheduler.amazonaws.com", {
        conditions: { StringEquals: { "aws:SourceAccount": Stack.of(this).account } },
      }),
      description: `gitops-failover ${t.platform}: the readiness schedule invokes the readiness function`,
      inlinePolicies: {
        Invoke: new PolicyDocument({
          statements: [
            new PolicyStatement({
              actions: ["lambda:InvokeFunction"],
              resources: [fn.functionArn],
            }),
          ],
        }),
      },
    });
    const target: IScheduleTarget = {
      bind: () => ({
        arn: fn.functionArn,
        role,
        input: ScheduleTargetInput.fromObject({}),
        // A missed run is made good by the next one, minutes later.
        retryPolicy: { maximumRetryAttempts: 0, maximumEventAgeInSeconds: rate.toSeconds() },
      }),
    };
    this.schedule = new Schedule(this, "Schedule", {
      scheduleName: `${namePrefix(t.platform)}-readiness`,
      description: `gitops-failover ${t.platform}: evaluate every failover target's readiness`,
      schedule: ScheduleExpression.rate(rate),
      target,
    });

    // Alarms publish to the topic, which is encrypted with the stack's key.
    props.key.addToResourcePolicy(
      new PolicyStatement({
        principals: [new ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": Stack.of(this).account } },
      }),
    );
    const notify = new SnsAction(topic);
    this.alarms = new Map(
      Object.keys(t.regions).map((region) => {
        const alarm = new Alarm(this, `NotReady-${region}`, {
          alarmName: readinessAlarmName(t.platform, region),
          alarmDescription: `${region} is not a ready failover target (TargetReady 0 for ${EVALUATIONS_TO_ALARM} evaluations): run \`gitops-failover readiness --region ${region}\` and act on each line that is not READY`,
          metric: new Metric({
            namespace: METRICS_NAMESPACE,
            metricName: TARGET_READY_METRIC,
            dimensionsMap: readinessMetricDimensions(t.platform, region),
            statistic: Stats.MINIMUM,
            period: rate,
          }),
          threshold: 1,
          comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
          evaluationPeriods: EVALUATIONS_TO_ALARM,
          datapointsToAlarm: EVALUATIONS_TO_ALARM,
          // The active region is not evaluated (no datapoint); a silent function has its own alarm.
          treatMissingData: TreatMissingData.NOT_BREACHING,
        });
        alarm.addAlarmAction(notify);
        alarm.addOkAction(notify);
        return [region, alarm] as const;
      }),
    );
    this.unfencedAlarms = new Map(
      Object.keys(t.regions).map((region) => {
        const alarm = new Alarm(this, `NotFenced-${region}`, {
          alarmName: unfencedAlarmName(t.platform, region),
          alarmDescription: `${region}, left pending by a failover's Fence step, answers but can still serve or write: run \`gitops-failover readiness --region ${region}\` and run the commands of its fence check`,
          metric: new Metric({
            namespace: METRICS_NAMESPACE,
            metricName: UNFENCED_METRIC,
            dimensionsMap: readinessMetricDimensions(t.platform, region),
            statistic: Stats.MAXIMUM,
            period: rate,
          }),
          threshold: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          evaluationPeriods: 1,
          datapointsToAlarm: 1,
          // Emitted only while a fence is pending: no datapoint is no finding.
          treatMissingData: TreatMissingData.NOT_BREACHING,
        });
        alarm.addAlarmAction(notify);
        alarm.addOkAction(notify);
        return [region, alarm] as const;
      }),
    );
    this.errorsAlarm = new Alarm(this, "EvaluationFailing", {
      alarmName: `${namePrefix(t.platform)}-readiness-failing`,
      alarmDescription: `the readiness function failed ${EVALUATIONS_TO_ALARM} runs in a row: no target is being evaluated; see its logs`,
      metric: fn.metricErrors({ period: rate, statistic: Stats.SUM }),
      threshold: 1,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: EVALUATIONS_TO_ALARM,
      datapointsToAlarm: EVALUATIONS_TO_ALARM,
      treatMissingData: TreatMissingData.BREACHING,
    });
    this.errorsAlarm.addAlarmAction(notify);
  }
}
