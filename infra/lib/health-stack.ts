/**
 * Detection, in us-east-1 (the only region with `AWS/Route53 HealthCheckStatus`): an alarm on the
 * Route 53 health check of each regional endpoint (the topology's, or with healthChecks=create
 * new ones for a first deploy), and an EventBridge rule that delivers
 * each alarm's ALARM transitions to the trigger of the orchestrator that handles that region —
 * a Lambda target when it runs here, its region's default event bus otherwise.
 */
import {
  Annotations,
  ArnFormat,
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  type StackProps,
} from "aws-cdk-lib";
import { Alarm, ComparisonOperator, Metric, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import { EventBus, Rule } from "aws-cdk-lib/aws-events";
import { EventBus as EventBusTarget, LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { Function as LambdaFunctionRef } from "aws-cdk-lib/aws-lambda";
import { CfnHealthCheck } from "aws-cdk-lib/aws-route53";
import type { Construct } from "constructs";
import { alarmName, alarmRoutes, HEALTH_REGION, triggerFunctionName } from "./naming.ts";
import type { Settings } from "./settings.ts";

export interface HealthStackProps extends StackProps {
  settings: Settings;
}

/** Route 53's standard interval (s) and failures before a checker calls an endpoint unhealthy. */
const CHECK_INTERVAL_SECONDS = 30;
const FAILURE_THRESHOLD = 3;

export class HealthStack extends Stack {
  /** The alarm of each endpoint region. */
  readonly alarms: Map<string, Alarm>;

  constructor(scope: Construct, id: string, props: HealthStackProps) {
    super(scope, id, props);
    if (this.region !== HEALTH_REGION) {
      throw new Error(`the Health stack must be deployed in ${HEALTH_REGION}, not ${this.region}`);
    }
    const { topology, healthChecks, healthCheckPath, orchestratorRegions } = props.settings;
    const platform = topology.platform;

    if (healthChecks === "create") {
      Annotations.of(this).addWarningV2(
        "gitops-failover:health-checks-created",
        "healthChecks=create: the alarms watch health checks this deploy creates, whose ids the topology does not name yet. The trigger and Plan find a region by regions.<r>.route53.healthCheckId, so until the HealthCheckId-<region> outputs are in the topology and it is deployed again (with the default -c healthChecks=topology), no alarm starts a failover.",
      );
    }
    this.alarms = new Map();
    for (const [region, r] of Object.entries(topology.regions)) {
      let healthCheckId = r.route53.healthCheckId;
      if (healthChecks === "create") {
        const check = new CfnHealthCheck(this, `HealthCheck-${region}`, {
          healthCheckConfig: {
            type: "HTTPS",
            fullyQualifiedDomainName: r.endpoint,
            port: 443,
            resourcePath: healthCheckPath,
            enableSni: true,
            requestInterval: CHECK_INTERVAL_SECONDS,
            failureThreshold: FAILURE_THRESHOLD,
          },
          healthCheckTags: [
            { key: "Name", value: `${platform} ${region} ${r.endpoint}${healthCheckPath}` },
          ],
        });
        // Kept when a later deploy switches to healthChecks=topology (which then names them).
        check.applyRemovalPolicy(RemovalPolicy.RETAIN);
        healthCheckId = check.attrHealthCheckId;
        new CfnOutput(this, `HealthCheckId-${region}`, {
          description: `Put this into the topology as regions.${region}.route53.healthCheckId`,
          value: healthCheckId,
        });
      }
      this.alarms.set(
        region,
        new Alarm(this, `Unhealthy-${region}`, {
          alarmName: alarmName(platform, region),
          alarmDescription: `${platform}: the endpoint of ${region} (${r.endpoint}) fails its Route 53 health check`,
          metric: new Metric({
            namespace: "AWS/Route53",
            metricName: "HealthCheckStatus",
            dimensionsMap: { HealthCheckId: healthCheckId },
            statistic: "Minimum",
            period: Duration.minutes(1),
          }),
          threshold: 1,
          comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
          evaluationPeriods: 1,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        }),
      );
    }

    for (const [orchestrator, regions] of alarmRoutes(
      Object.keys(topology.regions),
      orchestratorRegions,
    )) {
      if (!regions.length) continue;
      const rule = new Rule(this, `AlarmsTo-${orchestrator}`, {
        description: `gitops-failover ${platform}: health alarms of ${regions.join(", ")} to the trigger in ${orchestrator}`,
        eventPattern: {
          source: ["aws.cloudwatch"],
          detailType: ["CloudWatch Alarm State Change"],
          resources: regions.map((r) => this.alarms.get(r)?.alarmArn ?? ""),
          detail: { state: { value: ["ALARM"] } },
        },
      });
      if (orchestrator === HEALTH_REGION) {
        const trigger = LambdaFunctionRef.fromFunctionAttributes(this, "Trigger", {
          functionArn: this.formatArn({
            service: "lambda",
            resource: "function",
            resourceName: triggerFunctionName(platform),
            arnFormat: ArnFormat.COLON_RESOURCE_NAME,
          }),
          sameEnvironment: true,
        });
        rule.addTarget(
          new LambdaFunction(trigger, { retryAttempts: 8, maxEventAge: Duration.hours(1) }),
        );
      } else {
        const bus = EventBus.fromEventBusArn(
          this,
          `DefaultBus-${orchestrator}`,
          this.formatArn({
            service: "events",
            region: orchestrator,
            resource: "event-bus",
            resourceName: "default",
          }),
        );
        rule.addTarget(new EventBusTarget(bus));
      }
    }
  }
}
