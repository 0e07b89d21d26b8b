/**
 * One Lambda of the orchestrator: bundled from its handler with the shared esbuild options, with
 * its own log group and a role that allows exactly the calls its code makes (derived, see
 * sdk-access.ts) on exactly the resources access.ts scopes them to — and nothing else.
 */
import { join } from "node:path";
import { Duration, Validations } from "aws-cdk-lib";
import { PolicyDocument, PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Architecture, Runtime, Tracing } from "aws-cdk-lib/aws-lambda";
import { type BundlingOptions, NodejsFunction } from "aws-cdk-lib/aws-lambda-nodejs";
import { LogGroup, RetentionDays } from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import type { SecretKind } from "../../functions/catalog.ts";
import {
  type AccessTargets,
  accessPlan,
  acknowledgeWildcards,
  type MemberGrant,
  memberGrants,
} from "./access.ts";
import { functionRoleName } from "./naming.ts";
import { type FunctionAccess, REPO_ROOT } from "./sdk-access.ts";

/** What the Lambda runtime itself writes with the role: its logs. */
const RUNTIME_LOG_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"] as const;
/** What Lambda active tracing sends with the role: the X-Ray segments (access.ts says why on "*"). */
export const TRACING_ACTIONS = ["xray:PutTelemetryRecords", "xray:PutTraceSegments"] as const;

export interface FailoverFunctionProps {
  /** The ASL state it serves, or `Trigger`. */
  step: string;
  /** Handler file relative to the repository root. */
  entry: string;
  functionName?: string;
  timeoutSeconds: number;
  memoryMb: number;
  /** Variables beyond the shared ones (`POWERTOOLS_SERVICE_NAME`, `LOG_LEVEL`). */
  environment: Record<string, string>;
  /** The SDK calls derived from the function's bundle. */
  access: FunctionAccess;
  /** The kinds of secret its code reads (functions/catalog.ts). */
  secrets: readonly SecretKind[];
  /** Calls the Lambda service makes with the role on the function's behalf (e.g. an async failure destination). */
  serviceActions?: string[];
  targets: AccessTargets;
  bundling: BundlingOptions;
}

export class FailoverFunction extends Construct {
  readonly function: NodejsFunction;
  readonly role: Role;
  /** Actions granted for the code and the service (key use, logs and traces not included). */
  readonly grantedActions: string[];
  /** Derived actions not granted because the topology has nothing for them to act on. */
  readonly omittedActions: string[];
  /**
   * Per role it assumes in another account, what its code does there: the member account's
   * role must allow exactly these, and trust `roleArn` below.
   */
  readonly memberGrants: Map<string, MemberGrant[]>;
  /** The role's ARN as another account's trust policy names it (set when it assumes any role). */
  readonly roleArn?: string;

  constructor(scope: Construct, id: string, props: FailoverFunctionProps) {
    super(scope, id);
    const logGroup = new LogGroup(this, "Logs", { retention: RetentionDays.THREE_MONTHS });
    let plan: ReturnType<typeof accessPlan>;
    try {
      plan = accessPlan(
        [...props.access.actions, ...(props.serviceActions ?? []), ...TRACING_ACTIONS],
        props.targets,
        { secrets: props.secrets },
      );
    } catch (e) {
      throw new Error(`${props.step} (${props.entry}): ${e instanceof Error ? e.message : e}`, {
        cause: e,
      });
    }
    this.omittedActions = plan.omitted;
    this.memberGrants = memberGrants(
      [...props.access.actions, ...(props.serviceActions ?? [])],
      props.targets,
      { secrets: props.secrets },
    );
    const stack = props.targets.stack;
    const roleName = this.memberGrants.size
      ? functionRoleName(props.targets.topology.platform, props.step, stack.region)
      : undefined;
    this.grantedActions = [...new Set([...props.access.actions, ...(props.serviceActions ?? [])])]
      .filter((a) => !plan.omitted.includes(a))
      .sort();

    this.role = new Role(this, "Role", {
      ...(roleName ? { roleName } : {}),
      assumedBy: new ServicePrincipal("lambda.amazonaws.com"),
      description: `gitops-failover ${props.step}: exactly the AWS calls its code makes`,
      inlinePolicies: {
        Access: new PolicyDocument({
          statements: [
            new PolicyStatement({
              actions: [...RUNTIME_LOG_ACTIONS],
              resources: [logGroup.logGroupArn],
            }),
            ...plan.grants.map((g) => g.statement),
          ],
        }),
      },
    });
    acknowledgeWildcards(this.role, props.step, plan.grants);
    if (roleName) {
      const account = props.targets.topology.orchestratorAccount ?? stack.account;
      const partition = [...this.memberGrants.keys()][0]?.split(":")[1] ?? "aws";
      this.roleArn = `arn:${partition}:iam::${account}:role/${roleName}`;
    }

    this.function = new NodejsFunction(this, "Function", {
      entry: join(REPO_ROOT, props.entry),
      handler: "handler",
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, "package-lock.json"),
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memoryMb,
      timeout: Duration.seconds(props.timeoutSeconds),
      description: `gitops-failover ${props.step}`,
      ...(props.functionName ? { functionName: props.functionName } : {}),
      // CDK's own tracing grant is dropped: the derived policy above holds it, acknowledged.
      role: this.role.withoutPolicyUpdates(),
      tracing: Tracing.ACTIVE,
      logGroup,
      environment: {
        POWERTOOLS_SERVICE_NAME: "gitops-failover",
        LOG_LEVEL: "INFO",
        ...props.environment,
      },
      bundling: props.bundling,
    });
    Validations.of(this.function).acknowledge({
      id: "AwsSolutions-L1",
      reason:
        "Node.js 22 is the project's runtime decision (DESIGN.md): the code and its tests run on Node 22",
    });
  }
}
