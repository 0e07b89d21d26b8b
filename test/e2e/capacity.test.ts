/**
 * Capacity parity end to end: the real ASL and functions against the sandbox (HPAs and node
 * capacity on HTTPS fake kube-apiservers, the Argo CD emulator rendering the committed floor,
 * real Git, dynalite). Asserts what the stand-ins hold afterwards and what the report says.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { planAuroraCapacity } from "../../functions/lib/aurora-capacity.ts";
import { awaitCapacityStep, planCapacity, storedCapacity } from "../../functions/lib/capacity.ts";
import { resetRuntimeTopology } from "../../functions/lib/config.ts";
import { MIN_WAIT_SECONDS } from "../../functions/lib/pace.ts";
import { collectMetrics, readinessStep } from "../../functions/lib/readiness.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import type { CapacityProgress, FailoverState } from "../../functions/lib/state.ts";
import { auroraTopology } from "../../functions/lib/steps.ts";
import { DRILL_DEFAULTS, type DrillOptions, runDrill } from "../../sandbox/drill.ts";
import { AURORA_ACU, PLATFORM, startSandbox } from "../../sandbox/index.ts";

const root = mkdtempSync(join(tmpdir(), "gf-capacity-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SOURCE = "us-west-2";
const TARGET = "us-east-2";
const UNMOVED = { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 };
const MOVED = { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 };
const APPS = [`${PLATFORM}/api`, `${PLATFORM}/web`];
const VALUES = "envs/production/values.yaml";

let n = 0;
function drill(options: Partial<DrillOptions>) {
  n += 1;
  return runDrill({ ...DRILL_DEFAULTS, reportDir: join(root, `report-${n}`), ...options });
}
const reportOf = (dir: string) =>
  JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;

describe("capacity parity in a failover", () => {
  it("commits the source's observed load (its HPA at 3x the Git baseline) as the target's floor and waits for it Ready", async () => {
    const result = await drill({ sourceLoad: 9 });

    expect(result.status).toBe("SUCCEEDED");
    // The source's web ran 9 (its HPA), 3x replicas.active in Git; api (no HPA) its 3.
    expect(result.before.workloads[SOURCE]).toMatchObject({ replicas: 12, ready: 12 });
    expect(result.after.trafficDials).toEqual(MOVED);
    expect(result.after.workloads[TARGET]).toMatchObject({ replicas: 12, ready: 12, minReady: 3 });
    const report = reportOf(result.reportDir);
    expect(report.capacity).toMatchObject({ source: "live", minimumSuccessPercent: 100 });
    expect(report.capacity?.apps).toEqual([
      { app: APPS[0], observed: 3, committed: 3, ready: 3 },
      { app: APPS[1], observed: 9, committed: 9, ready: 9 },
    ]);
    expect(readFileSync(join(result.reportDir, "report.md"), "utf8")).toContain(
      `| ${PLATFORM}/web | 9 | 9 | 9 |`,
    );
    // The activating commit wrote both floors (the seed's 1 -> the observed figure).
    const commit = readFileSync(join(result.reportDir, "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: string; after: { floors?: unknown } })
      .find((e) => e.step === "CommitRetarget");
    expect(commit?.after.floors).toEqual([
      { file: VALUES, path: "regions.us-east-2.minReplicas.api", from: 1, to: 3 },
      { file: VALUES, path: "regions.us-east-2.minReplicas.web", from: 1, to: 9 },
    ]);
    // The gate ran before Argo CD's wait, and both before traffic moved.
    const order = report.timeline.map((e) => e.step);
    expect(order.indexOf("AwaitCapacity")).toBeGreaterThan(order.indexOf("CommitRetarget"));
    expect(order.indexOf("AwaitCapacity")).toBeLessThan(order.indexOf("ShiftTraffic"));
  });

  it("caps the floor at the target's HPA maxReplicas in Git; the failback restores the floors of the region it leaves", async () => {
    const result = await drill({ sourceLoad: 9, targetMaxReplicas: 6, failback: true });

    expect(result.status).toBe("SUCCEEDED");
    const [failover, failback] = result.executions;
    expect(failback?.failback).toBe(true);
    // web: 9 observed, its floor capped at the target's maxReplicas 6 (9 would be an invalid HPA).
    const capped = `${PLATFORM}/web observed 9 -> floor 6 (CAPPED at the HPA's maxReplicas 6 at regions.us-east-2.maxReplicas.web; 9 wanted)`;
    const first = reportOf(join(result.reportDir, failover?.name ?? "?"));
    expect(first.capacity?.line).toContain(capped);
    expect(first.capacity?.apps).toEqual([
      { app: APPS[0], observed: 3, committed: 3, ready: 3 },
      { app: APPS[1], observed: 9, committed: 6, ready: 6 },
    ]);
    expect(failover?.after.workloads[TARGET]).toMatchObject({ replicas: 9, ready: 9 });
    // Newest first: the failback's demote and activate commits, the failover's, the seed.
    const [restoring, , , activating] = result.after.gitLog;
    expect(activating?.body).toContain(
      "- payments/web: regions.us-east-2.minReplicas.web 1 -> 6 (observed 9) (CAPPED at the HPA's maxReplicas 6 at regions.us-east-2.maxReplicas.web; 9 wanted)",
    );
    // The failback makes us-east-2 passive and puts its floors back to the Git baseline (1).
    const restored = `restore us-east-2's capacity values to their Git baseline from before ${activating?.sha.slice(0, 12)}: regions.us-east-2.minReplicas.api 3 -> 1, regions.us-east-2.minReplicas.web 6 -> 1`;
    expect(restoring?.subject).toBe(
      "failover(payments): make us-east-2 passive (traffic is on us-west-2)",
    );
    expect(restoring?.body).toContain(`Failback: ${restored}.`);
    expect(reportOf(result.reportDir).plan?.actions).toContain(restored);
    const demote = readFileSync(join(result.reportDir, "audit.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { step: string; after: { changes?: unknown } })
      .find((e) => e.step === "DemoteSource");
    expect(demote?.after.changes).toEqual([
      { file: VALUES, path: "regions.us-east-2.active", from: true, to: false },
      { file: VALUES, path: "regions.us-east-2.minReplicas.api", from: 3, to: 1 },
      { file: VALUES, path: "regions.us-east-2.minReplicas.web", from: 6, to: 1 },
    ]);
  });

  it("target-capacity-short: the gate fails naming the app and its Pending pods; traffic, writer and source untouched", async () => {
    const result = await drill({ faults: ["target-capacity-short"] });

    expect(result.status).toBe("FAILED");
    expect(result.failedStep).toBe("AwaitCapacity");
    expect(result.error).toMatch(
      new RegExp(`^TargetCapacityShort: .*${PLATFORM}/web .*spoke-use2-1: 1/3 Ready, 2 Pending`),
    );
    expect(result.error).not.toContain(`${PLATFORM}/api (`);
    expect(result.after.trafficDials).toEqual(UNMOVED);
    expect(result.after.auroraWriterRegion).toBe(SOURCE);
    expect(result.after.activeRegion).toBe(SOURCE);
    expect(result.after.workloads[SOURCE]).toEqual(result.before.workloads[SOURCE]);
    expect(
      result.calls.globalAccelerator.filter((c) => c.action === "UpdateEndpointGroup"),
    ).toEqual([]);
    expect(reportOf(result.reportDir).capacity?.apps).toEqual([
      { app: APPS[0], observed: 3, committed: 3, ready: 3 },
      { app: APPS[1], observed: 3, committed: 3, ready: 1 },
    ]);
  });

  it("source-capacity-unknown (baseline): fails over at the Git baseline and says so", async () => {
    const result = await drill({ faults: ["source-capacity-unknown"] });

    expect(result.status).toBe("SUCCEEDED");
    expect(result.after.trafficDials).toEqual(MOVED);
    expect(result.after.workloads[TARGET]).toMatchObject({ replicas: 6, ready: 6 });
    const report = reportOf(result.reportDir);
    expect(report.capacity?.source).toBe("unknown");
    expect(report.capacity?.line).toMatch(
      /^capacity of us-west-2 UNKNOWN \(.*spoke-usw2-1.*; none stored\): NO floor committed, the target runs its Git baseline$/,
    );
    expect(report.steps.find((s) => s.name === "AwaitCapacity")?.status).toBe("SKIPPED");
  });

  it("source-capacity-unknown (refuse): stops in Plan, nothing changed", async () => {
    const result = await drill({
      faults: ["source-capacity-unknown"],
      capacityWhenSourceUnknown: "refuse",
    });

    expect(result.status).toBe("FAILED");
    expect(result.failedStep).toBe("Plan");
    expect(result.error).toMatch(
      /^CapacityUnknown: the capacity of us-west-2 is unknown: .*capacity\.whenSourceUnknown is refuse/,
    );
    expect(result.after).toMatchObject({
      gitHead: result.before.gitHead,
      trafficDials: UNMOVED,
      auroraWriterRegion: SOURCE,
    });
  });
});

describe("observed capacity: readiness keeps a rolling 24-hour maximum", () => {
  it("samples the serving region, keeps the peak, and Plan uses it once the source is gone", async () => {
    const sandbox = await startSandbox({ reportDir: join(root, "readiness") });
    try {
      const t = sandbox.topology;
      const source = sandbox.spokes.filter((s) => s.region === SOURCE);
      const load = async (replicas: number | undefined) => {
        for (const s of source) s.setHpaDemand(PLATFORM, "web", replicas);
        await sandbox.settle();
      };
      const evaluate = () => readinessStep({}, t, { sink: collectMetrics([]) });

      await load(7);
      expect((await evaluate()).capacity?.apps).toEqual({
        [APPS[0] as string]: 3,
        [APPS[1] as string]: 7,
      });
      await load(undefined);
      expect((await evaluate()).capacity?.apps).toEqual({
        [APPS[0] as string]: 3,
        [APPS[1] as string]: 3,
      });
      // The peak of the last 24 hours, not the latest sample.
      expect((await storedCapacity(PLATFORM, SOURCE))?.apps).toEqual({
        [APPS[0] as string]: 3,
        [APPS[1] as string]: 7,
      });

      const live = await planCapacity(t, { targetRegion: TARGET, mode: "graceful" }, SOURCE, 5000);
      expect(live).toMatchObject({
        source: "live",
        apps: [{ observed: 3, committed: 3 }, { observed: 3 }],
      });

      for (const s of source) s.setReachable(false);
      const stored = await planCapacity(
        t,
        { targetRegion: TARGET, mode: "ungraceful" },
        SOURCE,
        2000,
      );
      expect(stored).toMatchObject({
        source: "stored",
        minimumSuccessPercent: 60,
        apps: [
          { app: APPS[0], observed: 3, committed: 3, path: "regions.us-east-2.minReplicas.api" },
          { app: APPS[1], observed: 7, committed: 7, path: "regions.us-east-2.minReplicas.web" },
        ],
      });
      expect(stored?.ageSeconds).toBeGreaterThanOrEqual(0);
      expect(stored?.liveError).toMatch(/spoke-usw2-1/);

      // Aurora: the same evaluations stored the writer's hourly peak ACUs; with the source's RDS
      // API down too, Plan sizes the target's MinCapacity from them.
      sandbox.aws.rds.setRegionDown(SOURCE, true);
      const aurora = await planAuroraCapacity(
        t.capacity,
        auroraTopology(t),
        PLATFORM,
        { targetRegion: TARGET, mode: "ungraceful" },
        SOURCE,
        2000,
      );
      expect(aurora).toMatchObject({
        source: "stored",
        observedAcu: AURORA_ACU.writerLoad,
        committed: AURORA_ACU.writerLoad,
        targetBefore: AURORA_ACU.standby,
      });
      expect(aurora?.liveError).toMatch(/us-west-2/);
    } finally {
      await sandbox.stop();
    }
  });
});

describe("the capacity gate in the apps loop (one pass: Argo CD's poll, then the gate)", () => {
  it("rides Argo CD's pace while it waits; once Argo CD is done, paces itself and fails gateSeconds later if the floors are still not Ready", async () => {
    const sandbox = await startSandbox({ reportDir: join(root, "gate") });
    try {
      const t = sandbox.topology;
      process.env.TOPOLOGY = JSON.stringify(t);
      resetRuntimeTopology();
      for (const s of sandbox.spokes.filter((sp) => sp.region === SOURCE))
        s.setHpaDemand(PLATFORM, "web", 6);
      await sandbox.settle();
      const capacity = await planCapacity(
        t,
        { targetRegion: TARGET, mode: "graceful" },
        SOURCE,
        5000,
      );
      // Nothing was committed here: the target runs its Git baseline, below the floors.
      const plan = { targetRegion: TARGET, capacity };
      const pass = (argo: Record<string, unknown>, capacityGate?: CapacityProgress) =>
        awaitCapacityStep({ plan, argo, capacityGate } as unknown as FailoverState);
      const ago = (s: number) => new Date(Date.now() - s * 1000).toISOString();

      // Argo CD not done: the gate waits on its pace and reads nothing (no apps known yet).
      const riding = await pass({ status: "IN_PROGRESS", nextWaitSeconds: 7, polls: 2 });
      expect(riding).toMatchObject({ status: "IN_PROGRESS", nextWaitSeconds: 7 });
      expect(riding.apps).toBeUndefined();

      const done = { status: "SUCCEEDED", startedAt: ago(40), checkedAt: ago(1), polls: 4 };
      const settling = await pass(done, riding);
      expect(settling).toMatchObject({ status: "IN_PROGRESS", nextWaitSeconds: MIN_WAIT_SECONDS });
      expect(settling.apps?.map((a) => a.short[0])).toEqual([
        "spoke-use2-1: 1 replicas, the committed floor 3 not applied yet",
        "spoke-use2-1: 1 replicas, the committed floor 6 not applied yet",
      ]);

      const late = { ...done, startedAt: ago(200), checkedAt: ago(121) };
      const failed = await pass(late, riding);
      expect(failed.status).toBe("FAILED");
      expect(failed.error?.name).toBe("TargetCapacityShort");
      expect(failed.error?.message).toMatch(
        /^\[AwaitCapacity\] 2 of 2 apps below 100% of their committed replicas Ready 120s after Argo CD reported the commit Synced and Healthy; traffic was not moved/,
      );
    } finally {
      await sandbox.stop();
      delete process.env.TOPOLOGY;
      resetRuntimeTopology();
    }
  });
});
