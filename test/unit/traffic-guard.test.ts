/**
 * The guard in front of every traffic change, whatever the ASL did: ShiftTraffic refuses unless
 * the spoke was verified, Argo CD reported Synced at the committed SHA and Healthy, and Aurora's
 * writer is the target — on the state and, for Aurora, live. Global Accelerator is the sandbox's
 * emulator, so "no write" is observed where it would land.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { loadTopology, resetRuntimeTopology, type Topology } from "../../functions/lib/config.ts";
import type { FailoverState } from "../../functions/lib/state.ts";
import { shiftTrafficStep } from "../../functions/lib/steps.ts";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";

const saved = { ...process.env };
let aws: AwsSandbox;
let topology: Topology;
const TARGET = "us-east-2";
const SHA = "0123456789abcdef0123456789abcdef01234567";

beforeAll(async () => {
  aws = await startAwsSandbox();
  topology = loadTopology("config/topology.example.yaml");
  Object.assign(process.env, aws.env, { TOPOLOGY: JSON.stringify(topology) });
  resetRuntimeTopology();
});

afterAll(async () => {
  process.env = saved;
  resetRuntimeTopology();
  await aws.stop();
});

beforeEach(() => {
  for (const [region, r] of Object.entries(topology.regions)) {
    aws.ga.defineEndpointGroup({
      arn: r.globalAccelerator?.endpointGroupArn ?? "",
      region,
      dial: region === "us-west-2" ? 100 : 0,
      endpoints: [{ id: `endpoint-${region}`, weight: 128, healthy: true }],
    });
  }
  aws.rds.defineGlobalCluster({
    identifier: topology.aurora.globalClusterIdentifier,
    members: Object.fromEntries(
      Object.entries(topology.regions).map(([region, r]) => [region, r.aurora.clusterArn]),
    ),
    writerRegion: TARGET,
  });
});

/** A state in which every precondition holds; each test breaks one. */
function provenState(): FailoverState {
  return {
    execution: {
      id: "arn:aws:states:us-east-1:111122223333:execution:sm:x",
      name: "x",
      startTime: new Date().toISOString(),
    },
    input: {
      targetRegion: TARGET,
      reason: "test",
      mode: "graceful",
      dryRun: false,
      allowDataLoss: false,
      requestedBy: "t",
      requireApproval: false,
    },
    plan: {
      sourceRegion: "us-west-2",
      targetRegion: TARGET,
      before: {
        activeRegion: "us-west-2",
        activeRegions: ["us-west-2"],
        passiveRegions: [],
        gitHead: "a",
        auroraWriterRegion: "us-west-2",
        trafficDials: {},
      },
      needs: { retarget: true, aurora: true, traffic: true, demote: false },
      noop: false,
      order: "sequential",
      retarget: "one-commit",
      demoteRegions: [],
      approvalTimeoutSeconds: 3600,
      actions: [],
    },
    spoke: { status: "SUCCEEDED", spokes: [{ spoke: "spoke-use2", readyNodes: 3, checks: 4 }] },
    converge: {
      retarget: {
        status: "SUCCEEDED",
        skipped: false,
        sha: SHA,
        previousSha: "a",
        attempts: 1,
        changes: [],
        subject: "s",
      },
      argo: { status: "SUCCEEDED", revision: SHA, hub: "hub-primary", total: 2, done: 2 },
      promotion: {
        status: "SUCCEEDED",
        skipped: false,
        action: "switchover",
        writerBefore: "us-west-2",
      },
      aurora: { status: "SUCCEEDED", writerRegion: TARGET, failoverState: null },
    },
  };
}

const updates = () => aws.ga.calls().filter((c) => c.action === "UpdateEndpointGroup").length;

describe("ShiftTraffic's guard", () => {
  it("moves traffic when every precondition holds", async () => {
    const result = await shiftTrafficStep(provenState());

    expect(result.dials).toMatchObject({ [TARGET]: 100, "us-west-2": 0 });
    expect(aws.ga.dials()).toMatchObject({ [TARGET]: 100, "us-west-2": 0 });
  });

  type Converged = NonNullable<FailoverState["converge"]>;
  it.each<[string, (s: FailoverState, c: Converged) => void, RegExp]>([
    [
      "spoke not verified",
      (s) => {
        delete s.spoke;
      },
      /target spoke was not verified/,
    ],
    [
      "no commit",
      (_s, c) => {
        c.retarget.sha = "";
      },
      /no retarget commit/,
    ],
    [
      "Argo CD still syncing",
      (_s, c) => {
        c.argo.status = "IN_PROGRESS";
      },
      /Synced at the committed SHA/,
    ],
    [
      "Argo CD Synced at an older SHA",
      (_s, c) => {
        c.argo.revision = "f".repeat(40);
      },
      /Synced at the committed SHA/,
    ],
    [
      "capacity floors committed but the gate has not passed",
      (s) => {
        s.plan.capacity = {
          source: "live",
          sourceRegion: "us-west-2",
          apps: [{ committed: 3 }],
        } as unknown as NonNullable<FailoverState["plan"]["capacity"]>;
      },
      /capacity gate has not reported/,
    ],
    [
      "Aurora writer elsewhere (state)",
      (_s, c) => {
        c.aurora.writerRegion = "us-west-2";
      },
      /Aurora has not reported/,
    ],
  ])("refuses, changing nothing, when %s", async (_case, breakIt, why) => {
    const state = provenState();
    if (state.converge) breakIt(state, state.converge);
    const before = updates();

    await expect(shiftTrafficStep(state)).rejects.toMatchObject({
      name: "TrafficPreconditionFailed",
      message: expect.stringMatching(why),
    });
    expect(updates()).toBe(before);
    expect(aws.ga.dials()).toMatchObject({ "us-west-2": 100, [TARGET]: 0 });
  });

  it("refuses when the state says the target is writer but Aurora, asked live, disagrees", async () => {
    aws.rds.defineGlobalCluster({
      identifier: topology.aurora.globalClusterIdentifier,
      members: Object.fromEntries(
        Object.entries(topology.regions).map(([region, r]) => [region, r.aurora.clusterArn]),
      ),
      writerRegion: "us-west-2",
    });
    const before = updates();

    await expect(shiftTrafficStep(provenState())).rejects.toMatchObject({
      name: "TrafficPreconditionFailed",
      message: expect.stringContaining("writer is us-west-2 now"),
    });
    expect(updates()).toBe(before);
  });
});

describe("ShiftTraffic's stages (10, 50, 100)", () => {
  beforeAll(() => {
    process.env.TOPOLOGY = JSON.stringify({
      ...topology,
      traffic: { ...topology.traffic, stages: [10, 50, 100] },
    });
    resetRuntimeTopology();
  });
  afterAll(() => {
    process.env.TOPOLOGY = JSON.stringify(topology);
    resetRuntimeTopology();
  });

  const dialsAre = (dials: Record<string, number>) => {
    for (const [region, r] of Object.entries(topology.regions)) {
      aws.ga.defineEndpointGroup({
        arn: r.globalAccelerator?.endpointGroupArn ?? "",
        region,
        dial: dials[region] ?? 0,
        endpoints: [{ id: `endpoint-${region}`, weight: 128, healthy: true }],
      });
    }
  };

  it("lowers only the serving region; the passive one stays at 0 and the target is 100 from the first stage", async () => {
    const state = provenState();
    const seen = [];
    do {
      state.traffic = await shiftTrafficStep(state);
      seen.push({ percent: state.traffic.percent, dials: aws.ga.dials() });
    } while (!state.traffic.complete);

    expect(seen).toEqual([
      { percent: 10, dials: { "us-west-2": 90, [TARGET]: 100, "eu-west-1": 0 } },
      { percent: 50, dials: { "us-west-2": 50, [TARGET]: 100, "eu-west-1": 0 } },
      { percent: 100, dials: { "us-west-2": 0, [TARGET]: 100, "eu-west-1": 0 } },
    ]);
  });

  it("a new execution after a half-done one resumes where the dials are, moving nothing back", async () => {
    dialsAre({ "us-west-2": 50, [TARGET]: 100, "eu-west-1": 0 });
    const state = provenState();
    const before = updates();

    const resumed = await shiftTrafficStep(state);

    expect(resumed).toMatchObject({ stage: 1, percent: 50, skipped: true, complete: false });
    expect(updates()).toBe(before);
    expect(aws.ga.dials()).toEqual({ "us-west-2": 50, [TARGET]: 100, "eu-west-1": 0 });

    const last = await shiftTrafficStep({ ...state, traffic: resumed });

    expect(last).toMatchObject({ stage: 2, percent: 100, skipped: false, complete: true });
    expect(aws.ga.dials()).toEqual({ "us-west-2": 0, [TARGET]: 100, "eu-west-1": 0 });
  });
});
