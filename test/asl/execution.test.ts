/**
 * statemachine/failover.asl.json executed by aws-local-stepfunctions with the real handlers; their
 * dependencies are the sandbox's stand-ins (real Git, HTTPS Kubernetes and Argo CD servers,
 * protocol-level AWS emulators), so every write is observable where it would land.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { readAuditTrail } from "../../functions/lib/audit.ts";
import { resetRuntimeTopology } from "../../functions/lib/config.ts";
import { type Sandbox, startSandbox } from "../../sandbox/index.ts";
import { type LocalRunResult, runLocal } from "../../sandbox/runner.ts";

const root = mkdtempSync(join(tmpdir(), "gf-asl-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let sandbox: Sandbox;
let runs = 0;
beforeEach(async () => {
  sandbox = await startSandbox({ reportDir: join(root, `r${++runs}`), waitMs: 5 });
});
afterEach(async () => {
  await sandbox.stop();
});

const input = (extra: Record<string, unknown> = {}) => ({
  targetRegion: "us-east-2",
  reason: "us-west-2 is failing its health checks",
  requestedBy: "asl-test",
  ...extra,
});

function run(
  extra: Record<string, unknown> = {},
  name = `exec-${runs}-${Math.random().toString(36).slice(2, 8)}`,
) {
  return runLocal({ input: input(extra), executionName: name, waitMs: 5, retryMs: 5 });
}

/** Every call that changes something, wherever it would land. */
function writes(s: Sandbox) {
  return {
    gitPushes: s.git.stats().pushes,
    auroraPromotions: s.aws.rds.calls().filter((c) => /Switchover|Failover/.test(c.action)).length,
    trafficUpdates: s.aws.ga.calls().filter((c) => c.action === "UpdateEndpointGroup").length,
  };
}

/** Moves the branch head's committer time `minutes` into the past (same tree, parents, message). */
function ageHeadCommit(s: Sandbox, minutes: number): void {
  const git = (args: string[], input?: string) =>
    execFileSync("git", ["--git-dir", s.git.repoDir, ...args], { input })
      .toString()
      .trim();
  const head = git(["rev-parse", "refs/heads/main"]);
  const when = Math.floor(Date.now() / 1000) - minutes * 60;
  const raw = git(["cat-file", "commit", head]).replace(
    /^(committer .*> )\d+ ([+-]\d{4})$/m,
    `$1${when} $2`,
  );
  const aged = git(["hash-object", "-t", "commit", "-w", "--stdin"], `${raw}\n`);
  git(["update-ref", "refs/heads/main", aged, head]);
}

/** An automatic failback: the trigger saw us-east-2's alarm after the failover to it. */
const failback = { targetRegion: "us-west-2", failedRegion: "us-east-2" };

function entered(result: LocalRunResult): string[] {
  return result.events.flatMap((e) =>
    e.type === "StateEntered" && "state" in e && e.state ? [e.state.name] : [],
  );
}

describe("failover.asl.json executed with the real handlers", () => {
  it("happy path (graceful): apps, then data, then traffic, then the source made passive", async () => {
    const result = await run();

    expect(result.status).toBe("SUCCEEDED");
    const order = entered(result);
    const shift = order.indexOf("ShiftTraffic");
    expect(order.lastIndexOf("AwaitArgoSync")).toBeLessThan(order.indexOf("PromoteAurora"));
    expect(order.lastIndexOf("AwaitAurora")).toBeLessThan(shift);
    expect(order.indexOf("VerifySpoke")).toBeLessThan(order.indexOf("CommitRetarget"));
    expect(order.lastIndexOf("VerifyTraffic")).toBeLessThan(order.indexOf("DemoteSource"));
    expect(order).not.toContain("Compensate");
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-east-2",
      auroraWriterRegion: "us-east-2",
      trafficDials: { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 },
    });
    expect(writes(sandbox)).toEqual({ gitPushes: 2, auroraPromotions: 1, trafficUpdates: 2 });
  });

  it("happy path (ungraceful): apps and data converge in one parallel pass, then traffic", async () => {
    const result = await run({ mode: "ungraceful" });

    expect(result.status).toBe("SUCCEEDED");
    const order = entered(result);
    expect(order.filter((s) => s === "Converge")).toHaveLength(1);
    expect(order).not.toContain("DataPhase");
    // The commit (the cross-region guard) first, then both branches at once.
    expect(order.indexOf("CommitRetarget")).toBeLessThan(order.indexOf("Converge"));
    expect(order.filter((s) => s === "PromoteAurora")).toHaveLength(1);
    expect(order.indexOf("PromoteAurora")).toBeLessThan(order.indexOf("ShiftTraffic"));
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-east-2",
      auroraWriterRegion: "us-east-2",
    });
  });

  it("already on target: every step skipped, no write call made", async () => {
    await run();
    const before = writes(sandbox);

    const again = await run();

    expect(again.status).toBe("SUCCEEDED");
    expect((again.output as { plan: { noop: boolean } }).plan.noop).toBe(true);
    expect(entered(again)).not.toContain("CommitRetarget");
    expect(writes(sandbox)).toEqual(before);
  });

  it("an alarm on a region that is not serving (failedRegion) changes nothing", async () => {
    const result = await run({ failedRegion: "eu-west-1" });

    expect(result.status).toBe("SUCCEEDED");
    expect((result.output as { plan: { noop: boolean; actions: string[] } }).plan).toMatchObject({
      noop: true,
      actions: ["nothing to do: eu-west-1 failed but us-west-2 is serving"],
    });
    expect(writes(sandbox)).toEqual({ gitPushes: 0, auroraPromotions: 0, trafficUpdates: 0 });
  });

  it("an automatic failback inside the cooldown of another execution's failover commit is held back; an operator's is not", async () => {
    expect((await run({}, "first-failover")).status).toBe("SUCCEEDED");
    await sandbox.git.commitDirect({ "NOTES.md": "unrelated\n" }, "Unrelated change on top");
    const before = writes(sandbox);

    const automatic = await run(failback);

    expect(automatic.status).toBe("SUCCEEDED");
    expect((automatic.output as { plan: { noop: boolean; actions: string[] } }).plan).toMatchObject(
      {
        noop: true,
        actions: [
          expect.stringMatching(
            /^held back: execution first-failover failed over to us-east-2 0 min ago; cooldown 30 min; an operator can start one by hand$/,
          ),
        ],
      },
    );
    expect(entered(automatic)).not.toContain("CommitRetarget");
    expect(writes(sandbox)).toEqual(before);

    const operator = await run({ targetRegion: "us-west-2" });

    expect(operator.status).toBe("SUCCEEDED");
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-west-2",
      trafficDials: { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 },
    });
  });

  it("an automatic failback after the cooldown has passed proceeds", async () => {
    expect((await run({}, "first-failover")).status).toBe("SUCCEEDED");
    ageHeadCommit(sandbox, sandbox.topology.trigger.cooldownMinutes + 1);

    const automatic = await run(failback);

    expect(automatic.status).toBe("SUCCEEDED");
    expect((automatic.output as { plan: { noop: boolean } }).plan.noop).toBe(false);
    expect((await sandbox.state()).activeRegion).toBe("us-west-2");
  });

  it("dryRun: the plan as output, no write call made", async () => {
    const result = await run({ dryRun: true });

    expect(result.status).toBe("SUCCEEDED");
    expect((result.output as { plan: { actions: string[] } }).plan.actions.length).toBeGreaterThan(
      2,
    );
    expect(entered(result)).toContain("Report");
    expect(entered(result)).not.toContain("VerifySpoke");
    expect(writes(sandbox)).toEqual({ gitPushes: 0, auroraPromotions: 0, trafficUpdates: 0 });
  });

  it.each<[string, (s: Sandbox) => void, Record<string, unknown>, string]>([
    ["Plan (input)", () => undefined, { targetRegion: "ap-south-1" }, "InputValidationError"],
    [
      "Plan (unhealthy target)",
      (s) =>
        s.aws.route53.setFailingFraction(
          s.topology.regions["us-east-2"]?.route53.healthCheckId ?? "",
          1,
        ),
      {},
      "TargetUnhealthy",
    ],
    [
      "VerifySpoke",
      (s) => s.injectFault("spoke-nodes-not-ready", "us-east-2"),
      {},
      "SpokeNotReady",
    ],
    ["CommitRetarget", (s) => s.injectFault("git-auth-failure", "us-east-2"), {}, "GitAuthError"],
    [
      "CommitRetarget (another execution's failover commit lands first)",
      (s) =>
        s.git.injectConflictOnNextPush(
          { "NOTES.md": "failed over elsewhere\n" },
          "failover(x): make eu-west-1 active\n\nFailover-Execution: arn:aws:states:eu-west-1:000000000000:execution:gitops-failover:other\nFailover-Target: eu-west-1",
        ),
      {},
      "ConcurrentFailover",
    ],
    [
      "CommitRetarget (ungraceful: another orchestrator region's failover commit lands first)",
      (s) =>
        s.git.injectConflictOnNextPush(
          { "NOTES.md": "failed over elsewhere\n" },
          "failover(x): make eu-west-1 active\n\nFailover-Execution: arn:aws:states:eu-west-1:000000000000:execution:gitops-failover:other\nFailover-Target: eu-west-1",
        ),
      { mode: "ungraceful", allowDataLoss: true },
      "ConcurrentFailover",
    ],
    [
      "AwaitArgoSync",
      (s) => s.injectFault("argocd-sync-timeout", "us-east-2"),
      {},
      "ArgoSyncTimeout",
    ],
    [
      "Plan (Aurora refusal: the old primary's RDS API is down)",
      (s) => s.aws.rds.setRegionDown("us-west-2", true),
      {},
      "AuroraPromotionRefused",
    ],
    [
      "AwaitAurora",
      (s) => s.injectFault("aurora-failover-stuck", "us-east-2"),
      {},
      "AuroraPromotionTimeout",
    ],
    [
      "ShiftTraffic",
      (s) => s.injectFault("ga-update-fails", "us-east-2"),
      {},
      "TrafficShiftFailed",
    ],
  ])(
    "a failure in %s fails the execution with its name, and traffic never moves",
    async (step, fault, extra, error) => {
      fault(sandbox);

      const result = await run(extra);

      expect(result.status).toBe("FAILED");
      expect(result.error).toBe(error);
      expect(entered(result)).toContain("RecordFailure");
      // Before ShiftTraffic no traffic call is even attempted; ShiftTraffic's own attempt is
      // refused, and so is compensation's (moving users to the writer's region, us-east-2).
      expect(writes(sandbox).trafficUpdates).toBe(step === "ShiftTraffic" ? 2 : 0);
      // The Git push is the cross-region guard: taken before Aurora is touched, in either mode.
      if (step.startsWith("CommitRetarget")) expect(writes(sandbox).auroraPromotions).toBe(0);
      expect((await sandbox.state()).trafficDials).toEqual({
        "us-west-2": 100,
        "us-east-2": 0,
        "eu-west-1": 0,
      });
    },
  );

  it("ungraceful, the source really down (its health check failing): compensation leaves the writer on the target", async () => {
    sandbox.injectFault("argocd-degraded", "us-east-2");
    const source = sandbox.topology.regions["us-west-2"]?.route53.healthCheckId ?? "";
    sandbox.aws.route53.setFailingFraction(source, 1);

    const result = await run({ mode: "ungraceful" }, "source-down");

    expect(result.error).toBe("ArgoSyncTimeout");
    expect(await sandbox.state()).toMatchObject({ auroraWriterRegion: "us-east-2" });
    const compensation = (await readAuditTrail("source-down")).findLast(
      (e) => e.step === "Compensate",
    );
    expect(compensation).toMatchObject({ outcome: "FAILED" });
    expect((compensation?.after as { actions?: unknown[] } | undefined)?.actions).toContainEqual(
      expect.objectContaining({
        action: "switch-writer-back",
        outcome: "NOT_NEEDED",
        detail: expect.stringMatching(/^not to us-west-2: us-west-2 is failing its health check/),
      }),
    );
    expect(writes(sandbox).auroraPromotions).toBe(1);
  });

  it("ungraceful, the target one pod short of its floors per spoke: the gate passes at 60 % Ready (Argo CD's Progressing is enough), traffic moves", async () => {
    // Room for every committed replica but one (3 + 3 a spoke): web runs 2 of 3, one Pending.
    const target = sandbox.spokes.filter((sp) => sp.region === "us-east-2");
    for (const spoke of target) spoke.setPodCapacity(5);

    const result = await run({ mode: "ungraceful" }, "one-short");

    expect(result.status, result.cause).toBe("SUCCEEDED");
    const trail = await readAuditTrail("one-short");
    const gate = trail.findLast((e) => e.step === "AwaitCapacity")?.after as
      | { status?: string; apps?: { app: string; ready: number; needed: number }[] }
      | undefined;
    expect(gate?.status).toBe("SUCCEEDED");
    expect(gate?.apps?.find((a) => a.app.endsWith("/web"))).toMatchObject({
      ready: 2 * target.length,
      needed: 2,
    });
    expect(writes(sandbox).trafficUpdates).toBeGreaterThan(0);
  });

  it("graceful, the same target: Argo CD waits for Healthy and the gate fails at 100 % before traffic moves", async () => {
    for (const spoke of sandbox.spokes.filter((sp) => sp.region === "us-east-2"))
      spoke.setPodCapacity(5);

    const result = await run({}, "one-short-graceful");

    expect(result.status).toBe("FAILED");
    expect(result.error).toBe("TargetCapacityShort");
    expect(result.cause).toMatch(/\/web .*: 2\/3 Ready, 1 Pending/);
    expect(writes(sandbox).trafficUpdates).toBe(0);
  });

  it("staged traffic 10, 50, 100: the passive region's dial stays 0 at every stage, the target ends at 100", async () => {
    const t = sandbox.topology;
    process.env.TOPOLOGY = JSON.stringify({
      ...t,
      traffic: { ...t.traffic, stages: [10, 50, 100] },
    });
    resetRuntimeTopology();
    const atEachStage: Record<string, number>[] = [];

    const result = await runLocal({
      input: input(),
      executionName: `staged-${runs}`,
      waitMs: 5,
      retryMs: 5,
      onEvent: (e) => {
        if (e.type === "StateEntered" && "state" in e && e.state?.name === "VerifyTraffic")
          atEachStage.push(sandbox.aws.ga.dials());
      },
    });

    expect(result.status).toBe("SUCCEEDED");
    expect(atEachStage).toEqual([
      { "us-west-2": 90, "us-east-2": 100, "eu-west-1": 0 },
      { "us-west-2": 50, "us-east-2": 100, "eu-west-1": 0 },
      { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 },
    ]);
    const passive = t.regions["eu-west-1"]?.globalAccelerator?.endpointGroupArn;
    const passiveWrites = sandbox.aws.ga
      .calls()
      .filter((c) => c.action === "UpdateEndpointGroup" && c.endpointGroupArn === passive);
    expect(passiveWrites).toEqual([]);
    expect((await sandbox.state()).trafficDials).toEqual({
      "us-west-2": 0,
      "us-east-2": 100,
      "eu-west-1": 0,
    });
  });

  it("a failure in VerifyTraffic (target endpoints unhealthy after the shift) fails with its name", async () => {
    sandbox.aws.ga.setHealthy(
      sandbox.topology.regions["us-east-2"]?.globalAccelerator?.endpointGroupArn ?? "",
      false,
    );

    const result = await run();

    expect(result.status).toBe("FAILED");
    expect(result.error).toBe("TrafficVerifyTimeout");
  });

  it("Argo CD never Synced at the commit: times out after a bounded number of polls, no traffic shift", async () => {
    sandbox.injectFault("argocd-sync-timeout", "us-east-2");

    const result = await run();

    const polls = entered(result).filter((s) => s === "AwaitArgoSync").length;
    expect(result.error).toBe("ArgoSyncTimeout");
    expect(polls).toBe(sandbox.topology.timeouts.argoSyncSeconds / 10);
    expect(entered(result)).not.toContain("ShiftTraffic");
  });

  it("a second concurrent failover is refused by the single-flight lock", async () => {
    const [a, b] = await Promise.all([run({}, "first-failover"), run({}, "second-failover")]);

    const outcomes = [a, b].map((r) => r.status === "SUCCEEDED" || r.error).sort();
    expect(outcomes).toEqual(["FailoverInProgress", true]);
    expect(writes(sandbox).gitPushes).toBe(2);
  });
});

describe("Aurora refusals are found in Plan, before anything changes", () => {
  const untouched = {
    activeRegion: "us-west-2",
    auroraWriterRegion: "us-west-2",
    trafficDials: { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 },
  };

  it.each<[string, (s: Sandbox) => void, Record<string, unknown>, RegExp]>([
    [
      "the RPO lag is above maxRpoSeconds (ungraceful)",
      (s) => s.aws.cloudwatch.setRpoLagMs("us-east-2", 60_000),
      { mode: "ungraceful" },
      /^\[Plan\] replication lag .* is 60s, above aurora\.maxRpoSeconds 5s/,
    ],
    [
      "the old primary's RDS API is down (graceful)",
      (s) => s.aws.rds.setRegionDown("us-west-2", true),
      {},
      /^\[Plan\] the RDS API in us-west-2, the current writer's region, does not answer/,
    ],
  ])(
    "%s: FAILED in Plan; no push, writer and dials unchanged",
    async (_what, fault, extra, cause) => {
      fault(sandbox);

      const result = await run(extra);

      expect(result.status).toBe("FAILED");
      expect(result.error).toBe("AuroraPromotionRefused");
      expect(result.cause).toMatch(cause);
      const states = entered(result);
      expect(states).toContain("RecordFailure");
      for (const later of ["VerifySpoke", "CommitRetarget", "PromoteAurora", "ShiftTraffic"])
        expect(states).not.toContain(later);
      expect(writes(sandbox)).toEqual({ gitPushes: 0, auroraPromotions: 0, trafficUpdates: 0 });
      expect(await sandbox.state()).toMatchObject(untouched);
    },
  );

  it("a dry run that would be refused says so in its plan and succeeds, changing nothing", async () => {
    sandbox.aws.cloudwatch.setRpoLagMs("us-east-2", 60_000);

    const result = await run({ mode: "ungraceful", dryRun: true });

    expect(result.status).toBe("SUCCEEDED");
    expect((result.output as { plan: { actions: string[] } }).plan.actions).toContainEqual(
      expect.stringMatching(
        /^would refuse: Aurora payments-global failover \(AllowDataLoss, RPO guard\) us-west-2 -> us-east-2: replication lag .* above aurora\.maxRpoSeconds 5s/,
      ),
    );
    expect(writes(sandbox)).toEqual({ gitPushes: 0, auroraPromotions: 0, trafficUpdates: 0 });
  });
});

describe("a short outage of the Argo CD hubs or the RDS API does not fail the failover", () => {
  const hubs = () => Object.keys(sandbox.argo.urls);
  const setHubs = (reachable: boolean) => {
    for (const hub of hubs()) sandbox.argo.setHubReachable(hub, reachable);
  };
  /** Runs with `setDown(true)` when `state` is first entered, `setDown(false)` on its `upOn`-th entry. */
  function runWithOutage(state: string, upOn: number, setDown: (down: boolean) => void) {
    let entries = 0;
    return runLocal({
      input: input(),
      executionName: `outage-${runs}`,
      waitMs: 5,
      retryMs: 5,
      onEvent: (e) => {
        if (e.type !== "StateEntered" || !("state" in e) || e.state?.name !== state) return;
        entries++;
        if (entries === 1) setDown(true);
        if (entries === upOn) setDown(false);
      },
    });
  }
  type Converged = { converge: Record<string, { lastError?: { name: string } }> };

  it("both Argo CD hubs unreachable for a few polls, then back: SUCCEEDED", async () => {
    const result = await runWithOutage("AwaitArgoSync", 4, (down) => setHubs(!down));

    expect(result.status).toBe("SUCCEEDED");
    expect((result.output as Converged).converge.argo?.lastError?.name).toBe("ArgoUnreachable");
    for (const hub of hubs()) expect(sandbox.argo.requests()[hub]?.refused).toBeGreaterThan(0);
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-east-2",
      trafficDials: { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 },
    });
  });

  it("both Argo CD hubs unreachable until the deadline: ArgoSyncTimeout naming it, after every poll", async () => {
    setHubs(false);

    const result = await run();

    expect(result.status).toBe("FAILED");
    expect(result.error).toBe("ArgoSyncTimeout");
    expect(result.cause).toMatch(/the last poll failed with ArgoUnreachable/);
    expect(result.cause).toMatch(/no Argo CD hub answered/);
    const polls = entered(result).filter((s) => s === "AwaitArgoSync").length;
    expect(polls).toBe(sandbox.topology.timeouts.argoSyncSeconds / 10);
    expect(writes(sandbox).trafficUpdates).toBe(0);
  });

  it("no region's RDS API answering for a few AwaitAurora polls, then back: SUCCEEDED", async () => {
    const regions = Object.keys(sandbox.topology.regions);
    const setRds = (down: boolean) => {
      for (const r of regions) sandbox.aws.rds.setRegionDown(r, down);
    };

    const result = await runWithOutage("AwaitAurora", 3, setRds);

    expect(result.status).toBe("SUCCEEDED");
    expect((result.output as Converged).converge.aurora?.lastError?.name).toBe("AwsUnavailable");
    expect((await sandbox.state()).auroraWriterRegion).toBe("us-east-2");
  });
});
