/**
 * Least privilege for the functions (and the operators): each IAM action a function's code sends
 * (see sdk-access.ts) is granted only on the resources the topology and the orchestrator stack
 * name for it. An action with no scope here fails the synth, so a new SDK call in the code is a
 * conscious IAM decision, never a silent wildcard.
 */
import { ArnFormat, Stack, Validations } from "aws-cdk-lib";
import { Effect, PolicyStatement } from "aws-cdk-lib/aws-iam";
import { flattenCfnReference } from "cdk-nag/lib/utils/flatten-cfn-reference.js";
import type { IConstruct } from "constructs";
import type { SecretKind } from "../../functions/catalog.ts";
import { regionOfArn } from "../../functions/lib/aws.ts";
import {
  accountOfArn,
  auroraRole,
  type RoleAccess,
  roleOf,
  secretRole,
  type Topology,
} from "../../functions/lib/config.ts";
import { replicaArn } from "../../functions/lib/secrets.ts";
import { approverFunctionName, readinessFunctionName } from "./naming.ts";

/** The resources of one orchestrator that grants point at. */
export interface AccessTargets {
  stack: Stack;
  topology: Topology;
  tableArn: string;
  /** The customer-managed key of the table and the topic. */
  keyArn: string;
  /** The asymmetric key (ECC_NIST_P256, SIGN_VERIFY) that signs the audit anchors. */
  signingKeyArn: string;
  bucketArn: string;
  topicArn: string;
  /** Named, not referenced: a step function's grant must not depend on the state machine that invokes it. */
  stateMachineName: string;
  killSwitchParameterArn: string;
  /** Every region running an orchestrator: readiness checks the secret replicas in each. */
  orchestratorRegions: string[];
}

type Conditions = Record<string, Record<string, string | string[]>>;

/** Where one action may act: resource ARNs, plus conditions where the service has useful keys. */
interface Scope {
  resources: string[];
  conditions?: Conditions;
}

/** Who a grant is for: what of the topology its code reads beyond the actions themselves. */
export interface Grantee {
  /** The kinds of secret it reads (functions/catalog.ts); GetSecretValue is scoped to these. */
  secrets: readonly SecretKind[];
}

/** Actions that have no resource-level permissions, granted on "*" — with why, for cdk-nag. */
const UNSCOPED_ACTIONS: Readonly<Record<string, string>> = {
  "cloudwatch:GetMetricData":
    "cloudwatch:GetMetricData has no resource-level permissions; it reads the Aurora RPO lag metrics before an ungraceful failover, and the source writer's ServerlessDatabaseCapacity (capacity parity)",
  "xray:PutTraceSegments":
    "xray:PutTraceSegments has no resource-level permissions (Service Authorization Reference, AWS X-Ray); Lambda active tracing sends the function's segments with its role",
  "xray:PutTelemetryRecords":
    "xray:PutTelemetryRecords has no resource-level permissions (Service Authorization Reference, AWS X-Ray); Lambda active tracing reports the X-Ray telemetry with the function's role",
  "states:SendTaskSuccess":
    "states:SendTaskSuccess has no resource-level permissions; the task token is the capability, and only the approver function (behind its IAM-authenticated URL) holds this, reading the token from the orchestrator's own executions",
  "states:SendTaskFailure":
    "states:SendTaskFailure has no resource-level permissions; the task token is the capability, and only the approver function (behind its IAM-authenticated URL) holds this, reading the token from the orchestrator's own executions",
};

/** Why an object-level or execution-level wildcard is as narrow as the resource allows. */
const WILDCARD_REASONS: Readonly<Record<string, string>> = {
  "s3:PutObject":
    "report objects are keyed by execution name under the reports/ prefix of the orchestrator's own bucket",
  "s3:GetObject":
    "report objects are keyed by execution name under the reports/ prefix of the orchestrator's own bucket",
  "states:DescribeExecution":
    "executions are named per incident; the grant covers only executions of the orchestrator's own state machine",
  "states:GetExecutionHistory":
    "executions are named per incident; the grant covers only executions of the orchestrator's own state machine",
  "states:StopExecution":
    "executions are named per incident; the grant covers only executions of the orchestrator's own state machine",
  "rds:DescribeDBInstances":
    "a provisioned cluster's writer instance is named by the cluster (DBClusterMembers), not the topology; the read-only grant covers the DB instances of the member clusters' own regions and accounts",
};

interface TopologyArns {
  partition: string;
  account: string;
}

/** Partition and account of the platform, from the Aurora cluster ARNs the topology names. */
function platformArns(t: Topology): TopologyArns {
  const arn = Object.values(t.regions)[0]?.aurora.clusterArn ?? "";
  const [, partition = "aws", , , account = ""] = arn.split(":");
  return { partition, account };
}

/**
 * Who reaches a resource: the ARN of the role assumed for it (topology `roleArn`), or undefined
 * for the function's own role. Every scope below lists only the resources of one such owner.
 */
type Via = string | undefined;

const via = (role: RoleAccess | undefined): Via => role?.roleArn;

/** The regions whose Aurora calls go through `owner`. */
function auroraRegions(t: Topology, owner: Via): string[] {
  return Object.keys(t.regions).filter((r) => via(auroraRole(t, r)) === owner);
}

function globalClusterArns(t: Topology, owner: Via): string[] {
  const regions = auroraRegions(t, owner);
  if (!regions.length) return [];
  const { partition } = platformArns(t);
  const accounts = new Set(
    regions.map((r) => accountOfArn(t.regions[r]?.aurora.clusterArn ?? "") ?? ""),
  );
  return [...accounts].map(
    (account) =>
      `arn:${partition}:rds::${account}:global-cluster:${t.aurora.globalClusterIdentifier}`,
  );
}

/** A promotion names the target member: every member of the global cluster, for each owner that sends one. */
function promotionArns(t: Topology, owner: Via): string[] {
  const global = globalClusterArns(t, owner);
  return global.length ? [...global, ...memberClusterArns(t, undefined, true)] : [];
}

function memberClusterArns(t: Topology, owner: Via, all = false): string[] {
  return Object.entries(t.regions)
    .filter(([name]) => all || via(auroraRole(t, name)) === owner)
    .map(([, r]) => r.aurora.clusterArn);
}

/** The topology's secret ARNs of each kind. */
function secretArnsOf(t: Topology, kinds: readonly SecretKind[], owner?: Via | null): string[] {
  const of: Record<SecretKind, () => string[]> = {
    git: () => [t.git.credentialsSecretArn],
    argocd: () => t.argocd.hubs.map((h) => h.tokenSecretArn),
    spoke: () => Object.values(t.regions).flatMap((r) => r.spokes.map((s) => s.tokenSecretArn)),
    backup: () => t.argocd.hubs.flatMap((h) => (h.backup ? [h.backup.tokenSecretArn] : [])),
    "git-read": () => (t.git.readCredentialsSecretArn ? [t.git.readCredentialsSecretArn] : []),
  };
  const arns = [...new Set(kinds.flatMap((k) => of[k]()))];
  // null: every secret, whoever reads it; otherwise those read through `owner`.
  return owner === null ? arns : arns.filter((arn) => via(secretRole(t, arn)) === owner);
}

/**
 * The secrets of `kinds`, each with its replica in `region` (functions/lib/secrets.ts reads the
 * replica in the function's own region first, the ARN's region when there is none).
 */
function readableSecretArns(
  t: Topology,
  kinds: readonly SecretKind[],
  region: string,
  owner: Via,
): string[] {
  return [
    ...new Set(
      secretArnsOf(t, kinds, owner).flatMap((arn) =>
        regionOfArn(arn) === region ? [arn] : [arn, replicaArn(arn, region)],
      ),
    ),
  ];
}

/**
 * Every secret of the topology as it is found in each orchestrator region (itself in its own
 * region, its replica elsewhere): what readiness describes to check the replica rule.
 */
function replicaArnsEverywhere(t: Topology, regions: string[], owner: Via): string[] {
  const all = secretArnsOf(t, ["git", "argocd", "spoke", "backup", "git-read"], owner);
  return [...new Set(regions.flatMap((region) => all.map((arn) => replicaArn(arn, region))))];
}

/**
 * The partition keys of the only items a function may delete (functions/lib/lock.ts; a test holds
 * the two together): the platform's lock (released by Report and RecordFailure) and its incident
 * claims (given back by the trigger). The audit events (`exec#...`) and the last-failover marker
 * share the table and are never deletable.
 */
export function deletablePartitionKeys(platform: string): string[] {
  return [`lock#${platform}`, `incident#${platform}`];
}

function endpointGroupArns(t: Topology, owner: Via): string[] {
  return Object.values(t.regions).flatMap((r) =>
    r.globalAccelerator && via(roleOf(r.globalAccelerator)) === owner
      ? [r.globalAccelerator.endpointGroupArn]
      : [],
  );
}

function healthCheckArns(t: Topology, owner: Via): string[] {
  const { partition } = platformArns(t);
  return Object.values(t.regions)
    .filter((r) => via(roleOf(r.route53)) === owner)
    .map((r) => `arn:${partition}:route53:::healthcheck/${r.route53.healthCheckId}`);
}

function hostedZoneArns(t: Topology, owner: Via): string[] {
  const { partition } = platformArns(t);
  const zone = t.traffic.hostedZoneId?.replace(/^\/?hostedzone\//, "");
  return zone && via(roleOf(t.traffic)) === owner
    ? [`arn:${partition}:route53:::hostedzone/${zone}`]
    : [];
}

/** Route 53 compares record names lowercased and without the trailing dot. */
function normalizedRecordName(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}

function executionArns(t: AccessTargets): string {
  return t.stack.formatArn({
    service: "states",
    resource: "execution",
    resourceName: `${t.stateMachineName}:*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

/** The state machine's ARN built from its name (no reference, so no dependency cycle). */
export function stateMachineArnOf(t: AccessTargets): string {
  return t.stack.formatArn({
    service: "states",
    resource: "stateMachine",
    resourceName: t.stateMachineName,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

const onTable = (t: AccessTargets): Scope => ({ resources: [t.tableArn] });
const onExecutions = (t: AccessTargets): Scope => ({ resources: [executionArns(t)] });
const onStateMachine = (t: AccessTargets): Scope => ({ resources: [stateMachineArnOf(t)] });

/**
 * The scope of every action the functions (and the operators) may send. `owner` is who sends it:
 * undefined for the function's own role, else the role assumed in a resource's account; an
 * action on the topology's resources lists only that owner's, the others only the own role's.
 */
const SCOPES: Readonly<Record<string, (t: AccessTargets, g: Grantee, owner: Via) => Scope>> = {
  "secretsmanager:GetSecretValue": (t, g, owner) => ({
    resources: readableSecretArns(t.topology, g.secrets, t.stack.region, owner),
  }),
  /** Metadata only (no value): readiness checks every secret's replica in every orchestrator region. */
  "secretsmanager:DescribeSecret": (t, _, owner) => ({
    resources: replicaArnsEverywhere(t.topology, t.orchestratorRegions, owner),
  }),

  /** Operators answer approvals only through the approver's function URL, and only with SigV4. */
  "lambda:InvokeFunctionUrl": (t) => ({
    resources: [
      t.stack.formatArn({
        service: "lambda",
        resource: "function",
        resourceName: approverFunctionName(t.topology.platform),
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      }),
    ],
    conditions: { StringEquals: { "lambda:FunctionUrlAuthType": "AWS_IAM" } },
  }),

  /** Operators run the readiness function now (`gitops-failover readiness`). */
  "lambda:InvokeFunction": (t) => ({
    resources: [
      t.stack.formatArn({
        service: "lambda",
        resource: "function",
        resourceName: readinessFunctionName(t.topology.platform),
        arnFormat: ArnFormat.COLON_RESOURCE_NAME,
      }),
    ],
  }),

  "rds:DescribeGlobalClusters": (t, _, owner) => ({
    resources: globalClusterArns(t.topology, owner),
  }),
  "rds:SwitchoverGlobalCluster": (t, _, owner) => ({
    resources: promotionArns(t.topology, owner),
  }),
  "rds:FailoverGlobalCluster": (t, _, owner) => ({
    resources: promotionArns(t.topology, owner),
  }),
  "rds:DescribeDBClusters": (t, _, owner) => ({ resources: memberClusterArns(t.topology, owner) }),
  /** Capacity parity: the writer's instance class of a provisioned member (aurora-capacity.ts). */
  "rds:DescribeDBInstances": (t, _, owner) => ({
    resources: memberClusterArns(t.topology, owner).map((arn) =>
      arn.replace(/:cluster:[^:]+$/, ":db:*"),
    ),
  }),
  /** Capacity parity raises (and gives back) a member's MinCapacity only with capacity.aurora.mode raise. */
  "rds:ModifyDBCluster": (t, _, owner) => ({
    resources:
      t.topology.capacity?.aurora?.mode === "raise" ? memberClusterArns(t.topology, owner) : [],
  }),

  /** The Aurora lag metrics are in the clusters' account: "*" for each owner of an Aurora region. */
  "cloudwatch:GetMetricData": (t, _, owner) => ({
    resources: auroraRegions(t.topology, owner).length ? ["*"] : [],
  }),

  "globalaccelerator:DescribeEndpointGroup": (t, _, owner) => ({
    resources: endpointGroupArns(t.topology, owner),
  }),
  "globalaccelerator:UpdateEndpointGroup": (t, _, owner) => ({
    resources: endpointGroupArns(t.topology, owner),
  }),

  "route53:GetHealthCheckStatus": (t, _, owner) => ({
    resources: healthCheckArns(t.topology, owner),
  }),
  "route53:ListResourceRecordSets": (t, _, owner) => ({
    resources: hostedZoneArns(t.topology, owner),
  }),
  "route53:ChangeResourceRecordSets": (t, _, owner) => ({
    resources: hostedZoneArns(t.topology, owner),
    conditions: {
      "ForAllValues:StringEquals": {
        "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
          normalizedRecordName(t.topology.traffic.recordName ?? ""),
        ],
        "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
      },
    },
  }),

  "dynamodb:GetItem": onTable,
  "dynamodb:PutItem": onTable,
  "dynamodb:UpdateItem": onTable,
  /** Only the lock and incident claims: the audit trail shares the table and must stay whole. */
  "dynamodb:DeleteItem": (t) => ({
    resources: [t.tableArn],
    conditions: {
      "ForAllValues:StringEquals": {
        "dynamodb:LeadingKeys": deletablePartitionKeys(t.topology.platform),
      },
    },
  }),
  "dynamodb:Query": onTable,

  "s3:PutObject": (t) => ({ resources: [`${t.bucketArn}/reports/*`] }),
  "s3:GetObject": (t) => ({ resources: [`${t.bucketArn}/reports/*`] }),

  "sns:Publish": (t) => ({ resources: [t.topicArn] }),

  /** Only the anchor's way of signing (anchor.ts): RAW messages, ECDSA_SHA_256. */
  "kms:Sign": (t) => ({
    resources: [t.signingKeyArn],
    conditions: {
      StringEquals: { "kms:SigningAlgorithm": "ECDSA_SHA_256", "kms:MessageType": "RAW" },
    },
  }),
  "kms:Verify": (t) => ({ resources: [t.signingKeyArn] }),
  "kms:GetPublicKey": (t) => ({ resources: [t.signingKeyArn] }),

  "states:StartExecution": onStateMachine,
  "states:ListExecutions": onStateMachine,
  "states:DescribeExecution": onExecutions,
  "states:GetExecutionHistory": onExecutions,
  "states:StopExecution": onExecutions,
  "states:SendTaskSuccess": () => ({ resources: ["*"] }),
  "states:SendTaskFailure": () => ({ resources: ["*"] }),

  "ssm:GetParameter": (t) => ({ resources: [t.killSwitchParameterArn] }),

  "xray:PutTraceSegments": () => ({ resources: ["*"] }),
  "xray:PutTelemetryRecords": () => ({ resources: ["*"] }),
};

/** Key use implied by an action on a resource encrypted with the orchestrator's key. */
const KEY_USE: Readonly<Record<string, { service: string; actions: string[] }>> = {
  "dynamodb:GetItem": { service: "dynamodb", actions: ["kms:Decrypt"] },
  "dynamodb:Query": { service: "dynamodb", actions: ["kms:Decrypt"] },
  "dynamodb:PutItem": {
    service: "dynamodb",
    actions: ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
  },
  "dynamodb:UpdateItem": {
    service: "dynamodb",
    actions: ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
  },
  "dynamodb:DeleteItem": {
    service: "dynamodb",
    actions: ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
  },
  "sns:Publish": { service: "sns", actions: ["kms:Decrypt", "kms:GenerateDataKey"] },
};

/** The actions on resources a topology may place in another account (reached through a role). */
const CROSS_ACCOUNT_SERVICES = new Set([
  "rds",
  "cloudwatch",
  "globalaccelerator",
  "route53",
  "secretsmanager",
]);

/** The scope of an action for these targets; throws for an action nobody has scoped yet. */
function scopeOf(action: string, targets: AccessTargets, grantee: Grantee, owner?: Via): Scope {
  const scope = SCOPES[action];
  if (!scope) {
    throw new Error(
      `no IAM scope known for ${action}: add it to SCOPES in infra/lib/access.ts (the resources it may act on)`,
    );
  }
  if (owner !== undefined && !CROSS_ACCOUNT_SERVICES.has(action.split(":")[0] ?? ""))
    return { resources: [] };
  return scope(targets, grantee, owner);
}

/** Every role the topology names, once each. */
export function topologyRoles(t: Topology): RoleAccess[] {
  const roles = [
    roleOf(t.aurora),
    roleOf(t.traffic),
    roleOf(t.secrets),
    ...Object.values(t.regions).flatMap((r) => [
      roleOf(r.aurora),
      roleOf(r.globalAccelerator),
      roleOf(r.route53),
    ]),
  ].filter((r): r is RoleAccess => r !== undefined);
  return [...new Map(roles.map((r) => [r.roleArn, r])).values()].sort((a, b) =>
    a.roleArn.localeCompare(b.roleArn),
  );
}

/** One action's grant in a member account's role: the resources of that account it acts on. */
export interface MemberGrant {
  action: string;
  resources: string[];
  conditions?: Conditions;
}

/**
 * What the code's `actions` do through each role of the topology: per role ARN, the actions
 * and the resources they act on there (empty when the code never needs that role). The
 * function's role is granted sts:AssumeRole on exactly those roles; the member account's role
 * gets exactly these grants.
 */
export function memberGrants(
  actions: string[],
  targets: AccessTargets,
  grantee: Grantee = { secrets: [] },
): Map<string, MemberGrant[]> {
  const out = new Map<string, MemberGrant[]>();
  for (const role of topologyRoles(targets.topology)) {
    const grants = [...new Set(actions)].sort().flatMap((action) => {
      const scope = scopeOf(action, targets, grantee, role.roleArn);
      return scope.resources.length
        ? [
            {
              action,
              resources: scope.resources,
              ...(scope.conditions ? { conditions: scope.conditions } : {}),
            },
          ]
        : [];
    });
    if (grants.length) out.set(role.roleArn, grants);
  }
  return out;
}

/** Why a member role's action is granted on "*", when it is. */
export function wildcardReasonOf(action: string): string | undefined {
  return UNSCOPED_ACTIONS[action] ?? WILDCARD_REASONS[action];
}

/** The KMS actions the given actions need on the orchestrator's key (sorted, unique). */
function impliedKeyActions(actions: string[]): string[] {
  return [...new Set(actions.flatMap((a) => KEY_USE[a]?.actions ?? []))].sort();
}

/** A granted statement with the wildcard resources it contains and why they are needed. */
export interface Grant {
  statement: PolicyStatement;
  wildcardReasons: string[];
}

/** What a set of actions becomes: statements, and the actions left out for lack of resources. */
export interface AccessPlan {
  grants: Grant[];
  /** Actions whose resources the topology does not have (e.g. Route 53 records in GA mode). */
  omitted: string[];
}

/**
 * Statements granting exactly `actions` (plus the key use they imply), one statement per
 * distinct scope. Actions with nothing to act on in this topology are omitted, not widened.
 * A grantee whose code reads Secrets Manager must name the kinds of secret it reads, and one
 * that names some must read them: the declaration and the code cannot drift apart silently.
 */
export function accessPlan(
  actions: string[],
  targets: AccessTargets,
  grantee: Grantee = { secrets: [] },
): AccessPlan {
  const readsSecrets = actions.includes("secretsmanager:GetSecretValue");
  if (readsSecrets && !grantee.secrets.length) {
    throw new Error(
      "its code reads Secrets Manager but declares no secrets: add the kinds it reads (git, argocd, spoke, backup) to its entry in functions/catalog.ts",
    );
  }
  if (!readsSecrets && grantee.secrets.length) {
    throw new Error(
      `it declares secrets (${grantee.secrets.join(", ")}) in functions/catalog.ts but its code reads none: remove them`,
    );
  }
  const groups = new Map<string, { actions: string[]; scope: Scope }>();
  const omitted: string[] = [];
  for (const action of [...new Set(actions)].sort()) {
    const scope = scopeOf(action, targets, grantee);
    if (scope.resources.length === 0) {
      omitted.push(action);
      continue;
    }
    const key = JSON.stringify(targets.stack.resolve(scope));
    const group = groups.get(key);
    if (group) group.actions.push(action);
    else groups.set(key, { actions: [action], scope });
  }
  const grants: Grant[] = [...groups.values()].map(({ actions: list, scope }) => ({
    statement: new PolicyStatement({
      effect: Effect.ALLOW,
      actions: list,
      resources: scope.resources,
      ...(scope.conditions ? { conditions: scope.conditions } : {}),
    }),
    wildcardReasons: list.flatMap((a) => {
      const why = UNSCOPED_ACTIONS[a] ?? WILDCARD_REASONS[a];
      return why ? [why] : [];
    }),
  }));
  const assumed = [...memberGrants(actions, targets, grantee).keys()];
  if (assumed.length) {
    grants.push({
      statement: new PolicyStatement({
        effect: Effect.ALLOW,
        actions: ["sts:AssumeRole"],
        resources: assumed,
      }),
      wildcardReasons: [],
    });
  }
  const granted = actions.filter((a) => !omitted.includes(a));
  const services = [
    ...new Set(granted.flatMap((a) => (KEY_USE[a] ? [KEY_USE[a].service] : []))),
  ].sort();
  for (const service of services) {
    grants.push({
      statement: new PolicyStatement({
        effect: Effect.ALLOW,
        actions: impliedKeyActions(granted.filter((a) => KEY_USE[a]?.service === service)),
        resources: [targets.keyArn],
        conditions: {
          StringEquals: { "kms:ViaService": `${service}.${targets.stack.region}.amazonaws.com` },
        },
      }),
      wildcardReasons: [],
    });
  }
  return { grants, omitted };
}

/**
 * Acknowledges, for cdk-nag, each wildcard resource of `grants` on the construct that holds them,
 * with the grant's recorded reasons; a wildcard without a reason is a synth error.
 */
export function acknowledgeWildcards(holder: IConstruct, who: string, grants: Grant[]): void {
  for (const grant of grants) {
    const wildcards = grant.statement.resources
      .map((r) => flattenCfnReference(Stack.of(holder).resolve(r)))
      .filter((r) => r.includes("*"));
    for (const resource of wildcards) {
      if (!grant.wildcardReasons.length) {
        throw new Error(
          `${who}: ${grant.statement.actions.join(", ")} on ${resource} has no recorded reason`,
        );
      }
      Validations.of(holder).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${resource}]`,
        reason: [...new Set(grant.wildcardReasons)].join("; "),
      });
    }
  }
}

/**
 * What the operator CLI sends (cli/ops.ts, cli/audit.ts, cli/readiness.ts; test/infra/orchestrator.test.ts derives
 * it from their code), plus StopExecution for stopping a failover from the console or the AWS
 * CLI, and InvokeFunctionUrl for approve/reject (a signed HTTPS call, not an SDK command). No
 * states:SendTaskSuccess/Failure: only the approver answers, with the caller it verified. The orchestrator stack grants them, scoped like the functions' grants, in its operator
 * policy.
 */
export const OPERATOR_ACTIONS = [
  "dynamodb:Query",
  "kms:GetPublicKey",
  "kms:Verify",
  "lambda:InvokeFunction",
  "lambda:InvokeFunctionUrl",
  "s3:GetObject",
  "states:DescribeExecution",
  "states:GetExecutionHistory",
  "states:ListExecutions",
  "states:StartExecution",
  "states:StopExecution",
] as const;
