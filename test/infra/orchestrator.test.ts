/**
 * The orchestrator stack as deployed: state machine (from the committed ASL, every placeholder
 * substituted), functions, audit table, report bucket, topic, kill switch, outputs, the alarm
 * relay, cdk-nag cleanliness with a reason for every acknowledgment, and a snapshot.
 */
import type { CfnElement, Stack } from "aws-cdk-lib";
import { Match, type Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import type { IConstruct } from "constructs";
import { beforeAll, describe, expect, it } from "vitest";
import { FUNCTIONS, placeholderOf, pollBudget, timeoutOf } from "../../functions/catalog.ts";
import { OPERATOR_ACTIONS } from "../../infra/lib/access.ts";
import { alarmName, METRICS_NAMESPACE } from "../../infra/lib/naming.ts";
import type { OrchestratorStack } from "../../infra/lib/orchestrator-stack.ts";
import { deriveSdkAccess } from "../../infra/lib/sdk-access.ts";
import { aslText, placeholders } from "../../statemachine/definition.ts";
import { deriveAll, type Synthesized, synthesize } from "./synth.ts";

type Json = Record<string, unknown>;

let synth: Synthesized;
let stack: OrchestratorStack;
let template: Template;
let resources: Record<string, Json>;

const logicalId = (s: Stack, c: IConstruct) => s.getLogicalId(c.node.defaultChild as CfnElement);
const propsOf = (id: string) => (resources[id]?.Properties ?? {}) as Json;
/** The logical id of a function of `s` (the first orchestrator unless given). */
const fnId = (name: string, s: OrchestratorStack = stack) => {
  const f = s.functions.get(name);
  if (!f) throw new Error(`no function ${name}`);
  return logicalId(s, f.function);
};
const functionOf = (name: string) => propsOf(fnId(name));

beforeAll(async () => {
  synth = synthesize({}, await deriveAll());
  const first = synth.deployment.orchestrators[0];
  if (!first) throw new Error("no orchestrator stack");
  stack = first;
  template = synth.template(stack);
  resources = template.toJSON().Resources as Record<string, Json>;
});

describe("deployment", () => {
  it("runs an orchestrator in the two most preferred regions and the Health stack in us-east-1", () => {
    expect(synth.deployment.orchestrators.map((o) => o.region)).toEqual(["us-west-2", "us-east-2"]);
    expect(synth.deployment.health.region).toBe("us-east-1");
    expect(synth.deployment.health.dependencies.map((d) => d.stackName).sort()).toEqual(
      synth.deployment.orchestrators.map((o) => o.stackName).sort(),
    );
  });
});

describe("state machine", () => {
  it("is a Standard workflow named after the platform, logging ALL with retention, traced", () => {
    template.hasResourceProperties("AWS::StepFunctions::StateMachine", {
      StateMachineType: "STANDARD",
      StateMachineName: "gitops-failover-payments",
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: {
        Level: "ALL",
        IncludeExecutionData: true,
        Destinations: [{ CloudWatchLogsLogGroup: { LogGroupArn: Match.anyValue() } }],
      },
    });
    template.hasResourceProperties("AWS::Logs::LogGroup", {
      LogGroupName: "/aws/vendedlogs/states/gitops-failover-payments",
      RetentionInDays: 365,
    });
  });

  it("deploys the committed ASL text itself (not an S3 asset) with one substitution per placeholder", () => {
    const sm = propsOf(logicalId(stack, stack.stateMachine));
    expect(sm.DefinitionString).toBe(aslText());
    expect(sm.DefinitionS3Location).toBeUndefined();
    const substitutions = sm.DefinitionSubstitutions as Record<string, unknown>;
    expect(Object.keys(substitutions).sort()).toEqual(placeholders(aslText()));
    for (const f of FUNCTIONS) {
      expect(substitutions[placeholderOf(f.state)], f.state).toEqual({
        "Fn::GetAtt": [fnId(f.state), "Arn"],
      });
    }
  });

  it("leaves no placeholder unresolved once CloudFormation substitutes, and every Task calls one of its functions", () => {
    const sm = propsOf(logicalId(stack, stack.stateMachine));
    const substitutions = sm.DefinitionSubstitutions as Record<
      string,
      { "Fn::GetAtt": [string, string] }
    >;
    const deployed = String(sm.DefinitionString).replace(
      /\$\{([A-Za-z0-9_]+)\}/g,
      (whole, name: string) => {
        const ref = substitutions[name];
        return ref
          ? `arn:aws:lambda:us-west-2:111122223333:function:${ref["Fn::GetAtt"][0]}`
          : whole;
      },
    );
    expect(deployed).not.toMatch(/\$\{/);
    const called = new Set<string>();
    const visit = (states: Record<string, Json>) => {
      for (const state of Object.values(states)) {
        if (state.Type === "Task") {
          const params = (state.Parameters ?? {}) as Json;
          called.add(String(params.FunctionName ?? state.Resource).split(":function:")[1] ?? "");
        }
        for (const branch of (state.Branches ?? []) as { States: Record<string, Json> }[])
          visit(branch.States);
      }
    };
    visit((JSON.parse(deployed) as { States: Record<string, Json> }).States);
    expect([...called].sort()).toEqual(FUNCTIONS.map((f) => fnId(f.state)).sort());
  });

  it("may invoke exactly the twelve step functions (not the trigger, nothing else)", () => {
    const policies = Object.values(resources).filter((r) => r.Type === "AWS::IAM::Policy");
    const invoke = policies.flatMap((p) =>
      ((p.Properties as Json).PolicyDocument as { Statement: Json[] }).Statement.filter(
        (s) => s.Action === "lambda:InvokeFunction",
      ),
    );
    expect(invoke).toHaveLength(1);
    const arns = ((invoke[0]?.Resource ?? []) as { "Fn::GetAtt": [string, string] }[]).map(
      (r) => r["Fn::GetAtt"][0],
    );
    expect(arns.sort()).toEqual(FUNCTIONS.map((f) => fnId(f.state)).sort());
  });
});

describe("functions", () => {
  it("are one per Task state plus the trigger, readiness and the approver: nodejs22.x on arm64, ESM bundle, own log group with retention", () => {
    expect([...stack.functions.keys()].sort()).toEqual(
      [...FUNCTIONS.map((f) => f.state), "Trigger", "Readiness", "Approver"].sort(),
    );
    template.resourceCountIs("AWS::Lambda::Function", FUNCTIONS.length + 3);
    for (const name of stack.functions.keys()) {
      const fn = functionOf(name);
      expect(fn.Runtime, name).toBe("nodejs22.x");
      expect(fn.Architectures, name).toEqual(["arm64"]);
      expect(fn.Handler, name).toBe("index.handler");
      expect(fn.MemorySize, name).toBeGreaterThanOrEqual(512);
      const logGroup = (fn.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
      expect(propsOf(logGroup).RetentionInDays, name).toBe(90);
    }
  });

  it("are traced with X-Ray (active), their roles holding only the derived inline policy", () => {
    for (const name of stack.functions.keys())
      expect(functionOf(name).TracingConfig, name).toEqual({ Mode: "Active" });
    const roles = new Set([...stack.functions.values()].map((f) => logicalId(stack, f.role)));
    const attached = Object.values(resources)
      .filter((r) => r.Type === "AWS::IAM::Policy")
      .flatMap((r) =>
        ((r.Properties as { Roles?: { Ref: string }[] }).Roles ?? []).map((x) => x.Ref),
      );
    expect(attached.filter((ref) => roles.has(ref))).toEqual([]);
  });

  it("time out when their worst case ends: the pollers' from the topology, inside their step's deadline; the rest at the catalog's", () => {
    const t = synth.settings.topology;
    for (const f of FUNCTIONS) expect(functionOf(f.state).Timeout, f.state).toBe(timeoutOf(f, t));
    // 2 hubs x 3 calls x 20 s + hub tokens (2 x 39 s) + audit (39 s) + early stop (2 s).
    expect(functionOf("AwaitArgoSync").Timeout).toBe(240);
    // 3 regions x 10 s + audit + early stop.
    expect(functionOf("AwaitAurora").Timeout).toBe(80);
    expect(functionOf("VerifyTraffic").Timeout).toBe(80);
    // Plan, Report and RecordFailure read Git: the secret (replica, then primary) and a clone.
    for (const name of ["Plan", "Report", "RecordFailure"])
      expect(functionOf(name).Timeout, name).toBe(120);
    for (const f of FUNCTIONS) {
      const budget = pollBudget(f.state, t);
      if (!budget) continue;
      expect(functionOf(f.state).Timeout, f.state).toBeGreaterThanOrEqual(budget.seconds);
      // Fence's window is fixed in the code (FENCE_SECONDS), not a deadline the topology sets.
      if (budget.deadlineKey === "FENCE_SECONDS") continue;
      expect(functionOf(f.state).Timeout, f.state).toBeLessThanOrEqual(budget.deadlineSeconds);
    }
    expect(functionOf("Trigger").Timeout).toBe(60);
    expect(functionOf("Trigger").FunctionName).toBe("gitops-failover-payments-trigger");
  });

  it("get the contract's environment, and the topology compiled in rather than as a (4 KB-capped) variable", () => {
    const table = { Ref: logicalId(stack, stack.table) };
    const topic = { Ref: logicalId(stack, stack.topic) };
    const bucket = { Ref: logicalId(stack, stack.bucket) };
    const env = (name: string) => (functionOf(name).Environment as { Variables: Json }).Variables;
    for (const name of stack.functions.keys()) {
      expect(env(name), name).toMatchObject({
        AUDIT_TABLE: table,
        POWERTOOLS_SERVICE_NAME: "gitops-failover",
        LOG_LEVEL: "INFO",
      });
      expect(env(name).TOPOLOGY, name).toBeUndefined();
    }
    for (const name of ["Report", "RecordFailure"]) {
      expect(env(name), name).toMatchObject({ REPORT_BUCKET: bucket });
    }
    for (const name of stack.functions.keys()) expect(env(name).METRICS_NAMESPACE).toBeUndefined();
    for (const name of ["Notify", "Approval"]) expect(env(name).TOPIC_ARN, name).toEqual(topic);
    expect(env("Trigger").TOPIC_ARN).toEqual(topic);
    expect(JSON.stringify(env("Trigger").STATE_MACHINE_ARN)).toContain(
      ":stateMachine:gitops-failover-payments",
    );
  });

  it("tell the operators through the topic when the trigger fails after Lambda's retries", () => {
    template.hasResourceProperties("AWS::Lambda::EventInvokeConfig", {
      FunctionName: { Ref: fnId("Trigger") },
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: { Ref: logicalId(stack, stack.topic) } } },
    });
  });
});

describe("audit trail, reports, notifications", () => {
  it("keep the audit trail and the lock in a pk/sk table with PITR, a rotated customer-managed key and deletion protection", () => {
    template.hasResourceProperties("AWS::DynamoDB::Table", {
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      AttributeDefinitions: Match.arrayWith([
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
      ]),
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true, SSEType: "KMS", KMSMasterKeyId: Match.anyValue() },
      DeletionProtectionEnabled: true,
    });
    template.hasResourceProperties("AWS::KMS::Key", { EnableKeyRotation: true });
    template.hasResource("AWS::DynamoDB::Table", { DeletionPolicy: "Retain" });
  });

  it("write reports to a versioned, encrypted, private, TLS-only bucket with a lifecycle", () => {
    template.hasResourceProperties("AWS::S3::Bucket", {
      VersioningConfiguration: { Status: "Enabled" },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } },
        ],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      LifecycleConfiguration: {
        Rules: [
          Match.objectLike({
            Status: "Enabled",
            NoncurrentVersionExpiration: { NoncurrentDays: 365 },
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
          }),
        ],
      },
    });
    template.hasResourceProperties("AWS::S3::BucketPolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: "Deny",
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          }),
        ]),
      },
    });
  });

  it("notify through a topic encrypted with the customer-managed key that refuses plain HTTP", () => {
    template.hasResourceProperties("AWS::SNS::Topic", {
      KmsMasterKeyId: { "Fn::GetAtt": [Match.stringLikeRegexp("^DataKey"), "Arn"] },
    });
    template.hasResourceProperties("AWS::SNS::TopicPolicy", {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: "Deny",
            Condition: { Bool: { "aws:SecureTransport": "false" } },
          }),
        ]),
      },
    });
  });

  it("creates the topology's kill switch, off", () => {
    template.hasResourceProperties("AWS::SSM::Parameter", {
      Name: synth.settings.topology.trigger.killSwitchParameter,
      Value: "off",
      Type: "String",
    });
  });

  it("outputs the state machine, a console link to start an execution, the bucket and the topic", () => {
    const outputs = template.toJSON().Outputs as Record<
      string,
      { Value: unknown; Description?: string }
    >;
    expect(outputs.StateMachineArn?.Value).toEqual({ Ref: logicalId(stack, stack.stateMachine) });
    expect(JSON.stringify(outputs.StartExecutionUrl?.Value)).toContain(
      "https://us-west-2.console.aws.amazon.com/states/home?region=us-west-2#/statemachines/view/",
    );
    expect(outputs.StartExecutionUrl?.Description).toContain('"targetRegion":"us-east-2"');
    expect(outputs.ReportBucketName?.Value).toEqual({ Ref: logicalId(stack, stack.bucket) });
    expect(outputs.NotificationTopicArn?.Value).toEqual({ Ref: logicalId(stack, stack.topic) });
  });
});

describe("signed anchors and immutable reports", () => {
  const signingKey = () => logicalId(stack, stack.signingKey);
  const statementsOf = (name: string) => {
    const f = stack.functions.get(name);
    if (!f) throw new Error(`no function ${name}`);
    const role = propsOf(logicalId(stack, f.role)) as {
      Policies: { PolicyDocument: { Statement: Json[] } }[];
    };
    return role.Policies.flatMap((p) => p.PolicyDocument.Statement);
  };

  it("create an asymmetric signing key (ECC_NIST_P256, SIGN_VERIFY), retained, and output its ARN", () => {
    expect(propsOf(signingKey())).toMatchObject({
      KeySpec: "ECC_NIST_P256",
      KeyUsage: "SIGN_VERIFY",
    });
    expect(resources[signingKey()]?.DeletionPolicy).toBe("Retain");
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.AuditSigningKeyArn?.Value).toEqual({ "Fn::GetAtt": [signingKey(), "Arn"] });
  });

  it("let exactly Report and RecordFailure sign, on that key, RAW ECDSA_SHA_256 only, and give only them its ARN", () => {
    const signers = [...stack.functions.keys()].filter((name) =>
      statementsOf(name).some((st) => [st.Action].flat().includes("kms:Sign")),
    );
    expect(signers.sort()).toEqual(["RecordFailure", "Report"]);
    for (const name of signers) {
      const sign = statementsOf(name).filter((st) => [st.Action].flat().includes("kms:Sign"));
      expect(sign, name).toEqual([
        {
          Action: "kms:Sign",
          Effect: "Allow",
          Resource: { "Fn::GetAtt": [signingKey(), "Arn"] },
          Condition: {
            StringEquals: { "kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "RAW" },
          },
        },
      ]);
    }
    const withKey = [...stack.functions.keys()].filter(
      (name) =>
        (functionOf(name).Environment as { Variables: Json }).Variables.AUDIT_SIGNING_KEY !==
        undefined,
    );
    expect(withKey.sort()).toEqual(["RecordFailure", "Report"]);
  });

  it("keep every report version under S3 Object Lock (governance, 365 days by default) on a versioned bucket", () => {
    expect(propsOf(logicalId(stack, stack.bucket))).toMatchObject({
      ObjectLockEnabled: true,
      ObjectLockConfiguration: {
        ObjectLockEnabled: "Enabled",
        Rule: { DefaultRetention: { Mode: "GOVERNANCE", Days: 365 } },
      },
      VersioningConfiguration: { Status: "Enabled" },
    });
  });
});

describe("the approval entry point", () => {
  it("is the approver's function URL with AWS_IAM auth, output as ApprovalUrl; only the approver may answer a task token", () => {
    const approver = fnId("Approver");
    template.hasResourceProperties("AWS::Lambda::Url", {
      AuthType: "AWS_IAM",
      TargetFunctionArn: { "Fn::GetAtt": [approver, "Arn"] },
    });
    expect(functionOf("Approver").FunctionName).toBe("gitops-failover-payments-approver");
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(JSON.stringify(outputs.ApprovalUrl?.Value)).toContain("FunctionUrl");
    const answering = Object.entries(resources)
      .filter(([, r]) => r.Type === "AWS::IAM::Role" || r.Type === "AWS::IAM::ManagedPolicy")
      .filter(([, r]) => JSON.stringify(r.Properties).includes("states:SendTaskSuccess"))
      .map(([id]) => id);
    const approverRole = logicalId(stack, stack.functions.get("Approver")?.role as IConstruct);
    expect(answering).toEqual([approverRole]);
  });
});

describe("operators", () => {
  const policyId = () => logicalId(stack, stack.operatorPolicy);

  it("get a customer-managed policy with exactly what the CLI and StopExecution need, on this stack's resources", () => {
    const policy = propsOf(policyId());
    expect(resources[policyId()]?.Type).toBe("AWS::IAM::ManagedPolicy");
    const statements = (policy.PolicyDocument as { Statement: Json[] }).Statement;
    const actions = statements.flatMap((st) => [st.Action].flat() as string[]).sort();
    expect(actions).toEqual([...OPERATOR_ACTIONS, "kms:Decrypt"].sort());
    const where = (action: string) =>
      statements.filter((st) => ([st.Action].flat() as string[]).includes(action));
    const one = (action: string) => {
      const found = where(action);
      expect(found, action).toHaveLength(1);
      return found[0] as Json;
    };
    const machine = JSON.stringify(one("states:StartExecution").Resource);
    expect(machine).toMatch(/:states:us-west-2:.*:stateMachine:gitops-failover-payments"\]\]\}$/);
    expect(JSON.stringify(one("states:ListExecutions").Resource)).toBe(machine);
    for (const a of [
      "states:DescribeExecution",
      "states:GetExecutionHistory",
      "states:StopExecution",
    ])
      expect(JSON.stringify(one(a).Resource), a).toMatch(
        /:states:us-west-2:.*:execution:gitops-failover-payments:\*"\]\]\}$/,
      );
    expect(actions).not.toContain("states:SendTaskSuccess");
    expect(actions).not.toContain("states:SendTaskFailure");
    expect(one("lambda:InvokeFunctionUrl")).toMatchObject({
      Condition: { StringEquals: { "lambda:FunctionUrlAuthType": "AWS_IAM" } },
    });
    expect(JSON.stringify(one("lambda:InvokeFunctionUrl").Resource)).toMatch(
      /:lambda:us-west-2:.*:function:gitops-failover-payments-approver"\]\]\}$/,
    );
    expect(JSON.stringify(one("s3:GetObject").Resource)).toBe(
      JSON.stringify({
        "Fn::Join": ["", [{ "Fn::GetAtt": [logicalId(stack, stack.bucket), "Arn"] }, "/reports/*"]],
      }),
    );
    expect(one("dynamodb:Query").Resource).toEqual({
      "Fn::GetAtt": [logicalId(stack, stack.table), "Arn"],
    });
    const key = one("kms:Decrypt");
    expect(JSON.stringify(key.Resource)).toMatch(/^\{"Fn::GetAtt":\["DataKey[0-9A-F]+","Arn"\]\}$/);
    expect(key.Condition).toEqual({
      StringEquals: { "kms:ViaService": "dynamodb.us-west-2.amazonaws.com" },
    });
  });

  it("the policy covers every AWS call the operator CLI makes (derived from cli/ops.ts, cli/audit.ts and cli/readiness.ts)", async () => {
    const cli = await deriveSdkAccess([
      { name: "ops", entry: "cli/ops.ts" },
      { name: "audit", entry: "cli/audit.ts" },
      { name: "readiness", entry: "cli/readiness.ts" },
    ]);
    const sent = [...cli.values()].flatMap((a) => a.actions);
    expect(
      [...new Set([...sent, "states:StopExecution", "lambda:InvokeFunctionUrl"])].sort(),
    ).toEqual([...OPERATOR_ACTIONS].sort());
  });

  it("outputs the policy's ARN", () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.OperatorPolicyArn?.Value).toEqual({ Ref: policyId() });
  });
});

describe("readiness", () => {
  const rate = () => synth.settings.topology.readiness.rateMinutes;

  it("runs the readiness function on an EventBridge Scheduler schedule at the topology's rate, with a role that may invoke only it", () => {
    const schedules = template.findResources("AWS::Scheduler::Schedule");
    const [schedule] = Object.values(schedules) as { Properties: Json }[];
    expect(Object.keys(schedules)).toHaveLength(1);
    expect(schedule?.Properties).toMatchObject({
      Name: "gitops-failover-payments-readiness",
      ScheduleExpression: `rate(${rate()} minutes)`,
      State: "ENABLED",
      Target: {
        Arn: { "Fn::GetAtt": [fnId("Readiness"), "Arn"] },
        Input: "{}",
        RetryPolicy: { MaximumRetryAttempts: 0 },
      },
    });
    if (!schedule) throw new Error("no schedule");
    const target = schedule.Properties.Target as { RoleArn: { "Fn::GetAtt": string[] } };
    const roleId = target.RoleArn["Fn::GetAtt"][0] ?? "";
    const role = propsOf(roleId) as {
      AssumeRolePolicyDocument: { Statement: Json[] };
      Policies: { PolicyDocument: { Statement: Json[] } }[];
    };
    expect(role.AssumeRolePolicyDocument.Statement[0]).toMatchObject({
      Principal: { Service: "scheduler.amazonaws.com" },
    });
    expect(role.Policies.flatMap((p) => p.PolicyDocument.Statement)).toEqual([
      {
        Action: "lambda:InvokeFunction",
        Effect: "Allow",
        Resource: { "Fn::GetAtt": [fnId("Readiness"), "Arn"] },
      },
    ]);
  });

  it("alarms to the topic per region after two evaluations with TargetReady 0, on the dimensions the function emits", () => {
    const topic = { Ref: logicalId(stack, stack.topic) };
    for (const region of Object.keys(synth.settings.topology.regions)) {
      template.hasResourceProperties("AWS::CloudWatch::Alarm", {
        AlarmName: `gitops-failover-payments-${region}-not-ready`,
        Namespace: METRICS_NAMESPACE,
        MetricName: "TargetReady",
        Dimensions: Match.arrayWith([
          { Name: "Platform", Value: "payments" },
          { Name: "Region", Value: region },
          { Name: "service", Value: "gitops-failover" },
        ]),
        Statistic: "Minimum",
        Period: rate() * 60,
        Threshold: 1,
        ComparisonOperator: "LessThanThreshold",
        EvaluationPeriods: 2,
        DatapointsToAlarm: 2,
        AlarmActions: [topic],
        OKActions: [topic],
      });
    }
    template.hasResourceProperties("AWS::CloudWatch::Alarm", {
      AlarmName: "gitops-failover-payments-readiness-failing",
      MetricName: "Errors",
      TreatMissingData: "breaching",
      AlarmActions: [topic],
    });
  });

  it("alarms to the topic per region on the first evaluation an old region answers while not fenced", () => {
    const topic = { Ref: logicalId(stack, stack.topic) };
    for (const region of Object.keys(synth.settings.topology.regions)) {
      template.hasResourceProperties("AWS::CloudWatch::Alarm", {
        AlarmName: `gitops-failover-payments-${region}-not-fenced`,
        Namespace: METRICS_NAMESPACE,
        MetricName: "OldRegionUnfenced",
        Dimensions: Match.arrayWith([
          { Name: "Platform", Value: "payments" },
          { Name: "Region", Value: region },
        ]),
        Statistic: "Maximum",
        Threshold: 1,
        ComparisonOperator: "GreaterThanOrEqualToThreshold",
        EvaluationPeriods: 1,
        DatapointsToAlarm: 1,
        TreatMissingData: "notBreaching",
        AlarmActions: [topic],
      });
    }
  });

  it("lets CloudWatch publish the alarms with the topic's key, and gives the function its namespace and orchestrator regions", () => {
    const key = Object.values(template.findResources("AWS::KMS::Key"))[0] as {
      Properties: { KeyPolicy: { Statement: Json[] } };
    };
    expect(key.Properties.KeyPolicy.Statement).toContainEqual(
      expect.objectContaining({
        Action: ["kms:Decrypt", "kms:GenerateDataKey"],
        Principal: { Service: "cloudwatch.amazonaws.com" },
      }),
    );
    const env = (functionOf("Readiness").Environment as { Variables: Json }).Variables;
    expect(env).toMatchObject({
      ORCHESTRATOR_REGIONS: synth.settings.orchestratorRegions.join(","),
    });
    expect(functionOf("Readiness")).toMatchObject({
      FunctionName: "gitops-failover-payments-readiness",
      Timeout: synth.settings.topology.readiness.timeoutSeconds + 60,
    });
  });
});

describe("alarm relay", () => {
  it("forwards to the trigger exactly the us-east-1 alarms routed to this region", () => {
    const [west, east] = synth.deployment.orchestrators;
    const relayed = (s: OrchestratorStack | undefined) => {
      if (!s) return [];
      const rules = Object.values(
        synth.template(s).toJSON().Resources as Record<string, Json>,
      ).filter((r) => r.Type === "AWS::Events::Rule");
      expect(rules).toHaveLength(1);
      const props = rules[0]?.Properties as Json;
      expect(props.Targets).toEqual([
        expect.objectContaining({ Arn: { "Fn::GetAtt": [fnId("Trigger", s), "Arn"] } }),
      ]);
      const pattern = props.EventPattern as {
        detail: { alarmName: string[]; state: Json };
        region: string[];
      };
      expect(pattern.region).toEqual(["us-east-1"]);
      expect(pattern.detail.state).toEqual({ value: ["ALARM"] });
      return pattern.detail.alarmName;
    };
    expect(relayed(west)).toEqual([
      alarmName("payments", "us-east-2"),
      alarmName("payments", "eu-west-1"),
    ]);
    expect(relayed(east)).toEqual([alarmName("payments", "us-west-2")]);
  });
});

describe("dashboard", () => {
  type Widget = {
    type: string;
    properties: { title?: string; metrics?: unknown[][]; region?: string };
  };
  let widgets: Widget[];
  beforeAll(() => {
    const body = propsOf(logicalId(stack, stack.dashboard.dashboard)).DashboardBody as {
      "Fn::Join": [string, unknown[]];
    };
    const text = body["Fn::Join"][1].map((p) => (typeof p === "string" ? p : "<ref>")).join("");
    widgets = (JSON.parse(text) as { widgets: Widget[] }).widgets;
  });
  const widget = (title: RegExp) => {
    const w = widgets.find((x) => title.test(x.properties.title ?? ""));
    if (!w) throw new Error(`no widget titled ${title}`);
    return w;
  };
  /** The metric names (and first dimension values) a widget plots. */
  const plotted = (w: Widget) =>
    (w.properties.metrics ?? []).map((m) => m.filter((x) => typeof x === "string").join(" "));

  it("is named per platform and region, and its console URL is a stack output", () => {
    template.hasResourceProperties("AWS::CloudWatch::Dashboard", {
      DashboardName: "gitops-failover-payments-us-west-2",
    });
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.DashboardUrl?.Value).toBe(
      "https://us-west-2.console.aws.amazon.com/cloudwatch/home?region=us-west-2#dashboards/dashboard/gitops-failover-payments-us-west-2",
    );
  });

  it("charts executions by status from the state machine's own metrics", () => {
    const lines = plotted(widget(/^Executions by status/));
    for (const m of [
      "ExecutionsStarted",
      "ExecutionsSucceeded",
      "ExecutionsFailed",
      "ExecutionsAborted",
      "ExecutionsTimedOut",
    ])
      expect(
        lines.some((l) => l.startsWith(`AWS/States ${m} StateMachineArn`)),
        m,
      ).toBe(true);
  });

  it("charts the RTO and readiness per target region, and each step's p50 and p90, with the functions' metric names", () => {
    const regions = Object.keys(synth.settings.topology.regions);
    expect(plotted(widget(/^RTO/))).toEqual(
      regions.map((r) => `GitopsFailover RTOSeconds Platform payments TargetRegion ${r}`),
    );
    expect(plotted(widget(/^Readiness/))).toEqual(
      // On the readiness function's own dimensions, as its alarms use them.
      regions.map(
        (r) => `GitopsFailover TargetReady Platform payments Region ${r} service gitops-failover`,
      ),
    );
    for (const p of ["p50", "p90"]) {
      const w = widget(new RegExp(`^Step duration .*${p}`));
      expect(plotted(w)).toContain(
        "GitopsFailover StepSeconds Platform payments Step AwaitArgoSync",
      );
      expect(JSON.stringify(w.properties.metrics)).toContain(`"stat":"${p}"`);
    }
  });

  it("charts every trigger decision kind and each region's Route 53 health check from us-east-1", () => {
    const decisions = plotted(widget(/^Trigger decisions/));
    expect(decisions).toContain(
      "GitopsFailover TriggerDecisions Decision started Platform payments",
    );
    expect(decisions).toContain(
      "GitopsFailover TriggerDecisions Decision kill-switch-on Platform payments",
    );
    const health = widget(/^Route 53 health check/);
    const ids = Object.values(synth.settings.topology.regions).map((r) => r.route53.healthCheckId);
    expect(plotted(health)).toEqual(
      ids.map((id) => `AWS/Route53 HealthCheckStatus HealthCheckId ${id}`),
    );
    expect(JSON.stringify(health.properties.metrics)).toContain('"region":"us-east-1"');
  });
});

describe("cdk-nag", () => {
  it("finds nothing unacknowledged under AwsSolutions (synth would have failed)", () => {
    expect(new AwsSolutionsChecks().validateScope(synth.app)).toEqual({
      success: true,
      violations: [],
    });
  });

  it("every acknowledgment carries a reason, and the list of them is the reviewed one", () => {
    const acknowledged: Record<string, string> = {};
    for (const c of stack.node.findAll()) {
      for (const entry of c.node.metadata.filter((m) => m.type === "aws:cdk:acknowledged-rules")) {
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
          acknowledged[
            `${c.node.path.slice(stack.node.path.length + 1)}: ${id.replace(/^Annotation::/, "")}`
          ] = reason;
        }
      }
    }
    for (const [id, reason] of Object.entries(acknowledged))
      expect(reason.length, id).toBeGreaterThan(40);
    expect(Object.keys(acknowledged).sort()).toMatchSnapshot();
  });
});

describe("snapshot", () => {
  it("matches, with asset hashes and the code-derived parts normalized", () => {
    const json = template.toJSON() as { Resources: Record<string, Json> };
    for (const r of Object.values(json.Resources)) {
      const props = (r.Properties ?? {}) as Json;
      if (r.Type === "AWS::Lambda::Function") props.Code = "<bundle>";
      if (r.Type === "AWS::StepFunctions::StateMachine")
        props.DefinitionString = "<statemachine/failover.asl.json>";
      if (
        r.Type === "AWS::IAM::Role" &&
        String(props.Description ?? "").includes("exactly the AWS calls")
      ) {
        props.Policies = "<derived from the code: see iam.test.ts>";
      }
      if (r.Type === "AWS::Lambda::Function") {
        const env = props.Environment as { Variables: unknown };
        env.Variables = Object.keys(env.Variables as Json).sort();
      }
    }
    expect(json).toMatchSnapshot();
  });
});
