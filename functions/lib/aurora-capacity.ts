/**
 * Capacity parity for Aurora: a standby Serverless v2 cluster idles at its minimum ACUs, and
 * Serverless v2 scales up in steps while the load arrives, so a writer promoted at 0.5 ACU takes
 * the source's whole load cold. So:
 *  - observed: the source writer's ACUs (CloudWatch ServerlessDatabaseCapacity, the maximum of
 *    the last 24 hours), or its instance class when provisioned; readiness folds the hourly
 *    maxima into DynamoDB, so the figure is known when the source region is gone;
 *  - committed: PromoteAurora raises the target's MinCapacity to `ceil(targetPercent x observed)`
 *    (half-ACU steps, within the topology's bounds and the cluster's MaxCapacity) before the
 *    switchover/failover call, and records the old and new range;
 *  - restored: each raise is also kept in DynamoDB (the cluster, its MinCapacity before); the
 *    next promotion that moves the writer off that cluster (a failback first of all) puts it back,
 *    so a cluster keeps a raised floor only while it is the writer.
 * A provisioned target is never modified: an instance class that differs from the source's is
 * a warning in the plan and the report.
 */
import { GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import {
  type DBCluster,
  DescribeDBClustersCommand,
  DescribeDBInstancesCommand,
  ModifyDBClusterCommand,
} from "@aws-sdk/client-rds";
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import type { AuroraTopology } from "./aurora.ts";
import { awsError, cloudWatchClient, dynamoClient, type RoleAccess, rdsClient } from "./aws.ts";
import type { CapacityConfig, FailoverInput } from "./config.ts";
import {
  AuroraPromotionFailed,
  describe,
  type FailoverError,
  isFailoverError,
  UnexpectedError,
} from "./errors.ts";

/** How far back the observed figure reaches: the last 24 hours, as the apps' figures. */
const WINDOW_HOURS = 24;
const CAPACITY_METRIC = "ServerlessDatabaseCapacity";

/** A Serverless v2 capacity range (ServerlessV2ScalingConfiguration), in ACUs. */
export interface AcuRange {
  min: number;
  max: number;
}

/** What one member cluster is: a Serverless v2 range, or the writer's instance class. */
export interface ClusterCapacity {
  region: string;
  clusterArn: string;
  /** Serverless v2: the cluster's range now. */
  serverless?: AcuRange;
  /** Provisioned: the writer instance's class (e.g. db.r6g.xlarge). */
  instanceClass?: string;
  /** Hour (`2026-12-06T01`) -> the largest ServerlessDatabaseCapacity in it, over the window. */
  hours?: Record<string, number>;
}

function roleIn(topo: AuroraTopology, region: string): RoleAccess | undefined {
  return topo.roles?.[region];
}

function memberArnOf(topo: AuroraTopology, region: string): string {
  const arn = topo.members[region];
  if (!arn)
    throw new AuroraPromotionFailed(`[Aurora capacity] ${region} has no Aurora cluster`, [
      `add regions.${region}.aurora.clusterArn to the topology`,
    ]);
  return arn;
}

/** arn:aws:rds:<region>:<account>:cluster:<id> -> <id> (ModifyDBCluster and CloudWatch take it). */
function clusterIdOf(arn: string): string {
  return arn.split(":").at(-1) ?? arn;
}

const hourOf = (ms: number) => new Date(ms).toISOString().slice(0, 13);

/** The largest value of an hourly map within the window ending at `now`; undefined when none. */
function peakOf(hours: Record<string, number> | undefined, now: number): number | undefined {
  const oldest = hourOf(now - WINDOW_HOURS * 3_600_000);
  const values = Object.entries(hours ?? {})
    .filter(([h]) => h >= oldest)
    .map(([, v]) => v);
  return values.length ? Math.max(...values) : undefined;
}

/**
 * Reads a member cluster: its Serverless v2 range (DescribeDBClusters), else its writer's
 * instance class (DescribeDBInstances); with `peak`, the hourly maxima of ServerlessDatabaseCapacity
 * over the last 24 hours (CloudWatch GetMetricData in the cluster's region).
 */
export async function readClusterCapacity(
  topo: AuroraTopology,
  region: string,
  options: { peak: boolean; timeoutMs: number },
): Promise<ClusterCapacity> {
  const arn = memberArnOf(topo, region);
  const role = roleIn(topo, region);
  const signal = () => ({ abortSignal: AbortSignal.timeout(options.timeoutMs) });
  const what = `[Aurora capacity] reading ${clusterIdOf(arn)} in ${region}`;
  try {
    const out = await rdsClient(region, role).send(
      new DescribeDBClustersCommand({ DBClusterIdentifier: arn }),
      signal(),
    );
    const cluster: DBCluster | undefined = out.DBClusters?.[0];
    const range = cluster?.ServerlessV2ScalingConfiguration;
    if (range?.MinCapacity !== undefined && range.MaxCapacity !== undefined) {
      const serverless = { min: range.MinCapacity, max: range.MaxCapacity };
      if (!options.peak) return { region, clusterArn: arn, serverless };
      return { region, clusterArn: arn, serverless, hours: await readPeaks(topo, region, arn) };
    }
    const writer =
      cluster?.DBClusterMembers?.find((m) => m.IsClusterWriter) ?? cluster?.DBClusterMembers?.[0];
    if (!writer?.DBInstanceIdentifier) return { region, clusterArn: arn };
    const instances = await rdsClient(region, role).send(
      new DescribeDBInstancesCommand({ DBInstanceIdentifier: writer.DBInstanceIdentifier }),
      signal(),
    );
    const instanceClass = instances.DBInstances?.[0]?.DBInstanceClass;
    return { region, clusterArn: arn, ...(instanceClass ? { instanceClass } : {}) };
  } catch (e) {
    throw awsError(e, what, AuroraPromotionFailed);
  }

  async function readPeaks(
    t: AuroraTopology,
    r: string,
    clusterArn: string,
  ): Promise<Record<string, number>> {
    const end = new Date();
    const start = new Date(end.getTime() - WINDOW_HOURS * 3_600_000);
    const out = await cloudWatchClient(r, roleIn(t, r)).send(
      new GetMetricDataCommand({
        StartTime: start,
        EndTime: end,
        MetricDataQueries: [
          {
            Id: "acu",
            ReturnData: true,
            MetricStat: {
              Metric: {
                Namespace: "AWS/RDS",
                MetricName: CAPACITY_METRIC,
                Dimensions: [{ Name: "DBClusterIdentifier", Value: clusterIdOf(clusterArn) }],
              },
              Period: 3600,
              Stat: "Maximum",
            },
          },
        ],
      }),
      signal(),
    );
    const result = out.MetricDataResults?.find((x) => x.Id === "acu");
    const hours: Record<string, number> = {};
    for (const [i, at] of (result?.Timestamps ?? []).entries()) {
      const v = result?.Values?.[i];
      if (v === undefined) continue;
      const h = hourOf(new Date(at).getTime());
      hours[h] = Math.max(hours[h] ?? 0, v);
    }
    return hours;
  }
}

/** The topology's capacity.aurora, its defaults filled in (absent: report, 0.5..256 ACUs). */
function auroraConfigOf(c: CapacityConfig): NonNullable<CapacityConfig["aurora"]> {
  return c.aurora ?? { mode: "report", min: 0.5, max: 256 };
}

// ------------------------------------------------------------------ rolling 24-hour maximum

function db(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient());
}

const sampleKey = (platform: string, region: string) => ({
  pk: `capacity-aurora#${platform}`,
  sk: region,
});

/** The stored figure of a region's cluster: hourly ACU maxima, or its instance class. */
interface StoredAurora {
  clusterArn: string;
  observedAt: string;
  hours: Record<string, number>;
  instanceClass?: string;
}

async function readStored(platform: string, region: string): Promise<StoredAurora | undefined> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return undefined;
  try {
    const out = await db().send(
      new GetCommand({ TableName: table, Key: sampleKey(platform, region) }),
    );
    const item = out.Item;
    if (!item || typeof item.observedAt !== "string") return undefined;
    return {
      clusterArn: String(item.clusterArn ?? ""),
      observedAt: item.observedAt,
      hours: (item.hours ?? {}) as Record<string, number>,
      ...(typeof item.instanceClass === "string" ? { instanceClass: item.instanceClass } : {}),
    };
  } catch (e) {
    throw awsError(e, `reading the Aurora capacity of ${region} from ${table}`, UnexpectedError);
  }
}

/**
 * Readiness's part: the serving region's cluster, its hourly ACU maxima folded into the stored
 * ones (hours older than the window dropped), or its instance class. Never fails the evaluation:
 * a cluster that does not answer leaves the stored figure as it is (undefined returned).
 */
export async function sampleServingAurora(
  platform: string,
  topo: AuroraTopology,
  config: CapacityConfig | undefined,
  region: string | null,
  timeoutMs: number,
  now = Date.now(),
): Promise<ClusterCapacity | undefined> {
  if (!config || auroraConfigOf(config).mode === "off" || !region || !topo.members[region])
    return undefined;
  let read: ClusterCapacity;
  try {
    read = await readClusterCapacity(topo, region, { peak: true, timeoutMs });
  } catch (e) {
    if (isFailoverError(e)) return undefined;
    throw e;
  }
  const table = process.env.AUDIT_TABLE;
  if (!table) return read;
  const stored = await readStored(platform, region);
  const oldest = hourOf(now - WINDOW_HOURS * 3_600_000);
  const hours: Record<string, number> = {};
  const same = stored?.clusterArn === read.clusterArn;
  for (const [h, v] of Object.entries({ ...(same ? stored?.hours : {}) }))
    if (h >= oldest) hours[h] = v;
  for (const [h, v] of Object.entries(read.hours ?? {}))
    if (h >= oldest) hours[h] = Math.max(hours[h] ?? 0, v);
  try {
    await db().send(
      new UpdateCommand({
        TableName: table,
        Key: sampleKey(platform, region),
        UpdateExpression: read.instanceClass
          ? "SET #hours = :hours, #at = :at, #arn = :arn, #class = :class"
          : "SET #hours = :hours, #at = :at, #arn = :arn REMOVE #class",
        ExpressionAttributeNames: {
          "#hours": "hours",
          "#at": "observedAt",
          "#arn": "clusterArn",
          "#class": "instanceClass",
        },
        ExpressionAttributeValues: {
          ":hours": hours,
          ":at": new Date(now).toISOString(),
          ":arn": read.clusterArn,
          ...(read.instanceClass ? { ":class": read.instanceClass } : {}),
        },
      }),
    );
  } catch (e) {
    throw awsError(e, `storing the Aurora capacity of ${region} in ${table}`, UnexpectedError);
  }
  return { ...read, hours };
}

// ------------------------------------------------------------------ plan

/** The undo of an earlier raise of the cluster the writer leaves, as Plan found it stored. */
export interface AuroraRestore {
  /** The execution whose PromoteAurora raised it. */
  raisedBy: string;
  region: string;
  clusterArn: string;
  /** MinCapacity before that failover raised it (what the failback puts back) ... */
  to: number;
  /** ... and what the failover raised it to (a different value now: changed by hand, left alone). */
  raisedTo: number;
  /** Why it is not given back in this run (kept for later, said in the report). */
  notNow?: string;
}

/** Plan's Aurora capacity decision, carried to PromoteAurora and the report. */
export interface AuroraCapacityPlan {
  mode: "report" | "raise";
  /** `live`: CloudWatch in the source region now; `stored`: readiness's 24-hour maximum; `unknown`: neither. */
  source: "live" | "stored" | "unknown";
  sourceRegion: string | null;
  observedAt?: string;
  ageSeconds?: number;
  liveError?: string;
  /** The source writer's 24-hour maximum ACUs (Serverless v2), or its instance class. */
  observedAcu: number | null;
  observedClass?: string;
  targetRegion: string;
  targetClusterArn: string;
  /** The target's range when Plan read it (null: provisioned or unreadable). */
  targetBefore: AcuRange | null;
  targetClass?: string;
  /** The MinCapacity PromoteAurora commits (null: nothing to raise, see `warnings`). */
  committed: number | null;
  warnings: string[];
  /** The source cluster's MinCapacity raised by an earlier promotion (a failback's above all), to give back. */
  restore?: AuroraRestore;
}

/** `ceil(percent x observed)` in half-ACU steps, within the bounds and the cluster's MaxCapacity. */
export function minCapacityFor(
  observedAcu: number,
  percent: number,
  bounds: AcuRange,
  clusterMax: number,
): number {
  const wanted = Math.ceil((percent * observedAcu * 2) / 100) / 2;
  return Math.min(bounds.max, clusterMax, Math.max(bounds.min, wanted));
}

/**
 * Decides the Aurora floor: the source writer's live 24-hour maximum when its region answers,
 * readiness's stored one otherwise; against the target's range. Never throws for an AWS read:
 * what could not be read is a warning (PromoteAurora reads the target again before acting).
 */
export async function planAuroraCapacity(
  config: CapacityConfig | undefined,
  topo: AuroraTopology,
  platform: string,
  input: Pick<FailoverInput, "targetRegion" | "mode">,
  sourceRegion: string | null,
  timeoutMs: number,
  now = Date.now(),
): Promise<AuroraCapacityPlan | undefined> {
  const a = config ? auroraConfigOf(config) : undefined;
  if (!config || !a || a.mode === "off") return undefined;
  const target = input.targetRegion;
  const warnings: string[] = [];
  let source: AuroraCapacityPlan["source"] = "unknown";
  let observed: { acu?: number; instanceClass?: string; at?: string } = {};
  let liveError: string | undefined;
  if (sourceRegion && sourceRegion !== target) {
    try {
      const live = await readClusterCapacity(topo, sourceRegion, { peak: true, timeoutMs });
      const acu = peakOf(live.hours, now);
      observed = {
        ...(acu !== undefined ? { acu } : {}),
        ...(live.instanceClass ? { instanceClass: live.instanceClass } : {}),
        at: new Date(now).toISOString(),
      };
      source = "live";
      if (live.serverless && acu === undefined)
        liveError = `no ${CAPACITY_METRIC} datapoint in the last ${WINDOW_HOURS} hours`;
    } catch (e) {
      if (!isFailoverError(e)) throw e;
      liveError = e.message;
    }
    if (source === "unknown" || (observed.acu === undefined && !observed.instanceClass)) {
      const stored = await readStored(platform, sourceRegion).catch(() => undefined);
      const acu = peakOf(stored?.hours, now);
      if (stored && (acu !== undefined || stored.instanceClass)) {
        source = "stored";
        observed = {
          ...(acu !== undefined ? { acu } : {}),
          ...(stored.instanceClass ? { instanceClass: stored.instanceClass } : {}),
          at: stored.observedAt,
        };
      } else {
        // Read live, but no figure there and none stored: as unknown as a dead source.
        source = "unknown";
        observed = {};
      }
    }
  } else liveError = "no source writer (the target already is the writer, or none is)";
  let targetRead: ClusterCapacity | undefined;
  try {
    targetRead = await readClusterCapacity(topo, target, { peak: false, timeoutMs });
  } catch (e) {
    if (!isFailoverError(e)) throw e;
    warnings.push(`the target cluster could not be read: ${e.message}`);
  }
  const percent = a.targetPercent ?? config.targetPercent;
  let committed: number | null = null;
  if (targetRead?.serverless && observed.acu !== undefined) {
    committed = minCapacityFor(observed.acu, percent, a, targetRead.serverless.max);
    const wanted = Math.ceil((percent * observed.acu * 2) / 100) / 2;
    if (committed < wanted)
      warnings.push(
        `the source ran ${observed.acu} ACUs (${percent}%: ${wanted}), above what the target may be raised to (${committed}: capacity.aurora.max ${a.max}, its MaxCapacity ${targetRead.serverless.max})`,
      );
  } else if (targetRead?.instanceClass) {
    if (observed.instanceClass && observed.instanceClass !== targetRead.instanceClass)
      warnings.push(
        `instance class mismatch: the source writer is ${observed.instanceClass}, the target's writer ${targetRead.instanceClass} (provisioned clusters are not modified: resize it by hand if it cannot take the load)`,
      );
    else if (observed.acu !== undefined)
      warnings.push(
        `the target is provisioned (${targetRead.instanceClass}) while the source ran up to ${observed.acu} ACUs: compare by hand (provisioned clusters are not modified)`,
      );
  } else if (targetRead?.serverless && observed.instanceClass)
    warnings.push(
      `the source writer is provisioned (${observed.instanceClass}): no ACU figure to size the target's MinCapacity (${targetRead.serverless.min}) from`,
    );
  const raised =
    sourceRegion && sourceRegion !== target
      ? await storedRaise(platform, topo, sourceRegion)
      : undefined;
  // Only `raise` may modify a cluster; an ungraceful run does not wait on the (presumably dead)
  // source's API.
  const notNow =
    a.mode !== "raise"
      ? `capacity.aurora.mode is ${a.mode}, not raise`
      : input.mode === "ungraceful"
        ? "ungraceful: the source is presumed down, not waited on"
        : undefined;
  const restore = raised && notNow ? { ...raised, notNow } : raised;
  return {
    mode: a.mode,
    source,
    sourceRegion,
    ...(observed.at
      ? {
          observedAt: observed.at,
          ageSeconds: Math.max(0, Math.round((now - Date.parse(observed.at)) / 1000)),
        }
      : {}),
    ...(liveError ? { liveError } : {}),
    observedAcu: observed.acu ?? null,
    ...(observed.instanceClass ? { observedClass: observed.instanceClass } : {}),
    targetRegion: target,
    targetClusterArn: topo.members[target] ?? "",
    targetBefore: targetRead?.serverless ?? null,
    ...(targetRead?.instanceClass ? { targetClass: targetRead.instanceClass } : {}),
    committed,
    warnings,
    ...(restore ? { restore } : {}),
  };
}

const raiseKey = (platform: string, clusterArn: string) => ({
  pk: `aurora-floor#${platform}`,
  sk: clusterArn,
});

/** The stored raise of the cluster of `region`, if a promotion raised it and nothing gave it back. */
async function storedRaise(
  platform: string,
  topo: AuroraTopology,
  region: string,
): Promise<AuroraRestore | undefined> {
  const table = process.env.AUDIT_TABLE;
  const arn = topo.members[region];
  if (!table || !arn) return undefined;
  try {
    const out = await db().send(new GetCommand({ TableName: table, Key: raiseKey(platform, arn) }));
    const i = out.Item;
    if (!i || typeof i.original !== "number" || typeof i.raisedTo !== "number") return undefined;
    return {
      raisedBy: String(i.execution ?? "?"),
      region,
      clusterArn: arn,
      to: i.original,
      raisedTo: i.raisedTo,
    };
  } catch (e) {
    throw awsError(e, `reading the Aurora floor raised on ${arn} from ${table}`, UnexpectedError);
  }
}

/**
 * Keeps a raise until the writer leaves the cluster: its MinCapacity before (the first one, when a
 * raised cluster is raised again) and after, and the execution that raised it. A raise that could
 * not be kept is returned with a warning saying how to restore it by hand (it never fails the
 * promotion: the raise itself is done).
 */
export async function storeRaise(
  platform: string,
  raise: AuroraRaise,
  execution: string,
): Promise<AuroraRaise> {
  const table = process.env.AUDIT_TABLE;
  if (!table || !raise.before || !raise.after) return raise;
  try {
    await db().send(
      new UpdateCommand({
        TableName: table,
        Key: raiseKey(platform, raise.clusterArn),
        UpdateExpression:
          "SET #original = if_not_exists(#original, :original), #to = :to, #execution = :execution, #region = :region",
        ExpressionAttributeNames: {
          "#original": "original",
          "#to": "raisedTo",
          "#execution": "execution",
          "#region": "region",
        },
        ExpressionAttributeValues: {
          ":original": raise.before.min,
          ":to": raise.after.min,
          ":execution": execution,
          ":region": raise.region,
        },
      }),
    );
    return raise;
  } catch (e) {
    return {
      ...raise,
      warning: `the raise was not recorded for a later restore (${describe(e)}): once the writer has left ${raise.region}, set its MinCapacity back to ${raise.before.min} by hand`,
    };
  }
}

/**
 * Forgets a raise once it is given back (or found changed by hand): its figures are removed and
 * when it was settled kept (an update, not a delete: functions may delete only the lock and the
 * incident claims from the audit table).
 */
async function settleRaise(platform: string, clusterArn: string): Promise<void> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return;
  try {
    await db().send(
      new UpdateCommand({
        TableName: table,
        Key: raiseKey(platform, clusterArn),
        UpdateExpression: "REMOVE #original, #to SET #settled = :at",
        ExpressionAttributeNames: {
          "#original": "original",
          "#to": "raisedTo",
          "#settled": "settledAt",
        },
        ExpressionAttributeValues: { ":at": new Date().toISOString() },
      }),
    );
  } catch (e) {
    throw awsError(
      e,
      `settling the Aurora floor raised on ${clusterArn} in ${table}`,
      UnexpectedError,
    );
  }
}

/** One line for Plan's output and the report. */
export function auroraCapacityLine(p: AuroraCapacityPlan): string {
  const from = p.sourceRegion ?? "the source";
  const age =
    p.ageSeconds === undefined
      ? ""
      : p.ageSeconds < 120
        ? `, ${p.ageSeconds} s old`
        : `, ${Math.round(p.ageSeconds / 60)} min old`;
  const seen =
    p.source === "unknown"
      ? `capacity of ${from} UNKNOWN (${p.liveError ?? "no figure"}; none stored)`
      : `${p.source === "live" ? "live" : `stored 24-hour maximum (live read failed: ${p.liveError ?? "?"})`} from ${from}${age}: ${p.observedAcu !== null ? `${p.observedAcu} ACU peak` : (p.observedClass ?? "?")}`;
  const target = p.targetBefore
    ? `${p.targetRegion} MinCapacity ${p.targetBefore.min} (max ${p.targetBefore.max})`
    : `${p.targetRegion} ${p.targetClass ?? "unread"}`;
  const act =
    p.committed === null
      ? "nothing to raise"
      : p.targetBefore && p.targetBefore.min >= p.committed
        ? `already at or above ${p.committed}`
        : p.mode === "raise"
          ? `raise to ${p.committed} before the promotion`
          : `would raise to ${p.committed} (capacity.aurora.mode report: not modified)`;
  const restore = p.restore
    ? `; ${p.restore.notNow ? `keep ${p.restore.region}'s raised MinCapacity ${p.restore.raisedTo} (${p.restore.notNow}; it was ${p.restore.to})` : `give ${p.restore.region} back its MinCapacity ${p.restore.to} (${p.restore.raisedBy} raised it to ${p.restore.raisedTo})`}`
    : "";
  const warn = p.warnings.length ? `; WARNING: ${p.warnings.join("; ")}` : "";
  return `Aurora capacity ${seen}; target ${target}: ${act}${restore}${warn}`;
}

// ------------------------------------------------------------------ raise and restore

/** What PromoteAurora did to the target's range: the audit trail's and the report's record. */
export interface AuroraRaise {
  region: string;
  clusterArn: string;
  observedAcu: number | null;
  committed: number | null;
  before: AcuRange | null;
  /** The range after the raise; null when nothing was modified (see `skipped`). */
  after: AcuRange | null;
  skipped?: string;
  /** Why a raise failed, when the run went on without it (ungraceful). */
  warning?: string;
}

/** What a failback did to the cluster the undone failover raised. */
export interface AuroraRestoreResult {
  region: string;
  clusterArn: string;
  from: number | null;
  to: number;
  restored: boolean;
  /** The stored raise is forgotten (restored, or found changed by hand); false: kept to retry. */
  settled: boolean;
  detail: string;
}

async function setMinCapacity(
  topo: AuroraTopology,
  region: string,
  arn: string,
  range: AcuRange,
  timeoutMs: number,
): Promise<void> {
  await rdsClient(region, roleIn(topo, region)).send(
    new ModifyDBClusterCommand({
      DBClusterIdentifier: clusterIdOf(arn),
      ServerlessV2ScalingConfiguration: { MinCapacity: range.min, MaxCapacity: range.max },
      ApplyImmediately: true,
    }),
    { abortSignal: AbortSignal.timeout(timeoutMs) },
  );
}

/**
 * Raises the target's MinCapacity to Plan's committed figure (mode `raise`), reading its range
 * first: skipped when already at or above it, or when it is not Serverless v2. A graceful run
 * stops on a failed raise (AuroraPromotionFailed, before the promotion call); an ungraceful one
 * goes on without it (the writer matters more) and records why.
 */
export async function raiseTargetMinCapacity(
  topo: AuroraTopology,
  plan: AuroraCapacityPlan,
  mode: FailoverInput["mode"],
  timeoutMs: number,
): Promise<AuroraRaise> {
  const region = plan.targetRegion;
  const arn = memberArnOf(topo, region);
  const base = {
    region,
    clusterArn: arn,
    observedAcu: plan.observedAcu,
    committed: plan.committed,
  };
  if (plan.mode !== "raise" || plan.committed === null)
    return {
      ...base,
      before: plan.targetBefore,
      after: null,
      skipped:
        plan.committed === null
          ? `nothing to raise${plan.warnings.length ? `: ${plan.warnings.join("; ")}` : ""}`
          : "capacity.aurora.mode is report",
    };
  let before: AcuRange | undefined;
  try {
    before = (await readClusterCapacity(topo, region, { peak: false, timeoutMs })).serverless;
    if (!before)
      return { ...base, before: null, after: null, skipped: "the target is not Serverless v2" };
    if (before.min >= plan.committed)
      return {
        ...base,
        before,
        after: null,
        skipped: `MinCapacity ${before.min} already at or above ${plan.committed}`,
      };
    const after = { min: Math.min(plan.committed, before.max), max: before.max };
    await setMinCapacity(topo, region, arn, after, timeoutMs);
    return { ...base, before, after };
  } catch (e) {
    const failure: FailoverError =
      e instanceof AuroraPromotionFailed
        ? e
        : awsError(
            e,
            `[PromoteAurora] ModifyDBCluster ${clusterIdOf(arn)} MinCapacity ${plan.committed} in ${region}`,
            AuroraPromotionFailed,
          );
    // No answer / throttled: the ASL's Retry runs the step again (it reads first).
    if (mode === "graceful" && !(failure instanceof AuroraPromotionFailed)) throw failure;
    if (mode === "graceful")
      throw new AuroraPromotionFailed(
        `[PromoteAurora] raising the MinCapacity of ${clusterIdOf(arn)} in ${region} to ${plan.committed} ACUs failed, so the switchover was not asked: ${failure.message}`,
        [
          ...failure.details,
          "fix the cause (rds:ModifyDBCluster permission, the cluster's state) and start a new execution, or set capacity.aurora.mode: report to switch over without raising it",
        ],
        { cause: e },
      );
    return { ...base, before: before ?? null, after: null, warning: failure.message };
  }
}

/**
 * The undo of a raise as the writer leaves the cluster (a failback above all): its MinCapacity
 * back to what it was, and the stored raise forgotten; unless someone changed it since (then it
 * is left, and said). Never fails the promotion: what could not be restored (or why it is not
 * tried in this run, `notNow`) is reported with the command that does it, and stays stored.
 */
export async function restoreMinCapacity(
  platform: string,
  topo: AuroraTopology,
  restore: AuroraRestore,
  timeoutMs: number,
): Promise<AuroraRestoreResult> {
  const { region, clusterArn, to, notNow } = restore;
  const id = clusterIdOf(clusterArn);
  const by = `aws rds modify-db-cluster --region ${region} --db-cluster-identifier ${id} --serverless-v2-scaling-configuration MinCapacity=${to},MaxCapacity=<its max> --apply-immediately`;
  if (notNow)
    return {
      region,
      clusterArn,
      from: null,
      to,
      restored: false,
      settled: false,
      detail: `not given back (${notNow}); kept: restore by hand once it is not the writer: ${by}`,
    };
  const settled = async (from: number | null, restored: boolean, detail: string) => {
    const kept = await settleRaise(platform, clusterArn).then(
      () => undefined,
      (e: unknown) => describe(e),
    );
    return kept
      ? {
          region,
          clusterArn,
          from,
          to,
          restored,
          settled: false,
          detail: `${detail}; the stored raise could not be settled (${kept}): the next promotion off ${region} finds it done`,
        }
      : { region, clusterArn, from, to, restored, settled: true, detail };
  };
  let current: AcuRange | undefined;
  try {
    current = (await readClusterCapacity(topo, region, { peak: false, timeoutMs })).serverless;
    if (!current) return await settled(null, false, "not Serverless v2 any more");
    if (current.min === to) return await settled(current.min, false, "already restored");
    if (current.min !== restore.raisedTo)
      return await settled(
        current.min,
        false,
        `MinCapacity is ${current.min}, not the ${restore.raisedTo} ${restore.raisedBy} set: changed since, left alone (restore by hand: ${by})`,
      );
    await setMinCapacity(
      topo,
      region,
      clusterArn,
      { min: Math.min(to, current.max), max: current.max },
      timeoutMs,
    );
    return await settled(current.min, true, "restored");
  } catch (e) {
    return {
      region,
      clusterArn,
      from: current?.min ?? null,
      to,
      restored: false,
      settled: false,
      detail: `could not restore (${describe(e)}), kept for the next promotion off ${region}: ${by}`,
    };
  }
}

// ------------------------------------------------------------------ report

/** The report's Aurora capacity record: observed, committed, the target's range before and after. */
export interface AuroraCapacityReport {
  line: string;
  source: AuroraCapacityPlan["source"];
  ageSeconds: number | null;
  observedAcu: number | null;
  observedClass: string | null;
  targetRegion: string;
  targetBefore: AcuRange | null;
  targetClass: string | null;
  committed: number | null;
  /** What PromoteAurora did (null: it did not run, or the promotion was skipped). */
  raise: AuroraRaise | null;
  /** A failback's restore of the undone failover's raise. */
  restore: AuroraRestoreResult | null;
  warnings: string[];
}

/** The report's record from Plan's decision and PromoteAurora's audit event. */
export function auroraCapacityReport(
  plan: AuroraCapacityPlan | undefined,
  promoted: unknown,
): AuroraCapacityReport | undefined {
  if (!plan) return undefined;
  const after = (promoted ?? {}) as {
    auroraCapacity?: AuroraRaise;
    auroraRestore?: AuroraRestoreResult;
  };
  const raise = after.auroraCapacity ?? null;
  return {
    line: auroraCapacityLine(plan),
    source: plan.source,
    ageSeconds: plan.ageSeconds ?? null,
    observedAcu: plan.observedAcu,
    observedClass: plan.observedClass ?? null,
    targetRegion: plan.targetRegion,
    targetBefore: raise?.before ?? plan.targetBefore,
    targetClass: plan.targetClass ?? null,
    committed: plan.committed,
    raise,
    restore: after.auroraRestore ?? null,
    warnings: [...plan.warnings, ...(raise?.warning ? [`raise failed: ${raise.warning}`] : [])],
  };
}

/** The Markdown lines of the report's Aurora capacity section. */
export function auroraCapacityMarkdown(r: AuroraCapacityReport | undefined): string[] {
  if (!r) return [];
  const range = (x: AcuRange | null | undefined) => (x ? `${x.min}-${x.max} ACU` : "-");
  const raised = !r.raise
    ? "not run"
    : r.raise.after
      ? `MinCapacity ${r.raise.before?.min ?? "?"} -> ${r.raise.after.min}`
      : `not modified: ${r.raise.skipped ?? r.raise.warning ?? "?"}`;
  return [
    "",
    "## Aurora capacity",
    "",
    r.line.replaceAll("|", "\\|"),
    "",
    "| observed (source peak) | committed MinCapacity | target before | target after |",
    "| --- | --- | --- | --- |",
    `| ${r.observedAcu !== null ? `${r.observedAcu} ACU` : (r.observedClass ?? "-")} | ${r.committed ?? "-"} | ${r.targetBefore ? range(r.targetBefore) : (r.targetClass ?? "-")} | ${raised} |`,
    ...(r.restore
      ? [
          "",
          `Given back as the writer leaves it: ${r.restore.region} ${clusterIdOf(r.restore.clusterArn)} MinCapacity ${r.restore.restored ? `restored ${r.restore.from} -> ${r.restore.to}` : `NOT restored to ${r.restore.to}: ${r.restore.detail}`}`,
        ]
      : []),
    ...r.warnings.map((w) => `\nWARNING: ${w.replaceAll("|", "\\|")}`),
  ];
}
