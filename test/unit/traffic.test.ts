import {
  AccessDeniedException,
  DescribeEndpointGroupCommand,
  type EndpointDescription,
  type EndpointGroup,
  GlobalAcceleratorClient,
  UpdateEndpointGroupCommand,
} from "@aws-sdk/client-global-accelerator";
import {
  ChangeResourceRecordSetsCommand,
  GetHealthCheckStatusCommand,
  ListResourceRecordSetsCommand,
  type ResourceRecordSet,
  Route53Client,
} from "@aws-sdk/client-route-53";
import { mockClient } from "aws-sdk-client-mock";
import { beforeEach, describe, expect, it } from "vitest";
import { FailoverError } from "../../functions/lib/errors.ts";
import {
  applyNextStage,
  checkTargetHealth,
  readTraffic,
  stageFor,
  type TrafficTopology,
} from "../../functions/lib/traffic.ts";

const REGIONS = ["us-west-2", "us-east-2", "eu-west-1"] as const;
type Region = (typeof REGIONS)[number];
const TARGET = "us-east-2";
const groupArn = (r: Region) =>
  `arn:aws:globalaccelerator::111122223333:accelerator/1234abcd/listener/0123abcd/endpoint-group/${r}`;
const HC = {
  "us-west-2": "11111111-1111-4111-8111-111111111111",
  "us-east-2": "22222222-2222-4222-8222-222222222222",
  "eu-west-1": "33333333-3333-4333-8333-333333333333",
} as const;

const GA_TOPO: TrafficTopology = {
  mode: "global-accelerator",
  regions: Object.fromEntries(
    REGIONS.map((r) => [r, { healthCheckId: HC[r], endpointGroupArn: groupArn(r) }]),
  ),
};
const R53_TOPO: TrafficTopology = {
  mode: "route53",
  hostedZoneId: "Z0123456789ABC",
  recordName: "api.payments.example.com",
  regions: Object.fromEntries(
    REGIONS.map((r) => [r, { healthCheckId: HC[r], setIdentifier: `payments-${r}` }]),
  ),
};

const ga = mockClient(GlobalAcceleratorClient);
const r53 = mockClient(Route53Client);

const ENDPOINTS: Record<Region, EndpointDescription[]> = {
  "us-west-2": [
    {
      EndpointId: "alb-usw2",
      Weight: 200,
      HealthState: "HEALTHY",
      ClientIPPreservationEnabled: true,
    },
    { EndpointId: "eipalloc-usw2", Weight: 0, HealthState: "UNHEALTHY", HealthReason: "Drained" },
  ],
  "us-east-2": [
    {
      EndpointId: "alb-use2-a",
      Weight: 128,
      HealthState: "HEALTHY",
      ClientIPPreservationEnabled: false,
    },
    { EndpointId: "alb-use2-b", HealthState: "HEALTHY" },
  ],
  "eu-west-1": [{ EndpointId: "alb-euw1", Weight: 50, HealthState: "HEALTHY" }],
};

/** A stateful fake of the GA control plane: describe reads, update writes, dials are recorded. */
let groups: Map<string, EndpointGroup>;
let dialHistory: Record<string, number>[];

function dialsNow(): Record<string, number> {
  return Object.fromEntries(
    REGIONS.map((r) => [r, groups.get(groupArn(r))?.TrafficDialPercentage ?? -1]),
  );
}

function gaHas(
  dials: Record<Region, number>,
  endpoints: Partial<Record<Region, EndpointDescription[]>> = {},
) {
  groups = new Map(
    REGIONS.map((r) => [
      groupArn(r),
      {
        EndpointGroupArn: groupArn(r),
        EndpointGroupRegion: r,
        TrafficDialPercentage: dials[r],
        HealthCheckPort: 443,
        EndpointDescriptions: structuredClone(endpoints[r] ?? ENDPOINTS[r]),
      },
    ]),
  );
  dialHistory = [];
  ga.on(DescribeEndpointGroupCommand).callsFake((input: { EndpointGroupArn: string }) => ({
    EndpointGroup: structuredClone(groups.get(input.EndpointGroupArn)),
  }));
  ga.on(UpdateEndpointGroupCommand).callsFake(
    (input: { EndpointGroupArn: string; TrafficDialPercentage: number }) => {
      const group = groups.get(input.EndpointGroupArn);
      if (group) group.TrafficDialPercentage = input.TrafficDialPercentage;
      dialHistory.push(dialsNow());
      return { EndpointGroup: structuredClone(group) };
    },
  );
}

/** Every command sent to a stub, with the region of the client it was sent with. */
async function sent(stub: typeof ga | typeof r53) {
  return Promise.all(
    stub.calls().map(async (call) => ({
      command: (call.args[0] as object).constructor.name,
      region: await (call.thisValue as GlobalAcceleratorClient).config.region(),
      input: call.args[0].input as Record<string, unknown>,
    })),
  );
}

const updates = () => ga.commandCalls(UpdateEndpointGroupCommand).map((c) => c.args[0].input);

const throttled = () =>
  Object.assign(new Error("Rate exceeded"), {
    name: "ThrottlingException",
    $metadata: { httpStatusCode: 400 },
  });

async function caught(p: Promise<unknown>): Promise<FailoverError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof FailoverError)) throw new Error(`expected a FailoverError, got ${String(e)}`);
  return e;
}

/** One stage at `percent`: what ShiftTraffic applies for a topology with that single stage. */
async function applyStage(topo: TrafficTopology, req: { targetRegion: string; percent: number }) {
  const {
    stage: _stage,
    percent: _percent,
    ...result
  } = await applyNextStage(topo, {
    targetRegion: req.targetRegion,
    stages: [req.percent],
    next: 0,
  });
  return result;
}

/** Applies each stage in turn, as successive ShiftTraffic invocations would. */
async function applyStages(topo: TrafficTopology, percents: number[]) {
  const results = [];
  for (const percent of percents)
    results.push(await applyStage(topo, { targetRegion: TARGET, percent }));
  return results;
}

beforeEach(() => {
  ga.reset();
  r53.reset();
});

describe("Global Accelerator: readTraffic", () => {
  it("reads each region's traffic dial from its endpoint group, in us-west-2", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 35 });
    // Act
    const result = await readTraffic(GA_TOPO);
    // Assess
    expect(result).toEqual({ dials: { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 35 } });
    const calls = await sent(ga);
    expect(calls.map((c) => c.input.EndpointGroupArn)).toEqual(REGIONS.map(groupArn));
    expect(new Set(calls.map((c) => `${c.command}@${c.region}`))).toEqual(
      new Set(["DescribeEndpointGroupCommand@us-west-2"]),
    );
  });

  it("counts a group without a dial as 100, GA's default", async () => {
    // Prepare
    ga.on(DescribeEndpointGroupCommand).resolves({ EndpointGroup: { EndpointDescriptions: [] } });
    // Act
    const result = await readTraffic(GA_TOPO);
    // Assess
    expect(result.dials).toEqual({ "us-west-2": 100, "us-east-2": 100, "eu-west-1": 100 });
  });
});

describe("Global Accelerator: applyStage", () => {
  it("moves everything to the target at 100%: target raised first, then the others lowered", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    // Act
    const result = await applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 });
    // Assess
    expect(result).toEqual({
      skipped: false,
      changes: [
        { region: "us-east-2", from: 0, to: 100 },
        { region: "us-west-2", from: 100, to: 0 },
        { region: "eu-west-1", from: 100, to: 0 },
      ],
      after: { dials: { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 } },
    });
    expect(dialHistory).toEqual([
      { "us-west-2": 100, "us-east-2": 100, "eu-west-1": 100 },
      { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 100 },
      { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 },
    ]);
    expect(dialsNow()).toEqual(result.after.dials);
    const writes = (await sent(ga)).filter((c) => c.command === "UpdateEndpointGroupCommand");
    expect(writes.map((c) => c.region)).toEqual(["us-west-2", "us-west-2", "us-west-2"]);
  });

  it("copies every endpoint back with its Weight (128 when unset) and ClientIPPreservationEnabled", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    // Act
    await applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 });
    // Assess
    expect(updates()).toEqual([
      {
        EndpointGroupArn: groupArn("us-east-2"),
        TrafficDialPercentage: 100,
        EndpointConfigurations: [
          { EndpointId: "alb-use2-a", Weight: 128, ClientIPPreservationEnabled: false },
          { EndpointId: "alb-use2-b", Weight: 128 },
        ],
      },
      {
        EndpointGroupArn: groupArn("us-west-2"),
        TrafficDialPercentage: 0,
        EndpointConfigurations: [
          { EndpointId: "alb-usw2", Weight: 200, ClientIPPreservationEnabled: true },
          { EndpointId: "eipalloc-usw2", Weight: 0 },
        ],
      },
      {
        EndpointGroupArn: groupArn("eu-west-1"),
        TrafficDialPercentage: 0,
        EndpointConfigurations: [{ EndpointId: "alb-euw1", Weight: 50 }],
      },
    ]);
  });

  it("reads each group before writing it", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    // Act
    await applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 });
    // Assess
    const order = (await sent(ga)).map(
      (c) => `${c.command.replace("Command", "")} ${c.input.EndpointGroupArn}`,
    );
    for (const r of REGIONS) {
      expect(order.indexOf(`DescribeEndpointGroup ${groupArn(r)}`)).toBeLessThan(
        order.indexOf(`UpdateEndpointGroup ${groupArn(r)}`),
      );
    }
  });

  // Each stage as [percent, us-west-2's dial after it, eu-west-1's dial after it].
  it.each<[string, Record<Region, number>, [number, number, number][]]>([
    [
      "two regions serving, stages 25, 50, 100: both lowered to 100 - p",
      { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 },
      [
        [25, 75, 75],
        [50, 50, 50],
        [100, 0, 0],
      ],
    ],
    [
      // Raising eu-west-1 would hand it part of what us-west-2 turns away.
      "one region serving, stages 10, 50, 100: the passive one stays at 0, never written",
      { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 },
      [
        [10, 90, 0],
        [50, 50, 0],
        [100, 0, 0],
      ],
    ],
  ])("%s; the target at 100 from the first stage", async (_what, start, steps) => {
    // Prepare
    gaHas(start);
    // Act
    const stages = await applyStages(
      GA_TOPO,
      steps.map(([p]) => p),
    );
    // Assess
    expect(stages.map((s) => s.after.dials)).toEqual(
      steps.map(([, usw2, euw1]) => ({ "us-west-2": usw2, "us-east-2": 100, "eu-west-1": euw1 })),
    );
    const passive = REGIONS.filter((r) => r !== TARGET && start[r] === 0);
    for (const moment of dialHistory) {
      expect(Math.max(...Object.values(moment))).toBe(100);
      for (const r of passive) expect(moment[r]).toBe(0);
    }
    const written = updates().map((u) => u.EndpointGroupArn);
    for (const r of passive) expect(written).not.toContain(groupArn(r));
    // Every write still carries every endpoint's Weight.
    for (const u of updates())
      for (const e of u.EndpointConfigurations ?? []) expect(e.Weight).toEqual(expect.any(Number));
  });

  it.each<[string, Record<Region, number>]>([
    [
      "every dial is already at the stage's value",
      { "us-west-2": 50, "us-east-2": 100, "eu-west-1": 50 },
    ],
    // us-west-2 below what the 50% stage gives: raising it would move traffic back.
    [
      "a region is already below the stage's value",
      { "us-west-2": 30, "us-east-2": 100, "eu-west-1": 0 },
    ],
  ])("skips with no write when %s", async (_what, dials) => {
    // Prepare
    gaHas(dials);
    // Act
    const result = await applyStage(GA_TOPO, { targetRegion: TARGET, percent: 50 });
    // Assess
    expect(result).toEqual({ skipped: true, changes: [], after: { dials } });
    expect(ga.commandCalls(UpdateEndpointGroupCommand)).toEqual([]);
  });

  it("lists and writes only the regions whose dial changes", async () => {
    // Prepare: a re-run after the target was raised but the others were not lowered.
    gaHas({ "us-west-2": 100, "us-east-2": 100, "eu-west-1": 0 });
    // Act
    const result = await applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 });
    // Assess
    expect(result.changes).toEqual([{ region: "us-west-2", from: 100, to: 0 }]);
    expect(updates().map((u) => u.EndpointGroupArn)).toEqual([groupArn("us-west-2")]);
  });

  it.each([
    [
      "every endpoint has Weight 0",
      [{ EndpointId: "alb-use2-a", Weight: 0, HealthState: "HEALTHY" as const }],
    ],
    ["it has no endpoints", []],
  ])(
    "refuses to send traffic to a target group where %s, writing nothing",
    async (_what, endpoints) => {
      // Prepare
      gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 }, { "us-east-2": endpoints });
      // Act
      const e = await caught(applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 }));
      // Assess
      expect(e.name).toBe("TrafficPreconditionFailed");
      expect(e.message).toContain("us-east-2 has no endpoint with Weight > 0");
      expect(e.message).toContain("nothing was changed");
      expect(ga.commandCalls(UpdateEndpointGroupCommand)).toEqual([]);
    },
  );

  it("maps throttling to AwsThrottled (retryable)", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    ga.on(UpdateEndpointGroupCommand).rejects(throttled());
    // Act
    const e = await caught(applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 }));
    // Assess
    expect(e.name).toBe("AwsThrottled");
    expect(e.retryable).toBe(true);
  });

  it("maps AccessDenied to TrafficShiftFailed, saying what had already changed", async () => {
    // Prepare: the target is raised, lowering the next region is denied.
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    ga.on(UpdateEndpointGroupCommand, { EndpointGroupArn: groupArn("us-west-2") }).rejects(
      new AccessDeniedException({
        message: "not authorized: globalaccelerator:UpdateEndpointGroup",
        $metadata: {},
      }),
    );
    // Act
    const e = await caught(applyStage(GA_TOPO, { targetRegion: TARGET, percent: 100 }));
    // Assess
    expect(e.name).toBe("TrafficShiftFailed");
    expect(e.retryable).toBe(false);
    expect(e.message).toContain(
      `UpdateEndpointGroup ${groupArn("us-west-2")} (us-west-2) dial 100->0`,
    );
    expect(e.message).toContain("(already changed: us-east-2 0->100)");
    expect(e.message).toContain("AccessDeniedException: not authorized");
    expect(dialsNow()).toEqual({ "us-west-2": 100, "us-east-2": 100, "eu-west-1": 100 });
  });

  it.each([-1, 101, 12.5])("rejects stage %s before calling AWS", async (percent) => {
    // Act
    const e = await caught(applyStage(GA_TOPO, { targetRegion: TARGET, percent }));
    // Assess
    expect(e.name).toBe("ConfigError");
    expect(ga.calls()).toEqual([]);
  });

  it("rejects a target region outside the topology before calling AWS", async () => {
    // Act
    const e = await caught(applyStage(GA_TOPO, { targetRegion: "ap-south-1", percent: 100 }));
    // Assess
    expect(e.name).toBe("ConfigError");
    expect(ga.calls()).toEqual([]);
  });
});

describe("stageFor: which stage an invocation applies", () => {
  it.each<[string, number, number, { stage: number; percent: number }]>([
    ["a fresh shift starts at the first stage", 0, 0, { stage: 0, percent: 10 }],
    ["the next stage in order", 1, 10, { stage: 1, percent: 50 }],
    ["a stage the target already has exactly is applied again", 0, 10, { stage: 0, percent: 10 }],
    ["stages the target is already past are skipped", 0, 50.5, { stage: 2, percent: 100 }],
    ["a share between stages resumes at the next higher one", 0, 30, { stage: 1, percent: 50 }],
    ["never an earlier stage than the execution reached", 2, 0, { stage: 2, percent: 100 }],
    ["never past the last stage", 5, 100, { stage: 2, percent: 100 }],
  ])("%s", (_what, next, share, expected) => {
    expect(stageFor([10, 50, 100], next, share)).toEqual(expected);
  });
});

describe("Global Accelerator: applyNextStage", () => {
  const STAGES = [10, 50, 100];
  const next = (n: number) =>
    applyNextStage(GA_TOPO, { targetRegion: TARGET, stages: STAGES, next: n });

  it("resumes a half-done shift from the live dials instead of restarting at the first stage", async () => {
    // Prepare: an earlier execution stopped after its 50% stage.
    gaHas({ "us-west-2": 50, "us-east-2": 100, "eu-west-1": 0 });
    // Act
    const resumed = await next(0);
    const last = await next(resumed.stage + 1);
    // Assess
    expect(resumed).toMatchObject({ stage: 1, percent: 50, skipped: true, changes: [] });
    expect(last).toMatchObject({
      stage: 2,
      percent: 100,
      skipped: false,
      changes: [{ region: "us-west-2", from: 50, to: 0 }],
    });
    expect(dialHistory).toEqual([{ "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 }]);
  });

  it("re-running an applied stage (a retry) is skipped with no write", async () => {
    // Prepare: the 10% stage was written, its answer lost.
    gaHas({ "us-west-2": 90, "us-east-2": 100, "eu-west-1": 0 });
    // Act
    const result = await next(0);
    // Assess
    expect(result).toMatchObject({ stage: 0, percent: 10, skipped: true });
    expect(ga.commandCalls(UpdateEndpointGroupCommand)).toEqual([]);
  });

  it("goes from the first stage to the last with the target never lowered and no dial raised", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 });
    // Act
    const percents = [];
    let stage = -1;
    for (let percent = 0; percent < 100; ) {
      const r = await next(stage + 1);
      ({ stage, percent } = r);
      percents.push(percent);
    }
    // Assess
    expect(percents).toEqual([10, 50, 100]);
    const seen = [{ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 }, ...dialHistory];
    for (const [i, moment] of seen.entries()) {
      const before = seen[i - 1];
      if (!before) continue;
      expect(moment["us-east-2"]).toBeGreaterThanOrEqual(before["us-east-2"] ?? 0);
      expect(moment["us-west-2"]).toBeLessThanOrEqual(before["us-west-2"] ?? 0);
      expect(moment["eu-west-1"]).toBe(0);
    }
  });

  it("rejects a stage list with a bad percentage before calling AWS", async () => {
    // Act
    const e = await caught(
      applyNextStage(GA_TOPO, { targetRegion: TARGET, stages: [10, 150], next: 0 }),
    );
    // Assess
    expect(e.name).toBe("ConfigError");
    expect(ga.calls()).toEqual([]);
  });
});

describe("Global Accelerator: checkTargetHealth", () => {
  it("is healthy when every weighted endpoint is HEALTHY, ignoring Weight 0 ones", async () => {
    // Prepare: us-west-2 has a drained, unhealthy endpoint with Weight 0.
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 });
    // Act
    const result = await checkTargetHealth(GA_TOPO, "us-west-2");
    // Assess
    expect(result).toEqual({ healthy: true, detail: ["1 endpoint(s) HEALTHY in us-west-2"] });
    expect(await sent(ga)).toEqual([
      {
        command: "DescribeEndpointGroupCommand",
        region: "us-west-2",
        input: { EndpointGroupArn: groupArn("us-west-2") },
      },
    ]);
  });

  it("names each weighted endpoint that is not HEALTHY", async () => {
    // Prepare
    gaHas(
      { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 },
      {
        "us-east-2": [
          { EndpointId: "alb-use2-a", Weight: 128, HealthState: "HEALTHY" },
          {
            EndpointId: "alb-use2-b",
            Weight: 10,
            HealthState: "UNHEALTHY",
            HealthReason: "Timeout",
          },
          { EndpointId: "alb-use2-c", HealthState: "INITIAL" },
        ],
      },
    );
    // Act
    const result = await checkTargetHealth(GA_TOPO, TARGET);
    // Assess
    expect(result).toEqual({
      healthy: false,
      detail: ["alb-use2-b: UNHEALTHY (Timeout)", "alb-use2-c: INITIAL"],
    });
  });

  it.each([
    ["has no endpoints", [], "has no endpoints"],
    [
      "gives every endpoint Weight 0",
      [{ EndpointId: "x", Weight: 0, HealthState: "HEALTHY" as const }],
      "Weight 0",
    ],
  ])("is unhealthy when the group %s", async (_what, endpoints, says) => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 }, { "us-east-2": endpoints });
    // Act
    const result = await checkTargetHealth(GA_TOPO, TARGET);
    // Assess
    expect(result.healthy).toBe(false);
    expect(result.detail).toEqual([expect.stringContaining(says)]);
  });
});

const NAME = "api.payments.example.com.";
const RECORDS: ResourceRecordSet[] = [
  {
    Name: NAME,
    Type: "A",
    SetIdentifier: "payments-eu-west-1",
    Weight: 100,
    TTL: 60,
    ResourceRecords: [{ Value: "203.0.113.30" }],
    HealthCheckId: HC["eu-west-1"],
  },
  {
    Name: NAME,
    Type: "A",
    SetIdentifier: "payments-us-east-2",
    Weight: 0,
    AliasTarget: {
      HostedZoneId: "Z3AADJGX6KTTL2",
      DNSName: "use2-alb.us-east-2.elb.amazonaws.com.",
      EvaluateTargetHealth: true,
    },
    HealthCheckId: HC["us-east-2"],
  },
  {
    Name: NAME,
    Type: "A",
    SetIdentifier: "payments-us-west-2",
    Weight: 100,
    TTL: 60,
    ResourceRecords: [{ Value: "203.0.113.10" }],
    HealthCheckId: HC["us-west-2"],
  },
  {
    Name: NAME,
    Type: "AAAA",
    SetIdentifier: "payments-us-west-2",
    Weight: 100,
    TTL: 60,
    ResourceRecords: [{ Value: "2001:db8::10" }],
    HealthCheckId: HC["us-west-2"],
  },
  {
    Name: "b.payments.example.com.",
    Type: "A",
    SetIdentifier: "payments-us-west-2",
    Weight: 5,
    TTL: 60,
  },
];

function zoneHas(records: ResourceRecordSet[]) {
  r53
    .on(ListResourceRecordSetsCommand)
    .resolves({ ResourceRecordSets: records, IsTruncated: false, MaxItems: 300 });
  r53.on(ChangeResourceRecordSetsCommand).resolves({
    ChangeInfo: { Id: "/change/C1", Status: "PENDING", SubmittedAt: new Date() },
  });
}

const withWeights = (w: Record<string, number>) =>
  RECORDS.map((rr) =>
    rr.Name === NAME && rr.SetIdentifier ? { ...rr, Weight: w[rr.SetIdentifier] ?? rr.Weight } : rr,
  );

/** A stateful zone: ChangeResourceRecordSets UPSERTs replace the record of the same name, type and set. */
let zone: ResourceRecordSet[] = [];
const key = (rr: ResourceRecordSet) => `${rr.Name} ${rr.Type} ${rr.SetIdentifier}`;

function zoneIs(records: ResourceRecordSet[]) {
  zone = structuredClone(records);
  r53.on(ListResourceRecordSetsCommand).callsFake(() => ({
    ResourceRecordSets: structuredClone(zone),
    IsTruncated: false,
    MaxItems: 300,
  }));
  r53
    .on(ChangeResourceRecordSetsCommand)
    .callsFake(
      (input: { ChangeBatch: { Changes: { ResourceRecordSet: ResourceRecordSet }[] } }) => {
        for (const { ResourceRecordSet: rr } of input.ChangeBatch.Changes) {
          zone = zone.map((old) => (key(old) === key(rr) ? structuredClone(rr) : old));
        }
        return { ChangeInfo: { Id: "/change/C1", Status: "PENDING", SubmittedAt: new Date() } };
      },
    );
}

/** Weight per SetIdentifier of the A records of NAME now. */
function weightsNow(): Record<string, number> {
  return Object.fromEntries(
    zone
      .filter((rr) => rr.Name === NAME && rr.Type === "A")
      .map((rr) => [rr.SetIdentifier ?? "?", rr.Weight ?? 0]),
  );
}

/** The fraction of DNS answers Route 53 gives a region now: its weight over the sum. */
function shareNow(region: Region): number {
  const w = weightsNow();
  const total = Object.values(w).reduce((a, b) => a + b, 0);
  return (w[`payments-${region}`] ?? 0) / total;
}

describe("Route 53: readTraffic", () => {
  it("reads each region's weighted record Weight by SetIdentifier, in us-east-1", async () => {
    // Prepare
    zoneHas(RECORDS);
    // Act
    const result = await readTraffic(R53_TOPO);
    // Assess
    expect(result).toEqual({ dials: { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 } });
    expect(await sent(r53)).toEqual([
      {
        command: "ListResourceRecordSetsCommand",
        region: "us-east-1",
        input: { HostedZoneId: "Z0123456789ABC", StartRecordName: "api.payments.example.com" },
      },
    ]);
  });

  it("follows pages while they continue the record's name", async () => {
    // Prepare
    const [euw1, use2, usw2a, usw2aaaa, other] = RECORDS;
    r53
      .on(ListResourceRecordSetsCommand)
      .resolvesOnce({
        ResourceRecordSets: [euw1 as ResourceRecordSet, use2 as ResourceRecordSet],
        IsTruncated: true,
        NextRecordName: NAME,
        NextRecordType: "A",
        NextRecordIdentifier: "payments-us-west-2",
        MaxItems: 2,
      })
      .resolvesOnce({
        ResourceRecordSets: [usw2a as ResourceRecordSet, usw2aaaa as ResourceRecordSet],
        IsTruncated: true,
        NextRecordName: other?.Name,
        NextRecordType: "A",
        MaxItems: 2,
      });
    // Act
    const result = await readTraffic(R53_TOPO);
    // Assess
    expect(result.dials).toEqual({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    expect(r53.commandCalls(ListResourceRecordSetsCommand).map((c) => c.args[0].input)).toEqual([
      { HostedZoneId: "Z0123456789ABC", StartRecordName: "api.payments.example.com" },
      {
        HostedZoneId: "Z0123456789ABC",
        StartRecordName: NAME,
        StartRecordType: "A",
        StartRecordIdentifier: "payments-us-west-2",
      },
    ]);
  });

  it("matches Route 53's escaped, dotted, lowercase names", async () => {
    // Prepare
    zoneHas(RECORDS.map((rr) => ({ ...rr, Name: rr.Name?.replace("api.", "\\052.") })));
    // Act
    const result = await readTraffic({ ...R53_TOPO, recordName: "*.Payments.Example.com" });
    // Assess
    expect(result.dials).toEqual({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
  });

  it("fails naming the SetIdentifier when a region's weighted record is missing", async () => {
    // Prepare
    zoneHas(RECORDS.filter((rr) => rr.SetIdentifier !== "payments-eu-west-1"));
    // Act
    const e = await caught(readTraffic(R53_TOPO));
    // Assess
    expect(e.name).toBe("TrafficPreconditionFailed");
    expect(e.message).toContain('SetIdentifier "payments-eu-west-1" (region eu-west-1)');
    expect(e.details).toEqual([expect.stringContaining("regions.eu-west-1.route53.setIdentifier")]);
  });

  it("maps throttling to AwsThrottled", async () => {
    // Prepare
    r53.on(ListResourceRecordSetsCommand).rejects(throttled());
    // Act
    const e = await caught(readTraffic(R53_TOPO));
    // Assess
    expect(e.name).toBe("AwsThrottled");
  });
});

describe("Route 53: applyStage", () => {
  it("sends one UPSERT batch with each changed record whole, the target's first", async () => {
    // Prepare
    zoneHas(RECORDS);
    // Act
    const result = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 100 });
    // Assess
    expect(result).toEqual({
      skipped: false,
      changes: [
        { region: "us-east-2", from: 0, to: 100 },
        { region: "us-west-2", from: 100, to: 0 },
        { region: "eu-west-1", from: 100, to: 0 },
      ],
      after: { dials: { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 } },
    });
    const changes = (await sent(r53)).filter(
      (c) => c.command === "ChangeResourceRecordSetsCommand",
    );
    expect(changes).toEqual([
      {
        command: "ChangeResourceRecordSetsCommand",
        region: "us-east-1",
        input: {
          HostedZoneId: "Z0123456789ABC",
          ChangeBatch: {
            Comment: "gitops-failover: 100% of traffic to us-east-2",
            Changes: [
              { Action: "UPSERT", ResourceRecordSet: { ...RECORDS[1], Weight: 100 } },
              { Action: "UPSERT", ResourceRecordSet: { ...RECORDS[2], Weight: 0 } },
              { Action: "UPSERT", ResourceRecordSet: { ...RECORDS[3], Weight: 0 } },
              { Action: "UPSERT", ResourceRecordSet: { ...RECORDS[0], Weight: 0 } },
            ],
          },
        },
      },
    ]);
  });

  it("splits 100 - p over the serving regions so the target gets exactly p%, only the records that differ", async () => {
    // Prepare: us-west-2 and eu-west-1 serve at equal weights; us-west-2's AAAA already carries 40.
    zoneIs(withWeights({}).map((rr) => (rr.Type === "AAAA" ? { ...rr, Weight: 40 } : rr)));
    // Act
    const result = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 20 });
    // Assess
    expect(result.changes).toEqual([
      { region: "us-east-2", from: 0, to: 20 },
      { region: "us-west-2", from: 100, to: 40 },
      { region: "eu-west-1", from: 100, to: 40 },
    ]);
    const batch = r53.commandCalls(ChangeResourceRecordSetsCommand)[0]?.args[0].input.ChangeBatch;
    expect(
      batch?.Changes?.map((c) => [
        c.ResourceRecordSet?.SetIdentifier,
        c.ResourceRecordSet?.Type,
        c.ResourceRecordSet?.Weight,
      ]),
    ).toEqual([
      ["payments-us-east-2", "A", 20],
      ["payments-us-west-2", "A", 40],
      ["payments-eu-west-1", "A", 40],
    ]);
    expect(shareNow(TARGET)).toBe(0.2);
  });

  it("stages 10, 50, 100: the target gets exactly p% at each, a passive region stays at 0", async () => {
    // Prepare: eu-west-1 is passive (weight 0).
    zoneIs(withWeights({ "payments-eu-west-1": 0 }));
    // Act
    const shares = [];
    for (const percent of [10, 50, 100]) {
      await applyStage(R53_TOPO, { targetRegion: TARGET, percent });
      shares.push({ target: shareNow(TARGET), passive: weightsNow()["payments-eu-west-1"] });
    }
    // Assess
    expect(shares).toEqual([
      { target: 0.1, passive: 0 },
      { target: 0.5, passive: 0 },
      { target: 1, passive: 0 },
    ]);
    expect(weightsNow()).toEqual({
      "payments-us-west-2": 0,
      "payments-us-east-2": 100,
      "payments-eu-west-1": 0,
    });
  });

  it("splits in proportion to the serving regions' weights, the sum exact after rounding", async () => {
    // Prepare
    zoneIs(withWeights({ "payments-us-west-2": 3, "payments-eu-west-1": 1 }));
    // Act
    await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 20 });
    const proportional = weightsNow();
    zoneIs(withWeights({ "payments-us-west-2": 7, "payments-eu-west-1": 7 }));
    await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 55 });
    // Assess
    expect(proportional).toEqual({
      "payments-us-west-2": 60,
      "payments-us-east-2": 20,
      "payments-eu-west-1": 20,
    });
    expect(weightsNow()).toEqual({
      "payments-us-west-2": 23,
      "payments-us-east-2": 55,
      "payments-eu-west-1": 22,
    });
    expect(shareNow(TARGET)).toBe(0.55);
  });

  it("reads all-zero weights as equal shares (as Route 53 does) and never writes all zero", async () => {
    // Prepare: all zero, so the target already has a third of the traffic.
    zoneIs(withWeights({ "payments-us-west-2": 0, "payments-eu-west-1": 0 }));
    // Act
    const below = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 10 });
    const above = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 50 });
    // Assess
    expect(below.skipped).toBe(true);
    expect(above.after.dials).toEqual({ "us-west-2": 25, "us-east-2": 50, "eu-west-1": 25 });
    expect(shareNow(TARGET)).toBe(0.5);
  });

  it("never moves traffic back: a stage below the target's share is skipped with no write, and applyNextStage resumes at that share", async () => {
    // Prepare: an earlier execution stopped after its 50% stage.
    zoneIs(
      withWeights({ "payments-us-west-2": 50, "payments-us-east-2": 50, "payments-eu-west-1": 0 }),
    );
    // Act
    const back = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 10 });
    const resumed = await applyNextStage(R53_TOPO, {
      targetRegion: TARGET,
      stages: [10, 50, 100],
      next: 0,
    });
    // Assess
    expect(back).toEqual({
      skipped: true,
      changes: [],
      after: { dials: { "us-west-2": 50, "us-east-2": 50, "eu-west-1": 0 } },
    });
    expect(resumed).toMatchObject({ stage: 1, percent: 50, skipped: true });
    expect(r53.commandCalls(ChangeResourceRecordSetsCommand)).toEqual([]);
  });

  it("skips with no change batch when every weight is already at the stage's value", async () => {
    // Prepare
    zoneHas(
      withWeights({ "payments-us-west-2": 0, "payments-us-east-2": 100, "payments-eu-west-1": 0 }),
    );
    // Act
    const result = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 100 });
    // Assess
    expect(result).toEqual({
      skipped: true,
      changes: [],
      after: { dials: { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 } },
    });
    expect(r53.commandCalls(ChangeResourceRecordSetsCommand)).toEqual([]);
  });

  it("maps a rejected change batch to TrafficShiftFailed with the service's message", async () => {
    // Prepare
    zoneHas(RECORDS);
    r53.on(ChangeResourceRecordSetsCommand).rejects(
      Object.assign(new Error("Invalid request: health check does not exist"), {
        name: "InvalidChangeBatch",
        $metadata: { httpStatusCode: 400 },
      }),
    );
    // Act
    const e = await caught(applyStage(R53_TOPO, { targetRegion: TARGET, percent: 100 }));
    // Assess
    expect(e.name).toBe("TrafficShiftFailed");
    expect(e.message).toContain(
      "ChangeResourceRecordSets api.payments.example.com in hosted zone Z0123456789ABC",
    );
    expect(e.message).toContain("InvalidChangeBatch: Invalid request");
  });
});

describe("Route 53: checkTargetHealth", () => {
  const observations = (ok: number, failing: number) => ({
    HealthCheckObservations: [
      ...Array.from({ length: ok }, (_, i) => ({
        Region: "us-east-1" as const,
        IPAddress: `192.0.2.${i}`,
        StatusReport: { Status: "Success: HTTP Status Code 200, OK" },
      })),
      ...Array.from({ length: failing }, () => ({
        Region: "eu-west-1" as const,
        StatusReport: { Status: "Failure: Connection timed out." },
      })),
    ],
  });

  it.each([
    [5, 3, true, "5/8", "0.63"],
    [4, 4, true, "4/8", "0.50"],
    [3, 5, false, "3/8", "0.38"],
    [0, 0, false, "0/0", "0.00"],
  ])(
    "with %i checkers reporting Success and %i failing: healthy %s",
    async (ok, failing, healthy, count, fraction) => {
      // Prepare
      r53.on(GetHealthCheckStatusCommand).resolves(observations(ok, failing));
      // Act
      const result = await checkTargetHealth(R53_TOPO, TARGET);
      // Assess
      expect(result.healthy).toBe(healthy);
      expect(result.detail[0]).toBe(
        `${count} Route 53 checkers report Success for health check ${HC[TARGET]} (${TARGET}): ${fraction}`,
      );
      expect(result.detail.slice(1)).toEqual(
        Array(failing).fill("eu-west-1: Failure: Connection timed out."),
      );
      expect(await sent(r53)).toEqual([
        {
          command: "GetHealthCheckStatusCommand",
          region: "us-east-1",
          input: { HealthCheckId: HC[TARGET] },
        },
      ]);
    },
  );
});
