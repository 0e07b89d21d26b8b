/**
 * Aurora Global Database: who the writer is, and moving the writer to the target region.
 * Graceful = SwitchoverGlobalCluster asked in the current writer's region (no data loss, needs
 * the old primary); ungraceful = FailoverGlobalCluster with AllowDataLoss asked in the target
 * region, behind an RPO guard that reads the replication lag first. The checks a promotion must
 * pass are one function (assertPromotable) that Plan runs before anything changes and
 * PromoteAurora runs again. Every call reads the global cluster first, so a re-run never starts
 * a second promotion.
 */
import { GetMetricDataCommand, type GetMetricDataCommandOutput } from "@aws-sdk/client-cloudwatch";
import {
  DescribeDBClustersCommand,
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  type FailoverState,
  type GlobalCluster,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import {
  type AwsActor,
  actorFor,
  awsError,
  cloudWatchClient,
  type RoleAccess,
  rdsClient,
  rdsOnceClient,
  regionOfArn,
  unanswered,
} from "./aws.ts";
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
  /** Region name -> the role to assume for that region's calls (the cluster's account); absent: own. */
  roles?: Record<string, RoleAccess>;
}

/** The role for calls about the global cluster made in `region`. */
function roleIn(topo: AuroraTopology, region: string): RoleAccess | undefined {
  return topo.roles?.[region];
}

export interface AuroraState {
  writerRegion: string | null;
  /** `FailoverState.Status` (pending, failing-over, switching-over, cancelling); null when idle. */
  failoverState: string | null;
  status: string | null;
  members: {
    region: string;
    clusterArn: string;
    isWriter: boolean;
    /** `connected`, or `pending-resync`: the old primary of an unplanned failover, not rejoined yet. */
    synchronization?: string;
  }[];
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
  return known ?? regionOfArn(arn) ?? "unknown";
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
            ...(m.SynchronizationStatus ? { synchronization: m.SynchronizationStatus } : {}),
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
      const out = await rdsClient(region, roleIn(topo, region)).send(
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

/**
 * The status of a region's member cluster, asked in that region (`available`, `backing-up`,
 * `failing-over`, ...): a member that exists in the global cluster but is not available cannot
 * take the writer. Throws AuroraPromotionFailed when the cluster does not exist.
 */
export async function memberStatus(topo: AuroraTopology, region: string): Promise<string> {
  const arn = memberArn(topo, region);
  const what = `[Aurora] DescribeDBClusters ${clusterIdentifier(arn)} in ${region}`;
  try {
    const out = await rdsClient(region, roleIn(topo, region)).send(
      new DescribeDBClustersCommand({ DBClusterIdentifier: arn }),
      bounded(),
    );
    return out.DBClusters?.[0]?.Status ?? "unknown";
  } catch (e) {
    if ((e as { name?: string }).name === "DBClusterNotFoundFault") {
      throw new AuroraPromotionFailed(`${what}: cluster ${arn} does not exist`, [
        `correct regions.${region}.aurora.clusterArn in the topology`,
      ]);
    }
    throw auroraError(e, what, topo);
  }
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
  step: string,
): Promise<number | undefined> {
  const end = new Date();
  const start = new Date(end.getTime() - RPO_WINDOW_MINUTES * 60_000);
  let out: GetMetricDataCommandOutput;
  try {
    out = await cloudWatchClient(region, roleIn(topo, region)).send(
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
      `[${step}] GetMetricData ${RPO_METRIC} of ${clusterId} in ${region}`,
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

/** What a promotion is asked to do: the step input's part that concerns Aurora. */
export interface PromotionRequest {
  targetRegion: string;
  mode: "graceful" | "ungraceful";
  /** Ungraceful only: accept losing the writes the RPO guard reports (see {@link rpoGuard}). */
  allowDataLoss: boolean;
}

/** What a promotion to the target will do, as {@link assertPromotable} found it. */
export interface PromotionPlan {
  /** Nothing to start: the target is the writer, or a promotion to it is already under way. */
  skipped: boolean;
  action: "none" | "switchover" | "failover";
  /** The region the promotion call goes to: the writer's (switchover) or the target's (failover). */
  calledIn?: string;
  /** The RPO guard's reading, for a failover when a datapoint was published. */
  rpoLagSeconds?: number;
  before: AuroraState;
}

/**
 * The RPO guard in front of an ungraceful failover. `FailoverGlobalCluster` with AllowDataLoss
 * loses the writes the target has not received yet, so the guard reads AuroraGlobalDBRPOLag of
 * the target's cluster in the target region (only secondaries publish it) and refuses when the
 * latest minute is above `aurora.maxRpoSeconds`, or when there is no datapoint at all (the loss
 * would be unknown). `allowDataLoss: true` is the operator accepting that loss: the lag is still
 * read and reported, but no longer refuses. It does not change how the failover is made (an
 * ungraceful failover always passes AllowDataLoss, in the target region), and it does nothing
 * for a graceful switchover, which loses no data (the input schema rejects that combination).
 * Returns the lag in ms, undefined when none was published.
 */
async function rpoGuard(
  topo: AuroraTopology,
  req: PromotionRequest,
  targetArn: string,
  step: string,
): Promise<number | undefined> {
  const target = req.targetRegion;
  const clusterId = clusterIdentifier(targetArn);
  const lagMs = await readRpoLagMs(topo, target, clusterId, step);
  if (req.allowDataLoss) return lagMs;
  if (lagMs === undefined) {
    throw new AuroraPromotionRefused(
      `[${step}] no ${RPO_METRIC} datapoint for ${clusterId} in ${target} in the last ${RPO_WINDOW_MINUTES} minutes: how much a failover would lose is unknown`,
      [
        `the metric is published only for secondary clusters that replicate (Aurora PostgreSQL; Aurora MySQL 3.04+ / 2.12+): check ${clusterId} is a replicating secondary`,
        "to fail over without knowing the lag, start a new execution with allowDataLoss: true",
      ],
    );
  }
  if (lagMs > topo.maxRpoSeconds * 1000) {
    throw new AuroraPromotionRefused(
      `[${step}] replication lag (${RPO_METRIC}) of ${clusterId} in ${target} is ${lagMs / 1000}s, above aurora.maxRpoSeconds ${topo.maxRpoSeconds}s: a failover now could lose that much of the latest writes`,
      [
        'wait for the lag to fall, use mode "graceful" if the primary still answers, or start a new execution with allowDataLoss: true to accept the loss',
      ],
    );
  }
  return lagMs;
}

/**
 * A graceful switchover is asked in the current writer's region: refused up front when that
 * region's RDS API does not answer a read, rather than when the switchover itself is sent.
 */
async function assertWriterAnswers(
  topo: AuroraTopology,
  writer: string,
  targetRegion: string,
  step: string,
): Promise<void> {
  const id = topo.globalClusterIdentifier;
  try {
    await rdsClient(writer, roleIn(topo, writer)).send(
      new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: id }),
      bounded(),
    );
  } catch (e) {
    if (!unanswered(e))
      throw auroraError(e, `[${step}] DescribeGlobalClusters ${id} in ${writer}`, topo);
    throw new AuroraPromotionRefused(
      `[${step}] the RDS API in ${writer}, the current writer's region, does not answer (${describe(e)}): a graceful switchover needs the old primary`,
      [
        `if ${writer} is down, start a new execution with mode "ungraceful" to fail over from ${targetRegion} (AllowDataLoss, behind the RPO guard)`,
      ],
      { cause: e },
    );
  }
}

/**
 * Every check a promotion to `targetRegion` must pass, with nothing changed: the target is a
 * member; no other promotion is in flight (one to the target is: `skipped`); graceful: there is
 * a writer and its region's RDS API answers; ungraceful: the RPO guard ({@link rpoGuard}).
 * Throws AuroraPromotionRefused (not retryable) saying what to do instead. Plan runs it before
 * anything changes, and PromoteAurora again right before its call (things change in between).
 * `step` prefixes the messages.
 */
export async function assertPromotable(
  topo: AuroraTopology,
  req: PromotionRequest,
  step = "PromoteAurora",
): Promise<PromotionPlan> {
  const id = topo.globalClusterIdentifier;
  const targetArn = memberArn(topo, req.targetRegion);
  const { state: before, failover: inFlight } = await readGlobalCluster(
    topo,
    regionsFrom(topo, req.targetRegion),
  );
  const target = before.members.find((m) => m.clusterArn === targetArn);
  if (!target) {
    throw new AuroraPromotionRefused(
      `[${step}] ${targetArn} (${req.targetRegion}) is not a member of global cluster ${id}`,
      [
        `members: ${before.members.map((m) => m.clusterArn).join(", ") || "none"}`,
        `correct regions.${req.targetRegion}.aurora.clusterArn in the topology, or add the cluster to the global cluster`,
      ],
    );
  }
  if (inFlight) {
    if (startedTo(inFlight, targetArn)) {
      return { skipped: true, action: inferAction(inFlight), before };
    }
    throw new AuroraPromotionRefused(
      `[${step}] global cluster ${id} is busy (${describeFailover(topo, inFlight)}): nothing was changed`,
      [
        "wait for that operation to finish (DescribeGlobalClusters shows no FailoverState), then start a new execution",
      ],
    );
  }
  if (target.isWriter) return { skipped: true, action: "none", before };
  if (target.synchronization === "pending-resync") {
    throw new AuroraPromotionRefused(
      `[${step}] ${targetArn} (${req.targetRegion}) has not rejoined global cluster ${id}: it is pending-resync (the old primary of an unplanned failover), so it cannot take the writer; nothing was changed`,
      [
        `wait until \`aws rds describe-global-clusters --region ${req.targetRegion} --global-cluster-identifier ${id}\` shows its SynchronizationStatus connected (Aurora rebuilds it as a secondary once ${req.targetRegion} has recovered), then start again`,
      ],
    );
  }
  if (req.mode === "graceful") {
    const writer = before.writerRegion;
    if (!writer) {
      throw new AuroraPromotionRefused(
        `[${step}] global cluster ${id} has no writer: a graceful switchover needs one`,
        [
          `start a new execution with mode "ungraceful" to fail over to ${req.targetRegion} (AllowDataLoss, behind the RPO guard)`,
        ],
      );
    }
    await assertWriterAnswers(topo, writer, req.targetRegion, step);
    return { skipped: false, action: "switchover", calledIn: writer, before };
  }
  const lagMs = await rpoGuard(topo, req, targetArn, step);
  return {
    skipped: false,
    action: "failover",
    calledIn: req.targetRegion,
    ...(lagMs !== undefined ? { rpoLagSeconds: lagMs / 1000 } : {}),
    before,
  };
}

/** A promotion to the target that Aurora is running (not cancelling). */
function startedTo(f: FailoverState, targetArn: string): boolean {
  return f.ToDbClusterArn === targetArn && f.Status !== "cancelling";
}

/**
 * Sends a promotion call exactly once (rdsOnceClient: no SDK retry), so that a first attempt
 * that took effect but answered 5xx is never retried into InvalidGlobalClusterStateFault while
 * Aurora keeps promoting; the caller re-reads the global cluster after any error.
 */
async function sendOnce(
  region: string,
  command: SwitchoverGlobalClusterCommand | FailoverGlobalClusterCommand,
  role: RoleAccess | undefined,
): Promise<void> {
  const client = rdsOnceClient(region, role);
  // One call per command type: the SDK's `send` overloads take one command type at a time.
  if (command instanceof SwitchoverGlobalClusterCommand) await client.send(command, bounded());
  else await client.send(command, bounded());
}

/** After a promotion call failed: did it start anyway (in flight to the target, or done)? */
async function startedAnyway(
  topo: AuroraTopology,
  targetRegion: string,
): Promise<boolean | "unknown"> {
  const targetArn = memberArn(topo, targetRegion);
  try {
    const { state, failover } = await readGlobalCluster(topo, regionsFrom(topo, targetRegion));
    if (failover) return startedTo(failover, targetArn);
    return state.members.some((m) => m.clusterArn === targetArn && m.isWriter);
  } catch {
    return "unknown";
  }
}

/**
 * Makes the target region's cluster the writer, after {@link assertPromotable}'s checks (run
 * again here: things change after Plan). Skipped (no write call) when the target already is the
 * writer or a promotion to it is under way, so re-runs never start a second one. Graceful calls
 * SwitchoverGlobalCluster in the writer's region; ungraceful FailoverGlobalCluster with
 * AllowDataLoss in the target region. The call is sent once; after any error the global cluster
 * is read again, and a promotion found under way (or done) counts as started (`startedDespite`
 * names the error). Otherwise the error is named: no answer is AwsUnavailable (retryable: the
 * retry reads first, and refuses if the writer's region stays silent). `beforeCall` runs after
 * the checks and right before the call (capacity parity's raise), never for a skipped promotion.
 */
export async function promoteAurora(
  topo: AuroraTopology,
  req: PromotionRequest,
  beforeCall?: () => Promise<void>,
): Promise<PromotionPlan & { actor?: AwsActor; startedDespite?: string }> {
  const plan = await assertPromotable(topo, req);
  if (plan.skipped || !plan.calledIn) return plan;
  // Capacity parity: the target's Aurora floor is raised once the checks pass, before the call.
  await beforeCall?.();
  const id = topo.globalClusterIdentifier;
  const input = {
    GlobalClusterIdentifier: id,
    TargetDbClusterIdentifier: memberArn(topo, req.targetRegion),
  };
  const what = plan.action === "switchover" ? "SwitchoverGlobalCluster" : "FailoverGlobalCluster";
  const actor = actorFor(roleIn(topo, plan.calledIn));
  try {
    await sendOnce(
      plan.calledIn,
      plan.action === "switchover"
        ? new SwitchoverGlobalClusterCommand(input)
        : new FailoverGlobalClusterCommand({ ...input, AllowDataLoss: true }),
      roleIn(topo, plan.calledIn),
    );
  } catch (e) {
    const started = await startedAnyway(topo, req.targetRegion);
    if (started === true)
      return { ...plan, ...(actor ? { actor } : {}), startedDespite: describe(e) };
    const found =
      started === "unknown"
        ? "the global cluster could not be read again to see whether it started"
        : `the global cluster shows no promotion to ${req.targetRegion}`;
    throw auroraError(
      e,
      `[PromoteAurora] ${what} ${id} to ${req.targetRegion} in ${plan.calledIn} (${found})`,
      topo,
    );
  }
  return actor ? { ...plan, actor } : plan;
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
    "check the global cluster's RDS events and fix the cause, then start a new execution (it skips what is done)";
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
