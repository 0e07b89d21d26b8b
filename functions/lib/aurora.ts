/**
 * Aurora Global Database: who the writer is, and moving the writer to the target region.
 * Graceful = SwitchoverGlobalCluster asked in the current writer's region (no data loss, needs
 * the old primary); ungraceful = FailoverGlobalCluster with AllowDataLoss asked in the target
 * region, behind an RPO guard that reads the replication lag first. Every call reads the global
 * cluster first, so a re-run never starts a second promotion.
 */
import { GetMetricDataCommand, type GetMetricDataCommandOutput } from "@aws-sdk/client-cloudwatch";
import {
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  type FailoverState,
  type GlobalCluster,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import { awsError, cloudWatchClient, rdsClient, unanswered } from "./aws.ts";
import {
  AuroraPromotionFailed,
  AuroraPromotionRefused,
  AwsUnavailable,
  ConfigError,
  describe,
  type ErrorData,
  type FailoverError,
} from "./errors.ts";

export interface AuroraTopology {
  globalClusterIdentifier: string;
  maxRpoSeconds: number;
  /** Region name -> ARN of that region's DB cluster in the global cluster. */
  members: Record<string, string>;
}

export interface AuroraState {
  writerRegion: string | null;
  /** `FailoverState.Status` (pending, failing-over, switching-over, cancelling); null when idle. */
  failoverState: string | null;
  status: string | null;
  members: { region: string; clusterArn: string; isWriter: boolean }[];
}

/** Bound on each RDS / CloudWatch call: a dead region's API must fail fast, not hang the Lambda. */
const CALL_TIMEOUT_MS = 10_000;
/** How far back the RPO guard looks for a lag datapoint (the metric is published every minute). */
const RPO_WINDOW_MINUTES = 5;
const RPO_METRIC = "AuroraGlobalDBRPOLag";

function bounded() {
  return { abortSignal: AbortSignal.timeout(CALL_TIMEOUT_MS) };
}

function auroraError(e: unknown, what: string, topo: AuroraTopology): FailoverError {
  if ((e as { name?: string }).name === "GlobalClusterNotFoundFault") {
    return new AuroraPromotionFailed(
      `${what}: global cluster "${topo.globalClusterIdentifier}" does not exist`,
      ["check aurora.globalClusterIdentifier in the topology"],
      { cause: e },
    );
  }
  if (unanswered(e)) {
    return new AwsUnavailable(`${what}: AWS did not answer (${describe(e)})`, [], { cause: e });
  }
  return awsError(e, what, AuroraPromotionFailed);
}

/** The region of a member: from the topology, else from the ARN (arn:aws:rds:<region>:...). */
function regionOfCluster(topo: AuroraTopology, arn: string): string {
  const known = Object.entries(topo.members).find(([, a]) => a === arn)?.[0];
  return known ?? arn.split(":")[3] ?? "unknown";
}

function memberArn(topo: AuroraTopology, region: string): string {
  const arn = topo.members[region];
  if (!arn) {
    throw new ConfigError(
      `region "${region}" has no Aurora cluster in the topology (known: ${Object.keys(topo.members).join(", ")})`,
    );
  }
  return arn;
}

/** arn:aws:rds:<region>:<account>:cluster:<id> -> <id>: CloudWatch's DBClusterIdentifier. */
function clusterIdentifier(arn: string): string {
  return arn.split(":").at(-1) ?? arn;
}

function regionsFrom(topo: AuroraTopology, first: string): string[] {
  return [first, ...Object.keys(topo.members).filter((r) => r !== first)];
}

function toState(topo: AuroraTopology, gc: GlobalCluster): AuroraState {
  const members = (gc.GlobalClusterMembers ?? []).flatMap((m) =>
    m.DBClusterArn
      ? [
          {
            region: regionOfCluster(topo, m.DBClusterArn),
            clusterArn: m.DBClusterArn,
            isWriter: m.IsWriter === true,
          },
        ]
      : [],
  );
  return {
    writerRegion: members.find((m) => m.isWriter)?.region ?? null,
    failoverState: gc.FailoverState?.Status ?? null,
    status: gc.Status ?? null,
    members,
  };
}

async function readGlobalCluster(
  topo: AuroraTopology,
  regions: string[],
): Promise<{ state: AuroraState; failover: FailoverState | undefined }> {
  const id = topo.globalClusterIdentifier;
  if (!regions.length)
    throw new ConfigError(`[Aurora] no region to ask about global cluster ${id}`);
  const failures: string[] = [];
  let last: unknown;
  for (const region of regions) {
    try {
      const out = await rdsClient(region).send(
        new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: id }),
        bounded(),
      );
      const gc =
        out.GlobalClusters?.find((g) => g.GlobalClusterIdentifier === id) ??
        out.GlobalClusters?.[0];
      if (!gc) {
        throw new AuroraPromotionFailed(
          `[Aurora] DescribeGlobalClusters in ${region} returned no global cluster "${id}"`,
          ["check aurora.globalClusterIdentifier in the topology"],
        );
      }
      return {
        state: toState(topo, gc),
        failover: gc.FailoverState?.Status ? gc.FailoverState : undefined,
      };
    } catch (e) {
      if (!unanswered(e))
        throw auroraError(e, `[Aurora] DescribeGlobalClusters ${id} in ${region}`, topo);
      failures.push(`${region}: ${describe(e)}`);
      last = e;
    }
  }
  throw new AwsUnavailable(
    `[Aurora] no region answered DescribeGlobalClusters for ${id}`,
    failures,
    {
      cause: last,
    },
  );
}

/**
 * Reads the global cluster, asking `regions` in order and moving on when one does not answer:
 * the global metadata is readable from any member region, and the old primary's may be dead.
 */
export async function describeAurora(
  topo: AuroraTopology,
  regions: string[],
): Promise<AuroraState> {
  return (await readGlobalCluster(topo, regions)).state;
}

function inferAction(f: FailoverState): "switchover" | "failover" {
  return (f.IsDataLossAllowed ?? f.Status === "failing-over") ? "failover" : "switchover";
}

function describeFailover(topo: AuroraTopology, f: FailoverState): string {
  const where = (arn: string | undefined) => (arn ? regionOfCluster(topo, arn) : "unknown");
  return `${f.Status} from ${where(f.FromDbClusterArn)} to ${where(f.ToDbClusterArn)}`;
}

/** The latest minute's maximum AuroraGlobalDBRPOLag (ms) of a secondary, or undefined if none. */
async function readRpoLagMs(
  topo: AuroraTopology,
  region: string,
  clusterId: string,
): Promise<number | undefined> {
  const end = new Date();
  const start = new Date(end.getTime() - RPO_WINDOW_MINUTES * 60_000);
  let out: GetMetricDataCommandOutput;
  try {
    out = await cloudWatchClient(region).send(
      new GetMetricDataCommand({
        StartTime: start,
        EndTime: end,
        ScanBy: "TimestampDescending",
        MetricDataQueries: [
          {
            Id: "rpoLag",
            ReturnData: true,
            MetricStat: {
              Metric: {
                Namespace: "AWS/RDS",
                MetricName: RPO_METRIC,
                Dimensions: [{ Name: "DBClusterIdentifier", Value: clusterId }],
              },
              Period: 60,
              Stat: "Maximum",
            },
          },
        ],
      }),
      bounded(),
    );
  } catch (e) {
    throw auroraError(
      e,
      `[PromoteAurora] GetMetricData ${RPO_METRIC} of ${clusterId} in ${region}`,
      topo,
    );
  }
  const result = out.MetricDataResults?.find((r) => r.Id === "rpoLag");
  const points = (result?.Timestamps ?? []).flatMap((t, i) => {
    const v = result?.Values?.[i];
    return v === undefined ? [] : [{ t: new Date(t).getTime(), v }];
  });
  return points.sort((a, b) => b.t - a.t)[0]?.v;
}

async function switchover(
  topo: AuroraTopology,
  targetRegion: string,
  targetArn: string,
  before: AuroraState,
) {
  const id = topo.globalClusterIdentifier;
  const writer = before.writerRegion;
  if (!writer) {
    throw new AuroraPromotionRefused(
      `[PromoteAurora] global cluster ${id} has no writer: a graceful switchover needs one`,
      [
        `re-run with mode "ungraceful" to fail over to ${targetRegion} (AllowDataLoss, behind the RPO guard)`,
      ],
    );
  }
  try {
    await rdsClient(writer).send(
      new SwitchoverGlobalClusterCommand({
        GlobalClusterIdentifier: id,
        TargetDbClusterIdentifier: targetArn,
      }),
      bounded(),
    );
  } catch (e) {
    if (unanswered(e)) {
      throw new AuroraPromotionRefused(
        `[PromoteAurora] the RDS API in ${writer}, the current writer's region, did not answer SwitchoverGlobalCluster (${describe(e)}): a graceful switchover needs the old primary`,
        [
          `if ${writer} is down, re-run with mode "ungraceful" to fail over from ${targetRegion} (AllowDataLoss, behind the RPO guard); a re-run first checks whether this switchover started anyway`,
        ],
        { cause: e },
      );
    }
    throw auroraError(
      e,
      `[PromoteAurora] SwitchoverGlobalCluster ${id} to ${targetRegion} in ${writer}`,
      topo,
    );
  }
  return { skipped: false, action: "switchover" as const, calledIn: writer, before };
}

async function failover(
  topo: AuroraTopology,
  req: { targetRegion: string; allowDataLoss: boolean },
  targetArn: string,
  before: AuroraState,
) {
  const id = topo.globalClusterIdentifier;
  const target = req.targetRegion;
  const clusterId = clusterIdentifier(targetArn);
  const lagMs = await readRpoLagMs(topo, target, clusterId);
  if (lagMs === undefined && !req.allowDataLoss) {
    throw new AuroraPromotionRefused(
      `[PromoteAurora] no ${RPO_METRIC} datapoint for ${clusterId} in ${target} in the last ${RPO_WINDOW_MINUTES} minutes: how much a failover would lose is unknown`,
      [
        `the metric is published only for secondary clusters that replicate (Aurora PostgreSQL; Aurora MySQL 3.04+ / 2.12+): check ${clusterId} is a replicating secondary`,
        "to fail over without knowing the lag, re-run with allowDataLoss: true",
      ],
    );
  }
  if (lagMs !== undefined && lagMs > topo.maxRpoSeconds * 1000 && !req.allowDataLoss) {
    throw new AuroraPromotionRefused(
      `[PromoteAurora] replication lag (${RPO_METRIC}) of ${clusterId} in ${target} is ${lagMs / 1000}s, above aurora.maxRpoSeconds ${topo.maxRpoSeconds}s: a failover now could lose that much of the latest writes`,
      [
        'wait for the lag to fall, use mode "graceful" if the primary still answers, or re-run with allowDataLoss: true to accept the loss',
      ],
    );
  }
  try {
    await rdsClient(target).send(
      new FailoverGlobalClusterCommand({
        GlobalClusterIdentifier: id,
        TargetDbClusterIdentifier: targetArn,
        AllowDataLoss: true,
      }),
      bounded(),
    );
  } catch (e) {
    throw auroraError(
      e,
      `[PromoteAurora] FailoverGlobalCluster ${id} to ${target} in ${target}`,
      topo,
    );
  }
  return {
    skipped: false,
    action: "failover" as const,
    calledIn: target,
    ...(lagMs !== undefined ? { rpoLagSeconds: lagMs / 1000 } : {}),
    before,
  };
}

/**
 * Makes the target region's cluster the writer. Skipped (no write call) when it already is, or
 * when a promotion to it is already under way — so Redrive and re-runs never start a second one.
 * Graceful asks the current writer's region (refused, suggesting ungraceful, when it does not
 * answer); ungraceful asks the target region, refused when the RPO lag exceeds maxRpoSeconds or
 * is unknown, unless allowDataLoss.
 */
export async function promoteAurora(
  topo: AuroraTopology,
  req: { targetRegion: string; mode: "graceful" | "ungraceful"; allowDataLoss: boolean },
): Promise<{
  skipped: boolean;
  action: "none" | "switchover" | "failover";
  calledIn?: string;
  rpoLagSeconds?: number;
  before: AuroraState;
}> {
  const id = topo.globalClusterIdentifier;
  const targetArn = memberArn(topo, req.targetRegion);
  const { state: before, failover: inFlight } = await readGlobalCluster(
    topo,
    regionsFrom(topo, req.targetRegion),
  );
  const target = before.members.find((m) => m.clusterArn === targetArn);
  if (!target) {
    throw new AuroraPromotionRefused(
      `[PromoteAurora] ${targetArn} (${req.targetRegion}) is not a member of global cluster ${id}`,
      [
        `members: ${before.members.map((m) => m.clusterArn).join(", ") || "none"}`,
        `correct regions.${req.targetRegion}.aurora.clusterArn in the topology, or add the cluster to the global cluster`,
      ],
    );
  }
  if (inFlight) {
    if (inFlight.ToDbClusterArn === targetArn && inFlight.Status !== "cancelling") {
      return { skipped: true, action: inferAction(inFlight), before };
    }
    throw new AuroraPromotionRefused(
      `[PromoteAurora] global cluster ${id} is busy (${describeFailover(topo, inFlight)}): nothing was changed`,
      [
        "wait for that operation to finish (DescribeGlobalClusters shows no FailoverState), then re-run",
      ],
    );
  }
  if (target.isWriter) return { skipped: true, action: "none", before };
  return req.mode === "graceful"
    ? switchover(topo, req.targetRegion, targetArn, before)
    : failover(topo, req, targetArn, before);
}

/**
 * One poll of a promotion: SUCCEEDED when the target is writer, no FailoverState is left and the
 * global cluster is available; FAILED when Aurora is cancelling it, another promotion took over,
 * or the writer ended up neither at the source nor at the target. `sourceRegion` (the writer
 * before the promotion) is optional: without it, the source is taken from the FailoverState.
 */
export async function checkAurora(
  topo: AuroraTopology,
  targetRegion: string,
  sourceRegion?: string | null,
): Promise<{
  status: "SUCCEEDED" | "IN_PROGRESS" | "FAILED";
  state: AuroraState;
  error?: ErrorData;
}> {
  const id = topo.globalClusterIdentifier;
  const targetArn = memberArn(topo, targetRegion);
  const { state, failover: inFlight } = await readGlobalCluster(
    topo,
    regionsFrom(topo, targetRegion),
  );
  const failed = (message: string, details: string[]) => ({
    status: "FAILED" as const,
    state,
    error: new AuroraPromotionFailed(message, details).toData(),
  });
  const recheck =
    "check the global cluster's RDS events, fix the cause, then re-run the failover (or Redrive)";
  if (inFlight?.Status === "cancelling") {
    return failed(
      `[AwaitAurora] Aurora is cancelling the promotion of ${id} (${describeFailover(topo, inFlight)})`,
      [recheck],
    );
  }
  if (inFlight && inFlight.ToDbClusterArn !== targetArn) {
    return failed(
      `[AwaitAurora] another promotion of ${id} is under way (${describeFailover(topo, inFlight)}), not to ${targetRegion}`,
      [recheck],
    );
  }
  const targetMember = state.members.find((m) => m.clusterArn === targetArn);
  if (!targetMember) {
    return failed(
      `[AwaitAurora] ${targetArn} (${targetRegion}) is no longer a member of global cluster ${id}`,
      [recheck],
    );
  }
  const expected = new Set<string>([targetRegion]);
  if (sourceRegion) expected.add(sourceRegion);
  if (inFlight?.FromDbClusterArn) expected.add(regionOfCluster(topo, inFlight.FromDbClusterArn));
  if (state.writerRegion && (sourceRegion || inFlight) && !expected.has(state.writerRegion)) {
    return failed(
      `[AwaitAurora] the writer of ${id} moved to ${state.writerRegion}, which is neither the source nor the target (${targetRegion})`,
      [recheck],
    );
  }
  const done = targetMember.isWriter && !inFlight && state.status === "available";
  return { status: done ? "SUCCEEDED" : "IN_PROGRESS", state };
}
