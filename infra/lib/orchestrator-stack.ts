/**
 * The failover orchestrator of one region: the Standard state machine from
 * statemachine/failover.asl.json, one function per Task state, the trigger, the audit trail and
 * lock table, the report bucket, the notification topic, the operators' managed policy and the
 * CloudWatch dashboard.
 * Self-contained, so a second region can run its own copy when the first region is the one
 * failing.
 */
import {
  CfnOutput,
  Duration,
  RemovalPolicy,
  Stack,
  type StackProps,
  Validations,
} from "aws-cdk-lib";
import { AttributeType, BillingMode, Table, TableEncryption } from "aws-cdk-lib/aws-dynamodb";
import { Rule } from "aws-cdk-lib/aws-events";
import { LambdaFunction } from "aws-cdk-lib/aws-events-targets";
import { ManagedPolicy, PolicyStatement } from "aws-cdk-lib/aws-iam";
import { Key, KeySpec, KeyUsage } from "aws-cdk-lib/aws-kms";
import { type FunctionUrl, FunctionUrlAuthType, type IDestination } from "aws-cdk-lib/aws-lambda";
import { LogGroup, RetentionDays } from "aws-cdk-lib/aws-logs";
import {
  BlockPublicAccess,
  Bucket,
  BucketEncryption,
  ObjectLockRetention,
  ObjectOwnership,
  StorageClass,
} from "aws-cdk-lib/aws-s3";
import { Topic } from "aws-cdk-lib/aws-sns";
import { StringParameter } from "aws-cdk-lib/aws-ssm";
import {
  DefinitionBody,
  LogLevel,
  StateMachine,
  StateMachineType,
} from "aws-cdk-lib/aws-stepfunctions";
import type { Construct } from "constructs";
import { FUNCTIONS, placeholderOf, type SecretKind, timeoutOf } from "../../functions/catalog.ts";
import { aslText, placeholders } from "../../statemachine/definition.ts";
import {
  type AccessTargets,
  accessPlan,
  acknowledgeWildcards,
  OPERATOR_ACTIONS,
  stateMachineArnOf,
} from "./access.ts";
import { functionBundling } from "./bundling.ts";
import { FailoverDashboard } from "./dashboard.ts";
import { FailoverFunction } from "./failover-function.ts";
import {
  alarmName,
  approverFunctionName,
  HEALTH_REGION,
  namePrefix,
  readinessFunctionName,
  stateMachineName,
  triggerFunctionName,
} from "./naming.ts";
import { READINESS, ReadinessSignals, readinessTimeoutSeconds } from "./readiness.ts";
import type { FunctionAccess } from "./sdk-access.ts";
import type { Settings } from "./settings.ts";

/** The trigger is not a Task state; it shares everything else with the step functions. */
export const TRIGGER = {
  name: "Trigger",
  entry: "functions/trigger/handler.ts",
  timeoutSeconds: 60,
  secrets: [] as readonly SecretKind[],
} as const;

/** The approval entry point: a function URL with AWS_IAM auth (functions/lib/approver.ts). */
export const APPROVER = {
  name: "Approver",
  entry: "functions/approver/handler.ts",
  timeoutSeconds: 30,
  secrets: [] as readonly SecretKind[],
} as const;

/** Memory per function (MB): CPU scales with it, and init time with CPU. */
const MEMORY_MB: Readonly<Record<string, number>> = {
  /** isomorphic-git clones and parses packfiles in memory (all three commit). */
  CommitRetarget: 1024,
  DemoteSource: 1024,
  Compensate: 1024,
  /** A clone, and every check of every target at once. */
  Readiness: 1024,
};
const DEFAULT_MEMORY_MB = 512;

export interface OrchestratorStackProps extends StackProps {
  settings: Settings;
  /** Per function (state name, or `Trigger`): the SDK calls derived from its bundle. */
  access: Map<string, FunctionAccess>;
  /** Endpoint regions whose health alarms this orchestrator handles (see alarmRoutes). */
  alarmRegions: string[];
}

export class OrchestratorStack extends Stack {
  readonly stateMachine: StateMachine;
  /** Every function by state name (and `Trigger`). */
  readonly functions: Map<string, FailoverFunction>;
  readonly table: Table;
  readonly bucket: Bucket;
  /** The asymmetric key that signs the audit anchors. */
  readonly signingKey: Key;
  /** The approval entry point (AWS_IAM auth): `approve` / `reject` call it with SigV4. */
  readonly approvalUrl: FunctionUrl;
  readonly topic: Topic;
  /** What operators attach to run the CLI against this orchestrator (README, Deploy to AWS, step 6). */
  readonly operatorPolicy: ManagedPolicy;
  readonly dashboard: FailoverDashboard;
  /** The readiness schedule and alarms. */
  readonly readiness: ReadinessSignals;

  constructor(scope: Construct, id: string, props: OrchestratorStackProps) {
    super(scope, id, props);
    const { topology } = props.settings;
    const machineName = stateMachineName(topology.platform);

    const key = new Key(this, "DataKey", {
      description: `gitops-failover ${topology.platform}: audit trail and notifications`,
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Signs the audit anchors (functions/lib/anchor.ts): only Report and RecordFailure may use
    // it to sign, operators to verify, so a rewritten chain cannot be re-anchored.
    this.signingKey = new Key(this, "AuditSigningKey", {
      description: `gitops-failover ${topology.platform}: signs the audit trail's anchors`,
      keySpec: KeySpec.ECC_NIST_P256,
      keyUsage: KeyUsage.SIGN_VERIFY,
      alias: `alias/${namePrefix(topology.platform)}-audit`,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.signingKey).acknowledge({
      id: "AwsSolutions-KMS5",
      reason:
        "KMS rotates only symmetric encryption keys; an asymmetric signing key cannot have rotation enabled, and old anchors must stay verifiable with it",
    });

    this.table = new Table(this, "AuditTrail", {
      partitionKey: { name: "pk", type: AttributeType.STRING },
      sortKey: { name: "sk", type: AttributeType.STRING },
      billingMode: BillingMode.PAY_PER_REQUEST,
      encryption: TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // Object Lock: no one who can write the bucket can overwrite or delete a report version
    // before its retention ends (compliance: not even the root user; governance: only with
    // s3:BypassGovernanceRetention). The anchor records each object's version id.
    const { reportLock } = props.settings;
    this.bucket = new Bucket(this, "Reports", {
      versioned: true,
      objectLockEnabled: true,
      objectLockDefaultRetention:
        reportLock.mode === "compliance"
          ? ObjectLockRetention.compliance(Duration.days(reportLock.retentionDays))
          : ObjectLockRetention.governance(Duration.days(reportLock.retentionDays)),
      encryption: BucketEncryption.S3_MANAGED,
      blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
      objectOwnership: ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          id: "reports",
          abortIncompleteMultipartUploadAfter: Duration.days(7),
          transitions: [
            { storageClass: StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(90) },
          ],
          noncurrentVersionExpiration: Duration.days(365),
        },
      ],
    });
    Validations.of(this.bucket).acknowledge({
      id: "AwsSolutions-S1",
      reason:
        "reports are written only by the orchestrator's roles and read by operators; access is audited by CloudTrail, and a separate access-log bucket would need this same exception",
    });

    this.topic = new Topic(this, "Notifications", {
      displayName: `gitops-failover ${topology.platform}`,
      masterKey: key,
      enforceSSL: true,
    });

    const killSwitch = new StringParameter(this, "KillSwitch", {
      parameterName: topology.trigger.killSwitchParameter,
      stringValue: "off",
      description:
        'Set to "on" to stop automatic failovers from the health-check trigger (manual ones still run)',
    });

    const targets: AccessTargets = {
      stack: this,
      topology,
      tableArn: this.table.tableArn,
      keyArn: key.keyArn,
      signingKeyArn: this.signingKey.keyArn,
      bucketArn: this.bucket.bucketArn,
      topicArn: this.topic.topicArn,
      stateMachineName: machineName,
      killSwitchParameterArn: killSwitch.parameterArn,
      orchestratorRegions: props.settings.orchestratorRegions,
    };
    const bundling = functionBundling(JSON.stringify(topology));
    const machineArn = stateMachineArnOf(targets);
    const make = (
      name: string,
      entry: string,
      timeoutSeconds: number,
      secrets: readonly SecretKind[],
      extra: {
        functionName?: string;
        serviceActions?: string[];
        environment?: Record<string, string>;
      } = {},
    ) => {
      const access = props.access.get(name);
      if (!access) throw new Error(`no derived SDK access for ${name} (${entry})`);
      return new FailoverFunction(this, name, {
        step: name,
        entry,
        timeoutSeconds,
        memoryMb: MEMORY_MB[name] ?? DEFAULT_MEMORY_MB,
        access,
        secrets,
        targets,
        bundling,
        ...extra,
        environment: {
          ...resourceEnvironment(access.actions.concat(extra.serviceActions ?? []), {
            AUDIT_TABLE: this.table.tableName,
            TOPIC_ARN: this.topic.topicArn,
            REPORT_BUCKET: this.bucket.bucketName,
            STATE_MACHINE_ARN: machineArn,
            AUDIT_SIGNING_KEY: this.signingKey.keyArn,
          }),
          ...extra.environment,
        },
      });
    };

    this.functions = new Map(
      FUNCTIONS.map((f) => [
        f.state,
        make(f.state, `functions/${f.dir}/handler.ts`, timeoutOf(f, topology), f.secrets),
      ]),
    );

    const substitutions = Object.fromEntries(
      FUNCTIONS.map((f) => [
        placeholderOf(f.state),
        this.functions.get(f.state)?.function.functionArn ?? "",
      ]),
    );
    const definition = aslText();
    const wanted = placeholders(definition);
    const given = Object.keys(substitutions).sort();
    if (wanted.join() !== given.join()) {
      throw new Error(
        `ASL placeholders (${wanted.join(", ")}) do not match the functions (${given.join(", ")})`,
      );
    }

    const executionLogs = new LogGroup(this, "ExecutionLogs", {
      logGroupName: `/aws/vendedlogs/states/${machineName}`,
      retention: RetentionDays.ONE_YEAR,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.stateMachine = new StateMachine(this, "Failover", {
      stateMachineName: machineName,
      stateMachineType: StateMachineType.STANDARD,
      definitionBody: DefinitionBody.fromString(definition),
      definitionSubstitutions: substitutions,
      logs: { destination: executionLogs, level: LogLevel.ALL, includeExecutionData: true },
      tracingEnabled: true,
    });
    this.stateMachine.addToRolePolicy(
      new PolicyStatement({
        actions: ["lambda:InvokeFunction"],
        resources: [...this.functions.values()].map((f) => f.function.functionArn),
      }),
    );
    Validations.of(this.stateMachine).acknowledge({
      id: "AwsSolutions-IAM5[Resource::*]",
      reason:
        "CloudWatch Logs delivery (logs:*LogDelivery*, resource policies) and X-Ray tracing (xray:Put*) have no resource-level permissions; Step Functions needs them for logging ALL and tracing",
    });

    /** Lambda retries a failed asynchronous (EventBridge) invocation, then tells the operators. */
    const toOperators: IDestination = { bind: () => ({ destination: this.topic.topicArn }) };
    const trigger = make(TRIGGER.name, TRIGGER.entry, TRIGGER.timeoutSeconds, TRIGGER.secrets, {
      functionName: triggerFunctionName(topology.platform),
      serviceActions: ["sns:Publish"],
    });
    trigger.function.configureAsyncInvoke({
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
      onFailure: toOperators,
    });
    this.functions.set(TRIGGER.name, trigger);

    const readiness = make(
      READINESS.name,
      READINESS.entry,
      readinessTimeoutSeconds(topology),
      READINESS.secrets,
      {
        functionName: readinessFunctionName(topology.platform),
        // Its metrics are EMF on stdout (no PutMetricData), in the orchestrator's namespace.
        environment: {
          ORCHESTRATOR_REGIONS: props.settings.orchestratorRegions.join(","),
        },
      },
    );
    this.functions.set(READINESS.name, readiness);

    const approver = make(
      APPROVER.name,
      APPROVER.entry,
      APPROVER.timeoutSeconds,
      APPROVER.secrets,
      {
        functionName: approverFunctionName(topology.platform),
        environment: { STATE_MACHINE_ARN: machineArn },
      },
    );
    this.functions.set(APPROVER.name, approver);
    // AWS_IAM: Lambda verifies the caller's SigV4 signature and passes the principal on.
    this.approvalUrl = approver.function.addFunctionUrl({ authType: FunctionUrlAuthType.AWS_IAM });
    this.readiness = new ReadinessSignals(this, "ReadinessSignals", {
      topology,
      fn: readiness.function,
      topic: this.topic,
      key,
    });

    if (props.alarmRegions.length && this.region !== HEALTH_REGION) {
      new Rule(this, "HealthAlarmRelay", {
        description: `gitops-failover ${topology.platform}: health alarms forwarded from ${HEALTH_REGION} to the trigger`,
        eventPattern: {
          source: ["aws.cloudwatch"],
          detailType: ["CloudWatch Alarm State Change"],
          region: [HEALTH_REGION],
          detail: {
            alarmName: props.alarmRegions.map((r) => alarmName(topology.platform, r)),
            state: { value: ["ALARM"] },
          },
        },
        targets: [
          new LambdaFunction(trigger.function, {
            retryAttempts: 8,
            maxEventAge: Duration.hours(1),
          }),
        ],
      });
    }

    const operator = accessPlan([...OPERATOR_ACTIONS], targets);
    this.operatorPolicy = new ManagedPolicy(this, "OperatorPolicy", {
      description: `gitops-failover ${topology.platform} operators in ${this.region}: start, watch, approve, reject and stop failovers, read reports, verify the audit trail`,
      statements: operator.grants.map((g) => g.statement),
    });
    acknowledgeWildcards(this.operatorPolicy, "OperatorPolicy", operator.grants);

    this.dashboard = new FailoverDashboard(this, "Observability", {
      topology,
      stateMachine: this.stateMachine,
    });

    const [, standby] = Object.entries(topology.regions).sort(
      ([, a], [, b]) => a.priority - b.priority,
    );
    const example = {
      targetRegion: standby?.[0] ?? "",
      reason: "...",
      mode: "graceful",
      dryRun: true,
    };
    new CfnOutput(this, "StateMachineArn", { value: this.stateMachine.stateMachineArn });
    new CfnOutput(this, "StartExecutionUrl", {
      description: `Open, press "Start execution" and give an input such as ${JSON.stringify(example)}`,
      value: `https://${this.region}.console.aws.amazon.com/states/home?region=${this.region}#/statemachines/view/${this.stateMachine.stateMachineArn}`,
    });
    new CfnOutput(this, "ReportBucketName", { value: this.bucket.bucketName });
    new CfnOutput(this, "NotificationTopicArn", { value: this.topic.topicArn });
    new CfnOutput(this, "AuditTableName", { value: this.table.tableName });
    new CfnOutput(this, "ApprovalUrl", {
      description:
        "The approval entry point (AWS_IAM auth): set GITOPS_FAILOVER_APPROVAL_URL to it for `gitops-failover approve` / `reject`",
      value: this.approvalUrl.url,
    });
    new CfnOutput(this, "AuditSigningKeyArn", {
      description:
        "Signs the audit anchors: `gitops-failover audit public-key --key-id <this>` exports its public key for `audit verify --public-key`",
      value: this.signingKey.keyArn,
    });
    new CfnOutput(this, "KillSwitchParameterName", { value: killSwitch.parameterName });
    new CfnOutput(this, "DashboardUrl", {
      description:
        "The CloudWatch dashboard: executions, RTO, step durations, trigger decisions, health checks, readiness",
      value: this.dashboard.url,
    });
    new CfnOutput(this, "OperatorPolicyArn", {
      description:
        "Attach to the operators' role: the gitops-failover CLI (start, status, watch, approve, reject, list, report, audit verify) and StopExecution against this orchestrator",
      value: this.operatorPolicy.managedPolicyArn,
    });
  }
}

/**
 * The shared variables plus, for each resource, its variable exactly when the function may
 * use the resource: the code finds a resource by its variable, so a variable without the grant
 * (or the reverse) would be a bug waiting for a failover.
 */
function resourceEnvironment(
  actions: string[],
  values: {
    AUDIT_TABLE: string;
    TOPIC_ARN: string;
    REPORT_BUCKET: string;
    STATE_MACHINE_ARN: string;
    AUDIT_SIGNING_KEY: string;
  },
): Record<string, string> {
  const uses = (prefix: string) => actions.some((a) => a.startsWith(prefix));
  return {
    AUDIT_TABLE: values.AUDIT_TABLE,
    ...(uses("sns:") ? { TOPIC_ARN: values.TOPIC_ARN } : {}),
    ...(uses("s3:") ? { REPORT_BUCKET: values.REPORT_BUCKET } : {}),
    ...(uses("states:StartExecution") ? { STATE_MACHINE_ARN: values.STATE_MACHINE_ARN } : {}),
    ...(uses("kms:Sign") ? { AUDIT_SIGNING_KEY: values.AUDIT_SIGNING_KEY } : {}),
  };
}
