/**
 * Aurora Serverless v2 capacity parity through the real SDK clients and the sandbox's emulators:
 * the RDS emulator's ServerlessV2ScalingConfiguration, its ModifyDBCluster validated as RDS does,
 * DescribeDBInstances, CloudWatch's ServerlessDatabaseCapacity; and the module on top of them
 * (observed live or stored, the raise, skipped when done, the give-back).
 */
import { CloudWatchClient, GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import { CreateTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  DescribeDBClustersCommand,
  DescribeDBInstancesCommand,
  ModifyDBClusterCommand,
  RDSClient,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { AuroraTopology } from "../../functions/lib/aurora.ts";
import {
  minCapacityFor,
  planAuroraCapacity,
  raiseTargetMinCapacity,
  restoreMinCapacity,
  sampleServingAurora,
  storeRaise,
} from "../../functions/lib/aurora-capacity.ts";
import { resetClients } from "../../functions/lib/aws.ts";
import type { CapacityConfig } from "../../functions/lib/config.ts";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";

const EAST = "us-east-1";
const WEST = "us-east-2";
const EU = "eu-west-1";
const ARN = {
  [EAST]: "arn:aws:rds:us-east-1:000000000000:cluster:acu-east",
  [WEST]: "arn:aws:rds:us-east-2:000000000000:cluster:acu-west",
  [EU]: "arn:aws:rds:eu-west-1:000000000000:cluster:acu-eu",
};
const ID = "acu";
const TABLE = "acu-audit";
const topo: AuroraTopology = { globalClusterIdentifier: ID, maxRpoSeconds: 5, members: ARN };
const config = (mode: "report" | "raise", extra: object = {}) =>
  ({
    targetPercent: 100,
    minimumSuccessPercent: { graceful: 100, ungraceful: 60 },
    whenSourceUnknown: "baseline",
    gateSeconds: 120,
    apps: [],
    aurora: { mode, min: 0.5, max: 64, ...extra },
  }) as CapacityConfig;

let sandbox: AwsSandbox;
const saved: Record<string, string | undefined> = {};
beforeAll(async () => {
  sandbox = await startAwsSandbox();
  for (const [k, v] of Object.entries({ ...sandbox.env, AUDIT_TABLE: TABLE })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  resetClients();
  await new DynamoDBClient({}).send(
    new CreateTableCommand({
      TableName: TABLE,
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
      ],
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
  );
});
afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  resetClients();
  await sandbox?.stop();
});

/** East writes at 12 ACUs (range 2-64), West idles at 0.5 (0.5-64), EU is provisioned. */
beforeEach(() => {
  sandbox.rds.defineGlobalCluster({
    identifier: ID,
    members: ARN,
    writerRegion: EAST,
    serverless: { [EAST]: { min: 2, max: 64 }, [WEST]: { min: 0.5, max: 64 } },
    writerLoadAcu: 12,
  });
  sandbox.rds.setPromotionDelayMs(0);
  sandbox.rds.setRegionDown(EAST, false);
});

const rds = (region: string) => new RDSClient({ region, maxAttempts: 1 });
const range = async (region: keyof typeof ARN) =>
  (await rds(region).send(new DescribeDBClustersCommand({ DBClusterIdentifier: ARN[region] })))
    .DBClusters?.[0]?.ServerlessV2ScalingConfiguration;
const modify = (region: string, id: string, min?: number, max?: number) =>
  rds(region).send(
    new ModifyDBClusterCommand({
      DBClusterIdentifier: id,
      ServerlessV2ScalingConfiguration: {
        ...(min !== undefined ? { MinCapacity: min } : {}),
        ...(max !== undefined ? { MaxCapacity: max } : {}),
      },
      ApplyImmediately: true,
    }),
  );
const refused = async (call: Promise<unknown>) => {
  const e = (await call.then(
    () => ({ name: "no error", message: "" }),
    (x: unknown) => x,
  )) as { name: string; message: string };
  return `${e.name}: ${e.message}`;
};

describe("RDS emulator: Serverless v2 capacity", () => {
  it("serves each member's ServerlessV2ScalingConfiguration; a provisioned one has none", async () => {
    expect(await range(EAST)).toEqual({ MinCapacity: 2, MaxCapacity: 64 });
    expect(await range(WEST)).toEqual({ MinCapacity: 0.5, MaxCapacity: 64 });
    expect(await range(EU)).toBeUndefined();
  });

  it("ModifyDBCluster changes the range at once, by identifier, in the cluster's region", async () => {
    const out = await modify(WEST, "acu-west", 12, 64);
    expect(out.DBCluster?.ServerlessV2ScalingConfiguration).toEqual({
      MinCapacity: 12,
      MaxCapacity: 64,
    });
    expect(await range(WEST)).toEqual({ MinCapacity: 12, MaxCapacity: 64 });
    await modify(WEST, "acu-west", 0.5);
    expect(await range(WEST)).toEqual({ MinCapacity: 0.5, MaxCapacity: 64 });
  });

  it("validates the range as RDS does, and changes nothing when it refuses", async () => {
    const applied = sandbox.rds.modifications().length;
    const cases: [Promise<unknown>, RegExp][] = [
      [modify(WEST, "acu-west", 2.3), /^InvalidParameterValue: .*minimum capacity 2.3.*0.5/],
      [modify(WEST, "acu-west", 300), /^InvalidParameterValue: .*minimum capacity 300/],
      [modify(WEST, "acu-west", undefined, 0.5), /^InvalidParameterValue: .*at least 1.0/],
      [modify(WEST, "acu-west", undefined, 256.5), /^InvalidParameterValue: .*maximum capacity/],
      [modify(WEST, "acu-west", 16, 8), /^InvalidParameterCombination: .*16.*greater.*8/],
      [modify(WEST, "acu-west", 0), /^InvalidParameterCombination: .*auto-pause.*global/],
      [modify(WEST, "nope", 4), /^DBClusterNotFoundFault: DBCluster nope not found/],
      // The cluster exists, but in another region than the call's.
      [modify(EAST, "acu-west", 4), /^DBClusterNotFoundFault/],
      // A provisioned cluster has no range yet: both bounds are needed to set one.
      [modify(EU, "acu-eu", 4), /^InvalidParameterValue: Both MinCapacity and MaxCapacity/],
      [
        rds(WEST).send(
          new ModifyDBClusterCommand({
            DBClusterIdentifier: "acu-west",
            DeletionProtection: false,
          }),
        ),
        /^InvalidParameterCombination: .*DeletionProtection/,
      ],
    ];
    for (const [call, expected] of cases) expect(await refused(call)).toMatch(expected);
    expect(await refused(rds(WEST).send(new ModifyDBClusterCommand({} as never)))).toMatch(
      /^MissingParameter: .*DBClusterIdentifier/,
    );
    expect(await range(WEST)).toEqual({ MinCapacity: 0.5, MaxCapacity: 64 });
    expect(sandbox.rds.modifications()).toHaveLength(applied);
  });

  it("refuses a change while the global cluster is switching over (the member is not available)", async () => {
    sandbox.rds.setPromotionDelayMs(60_000);
    await rds(EAST).send(
      new SwitchoverGlobalClusterCommand({
        GlobalClusterIdentifier: ID,
        TargetDbClusterIdentifier: ARN[WEST],
      }),
    );
    expect(await refused(modify(WEST, "acu-west", 4))).toMatch(
      /^InvalidDBClusterStateFault: .*not in the available state \(it is modifying\)/,
    );
  });

  it("DescribeDBInstances: db.serverless in a Serverless v2 cluster, the class of a provisioned writer", async () => {
    const classOf = async (region: string, cluster: string) =>
      (
        await rds(region).send(
          new DescribeDBInstancesCommand({
            Filters: [{ Name: "db-cluster-id", Values: [cluster] }],
          }),
        )
      ).DBInstances?.map((i) => i.DBInstanceClass);
    expect(await classOf(EAST, ARN[EAST])).toEqual(["db.serverless"]);
    expect(await classOf(EU, "acu-eu")).toEqual(["db.r6g.large"]);
    expect(
      await refused(
        rds(EU).send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: "missing-1" })),
      ),
    ).toMatch(/^DBInstanceNotFound/);
  });

  it("CloudWatch ServerlessDatabaseCapacity: the writer at its load, a standby at its minimum, each hour's Maximum", async () => {
    const peaks = async (region: string, cluster: string) => {
      const end = new Date();
      const out = await new CloudWatchClient({ region, maxAttempts: 1 }).send(
        new GetMetricDataCommand({
          StartTime: new Date(end.getTime() - 24 * 3_600_000),
          EndTime: end,
          MetricDataQueries: [
            {
              Id: "acu",
              MetricStat: {
                Metric: {
                  Namespace: "AWS/RDS",
                  MetricName: "ServerlessDatabaseCapacity",
                  Dimensions: [{ Name: "DBClusterIdentifier", Value: cluster }],
                },
                Period: 3600,
                Stat: "Maximum",
              },
            },
          ],
        }),
      );
      return out.MetricDataResults?.[0]?.Values;
    };
    expect(await peaks(EAST, "acu-east")).toEqual([12]);
    expect(await peaks(WEST, "acu-west")).toEqual([0.5]);
    await modify(WEST, "acu-west", 8);
    await modify(WEST, "acu-west", 1);
    // The hour's Maximum keeps the 8 ACUs it ran for a moment.
    expect(await peaks(WEST, "acu-west")).toEqual([8]);
    expect(await peaks(EU, "acu-eu")).toEqual([]);
  });
});

describe("capacity parity for Aurora (functions/lib/aurora-capacity.ts)", () => {
  const input = { targetRegion: WEST, mode: "graceful" as const };

  it("commits ceil(targetPercent x observed) in half-ACU steps, within the bounds and the cluster's MaxCapacity", () => {
    const bounds = { min: 0.5, max: 256 };
    expect(minCapacityFor(5.1, 100, bounds, 64)).toBe(5.5);
    expect(minCapacityFor(5.2, 150, bounds, 64)).toBe(8);
    expect(minCapacityFor(0.2, 100, bounds, 64)).toBe(0.5);
    expect(minCapacityFor(0.2, 100, { min: 2, max: 256 }, 64)).toBe(2);
    expect(minCapacityFor(100, 100, bounds, 64)).toBe(64);
    expect(minCapacityFor(100, 100, { min: 0.5, max: 32 }, 64)).toBe(32);
  });

  it("plans from the source's live peak, raises the target before the call, and skips once done", async () => {
    const plan = await planAuroraCapacity(config("raise"), topo, "p1", input, EAST, 5_000);
    expect(plan).toMatchObject({
      source: "live",
      observedAcu: 12,
      targetBefore: { min: 0.5, max: 64 },
      committed: 12,
      warnings: [],
    });
    if (!plan) throw new Error("no plan");
    const raise = await raiseTargetMinCapacity(topo, plan, "graceful", 5_000);
    expect(raise).toMatchObject({ before: { min: 0.5, max: 64 }, after: { min: 12, max: 64 } });
    expect(await range(WEST)).toEqual({ MinCapacity: 12, MaxCapacity: 64 });
    const again = await raiseTargetMinCapacity(topo, plan, "graceful", 5_000);
    expect(again.after).toBeNull();
    expect(again.skipped).toMatch(/already at or above 12/);
  });

  it("mode report reads and says what it would do, and modifies nothing", async () => {
    const plan = await planAuroraCapacity(config("report"), topo, "p2", input, EAST, 5_000);
    if (!plan) throw new Error("no plan");
    const raise = await raiseTargetMinCapacity(topo, plan, "graceful", 5_000);
    expect(raise.skipped).toBe("capacity.aurora.mode is report");
    expect(await range(WEST)).toEqual({ MinCapacity: 0.5, MaxCapacity: 64 });
  });

  it("bounds the raise by capacity.aurora.max and says the source ran more", async () => {
    const plan = await planAuroraCapacity(
      config("raise", { max: 8 }),
      topo,
      "p3",
      input,
      EAST,
      5_000,
    );
    expect(plan?.committed).toBe(8);
    expect(plan?.warnings.join()).toMatch(/ran 12 ACUs.*capacity.aurora.max 8/);
  });

  it("uses readiness's stored 24-hour maximum when the source's RDS API does not answer", async () => {
    await sampleServingAurora("p4", topo, config("report"), EAST, 5_000);
    sandbox.rds.setRegionDown(EAST, true);
    const plan = await planAuroraCapacity(config("raise"), topo, "p4", input, EAST, 1_000);
    expect(plan).toMatchObject({ source: "stored", observedAcu: 12, committed: 12 });
    expect(plan?.liveError).toMatch(/us-east-1/);
    const none = await planAuroraCapacity(config("raise"), topo, "p5", input, EAST, 1_000);
    expect(none).toMatchObject({ source: "unknown", observedAcu: null, committed: null });
  });

  it("warns of a provisioned target and never modifies it", async () => {
    const plan = await planAuroraCapacity(
      config("raise"),
      topo,
      "p6",
      { targetRegion: EU, mode: "graceful" },
      EAST,
      5_000,
    );
    expect(plan).toMatchObject({ committed: null, targetClass: "db.r6g.large" });
    expect(plan?.warnings.join()).toMatch(/provisioned \(db.r6g.large\).*12 ACUs/);
    if (!plan) throw new Error("no plan");
    const raise = await raiseTargetMinCapacity(topo, plan, "graceful", 5_000);
    expect(raise.after).toBeNull();
    expect(sandbox.rds.modifications().filter((m) => m.clusterArn === ARN[EU])).toEqual([]);
  });

  it("compares a provisioned source's instance class with a provisioned target's, and warns of a mismatch", async () => {
    sandbox.rds.defineGlobalCluster({
      identifier: ID,
      members: ARN,
      writerRegion: EAST,
      instanceClasses: { [EAST]: "db.r6g.4xlarge", [WEST]: "db.r6g.large" },
    });
    const plan = await planAuroraCapacity(config("raise"), topo, "p9", input, EAST, 5_000);
    expect(plan).toMatchObject({
      source: "live",
      observedAcu: null,
      observedClass: "db.r6g.4xlarge",
      targetClass: "db.r6g.large",
      committed: null,
    });
    expect(plan?.warnings).toEqual([
      expect.stringMatching(
        /^instance class mismatch: the source writer is db.r6g.4xlarge, the target's writer db.r6g.large \(provisioned clusters are not modified/,
      ),
    ]);
    const same = await planAuroraCapacity(
      config("raise"),
      topo,
      "p9",
      { targetRegion: EU, mode: "graceful" },
      WEST,
      5_000,
    );
    expect(same).toMatchObject({ observedClass: "db.r6g.large", targetClass: "db.r6g.large" });
    expect(same?.warnings).toEqual([]);
  });

  it("gives a raised cluster its MinCapacity back when the writer leaves it, once", async () => {
    const plan = await planAuroraCapacity(config("raise"), topo, "p7", input, EAST, 5_000);
    if (!plan) throw new Error("no plan");
    await storeRaise("p7", await raiseTargetMinCapacity(topo, plan, "graceful", 5_000), "exec-1");
    // An ungraceful run away from West does not wait on its API: the raise is kept, and said.
    const away = await planAuroraCapacity(
      config("raise"),
      topo,
      "p7",
      { targetRegion: EU, mode: "ungraceful" },
      WEST,
      5_000,
    );
    if (!away?.restore) throw new Error("no restore");
    expect(away.restore.notNow).toMatch(/ungraceful/);
    expect(await restoreMinCapacity("p7", topo, away.restore, 5_000)).toMatchObject({
      restored: false,
      settled: false,
      detail: expect.stringMatching(/^not given back \(ungraceful.*modify-db-cluster/),
    });
    expect(await range(WEST)).toEqual({ MinCapacity: 12, MaxCapacity: 64 });
    // The way back: West is the source now; Plan finds the raise stored.
    const back = await planAuroraCapacity(
      config("raise"),
      topo,
      "p7",
      { targetRegion: EAST, mode: "graceful" },
      WEST,
      5_000,
    );
    expect(back?.restore).toEqual({
      raisedBy: "exec-1",
      region: WEST,
      clusterArn: ARN[WEST],
      to: 0.5,
      raisedTo: 12,
    });
    if (!back?.restore) throw new Error("no restore");
    expect(await restoreMinCapacity("p7", topo, back.restore, 5_000)).toMatchObject({
      from: 12,
      to: 0.5,
      restored: true,
      settled: true,
    });
    expect(await range(WEST)).toEqual({ MinCapacity: 0.5, MaxCapacity: 64 });
    const later = await planAuroraCapacity(
      config("raise"),
      topo,
      "p7",
      { targetRegion: EAST, mode: "graceful" },
      WEST,
      5_000,
    );
    expect(later?.restore).toBeUndefined();
  });

  it("leaves a MinCapacity changed by hand since the raise, and says so", async () => {
    await modify(WEST, "acu-west", 6);
    const result = await restoreMinCapacity(
      "p8",
      topo,
      { raisedBy: "exec-2", region: WEST, clusterArn: ARN[WEST], to: 0.5, raisedTo: 12 },
      5_000,
    );
    expect(result).toMatchObject({ from: 6, restored: false, settled: true });
    expect(result.detail).toMatch(/changed since, left alone.*modify-db-cluster/);
    expect(await range(WEST)).toEqual({ MinCapacity: 6, MaxCapacity: 64 });
  });
});
