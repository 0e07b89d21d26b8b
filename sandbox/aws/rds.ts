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
}

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

  /**
   * DescribeDBClusters in a region: the global clusters' members there, as the DBCluster shape
   * of the RDS API reference gives them (one instance each, the writer's a cluster writer).
   */
  function describeDbClusters(params: Record<string, string>, region: string): XmlObject {
    const wanted = params.DBClusterIdentifier;
    const found = [...clusters.values()].flatMap((c) => {
      settle(c);
      return Object.entries(c.members)
        .filter(([memberRegion]) => memberRegion === region)
        .map(([memberRegion, arn]) => ({ c, arn, writer: memberRegion === c.writer }));
    });
    const id = (arn: string) => arn.split(":cluster:")[1] ?? arn;
    const selected = wanted
      ? found.filter(({ arn }) => arn === wanted || id(arn) === wanted)
      : found;
    if (wanted && selected.length === 0) {
      throw new AwsServiceError("DBClusterNotFoundFault", `DBCluster ${wanted} not found.`, 404);
    }
    return {
      DBClusters: {
        DBCluster: selected.map(({ c, arn, writer }) => {
          const name = id(arn);
          const host = `${name}.cluster-c0sandbox0000.${region}.rds.amazonaws.com`;
          return {
            AllocatedStorage: 1,
            AvailabilityZones: { AvailabilityZone: ["a", "b", "c"].map((z) => `${region}${z}`) },
            BackupRetentionPeriod: 7,
            DBClusterIdentifier: name,
            DBClusterParameterGroup: "default.aurora-postgresql16",
            DBSubnetGroup: "default",
            Status: memberStatuses.get(region) ?? (c.promotion ? "modifying" : "available"),
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
          };
        }),
      },
    };
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
    defineGlobalCluster({ identifier, members, writerRegion }) {
      if (!members[writerRegion]) {
        throw new Error(`writer region ${writerRegion} has no member in ${identifier}`);
      }
      clusters.set(identifier, { identifier, members: { ...members }, writer: writerRegion });
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
  };
}
