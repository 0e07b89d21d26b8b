/**
 * Aurora Global Database control plane (RDS awsQuery, 2014-10-31): describe, switchover and
 * failover with the region rules AWS applies, a promotion that takes time (FailoverState, then
 * the writer flips), and the faults the drill needs (stuck promotion, region outage).
 */
import { createHash } from "node:crypto";
import {
  AwsServiceError,
  type QueryServiceHandler,
  queryMissing,
  requireString,
  SANDBOX_ACCOUNT,
  type XmlObject,
} from "./protocol.ts";

/** A global cluster as the drill defines it: one member cluster ARN per region. */
export interface GlobalClusterDefinition {
  identifier: string;
  members: Record<string, string>;
  writerRegion: string;
  /**
   * Aurora Serverless v2 members (region -> capacity range in ACUs); the others are provisioned
   * (one `db.r6g.large` instance each).
   */
  serverless?: Record<string, ServerlessRange>;
  /** The ACUs the workload needs on the writer (a serverless writer runs at this, within its range). */
  writerLoadAcu?: number;
  /** A provisioned member's instance class (region -> class; default db.r6g.large). */
  instanceClasses?: Record<string, string>;
}

/** A Serverless v2 capacity range (ServerlessV2ScalingConfiguration), in ACUs. */
export interface ServerlessRange {
  min: number;
  max: number;
}

/** One ServerlessDatabaseCapacity change of a member: from `at` (ms epoch) on it ran `acu`. */
export interface CapacityPoint {
  at: number;
  acu: number;
}

/** One control-plane call the emulator answered (or refused), for assertions. */
export interface RdsCall {
  action: string;
  region: string;
}

/** Control surface of the RDS emulator. */
export interface RdsEmulator {
  handler: QueryServiceHandler;
  defineGlobalCluster(definition: GlobalClusterDefinition): void;
  /** How long a promotion stays in FailoverState before the writer flips (in-flight ones too). */
  setPromotionDelayMs(ms: number): void;
  /** Fault aurora-failover-stuck: a promotion never completes. */
  setStuck(stuck: boolean): void;
  /** A member cluster's `Status` as DescribeDBClusters answers it (default `available`). */
  setMemberStatus(region: string, status: string): void;
  /** Calls signed for `region` are answered 503 ServiceUnavailable. */
  setRegionDown(region: string, down: boolean): void;
  /**
   * The old primary of an unplanned failover (FailoverGlobalCluster with AllowDataLoss) is rebuilt
   * as a secondary once its region is available: until then its member is `pending-resync` and
   * cannot be promoted. Aurora does it by itself (here: one promotion delay after the failover,
   * while the region's API answers); this makes it happen now.
   */
  rejoin(region: string): void;
  /** Fault aurora-not-rejoined: no old primary rejoins by itself (rejoin() still does). */
  setRejoinHeld(held: boolean): void;
  /** The current writer region of a global cluster (the only one when omitted). */
  writerRegion(identifier?: string): string;
  calls(): RdsCall[];
  /**
   * Per kind, how long a promotion takes (time model); overrides setPromotionDelayMs for that
   * kind. A switchover is graceful (SwitchoverGlobalCluster or FailoverGlobalCluster without
   * AllowDataLoss), a failover loses data.
   */
  setPromotionDurationsMs(durations: { switchover: number; failover: number }): void;
  /** Every promotion with its own event times (ms epoch): requested and completed. */
  promotions(): PromotionEvent[];
  /** A Serverless v2 member's capacity range now (undefined: provisioned or unknown). */
  serverlessRange(clusterArn: string): ServerlessRange | undefined;
  /**
   * ServerlessDatabaseCapacity of the member named by its cluster identifier in `region`: the
   * ACUs it ran since `since` (ms epoch), oldest first, the value in effect at `since` included;
   * undefined when no Serverless v2 member has that identifier there.
   */
  capacityHistory(
    region: string,
    clusterIdentifier: string,
    since: number,
  ): CapacityPoint[] | undefined;
  /** Every ModifyDBCluster the emulator applied, in order, with the range before and after. */
  modifications(): {
    clusterArn: string;
    at: number;
    before: ServerlessRange;
    after: ServerlessRange;
  }[];
}

/** One promotion as the service saw it: when it was requested and when the writer flipped. */
export interface PromotionEvent {
  identifier: string;
  kind: "switchover" | "failover";
  from: string;
  to: string;
  startedAt: number;
  completedAt?: number;
}

interface Promotion {
  status: "switching-over" | "failing-over";
  from: string;
  to: string;
  dataLoss: boolean;
  startedAt: number;
}

interface GlobalCluster {
  identifier: string;
  members: Record<string, string>;
  writer: string;
  promotion?: Promotion;
  writerLoadAcu: number;
}

/** The largest MaxCapacity recent Aurora versions accept (older ones: 128). */
const MAX_ACU = 256;
/** A provisioned member's instance class in the sandbox. */
const PROVISIONED_CLASS = "db.r6g.large";

const DEFAULT_PROMOTION_DELAY_MS = 500;

/** Creates the emulator; `handler` serves the `rds` credential scope. */
export function createRds(): RdsEmulator {
  const clusters = new Map<string, GlobalCluster>();
  const down = new Set<string>();
  const memberStatuses = new Map<string, string>();
  /**
   * Regions whose member is `pending-resync` (the old primary of an unplanned failover), with
   * when Aurora will have rebuilt it if its region answers by then and rejoining is not held.
   */
  const resync = new Map<string, number>();
  let rejoinHeld = false;
  /** Serverless v2 members' capacity ranges and ServerlessDatabaseCapacity histories, by ARN. */
  const ranges = new Map<string, ServerlessRange>();
  const history = new Map<string, CapacityPoint[]>();
  const classes = new Map<string, string>();
  const mods: ReturnType<RdsEmulator["modifications"]> = [];

  function rejoinDue(): void {
    for (const [region, at] of resync)
      if (!rejoinHeld && !down.has(region) && Date.now() >= at) resync.delete(region);
  }
  const log: RdsCall[] = [];
  let delayMs = DEFAULT_PROMOTION_DELAY_MS;
  const createdAt = new Date();
  let stuck = false;
  let durations: { switchover: number; failover: number } | undefined;
  const events: PromotionEvent[] = [];

  function delayOf(p: Promotion): number {
    if (!durations) return delayMs;
    return p.dataLoss ? durations.failover : durations.switchover;
  }

  function settle(c: GlobalCluster): void {
    rejoinDue();
    if (c.promotion && !stuck && Date.now() >= c.promotion.startedAt + delayOf(c.promotion)) {
      const p = c.promotion;
      const event = events.findLast(
        (e) => e.identifier === c.identifier && e.startedAt === p.startedAt,
      );
      if (event) event.completedAt = p.startedAt + delayOf(p);
      // The old primary of an unplanned failover rejoins as a secondary some time later.
      if (p.dataLoss) resync.set(p.from, Date.now() + delayOf(p));
      c.writer = p.to;
      delete c.promotion;
      track(c);
    }
  }

  function find(identifier: string): GlobalCluster {
    const c = clusters.get(identifier);
    if (!c) {
      throw new AwsServiceError(
        "GlobalClusterNotFoundFault",
        `GlobalCluster ${identifier} not found.`,
        404,
      );
    }
    settle(c);
    return c;
  }

  function describe(c: GlobalCluster): XmlObject {
    const arns = Object.values(c.members);
    const writerArn = c.members[c.writer] ?? "";
    const p = c.promotion;
    return {
      GlobalClusterIdentifier: c.identifier,
      GlobalClusterResourceId: `cluster-${c.identifier}`,
      GlobalClusterArn: `arn:aws:rds::${SANDBOX_ACCOUNT}:global-cluster:${c.identifier}`,
      Status: p ? "modifying" : "available",
      Engine: "aurora-postgresql",
      EngineVersion: "16.6",
      StorageEncrypted: true,
      DeletionProtection: true,
      GlobalClusterMembers: {
        GlobalClusterMember: Object.entries(c.members).map(([region, arn]) => ({
          DBClusterArn: arn,
          Readers: arn === writerArn ? { member: arns.filter((a) => a !== arn) } : undefined,
          IsWriter: arn === writerArn,
          SynchronizationStatus: resync.has(region) ? "pending-resync" : "connected",
        })),
      },
      FailoverState: p
        ? {
            Status: p.status,
            FromDbClusterArn: c.members[p.from],
            ToDbClusterArn: c.members[p.to],
            IsDataLossAllowed: p.dataLoss,
          }
        : undefined,
    };
  }

  /** The region of the member named by ARN or by cluster identifier. */
  function memberRegion(c: GlobalCluster, target: string): string {
    for (const [region, arn] of Object.entries(c.members)) {
      if (arn === target || arn.endsWith(`:cluster:${target}`)) return region;
    }
    throw new AwsServiceError("DBClusterNotFoundFault", `DBCluster ${target} not found.`, 404);
  }

  function promote(
    params: Record<string, string>,
    ctx: { region: string },
    kind: "switchover" | "failover",
  ): XmlObject {
    const c = find(requireString(params, "GlobalClusterIdentifier", queryMissing));
    const target = memberRegion(
      c,
      requireString(params, "TargetDbClusterIdentifier", queryMissing),
    );
    const allowDataLoss = kind === "failover" && params.AllowDataLoss === "true";
    if (allowDataLoss && params.Switchover === "true") {
      throw new AwsServiceError(
        "InvalidParameterCombination",
        "AllowDataLoss and Switchover can't be specified together.",
      );
    }
    if (c.promotion) {
      throw new AwsServiceError(
        "InvalidGlobalClusterStateFault",
        `Global cluster ${c.identifier} is already ${c.promotion.status}.`,
      );
    }
    if (target === c.writer) {
      throw new AwsServiceError(
        "InvalidParameterValue",
        `${c.members[target]} is already the primary cluster of global cluster ${c.identifier}.`,
      );
    }
    if (resync.has(target)) {
      throw new AwsServiceError(
        "InvalidGlobalClusterStateFault",
        `${c.members[target]} is not synchronized with the primary of global cluster ${c.identifier} (SynchronizationStatus pending-resync): it cannot be promoted until it has rejoined.`,
      );
    }
    const callRegion = allowDataLoss ? target : c.writer;
    if (ctx.region !== callRegion) {
      const what = allowDataLoss ? "a failover with data loss" : "a switchover";
      throw new AwsServiceError(
        "InvalidGlobalClusterStateFault",
        `Global cluster ${c.identifier}: ${what} must be requested in ${callRegion}, not ${ctx.region}.`,
      );
    }
    c.promotion = {
      status: allowDataLoss ? "failing-over" : "switching-over",
      from: c.writer,
      to: target,
      dataLoss: allowDataLoss,
      startedAt: Date.now(),
    };
    events.push({
      identifier: c.identifier,
      kind: allowDataLoss ? "failover" : "switchover",
      from: c.promotion.from,
      to: target,
      startedAt: c.promotion.startedAt,
    });
    return { GlobalCluster: describe(c) };
  }

  /** What a member runs now: a serverless writer its load within its range, a secondary its minimum. */
  function capacityNow(c: GlobalCluster, region: string): number | undefined {
    const range = ranges.get(c.members[region] ?? "");
    if (!range) return undefined;
    const load = region === c.writer ? c.writerLoadAcu : 0;
    return Math.min(range.max, Math.max(range.min, load));
  }

  /** Appends each serverless member's capacity to its history when it changed. */
  function track(c: GlobalCluster): void {
    for (const [region, arn] of Object.entries(c.members)) {
      const acu = capacityNow(c, region);
      if (acu === undefined) continue;
      const points = history.get(arn) ?? [];
      if (points.at(-1)?.acu !== acu) points.push({ at: Date.now(), acu });
      history.set(arn, points);
    }
  }

  const clusterId = (arn: string) => arn.split(":cluster:")[1] ?? arn;

  /** The members in `region`, with their global cluster and whether each is the writer. */
  function membersIn(region: string) {
    return [...clusters.values()].flatMap((c) => {
      settle(c);
      return Object.entries(c.members)
        .filter(([memberRegion]) => memberRegion === region)
        .map(([memberRegion, arn]) => ({ c, arn, writer: memberRegion === c.writer }));
    });
  }

  /** The member `wanted` (ARN or identifier) in `region`, or DBClusterNotFoundFault. */
  function memberIn(region: string, wanted: string) {
    const found = membersIn(region).find(({ arn }) => arn === wanted || clusterId(arn) === wanted);
    if (!found)
      throw new AwsServiceError("DBClusterNotFoundFault", `DBCluster ${wanted} not found.`, 404);
    return found;
  }

  function statusOf(c: GlobalCluster, region: string): string {
    return memberStatuses.get(region) ?? (c.promotion ? "modifying" : "available");
  }

  /** A member as the DBCluster shape of the RDS API reference gives it (one instance each). */
  function clusterShape(c: GlobalCluster, arn: string, writer: boolean, region: string): XmlObject {
    const name = clusterId(arn);
    const host = `${name}.cluster-c0sandbox0000.${region}.rds.amazonaws.com`;
    const range = ranges.get(arn);
    return {
      AllocatedStorage: 1,
      AvailabilityZones: { AvailabilityZone: ["a", "b", "c"].map((z) => `${region}${z}`) },
      BackupRetentionPeriod: 7,
      DBClusterIdentifier: name,
      DBClusterParameterGroup: "default.aurora-postgresql16",
      DBSubnetGroup: "default",
      Status: statusOf(c, region),
      Endpoint: host,
      ReaderEndpoint: host.replace(".cluster-", ".cluster-ro-"),
      MultiAZ: false,
      Engine: "aurora-postgresql",
      EngineVersion: "16.6",
      GlobalClusterIdentifier: c.identifier,
      Port: 5432,
      ...(writer ? { MasterUsername: "postgres" } : {}),
      DBClusterMembers: {
        DBClusterMember: [
          {
            DBInstanceIdentifier: `${name}-1`,
            IsClusterWriter: writer,
            DBClusterParameterGroupStatus: "in-sync",
            PromotionTier: 1,
          },
        ],
      },
      StorageEncrypted: true,
      DbClusterResourceId: `cluster-${createHash("sha256").update(arn).digest("hex").slice(0, 26).toUpperCase()}`,
      DBClusterArn: arn,
      ClusterCreateTime: createdAt,
      EngineMode: "provisioned",
      DeletionProtection: true,
      HttpEndpointEnabled: false,
      CopyTagsToSnapshot: true,
      CrossAccountClone: false,
      StorageType: "aurora",
      ...(range
        ? { ServerlessV2ScalingConfiguration: { MinCapacity: range.min, MaxCapacity: range.max } }
        : {}),
    };
  }

  /**
   * DescribeDBClusters in a region: the global clusters' members there, as the DBCluster shape
   * of the RDS API reference gives them (one instance each, the writer's a cluster writer).
   */
  function describeDbClusters(params: Record<string, string>, region: string): XmlObject {
    const wanted = params.DBClusterIdentifier;
    const selected = wanted ? [memberIn(region, wanted)] : membersIn(region);
    return {
      DBClusters: {
        DBCluster: selected.map(({ c, arn, writer }) => clusterShape(c, arn, writer, region)),
      },
    };
  }

  /**
   * DescribeDBInstances in a region: each member's one instance (`db.serverless` in a Serverless
   * v2 cluster), by DBInstanceIdentifier or by the `db-cluster-id` filter (ARN or identifier).
   */
  function describeDbInstances(params: Record<string, string>, region: string): XmlObject {
    // awsQuery form: Filters.Filter.<n>.Name and Filters.Filter.<n>.Values.Value.<m>.
    const filters = new Map<string, { name?: string; values: string[] }>();
    for (const [key, value] of Object.entries(params)) {
      const m = /^Filters\.Filter\.(\d+)\.(Name|Values\.Value\.\d+)$/.exec(key);
      if (!m) continue;
      const f = filters.get(m[1] as string) ?? { values: [] };
      if (m[2] === "Name") f.name = value;
      else f.values.push(value);
      filters.set(m[1] as string, f);
    }
    for (const f of filters.values()) {
      if (f.name !== "db-cluster-id")
        throw new AwsServiceError(
          "InvalidParameterValue",
          `Unrecognized filter name: ${f.name ?? ""} (the sandbox serves db-cluster-id).`,
        );
    }
    const clustersWanted = [...filters.values()].flatMap((f) => f.values);
    const instance = params.DBInstanceIdentifier;
    const rows = membersIn(region)
      .filter(
        ({ arn }) =>
          !clustersWanted.length || clustersWanted.some((w) => w === arn || w === clusterId(arn)),
      )
      .map(({ c, arn, writer }) => ({ c, arn, writer, id: `${clusterId(arn)}-1` }))
      .filter((r) => !instance || r.id === instance);
    if (instance && !rows.length)
      throw new AwsServiceError("DBInstanceNotFound", `DBInstance ${instance} not found.`, 404);
    return {
      DBInstances: {
        DBInstance: rows.map(({ c, arn, id }) => ({
          DBInstanceIdentifier: id,
          DBInstanceClass: ranges.has(arn)
            ? "db.serverless"
            : (classes.get(arn) ?? PROVISIONED_CLASS),
          Engine: "aurora-postgresql",
          EngineVersion: "16.6",
          DBInstanceStatus: statusOf(c, region),
          DBClusterIdentifier: clusterId(arn),
          DBInstanceArn: arn.replace(":cluster:", ":db:").replace(/$/, "-1"),
          AvailabilityZone: `${region}a`,
        })),
      },
    };
  }

  /** A ServerlessV2ScalingConfiguration member of the form, as a number (undefined when absent). */
  function acuParam(params: Record<string, string>, key: string): number | undefined {
    const raw = params[`ServerlessV2ScalingConfiguration.${key}`];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw === "" || !Number.isFinite(n))
      throw new AwsServiceError(
        "InvalidParameterValue",
        `Invalid value ${raw} for parameter ServerlessV2ScalingConfiguration.${key}.`,
      );
    return n;
  }

  /**
   * ModifyDBCluster, the part the orchestrator uses: the ServerlessV2ScalingConfiguration of a
   * member in the caller's region, validated as RDS does (half-step ACUs; MinCapacity 0 .. 256,
   * 0 only with auto-pause, which a global database does not support; MaxCapacity 1 .. 256; min
   * not above max; both on a cluster that has no range yet). A capacity change applies at once
   * (ApplyImmediately does not defer it). Any other modification is refused by name.
   */
  function modifyDbCluster(params: Record<string, string>, region: string): XmlObject {
    const wanted = requireString(params, "DBClusterIdentifier", queryMissing);
    const served = new Set(["DBClusterIdentifier", "ApplyImmediately"]);
    const other = Object.keys(params).filter(
      (k) =>
        k !== "Action" &&
        k !== "Version" &&
        !served.has(k) &&
        !k.startsWith("ServerlessV2ScalingConfiguration."),
    );
    if (other.length)
      throw new AwsServiceError(
        "InvalidParameterCombination",
        `The sandbox modifies ServerlessV2ScalingConfiguration only, not ${other.join(", ")}.`,
      );
    const { c, arn, writer } = memberIn(region, wanted);
    const status = statusOf(c, region);
    if (status !== "available")
      throw new AwsServiceError(
        "InvalidDBClusterStateFault",
        `DB cluster ${clusterId(arn)} is not in the available state (it is ${status}).`,
      );
    const min = acuParam(params, "MinCapacity");
    const max = acuParam(params, "MaxCapacity");
    const current = ranges.get(arn);
    if (min === undefined && max === undefined)
      return { DBCluster: clusterShape(c, arn, writer, region) };
    if (!current && (min === undefined || max === undefined))
      throw new AwsServiceError(
        "InvalidParameterValue",
        "Both MinCapacity and MaxCapacity must be specified when you initialize Serverless v2 scaling configuration.",
      );
    const next = { min: min ?? current?.min ?? 0, max: max ?? current?.max ?? 0 };
    const halfStep = (n: number) => Number.isInteger(n * 2);
    if (min !== undefined && (!halfStep(min) || min < 0 || min > MAX_ACU))
      throw new AwsServiceError(
        "InvalidParameterValue",
        `Serverless v2 minimum capacity ${min} isn't valid. Specify a value from 0 to ${MAX_ACU} ACUs in increments of 0.5.`,
      );
    if (min === 0)
      throw new AwsServiceError(
        "InvalidParameterCombination",
        `Serverless v2 minimum capacity 0 (auto-pause) isn't supported for DB cluster ${clusterId(arn)}: it is a member of global database ${c.identifier}. The minimum capacity must be at least 0.5.`,
      );
    if (max !== undefined && (!halfStep(max) || max > MAX_ACU))
      throw new AwsServiceError(
        "InvalidParameterValue",
        `Serverless v2 maximum capacity ${max} isn't valid. Specify a value up to ${MAX_ACU} ACUs in increments of 0.5.`,
      );
    if (max !== undefined && max < 1)
      throw new AwsServiceError(
        "InvalidParameterValue",
        `Serverless v2 maximum capacity ${max} isn't valid. The maximum capacity must be at least 1.0.`,
      );
    if (next.min > next.max)
      throw new AwsServiceError(
        "InvalidParameterCombination",
        `Serverless v2 minimum capacity ${next.min} must not be greater than the maximum capacity ${next.max}.`,
      );
    ranges.set(arn, next);
    mods.push({
      clusterArn: arn,
      at: Date.now(),
      before: current ?? { min: 0, max: 0 },
      after: { ...next },
    });
    track(c);
    return { DBCluster: clusterShape(c, arn, writer, region) };
  }

  const handler: QueryServiceHandler = (action, params, ctx) => {
    log.push({ action, region: ctx.region });
    if (down.has(ctx.region)) {
      throw new AwsServiceError("ServiceUnavailable", "Service Unavailable", 503);
    }
    switch (action) {
      case "DescribeGlobalClusters": {
        const id = params.GlobalClusterIdentifier;
        const list = id ? [find(id)] : [...clusters.values()];
        for (const c of list) settle(c);
        return { GlobalClusters: { GlobalClusterMember: list.map(describe) } };
      }
      case "DescribeDBClusters":
        return describeDbClusters(params, ctx.region);
      case "DescribeDBInstances":
        return describeDbInstances(params, ctx.region);
      case "ModifyDBCluster":
        return modifyDbCluster(params, ctx.region);
      case "SwitchoverGlobalCluster":
        return promote(params, ctx, "switchover");
      case "FailoverGlobalCluster":
        return promote(params, ctx, "failover");
      default:
        throw new AwsServiceError(
          "InvalidAction",
          `Could not find operation ${action} for version 2014-10-31`,
        );
    }
  };

  return {
    handler,
    defineGlobalCluster({
      identifier,
      members,
      writerRegion,
      serverless,
      writerLoadAcu,
      instanceClasses,
    }) {
      if (!members[writerRegion]) {
        throw new Error(`writer region ${writerRegion} has no member in ${identifier}`);
      }
      const c = {
        identifier,
        members: { ...members },
        writer: writerRegion,
        writerLoadAcu: writerLoadAcu ?? 0,
      };
      for (const arn of Object.values(members)) {
        ranges.delete(arn);
        classes.delete(arn);
      }
      for (const [region, cls] of Object.entries(instanceClasses ?? {}))
        classes.set(members[region] ?? "", cls);
      for (const [region, range] of Object.entries(serverless ?? {})) {
        const arn = members[region];
        if (!arn) throw new Error(`serverless region ${region} has no member in ${identifier}`);
        ranges.set(arn, { ...range });
        history.delete(arn);
      }
      clusters.set(identifier, c);
      track(c);
    },
    setPromotionDelayMs(ms) {
      delayMs = ms;
    },
    setStuck(value) {
      stuck = value;
    },
    setMemberStatus(region, status) {
      memberStatuses.set(region, status);
    },
    setRegionDown(region, value) {
      if (value) down.add(region);
      else down.delete(region);
    },
    rejoin(region) {
      resync.delete(region);
    },
    setRejoinHeld(held) {
      rejoinHeld = held;
    },
    writerRegion(identifier) {
      const c = identifier ? clusters.get(identifier) : [...clusters.values()][0];
      if (!c) throw new Error(`no global cluster ${identifier ?? "defined"}`);
      settle(c);
      return c.writer;
    },
    calls: () => log.map((c) => ({ ...c })),
    setPromotionDurationsMs(value) {
      durations = { ...value };
    },
    promotions() {
      for (const c of clusters.values()) settle(c);
      return events.map((e) => ({ ...e }));
    },
    serverlessRange(arn) {
      const r = ranges.get(arn);
      return r ? { ...r } : undefined;
    },
    capacityHistory(region, identifier, since) {
      for (const c of clusters.values()) settle(c);
      const arn = [...clusters.values()]
        .map((c) => c.members[region])
        .find((a) => a !== undefined && clusterId(a) === identifier);
      const points = arn ? history.get(arn) : undefined;
      if (!points) return undefined;
      const before = points.filter((p) => p.at <= since).at(-1);
      return [...(before ? [before] : []), ...points.filter((p) => p.at > since)];
    },
    modifications: () =>
      mods.map((m) => ({ ...m, before: { ...m.before }, after: { ...m.after } })),
  };
}
