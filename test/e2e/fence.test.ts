/**
 * Fencing end to end: the Fence step after a failover (real ASL, real functions, the sandbox's
 * stand-ins), and the readiness function re-checking a fence the step left pending. Asserted
 * from the stand-ins (Git history, dials, writer) and the report.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import { fenceRecord } from "../../functions/lib/fence.ts";
import { collectMetrics, readinessStep } from "../../functions/lib/readiness.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { DRILL_DEFAULTS, runDrill } from "../../sandbox/drill.ts";
import { VALUES_FILE } from "../../sandbox/gitops-layout.ts";
import { raiseDialByHand, startSandbox } from "../../sandbox/index.ts";
import { runLocal } from "../../sandbox/runner.ts";

const root = mkdtempSync(join(tmpdir(), "gf-fence-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SOURCE = "us-west-2";
const TARGET = "us-east-2";
const SEED = "Initial commit";
const RETARGET = "failover(payments): make us-east-2 active";
const DEMOTE = "failover(payments): make us-west-2 passive (traffic is on us-east-2)";

const reportOf = (dir: string) =>
  JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;

describe("Fence", () => {
  it("old-region-returns-active: the old dial raised by hand fails Fence after traffic moved; the report says what is live and how to fence it", async () => {
    const reportDir = join(root, "returns-active");
    const result = await runDrill({
      ...DRILL_DEFAULTS,
      faults: ["old-region-returns-active"],
      reportDir,
    });

    expect(result.status).toBe("FAILED");
    expect(result.failedStep).toBe("Fence");
    expect(result.error).toMatch(
      /^OldRegionNotFenced: \[Fence\] us-west-2 can still serve or write after the failover; traffic is on us-east-2/,
    );
    // The failover itself completed and nothing was undone: both commits, the writer, the dials.
    expect(result.after.gitLog.map((c) => c.subject)).toEqual([DEMOTE, RETARGET, SEED]);
    expect(result.after.auroraWriterRegion).toBe(TARGET);
    expect(result.after.trafficDials).toEqual({ [SOURCE]: 50, [TARGET]: 100, "eu-west-1": 0 });
    const steps = result.executions[0]?.steps.map((s) => [s.name, s.status]);
    expect(steps).toContainEqual(["DemoteSource", "SUCCEEDED"]);
    expect(steps).toContainEqual(["Fence", "FAILED"]);
    expect(steps).toContainEqual(["Compensate", "NOT_RUN"]);
    const report = reportOf(reportDir);
    expect(report.fence).toEqual([
      expect.objectContaining({
        region: SOURCE,
        fence: "not fenced",
        live: expect.arrayContaining(["traffic dial 50%"]),
      }),
    ]);
    expect(report.manualSteps[0]).toMatch(
      /^The failover itself completed: traffic is on us-east-2; do not undo it/,
    );
    expect(report.manualSteps).toContainEqual(
      expect.stringMatching(
        /^Fence us-west-2: `aws globalaccelerator update-endpoint-group --region us-west-2 --endpoint-group-arn \S+usw2\S+ --traffic-dial-percentage 0`$/,
      ),
    );
    const md = readFileSync(join(reportDir, "report.md"), "utf8");
    expect(md).toContain("- us-west-2 fence: not fenced (still live: traffic dial 50%");
  });

  it("a commit pushed on top of the demote commit that keeps the old region passive: Fence verifies the region there", async () => {
    const reportDir = join(root, "demote-on-top");
    const sandbox = await startSandbox({ reportDir, waitMs: 5 });
    try {
      // After the retarget push, the next push (the demote commit) gets an image bump on top.
      sandbox.git.onNextPush({
        done: async () => sandbox.injectFault("commit-on-top", TARGET),
      });
      const run = await runLocal({
        input: { targetRegion: TARGET, reason: "fence e2e" },
        executionName: "fence-on-top",
        waitMs: 5,
        retryMs: 5,
      });
      expect(run.status, run.cause).toBe("SUCCEEDED");
      const log = (await sandbox.state()).gitLog.map((c) => c.subject);
      expect(log.slice(1)).toEqual([DEMOTE, RETARGET, SEED]);
      expect(log[0]).toMatch(/^build: automatic update of /);
      const report = reportOf(reportDir);
      expect(report.fence).toEqual([
        expect.objectContaining({
          region: SOURCE,
          fence: "verified",
          detail: expect.stringMatching(/apps Synced at [0-9a-f]{7} \(passive\) and Healthy$/),
        }),
      ]);
    } finally {
      await sandbox.stop();
    }
  });

  it("a commit pushed on top of the demote commit that makes the old region active again: Fence fails at once, naming it", async () => {
    const reportDir = join(root, "demote-undone");
    const sandbox = await startSandbox({ reportDir, waitMs: 5 });
    try {
      // After the retarget push, the next push (the demote commit) gets a commit on top that
      // sets us-west-2 active again.
      // Argo CD's Git polls are held from that push until the commit on top landed (as a hub
      // polling every 3 minutes would see it): it never deploys the demote commit as the head.
      let release: (() => void) | undefined;
      sandbox.git.onNextPush({
        done: async () =>
          sandbox.git.onNextPush({
            prepare: () => {
              release = sandbox.argo.holdGitPolls();
            },
            done: async () => {
              try {
                const doc = parseDocument(await sandbox.git.readFile(VALUES_FILE));
                doc.setIn(["regions", SOURCE, "active"], true);
                await sandbox.git.commitDirect(
                  { [VALUES_FILE]: doc.toString() },
                  "chore: restore us-west-2\n\nA stale branch merged.",
                );
              } finally {
                release?.();
              }
            },
          }),
      });
      const run = await runLocal({
        input: { targetRegion: TARGET, reason: "fence e2e" },
        executionName: "fence-undone",
        waitMs: 5,
        retryMs: 5,
      });
      expect(run.status).toBe("FAILED");
      expect(run.error).toBe("OldRegionNotFenced");
      expect(run.cause).toMatch(
        /its apps are not passive: commit [0-9a-f]{12} \("chore: restore us-west-2"/,
      );
      expect(run.cause).toMatch(/so Git no longer makes us-west-2 passive/);
      // Fence failed at its first check of the apps, not at its deadline.
      const fencePolls = run.events.filter(
        (e) => e.type === "StateEntered" && "state" in e && e.state?.name === "Fence",
      );
      expect(fencePolls.length).toBeLessThanOrEqual(3);
    } finally {
      await sandbox.stop();
    }
  });

  it("old-region-unreachable: fence pending, not a failure; readiness re-checks it, alarms when the region answers unfenced, then verifies it", async () => {
    const reportDir = join(root, "unreachable");
    const sandbox = await startSandbox({ reportDir, waitMs: 5 });
    try {
      sandbox.injectFault("old-region-unreachable", TARGET);
      const run = await runLocal({
        input: { targetRegion: TARGET, reason: "fence e2e", mode: "ungraceful" },
        executionName: "fence-unreachable",
        waitMs: 5,
        retryMs: 5,
      });
      expect(run.status).toBe("SUCCEEDED");
      const state = await sandbox.state();
      expect(state.gitLog.map((c) => c.subject)).toEqual([DEMOTE, RETARGET, SEED]);
      expect(state.auroraWriterRegion).toBe(TARGET);
      expect(state.trafficDials).toEqual({ [SOURCE]: 0, [TARGET]: 100, "eu-west-1": 0 });
      const report = reportOf(reportDir);
      expect(report.fence).toEqual([
        expect.objectContaining({ region: SOURCE, fence: "pending (unreachable)" }),
      ]);
      expect(readFileSync(join(reportDir, "report.md"), "utf8")).toContain(
        "- us-west-2 fence: pending (unreachable)",
      );
      expect(await fenceRecord("payments", SOURCE)).toMatchObject({
        status: "pending",
        targetRegion: TARGET,
        execution: "fence-unreachable",
      });

      const metrics: Record<string, unknown>[] = [];
      const fenceOf = async () => {
        metrics.length = 0;
        const { evaluation } = await readinessStep({}, sandbox.topology, {
          sink: collectMetrics(metrics as unknown[]),
        });
        return evaluation.results.find((r) => r.region === SOURCE && r.check === "fence");
      };
      const unfenced = () => metrics.find((m) => m.Region === SOURCE)?.OldRegionUnfenced;
      // Still down: pending, not known.
      expect(await fenceOf()).toMatchObject({ status: "UNKNOWN" });
      expect(unfenced()).toBe(0);

      // It comes back with its dial raised by hand: NOT_READY at once, with the command.
      for (const spoke of sandbox.spokes.filter((s) => s.region === SOURCE))
        spoke.setReachable(true);
      await raiseDialByHand(sandbox, SOURCE, 100);
      await sandbox.settle();
      const live = await fenceOf();
      expect(unfenced()).toBe(1);
      expect(live?.status).toBe("NOT_READY");
      expect(live?.detail).toMatch(
        /the old region answers but is NOT fenced .*traffic dial 100%.*--traffic-dial-percentage 0/,
      );

      // Fenced by hand: verified, recorded, and no longer checked.
      await raiseDialByHand(sandbox, SOURCE, 0);
      await sandbox.settle();
      expect(await fenceOf()).toMatchObject({
        status: "READY",
        detail: expect.stringMatching(/^fence verified: dial 0, not the writer, apps Synced/),
      });
      expect(unfenced()).toBe(0);
      expect(await fenceRecord("payments", SOURCE)).toMatchObject({ status: "verified" });
      expect(await fenceOf()).toBeUndefined();
      expect(unfenced()).toBeUndefined();
    } finally {
      await sandbox.stop();
    }
  });
});
