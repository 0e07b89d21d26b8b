/**
 * The Health stack: in us-east-1, one HTTPS health check per regional endpoint (or the
 * topology's own checks), an alarm on each HealthCheckStatus, and rules delivering each alarm's
 * ALARM state to the one orchestrator that handles its region — over the orchestrator region's
 * default event bus, or straight to the trigger when that orchestrator is in us-east-1.
 */
import { App } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { describe, expect, it } from "vitest";
import { HealthStack } from "../../infra/lib/health-stack.ts";
import { alarmName, alarmRoutes } from "../../infra/lib/naming.ts";
import { loadSettings } from "../../infra/lib/settings.ts";

type Json = Record<string, unknown>;

function healthStack(context: Record<string, string>, region = "us-east-1") {
  const app = new App();
  const settings = loadSettings((key) => context[key]);
  const stack = new HealthStack(app, "Health", { env: { region }, settings });
  return { app, stack, settings, template: Template.fromStack(stack) };
}

const ofType = (t: Template, type: string) =>
  Object.entries(t.toJSON().Resources as Record<string, Json>).filter(([, r]) => r.Type === type);

describe("alarmRoutes", () => {
  it("sends each region's alarm to the first orchestrator outside that region", () => {
    const routes = alarmRoutes(["us-west-2", "us-east-2", "eu-west-1"], ["us-west-2", "us-east-2"]);
    expect(Object.fromEntries(routes)).toEqual({
      "us-west-2": ["us-east-2", "eu-west-1"],
      "us-east-2": ["us-west-2"],
    });
  });

  it("sends everything to a single orchestrator, even about its own region", () => {
    expect(Object.fromEntries(alarmRoutes(["us-west-2", "us-east-2"], ["us-west-2"]))).toEqual({
      "us-west-2": ["us-west-2", "us-east-2"],
    });
  });
});

describe("by default", () => {
  const { stack, template, settings } = healthStack({});

  it("alarms on the topology's own health checks, the ids the trigger and Plan read, and creates none", () => {
    template.resourceCountIs("AWS::Route53::HealthCheck", 0);
    for (const [region, r] of Object.entries(settings.topology.regions)) {
      template.hasResourceProperties("AWS::CloudWatch::Alarm", {
        AlarmName: alarmName("payments", region),
        Dimensions: [{ Name: "HealthCheckId", Value: r.route53.healthCheckId }],
      });
    }
    expect(Annotations.fromStack(stack).findWarning("*", Match.anyValue())).toEqual([]);
  });
});

describe("with orchestrators in us-west-2 and us-east-2 (created health checks)", () => {
  const { app, stack, template } = healthStack({
    orchestratorRegions: "us-west-2,us-east-2",
    healthChecks: "create",
  });

  it("warns at synth that no alarm can start a failover until the topology names the new checks", () => {
    const warnings = Annotations.fromStack(stack).findWarning("*", Match.anyValue());
    expect(warnings).toHaveLength(1);
    expect(JSON.stringify(warnings[0]?.entry.data)).toContain("no alarm starts a failover");
  });

  it("keeps the created checks when a later deploy switches to the topology's (the same checks, then named there)", () => {
    for (const [, check] of ofType(template, "AWS::Route53::HealthCheck")) {
      expect(check.DeletionPolicy).toBe("Retain");
      expect(check.UpdateReplacePolicy).toBe("Retain");
    }
  });

  it("creates an HTTPS health check on each regional endpoint's /healthz", () => {
    for (const endpoint of ["api-usw2", "api-use2", "api-euw1"]) {
      template.hasResourceProperties("AWS::Route53::HealthCheck", {
        HealthCheckConfig: {
          Type: "HTTPS",
          FullyQualifiedDomainName: `${endpoint}.payments.example.com`,
          Port: 443,
          ResourcePath: "/healthz",
          EnableSNI: true,
          RequestInterval: 30,
          FailureThreshold: 3,
        },
      });
    }
    template.resourceCountIs("AWS::Route53::HealthCheck", 3);
  });

  it("alarms on each check's HealthCheckStatus, named for the region, and outputs the ids for the topology", () => {
    const checks = ofType(template, "AWS::Route53::HealthCheck").map(([id]) => id);
    for (const [region, id] of [
      ["us-west-2", checks[0]],
      ["us-east-2", checks[1]],
      ["eu-west-1", checks[2]],
    ] as const) {
      template.hasResourceProperties("AWS::CloudWatch::Alarm", {
        AlarmName: alarmName("payments", region),
        Namespace: "AWS/Route53",
        MetricName: "HealthCheckStatus",
        Dimensions: [{ Name: "HealthCheckId", Value: { "Fn::GetAtt": [id, "HealthCheckId"] } }],
        Statistic: "Minimum",
        Period: 60,
        ComparisonOperator: "LessThanThreshold",
        Threshold: 1,
      });
      template.hasOutput("*", {
        Value: { "Fn::GetAtt": [id, "HealthCheckId"] },
        Description: Match.stringLikeRegexp(`regions\\.${region}\\.route53\\.healthCheckId`),
      });
    }
  });

  it("delivers each alarm to one other region's default event bus, with a role that may only put events there", () => {
    const alarms = Object.fromEntries(
      ofType(template, "AWS::CloudWatch::Alarm").map(([id, r]) => [
        (r.Properties as Json).AlarmName,
        id,
      ]),
    );
    const arnOf = (region: string) => ({
      "Fn::GetAtt": [alarms[alarmName("payments", region)], "Arn"],
    });
    const bus = (region: string) => ({
      "Fn::Join": [
        "",
        [
          "arn:",
          { Ref: "AWS::Partition" },
          `:events:${region}:`,
          { Ref: "AWS::AccountId" },
          ":event-bus/default",
        ],
      ],
    });
    const rules = ofType(template, "AWS::Events::Rule").map(([, r]) => r.Properties as Json);
    expect(rules).toHaveLength(2);
    for (const [target, sources] of [
      ["us-west-2", ["us-east-2", "eu-west-1"]],
      ["us-east-2", ["us-west-2"]],
    ] as const) {
      template.hasResourceProperties("AWS::Events::Rule", {
        EventPattern: {
          source: ["aws.cloudwatch"],
          "detail-type": ["CloudWatch Alarm State Change"],
          resources: sources.map(arnOf),
          detail: { state: { value: ["ALARM"] } },
        },
        Targets: [Match.objectLike({ Arn: bus(target), RoleArn: Match.anyValue() })],
      });
      template.hasResourceProperties("AWS::IAM::Policy", {
        PolicyDocument: {
          Statement: [{ Action: "events:PutEvents", Effect: "Allow", Resource: bus(target) }],
        },
      });
    }
    template.resourceCountIs("AWS::Lambda::Permission", 0);
  });

  it("is clean under cdk-nag AwsSolutions without any acknowledgment", () => {
    expect(new AwsSolutionsChecks().validateScope(app)).toEqual({ success: true, violations: [] });
  });
});

describe("with the orchestrator in us-east-1 and the topology's own health checks", () => {
  const { template, settings } = healthStack({
    orchestratorRegions: "us-east-1",
    healthChecks: "topology",
  });

  it("creates no health check and alarms on the ones the topology names", () => {
    template.resourceCountIs("AWS::Route53::HealthCheck", 0);
    for (const [region, r] of Object.entries(settings.topology.regions)) {
      template.hasResourceProperties("AWS::CloudWatch::Alarm", {
        AlarmName: alarmName("payments", region),
        Dimensions: [{ Name: "HealthCheckId", Value: r.route53.healthCheckId }],
      });
    }
  });

  it("targets the trigger function directly and lets EventBridge invoke it", () => {
    const trigger = {
      "Fn::Join": [
        "",
        [
          "arn:",
          { Ref: "AWS::Partition" },
          ":lambda:us-east-1:",
          { Ref: "AWS::AccountId" },
          ":function:gitops-failover-payments-trigger",
        ],
      ],
    };
    template.hasResourceProperties("AWS::Events::Rule", {
      Targets: [
        Match.objectLike({
          Arn: trigger,
          RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 3600 },
        }),
      ],
    });
    template.hasResourceProperties("AWS::Lambda::Permission", {
      Action: "lambda:InvokeFunction",
      FunctionName: trigger,
      Principal: "events.amazonaws.com",
      SourceArn: { "Fn::GetAtt": [Match.stringLikeRegexp("^AlarmsTouseast1"), "Arn"] },
    });
  });
});

it("refuses to put the Health stack anywhere but us-east-1", () => {
  expect(() => healthStack({}, "us-west-2")).toThrow(/must be deployed in us-east-1/);
});
