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
  applyStage,
  checkTargetHealth,
  readTraffic,
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

  it("stages 25, 50, 100: target at 100, the others at 100 - p, never every dial low", async () => {
    // Prepare
    gaHas({ "us-west-2": 100, "us-east-2": 0, "eu-west-1": 100 });
    // Act
    const stages = [];
    for (const percent of [25, 50, 100])
      stages.push(await applyStage(GA_TOPO, { targetRegion: TARGET, percent }));
    // Assess
    expect(stages.map((s) => s.after.dials)).toEqual([
      { "us-west-2": 75, "us-east-2": 100, "eu-west-1": 75 },
      { "us-west-2": 50, "us-east-2": 100, "eu-west-1": 50 },
      { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 },
    ]);
    expect(stages.map((s) => s.changes)).toEqual([
      [
        { region: "us-east-2", from: 0, to: 100 },
        { region: "us-west-2", from: 100, to: 75 },
        { region: "eu-west-1", from: 100, to: 75 },
      ],
      [
        { region: "us-west-2", from: 75, to: 50 },
        { region: "eu-west-1", from: 75, to: 50 },
      ],
      [
        { region: "us-west-2", from: 50, to: 0 },
        { region: "eu-west-1", from: 50, to: 0 },
      ],
    ]);
    for (const moment of dialHistory) expect(Math.max(...Object.values(moment))).toBe(100);
  });

  it("skips with no write when every dial is already at the stage's value", async () => {
    // Prepare
    gaHas({ "us-west-2": 50, "us-east-2": 100, "eu-west-1": 50 });
    // Act
    const result = await applyStage(GA_TOPO, { targetRegion: TARGET, percent: 50 });
    // Assess
    expect(result).toEqual({
      skipped: true,
      changes: [],
      after: { dials: { "us-west-2": 50, "us-east-2": 100, "eu-west-1": 50 } },
    });
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

  it("writes 100 - p to the other regions at a partial stage, only the records that differ", async () => {
    // Prepare: us-west-2's AAAA record already carries 75.
    zoneHas(
      withWeights({ "payments-us-east-2": 100 }).map((rr) =>
        rr.Type === "AAAA" ? { ...rr, Weight: 75 } : rr,
      ),
    );
    // Act
    const result = await applyStage(R53_TOPO, { targetRegion: TARGET, percent: 25 });
    // Assess
    expect(result.changes).toEqual([
      { region: "us-west-2", from: 100, to: 75 },
      { region: "eu-west-1", from: 100, to: 75 },
    ]);
    const batch = r53.commandCalls(ChangeResourceRecordSetsCommand)[0]?.args[0].input.ChangeBatch;
    expect(
      batch?.Changes?.map((c) => [
        c.ResourceRecordSet?.SetIdentifier,
        c.ResourceRecordSet?.Type,
        c.ResourceRecordSet?.Weight,
      ]),
    ).toEqual([
      ["payments-us-west-2", "A", 75],
      ["payments-eu-west-1", "A", 75],
    ]);
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
