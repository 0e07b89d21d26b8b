import { CloudWatchClient, GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import {
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  type FailoverState,
  type GlobalCluster,
  GlobalClusterNotFoundFault,
  InvalidGlobalClusterStateFault,
  RDSClient,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  type AuroraTopology,
  assertPromotable,
  checkAurora,
  describeAurora,
  promoteAurora,
} from "../../functions/lib/aurora.ts";
import { FailoverError } from "../../functions/lib/errors.ts";

const ARN = {
  "us-west-2": "arn:aws:rds:us-west-2:111122223333:cluster:payments-usw2",
  "us-east-2": "arn:aws:rds:us-east-2:111122223333:cluster:payments-use2",
  "eu-west-1": "arn:aws:rds:eu-west-1:111122223333:cluster:payments-euw1",
} as const;
type Region = keyof typeof ARN;

const TOPO: AuroraTopology = {
  globalClusterIdentifier: "payments-global",
  maxRpoSeconds: 5,
  members: { ...ARN },
};
const NOW = new Date("2026-03-01T12:00:00.000Z");

/** `FailoverState.Status` is an open string in the API: switching-over is not in the SDK enum. */
type Failover = Omit<FailoverState, "Status"> & { Status: string };

const rds = mockClient(RDSClient);
const cw = mockClient(CloudWatchClient);

function cluster(
  writer: Region | null,
  extra: { failover?: Failover; status?: string } = {},
): GlobalCluster {
  return {
    GlobalClusterIdentifier: "payments-global",
    Status: extra.status ?? "available",
    GlobalClusterMembers: (Object.keys(ARN) as Region[]).map((r) => ({
      DBClusterArn: ARN[r],
      IsWriter: r === writer,
    })),
    ...(extra.failover ? { FailoverState: extra.failover as FailoverState } : {}),
  };
}

/** A promotion from us-west-2 that Aurora is running. */
const inFlight = (status: string, to: Region = "us-east-2", dataLoss = false): Failover => ({
  Status: status,
  FromDbClusterArn: ARN["us-west-2"],
  ToDbClusterArn: ARN[to],
  IsDataLossAllowed: dataLoss,
});

/** RDS answers DescribeGlobalClusters with `gc` in every region except those in `dead`. */
function rdsAnswers(gc: GlobalCluster, dead: Partial<Record<string, unknown>> = {}) {
  rds.on(DescribeGlobalClustersCommand).callsFake(async (_input, getClient) => {
    const region = await getClient().config.region();
    if (region in dead) throw dead[region];
    return { GlobalClusters: [gc] };
  });
}

function lagDatapoints(points: { minutesAgo: number; ms: number }[]) {
  cw.on(GetMetricDataCommand).resolves({
    MetricDataResults: [
      {
        Id: "rpoLag",
        Timestamps: points.map((p) => new Date(NOW.getTime() - p.minutesAgo * 60_000)),
        Values: points.map((p) => p.ms),
      },
    ],
  });
}

const refused = () =>
  Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:443"), { code: "ECONNREFUSED" });
const unavailable = () =>
  Object.assign(new Error("We encountered an internal error"), {
    name: "InternalFailure",
    $metadata: { httpStatusCode: 503 },
  });
const aborted = () => Object.assign(new Error("Request aborted"), { name: "AbortError" });
const throttled = () =>
  Object.assign(new Error("Rate exceeded"), {
    name: "Throttling",
    $metadata: { httpStatusCode: 400 },
  });

/** Every command sent to a stub, with the region of the client it was sent with. */
async function sent(stub: typeof rds | typeof cw) {
  return Promise.all(
    stub.calls().map(async (call) => ({
      command: (call.args[0] as object).constructor.name,
      region: await (call.thisValue as RDSClient).config.region(),
      input: call.args[0].input,
    })),
  );
}

const writes = async () =>
  (await sent(rds)).filter((c) => c.command !== DescribeGlobalClustersCommand.name);

async function caught(p: Promise<unknown>): Promise<FailoverError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof FailoverError)) throw new Error(`expected a FailoverError, got ${String(e)}`);
  return e;
}

beforeEach(() => {
  rds.reset();
  cw.reset();
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(NOW);
});
afterEach(() => {
  vi.useRealTimers();
});

describe("describeAurora", () => {
  it("asks the first region and reports writer, failover state, status and members by region", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2", { status: "available" }));
    // Act
    const state = await describeAurora(TOPO, ["us-east-2", "us-west-2"]);
    // Assess
    expect(state).toEqual({
      writerRegion: "us-west-2",
      failoverState: null,
      status: "available",
      members: [
        { region: "us-west-2", clusterArn: ARN["us-west-2"], isWriter: true },
        { region: "us-east-2", clusterArn: ARN["us-east-2"], isWriter: false },
        { region: "eu-west-1", clusterArn: ARN["eu-west-1"], isWriter: false },
      ],
    });
    expect(await sent(rds)).toEqual([
      {
        command: "DescribeGlobalClustersCommand",
        region: "us-east-2",
        input: { GlobalClusterIdentifier: "payments-global" },
      },
    ]);
    expect((rds.calls()[0]?.args as unknown[] | undefined)?.[1]).toMatchObject({
      abortSignal: expect.any(AbortSignal),
    });
  });

  it.each([
    ["refuses connections", refused],
    ["answers 5xx", unavailable],
    ["does not answer in time", aborted],
  ])("moves on to the next region when one %s", async (_what, failure) => {
    // Prepare
    rdsAnswers(cluster("us-east-2"), { "us-west-2": failure() });
    // Act
    const state = await describeAurora(TOPO, ["us-west-2", "us-east-2", "eu-west-1"]);
    // Assess
    expect(state.writerRegion).toBe("us-east-2");
    expect((await sent(rds)).map((c) => c.region)).toEqual(["us-west-2", "us-east-2"]);
  });

  it("takes the region of a member missing from the topology from its ARN", async () => {
    // Prepare
    const foreign = "arn:aws:rds:ap-south-1:111122223333:cluster:payments-aps1";
    rds.on(DescribeGlobalClustersCommand).resolves({
      GlobalClusters: [
        { ...cluster(null), GlobalClusterMembers: [{ DBClusterArn: foreign, IsWriter: true }] },
      ],
    });
    // Act
    const state = await describeAurora(TOPO, ["us-east-2"]);
    // Assess
    expect(state.writerRegion).toBe("ap-south-1");
  });

  it("fails with AwsUnavailable naming each region when none answers", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"), { "us-west-2": refused(), "us-east-2": unavailable() });
    // Act
    const e = await caught(describeAurora(TOPO, ["us-west-2", "us-east-2"]));
    // Assess
    expect(e.name).toBe("AwsUnavailable");
    expect(e.retryable).toBe(true);
    expect(e.details).toEqual([
      expect.stringMatching(/^us-west-2: .*ECONNREFUSED/),
      expect.stringMatching(/^us-east-2: InternalFailure/),
    ]);
  });

  it("does not hide throttling behind a fallback: AwsThrottled, retryable", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"), { "us-east-2": throttled() });
    // Act
    const e = await caught(describeAurora(TOPO, ["us-east-2", "us-west-2"]));
    // Assess
    expect(e.name).toBe("AwsThrottled");
    expect(e.retryable).toBe(true);
    expect(rds.calls()).toHaveLength(1);
  });

  it("says to check aurora.globalClusterIdentifier when the global cluster does not exist", async () => {
    // Prepare
    rds.on(DescribeGlobalClustersCommand).rejects(
      new GlobalClusterNotFoundFault({
        message: "GlobalCluster payments-global not found",
        $metadata: {},
      }),
    );
    // Act
    const e = await caught(describeAurora(TOPO, ["us-east-2", "us-west-2"]));
    // Assess
    expect(e.name).toBe("AuroraPromotionFailed");
    expect(e.message).toContain('"payments-global" does not exist');
    expect(e.details).toEqual(["check aurora.globalClusterIdentifier in the topology"]);
    expect(rds.calls()).toHaveLength(1);
  });

  it("treats an empty answer as a missing global cluster", async () => {
    // Prepare
    rds.on(DescribeGlobalClustersCommand).resolves({ GlobalClusters: [] });
    // Act
    const e = await caught(describeAurora(TOPO, ["us-east-2"]));
    // Assess
    expect(e.name).toBe("AuroraPromotionFailed");
    expect(e.message).toContain("aurora.globalClusterIdentifier");
  });
});

describe("promoteAurora: idempotence", () => {
  it("skips without a write call when the target is already the writer", async () => {
    // Prepare
    rdsAnswers(cluster("us-east-2"));
    // Act
    const result = await promoteAurora(TOPO, {
      targetRegion: "us-east-2",
      mode: "graceful",
      allowDataLoss: false,
    });
    // Assess
    expect(result).toMatchObject({
      skipped: true,
      action: "none",
      before: { writerRegion: "us-east-2" },
    });
    expect(result.calledIn).toBeUndefined();
    expect(await writes()).toEqual([]);
    expect((await sent(rds))[0]?.region).toBe("us-east-2");
  });

  it.each([
    [{ Status: "switching-over", IsDataLossAllowed: false }, "switchover"],
    [{ Status: "failing-over", IsDataLossAllowed: true }, "failover"],
    [{ Status: "pending", IsDataLossAllowed: true }, "failover"],
    [{ Status: "pending", IsDataLossAllowed: false }, "switchover"],
  ] as const)("does not call again while %o to the target is under way", async (fs, action) => {
    // Prepare
    const failover = {
      ...fs,
      FromDbClusterArn: ARN["us-west-2"],
      ToDbClusterArn: ARN["us-east-2"],
    };
    rdsAnswers(cluster("us-west-2", { failover, status: "failing-over" }));
    // Act
    const result = await promoteAurora(TOPO, {
      targetRegion: "us-east-2",
      mode: "ungraceful",
      allowDataLoss: false,
    });
    // Assess
    expect(result).toMatchObject({ skipped: true, action, before: { failoverState: fs.Status } });
    expect(await writes()).toEqual([]);
    expect(cw.calls()).toEqual([]);
  });

  it.each([
    ["to another cluster", { Status: "switching-over", ToDbClusterArn: ARN["eu-west-1"] }],
    ["being cancelled", { Status: "cancelling", ToDbClusterArn: ARN["us-east-2"] }],
  ])("refuses while a promotion %s is in flight", async (_what, fs) => {
    // Prepare
    rdsAnswers(cluster("us-west-2", { failover: { ...fs, FromDbClusterArn: ARN["us-west-2"] } }));
    // Act
    const e = await caught(
      promoteAurora(TOPO, { targetRegion: "us-east-2", mode: "graceful", allowDataLoss: false }),
    );
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect(e.message).toContain(
      `${fs.Status} from us-west-2 to ${fs.ToDbClusterArn === ARN["eu-west-1"] ? "eu-west-1" : "us-east-2"}`,
    );
    expect(await writes()).toEqual([]);
  });

  it("refuses when the target's cluster is not a member of the global cluster", async () => {
    // Prepare
    rds.on(DescribeGlobalClustersCommand).resolves({
      GlobalClusters: [
        {
          ...cluster(null),
          GlobalClusterMembers: [{ DBClusterArn: ARN["us-west-2"], IsWriter: true }],
        },
      ],
    });
    // Act
    const e = await caught(
      promoteAurora(TOPO, { targetRegion: "us-east-2", mode: "graceful", allowDataLoss: false }),
    );
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect(e.details).toContainEqual(
      expect.stringContaining("regions.us-east-2.aurora.clusterArn"),
    );
    expect(await writes()).toEqual([]);
  });

  it("rejects a target region that has no cluster in the topology before calling AWS", async () => {
    // Act
    const e = await caught(
      promoteAurora(TOPO, { targetRegion: "ap-south-1", mode: "graceful", allowDataLoss: false }),
    );
    // Assess
    expect(e.name).toBe("ConfigError");
    expect(rds.calls()).toEqual([]);
  });
});

describe("promoteAurora: graceful", () => {
  const graceful = { targetRegion: "us-east-2", mode: "graceful", allowDataLoss: false } as const;

  it("switches over, asked in the current writer's region (checked to answer first), with the target's ARN", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"));
    rds.on(SwitchoverGlobalClusterCommand).resolves({});
    // Act
    const result = await promoteAurora(TOPO, graceful);
    // Assess
    expect(result).toMatchObject({ skipped: false, action: "switchover", calledIn: "us-west-2" });
    expect(result.before.writerRegion).toBe("us-west-2");
    expect(await sent(rds)).toEqual([
      {
        command: "DescribeGlobalClustersCommand",
        region: "us-east-2",
        input: { GlobalClusterIdentifier: "payments-global" },
      },
      {
        command: "DescribeGlobalClustersCommand",
        region: "us-west-2",
        input: { GlobalClusterIdentifier: "payments-global" },
      },
      {
        command: "SwitchoverGlobalClusterCommand",
        region: "us-west-2",
        input: {
          GlobalClusterIdentifier: "payments-global",
          TargetDbClusterIdentifier: ARN["us-east-2"],
        },
      },
    ]);
    expect(cw.calls()).toEqual([]);
  });

  it.each([
    ["refuses connections", refused],
    ["answers 5xx", unavailable],
    ["times out", aborted],
  ])(
    "refuses before any write, suggesting ungraceful, when the writer's region %s",
    async (_what, failure) => {
      // Prepare
      rdsAnswers(cluster("us-west-2"), { "us-west-2": failure() });
      // Act
      const e = await caught(promoteAurora(TOPO, graceful));
      // Assess
      expect(e.name).toBe("AuroraPromotionRefused");
      expect(e.message).toContain("the RDS API in us-west-2");
      expect(e.message).toContain("graceful switchover needs the old primary");
      expect(e.details).toEqual([
        expect.stringContaining('start a new execution with mode "ungraceful"'),
      ]);
      expect(e.cause).toBeDefined();
      expect(await writes()).toEqual([]);
    },
  );

  it("makes a switchover the writer's region did not answer retryable when nothing started (the retry checks first)", async () => {
    // Prepare: the region answers reads, but the switchover gets no answer and did not start.
    rdsAnswers(cluster("us-west-2"));
    rds.on(SwitchoverGlobalClusterCommand).rejects(unavailable());
    // Act
    const e = await caught(promoteAurora(TOPO, graceful));
    // Assess
    expect(e.name).toBe("AwsUnavailable");
    expect(e.retryable).toBe(true);
    expect(e.message).toContain("the global cluster shows no promotion to us-east-2");
    expect((await sent(rds)).map((c) => `${c.command}@${c.region}`)).toEqual([
      "DescribeGlobalClustersCommand@us-east-2",
      "DescribeGlobalClustersCommand@us-west-2",
      "SwitchoverGlobalClusterCommand@us-west-2",
      "DescribeGlobalClustersCommand@us-east-2",
    ]);
  });

  it("refuses when no member is the writer", async () => {
    // Prepare
    rdsAnswers(cluster(null));
    // Act
    const e = await caught(promoteAurora(TOPO, graceful));
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect(e.message).toContain("has no writer");
    expect(await writes()).toEqual([]);
  });

  it("reports the service's message when RDS rejects the switchover", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"));
    rds.on(SwitchoverGlobalClusterCommand).rejects(
      new InvalidGlobalClusterStateFault({
        message: "Global cluster payments-global is not available",
        $metadata: {},
      }),
    );
    // Act
    const e = await caught(promoteAurora(TOPO, graceful));
    // Assess
    expect(e.name).toBe("AuroraPromotionFailed");
    expect(e.message).toContain(
      "SwitchoverGlobalCluster payments-global to us-east-2 in us-west-2",
    );
    expect(e.message).toContain(
      "InvalidGlobalClusterStateFault: Global cluster payments-global is not available",
    );
  });

  it("maps throttling of the switchover to AwsThrottled", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"));
    rds.on(SwitchoverGlobalClusterCommand).rejects(throttled());
    // Act
    const e = await caught(promoteAurora(TOPO, graceful));
    // Assess
    expect(e.name).toBe("AwsThrottled");
  });

  it("still reads the global cluster when the old primary's region is dead, then refuses without a write", async () => {
    // Prepare: the target answers, the writer's region does not.
    rdsAnswers(cluster("us-west-2"), { "us-west-2": refused() });
    rds.on(SwitchoverGlobalClusterCommand).rejects(refused());
    // Act
    const e = await caught(promoteAurora(TOPO, graceful));
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect((await sent(rds)).map((c) => `${c.command}@${c.region}`)).toEqual([
      "DescribeGlobalClustersCommand@us-east-2",
      "DescribeGlobalClustersCommand@us-west-2",
    ]);
  });
});

describe("promoteAurora: ungraceful and the RPO guard", () => {
  const ungraceful = {
    targetRegion: "us-east-2",
    mode: "ungraceful",
    allowDataLoss: false,
  } as const;

  beforeEach(() => {
    rdsAnswers(cluster("us-west-2"), { "us-west-2": refused() });
    rds.on(FailoverGlobalClusterCommand).resolves({});
  });

  it("reads the target's lag in the target region, then fails over there with AllowDataLoss", async () => {
    // Prepare
    lagDatapoints([
      { minutesAgo: 1, ms: 1200 },
      { minutesAgo: 3, ms: 9000 },
    ]);
    // Act
    const result = await promoteAurora(TOPO, ungraceful);
    // Assess
    expect(result).toMatchObject({
      skipped: false,
      action: "failover",
      calledIn: "us-east-2",
      rpoLagSeconds: 1.2,
    });
    expect(await sent(cw)).toEqual([
      {
        command: "GetMetricDataCommand",
        region: "us-east-2",
        input: {
          StartTime: new Date(NOW.getTime() - 5 * 60_000),
          EndTime: NOW,
          ScanBy: "TimestampDescending",
          MetricDataQueries: [
            {
              Id: "rpoLag",
              ReturnData: true,
              MetricStat: {
                Metric: {
                  Namespace: "AWS/RDS",
                  MetricName: "AuroraGlobalDBRPOLag",
                  Dimensions: [{ Name: "DBClusterIdentifier", Value: "payments-use2" }],
                },
                Period: 60,
                Stat: "Maximum",
              },
            },
          ],
        },
      },
    ]);
    expect(await writes()).toEqual([
      {
        command: "FailoverGlobalClusterCommand",
        region: "us-east-2",
        input: {
          GlobalClusterIdentifier: "payments-global",
          TargetDbClusterIdentifier: ARN["us-east-2"],
          AllowDataLoss: true,
        },
      },
    ]);
  });

  it("accepts a lag exactly at maxRpoSeconds", async () => {
    // Prepare
    lagDatapoints([{ minutesAgo: 1, ms: 5000 }]);
    // Act
    const result = await promoteAurora(TOPO, ungraceful);
    // Assess
    expect(result.rpoLagSeconds).toBe(5);
    expect(rds.commandCalls(FailoverGlobalClusterCommand)).toHaveLength(1);
  });

  it("refuses when the latest lag is above maxRpoSeconds, saying how to override", async () => {
    // Prepare: an older, smaller value must not win over the latest one.
    lagDatapoints([
      { minutesAgo: 4, ms: 300 },
      { minutesAgo: 1, ms: 7250 },
    ]);
    // Act
    const e = await caught(promoteAurora(TOPO, ungraceful));
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect(e.message).toContain(
      "payments-use2 in us-east-2 is 7.25s, above aurora.maxRpoSeconds 5s",
    );
    expect(e.details).toEqual([
      expect.stringContaining("start a new execution with allowDataLoss: true"),
    ]);
    expect(await writes()).toEqual([]);
  });

  it("fails over above the limit when allowDataLoss is set, reporting the lag", async () => {
    // Prepare
    lagDatapoints([{ minutesAgo: 1, ms: 42_000 }]);
    // Act
    const result = await promoteAurora(TOPO, { ...ungraceful, allowDataLoss: true });
    // Assess
    expect(result).toMatchObject({ action: "failover", calledIn: "us-east-2", rpoLagSeconds: 42 });
    expect(rds.commandCalls(FailoverGlobalClusterCommand)[0]?.args[0].input.AllowDataLoss).toBe(
      true,
    );
  });

  it("refuses without datapoints, saying why and how to override", async () => {
    // Prepare
    lagDatapoints([]);
    // Act
    const e = await caught(promoteAurora(TOPO, ungraceful));
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect(e.message).toContain("no AuroraGlobalDBRPOLag datapoint for payments-use2 in us-east-2");
    expect(e.details).toEqual([
      expect.stringContaining("published only for secondary clusters"),
      expect.stringContaining("allowDataLoss: true"),
    ]);
    expect(await writes()).toEqual([]);
  });

  it("fails over without datapoints when allowDataLoss is set, with no lag reported", async () => {
    // Prepare
    cw.on(GetMetricDataCommand).resolves({ MetricDataResults: [] });
    // Act
    const result = await promoteAurora(TOPO, { ...ungraceful, allowDataLoss: true });
    // Assess
    expect(result).toMatchObject({ skipped: false, action: "failover", calledIn: "us-east-2" });
    expect(result).not.toHaveProperty("rpoLagSeconds");
    expect(rds.commandCalls(FailoverGlobalClusterCommand)).toHaveLength(1);
  });

  it("maps a throttled metric read to AwsThrottled and does not fail over", async () => {
    // Prepare
    cw.on(GetMetricDataCommand).rejects(throttled());
    // Act
    const e = await caught(promoteAurora(TOPO, ungraceful));
    // Assess
    expect(e.name).toBe("AwsThrottled");
    expect(await writes()).toEqual([]);
  });

  it("says to check aurora.globalClusterIdentifier when the failover finds no global cluster", async () => {
    // Prepare
    lagDatapoints([{ minutesAgo: 1, ms: 100 }]);
    rds
      .on(FailoverGlobalClusterCommand)
      .rejects(new GlobalClusterNotFoundFault({ message: "not found", $metadata: {} }));
    // Act
    const e = await caught(promoteAurora(TOPO, ungraceful));
    // Assess
    expect(e.name).toBe("AuroraPromotionFailed");
    expect(e.details).toEqual(["check aurora.globalClusterIdentifier in the topology"]);
  });

  it("makes a failover the target region did not answer retryable (a re-run checks first)", async () => {
    // Prepare
    lagDatapoints([{ minutesAgo: 1, ms: 100 }]);
    rds.on(FailoverGlobalClusterCommand).rejects(aborted());
    // Act
    const e = await caught(promoteAurora(TOPO, ungraceful));
    // Assess
    expect(e.name).toBe("AwsUnavailable");
    expect(e.retryable).toBe(true);
  });
});

describe("checkAurora", () => {
  it("succeeds when the target is writer, no failover state is left and the cluster is available", async () => {
    // Prepare
    rdsAnswers(cluster("us-east-2"), { "us-west-2": refused() });
    // Act
    const result = await checkAurora(TOPO, "us-east-2");
    // Assess
    expect(result).toEqual({
      status: "SUCCEEDED",
      state: expect.objectContaining({
        writerRegion: "us-east-2",
        failoverState: null,
        status: "available",
      }),
    });
    expect((await sent(rds)).map((c) => c.region)).toEqual(["us-east-2"]);
  });

  it.each([
    [
      "a promotion to the target is running",
      cluster("us-west-2", {
        status: "switching-over",
        failover: {
          Status: "switching-over",
          FromDbClusterArn: ARN["us-west-2"],
          ToDbClusterArn: ARN["us-east-2"],
        },
      }),
    ],
    [
      "the target is writer but the failover state is not cleared",
      cluster("us-east-2", {
        failover: {
          Status: "failing-over",
          FromDbClusterArn: ARN["us-west-2"],
          ToDbClusterArn: ARN["us-east-2"],
        },
      }),
    ],
    [
      "the target is writer but the cluster is not available yet",
      cluster("us-east-2", { status: "modifying" }),
    ],
    ["no member is writer yet", cluster(null)],
  ])("is in progress while %s", async (_what, gc) => {
    // Prepare
    rdsAnswers(gc);
    // Act
    const result = await checkAurora(TOPO, "us-east-2", "us-west-2");
    // Assess
    expect(result.status).toBe("IN_PROGRESS");
    expect(result.error).toBeUndefined();
  });

  it("fails when Aurora is cancelling the promotion", async () => {
    // Prepare
    rdsAnswers(
      cluster("us-west-2", {
        failover: {
          Status: "cancelling",
          FromDbClusterArn: ARN["us-west-2"],
          ToDbClusterArn: ARN["us-east-2"],
        },
      }),
    );
    // Act
    const result = await checkAurora(TOPO, "us-east-2");
    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error).toMatchObject({
      name: "AuroraPromotionFailed",
      message: expect.stringContaining(
        "cancelling the promotion of payments-global (cancelling from us-west-2 to us-east-2)",
      ),
    });
    // Every error ends in a Fail state, so a Redrive would only fail again.
    expect(result.error?.details).toEqual([
      expect.stringContaining("start a new execution (it skips what is done)"),
    ]);
    expect(result.error?.message).not.toMatch(/Redrive/);
  });

  it("fails when another promotion, not to the target, is running", async () => {
    // Prepare
    rdsAnswers(
      cluster("us-west-2", {
        failover: {
          Status: "switching-over",
          FromDbClusterArn: ARN["us-west-2"],
          ToDbClusterArn: ARN["eu-west-1"],
        },
      }),
    );
    // Act
    const result = await checkAurora(TOPO, "us-east-2");
    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error?.name).toBe("AuroraPromotionFailed");
  });

  it("fails when the writer moved to a region that is neither source nor target", async () => {
    // Prepare
    rdsAnswers(cluster("eu-west-1"));
    // Act
    const result = await checkAurora(TOPO, "us-east-2", "us-west-2");
    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error?.message).toContain("moved to eu-west-1");
  });

  it("takes the source from the failover state when none is given", async () => {
    // Prepare
    rdsAnswers(
      cluster("eu-west-1", {
        failover: {
          Status: "failing-over",
          FromDbClusterArn: ARN["us-west-2"],
          ToDbClusterArn: ARN["us-east-2"],
        },
      }),
    );
    // Act
    const result = await checkAurora(TOPO, "us-east-2");
    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error?.message).toContain("moved to eu-west-1");
  });

  it("keeps waiting while the writer is still the source", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"));
    // Act
    const result = await checkAurora(TOPO, "us-east-2", "us-west-2");
    // Assess
    expect(result.status).toBe("IN_PROGRESS");
  });
});

describe("assertPromotable: the checks Plan runs before anything changes", () => {
  it("reports what a graceful promotion will do, with no write call", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"));
    // Act
    const plan = await assertPromotable(
      TOPO,
      { targetRegion: "us-east-2", mode: "graceful", allowDataLoss: false },
      "Plan",
    );
    // Assess
    expect(plan).toMatchObject({ skipped: false, action: "switchover", calledIn: "us-west-2" });
    expect(await writes()).toEqual([]);
  });

  it("reports the RPO guard's reading for an ungraceful one, with no write call", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"), { "us-west-2": refused() });
    lagDatapoints([{ minutesAgo: 1, ms: 250 }]);
    // Act
    const plan = await assertPromotable(
      TOPO,
      { targetRegion: "us-east-2", mode: "ungraceful", allowDataLoss: false },
      "Plan",
    );
    // Assess
    expect(plan).toMatchObject({
      skipped: false,
      action: "failover",
      calledIn: "us-east-2",
      rpoLagSeconds: 0.25,
    });
    expect(await writes()).toEqual([]);
  });

  it.each([
    [
      "the RPO lag is above maxRpoSeconds (ungraceful)",
      "ungraceful",
      () => {
        rdsAnswers(cluster("us-west-2"));
        lagDatapoints([{ minutesAgo: 1, ms: 60_000 }]);
      },
      "above aurora.maxRpoSeconds 5s",
    ],
    [
      "the writer's region does not answer (graceful)",
      "graceful",
      () => rdsAnswers(cluster("us-west-2"), { "us-west-2": unavailable() }),
      "the RDS API in us-west-2, the current writer's region, does not answer",
    ],
    [
      "another promotion is in flight",
      "graceful",
      () => rdsAnswers(cluster("us-west-2", { failover: inFlight("switching-over", "eu-west-1") })),
      "is busy (switching-over from us-west-2 to eu-west-1)",
    ],
  ] as const)("refuses, named for the step, when %s", async (_what, mode, prepare, message) => {
    // Prepare
    prepare();
    // Act
    const e = await caught(
      assertPromotable(TOPO, { targetRegion: "us-east-2", mode, allowDataLoss: false }, "Plan"),
    );
    // Assess
    expect(e.name).toBe("AuroraPromotionRefused");
    expect(e.message).toMatch(/^\[Plan\] /);
    expect(e.message).toContain(message);
    expect(await writes()).toEqual([]);
  });

  it("lets allowDataLoss through above maxRpoSeconds, still reporting the lag", async () => {
    // Prepare
    rdsAnswers(cluster("us-west-2"));
    lagDatapoints([{ minutesAgo: 1, ms: 60_000 }]);
    // Act
    const plan = await assertPromotable(TOPO, {
      targetRegion: "us-east-2",
      mode: "ungraceful",
      allowDataLoss: true,
    });
    // Assess
    expect(plan).toMatchObject({ action: "failover", rpoLagSeconds: 60 });
  });
});

describe("promoteAurora: a promotion call is sent once", () => {
  const maxAttemptsOf = async (stub: typeof rds, command: string) =>
    Promise.all(
      stub
        .calls()
        .filter((c) => (c.args[0] as object).constructor.name === command)
        .map((c) => (c.thisValue as RDSClient).config.maxAttempts()),
    );

  it.each([
    ["graceful", SwitchoverGlobalClusterCommand],
    ["ungraceful", FailoverGlobalClusterCommand],
  ] as const)(
    "%s: the write goes through a client with no SDK retry; reads keep theirs",
    async (mode, command) => {
      // Prepare
      rdsAnswers(cluster("us-west-2"));
      lagDatapoints([{ minutesAgo: 1, ms: 100 }]);
      rds.on(command).resolves({});
      // Act
      await promoteAurora(TOPO, { targetRegion: "us-east-2", mode, allowDataLoss: false });
      // Assess
      expect(await maxAttemptsOf(rds, command.name)).toEqual([1]);
      const reads = await maxAttemptsOf(rds, DescribeGlobalClustersCommand.name);
      expect(reads.every((n) => n > 1)).toBe(true);
    },
  );

  /** DescribeGlobalClusters answers `now()` in every region: a write can change it. */
  function rdsAnswersLive(now: () => GlobalCluster) {
    rds.on(DescribeGlobalClustersCommand).callsFake(async () => ({ GlobalClusters: [now()] }));
  }

  it("treats a switchover that answered 5xx but started as started", async () => {
    // Prepare: the switchover takes effect, then the answer is lost.
    let gc = cluster("us-west-2");
    rdsAnswersLive(() => gc);
    rds.on(SwitchoverGlobalClusterCommand).callsFake(async () => {
      gc = cluster("us-west-2", { failover: inFlight("switching-over") });
      throw unavailable();
    });
    // Act
    const result = await promoteAurora(TOPO, {
      targetRegion: "us-east-2",
      mode: "graceful",
      allowDataLoss: false,
    });
    // Assess
    expect(result).toMatchObject({ skipped: false, action: "switchover", calledIn: "us-west-2" });
    expect(result.startedDespite).toContain("InternalFailure");
    expect(rds.commandCalls(SwitchoverGlobalClusterCommand)).toHaveLength(1);
  });

  it("treats a failover refused as InvalidGlobalClusterState, with the target already writer, as started", async () => {
    // Prepare
    let gc = cluster("us-west-2");
    rdsAnswersLive(() => gc);
    lagDatapoints([{ minutesAgo: 1, ms: 100 }]);
    rds.on(FailoverGlobalClusterCommand).callsFake(async () => {
      gc = cluster("us-east-2");
      throw new InvalidGlobalClusterStateFault({ message: "already failing over", $metadata: {} });
    });
    // Act
    const result = await promoteAurora(TOPO, {
      targetRegion: "us-east-2",
      mode: "ungraceful",
      allowDataLoss: false,
    });
    // Assess
    expect(result).toMatchObject({ action: "failover", calledIn: "us-east-2", rpoLagSeconds: 0.1 });
    expect(result.startedDespite).toContain("InvalidGlobalClusterStateFault");
  });

  it("does not count a promotion to another cluster as started", async () => {
    // Prepare
    let gc = cluster("us-west-2");
    rdsAnswersLive(() => gc);
    rds.on(SwitchoverGlobalClusterCommand).callsFake(async () => {
      gc = cluster("us-west-2", { failover: inFlight("switching-over", "eu-west-1") });
      throw new InvalidGlobalClusterStateFault({ message: "busy", $metadata: {} });
    });
    // Act
    const e = await caught(
      promoteAurora(TOPO, { targetRegion: "us-east-2", mode: "graceful", allowDataLoss: false }),
    );
    // Assess
    expect(e.name).toBe("AuroraPromotionFailed");
    expect(e.message).toContain("InvalidGlobalClusterStateFault: busy");
  });

  it("keeps the write's error when the re-read gets no answer either", async () => {
    // Prepare: reads answer until the write, then no region does.
    let down = false;
    rds.on(DescribeGlobalClustersCommand).callsFake(async () => {
      if (down) throw refused();
      return { GlobalClusters: [cluster("us-west-2")] };
    });
    lagDatapoints([{ minutesAgo: 1, ms: 100 }]);
    rds.on(FailoverGlobalClusterCommand).callsFake(async () => {
      down = true;
      throw aborted();
    });
    // Act
    const e = await caught(
      promoteAurora(TOPO, { targetRegion: "us-east-2", mode: "ungraceful", allowDataLoss: false }),
    );
    // Assess
    expect(e.name).toBe("AwsUnavailable");
    expect(e.message).toContain("FailoverGlobalCluster payments-global to us-east-2 in us-east-2");
    expect(e.message).toContain("could not be read again");
  });
});
