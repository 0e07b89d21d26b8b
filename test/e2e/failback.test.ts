/**
 * Failback end to end: a failover, the old region recovering, and a graceful failover back
 * behind Plan's failback pre-checks — through the CLI (`drill --failback`, `failback`), the real
 * ASL and functions, and the sandbox's stand-ins (Git history, writer, dials, reports).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { writeSandboxFile } from "../../cli/sandbox-file.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { DRILL_DEFAULTS, type DrillResult, runDrill } from "../../sandbox/drill.ts";
import { startSandbox } from "../../sandbox/index.ts";
import { recoverRegion } from "../../sandbox/recovery.ts";
import { cli } from "./cli-run.ts";

const root = mkdtempSync(join(tmpdir(), "gf-failback-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const HOME = "us-west-2";
const AWAY = "us-east-2";
const HOME_DIALS = { [HOME]: 100, [AWAY]: 0, "eu-west-1": 0 };
const AWAY_DIALS = { [HOME]: 0, [AWAY]: 100, "eu-west-1": 0 };
const SEED = "Initial commit";
const FAILOVER = [
  `failover(payments): make ${HOME} passive (traffic is on ${AWAY})`,
  `failover(payments): make ${AWAY} active`,
];
const FAILBACK = [
  `failover(payments): make ${AWAY} passive (traffic is on ${HOME})`,
  `failover(payments): make ${HOME} active`,
];

const subjects = (r: DrillResult) => r.after.gitLog.map((c) => c.subject);
const readReport = (dir: string) =>
  JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;

describe("failback", () => {
  it("drill --mode ungraceful --failback: Aurora's old primary rejoins, the failback ends where the drill started; the two reports link each other", async () => {
    const reportDir = join(root, "ungraceful");
    // In split accounts: Fence, the pre-checks and the rejoin reach each account through its role.
    const run = await cli(
      ...["drill", "--mode", "ungraceful", "--failback", "--accounts", "split", "--json"],
      ...["--report-dir", reportDir],
    );
    expect(run.code).toBe(0);
    const result = JSON.parse(run.out.slice(run.out.indexOf("{"))) as DrillResult;

    expect(result.status).toBe("SUCCEEDED");
    const [failover, failback] = result.executions;
    expect(failover?.after).toMatchObject({ activeRegion: AWAY, auroraWriterRegion: AWAY });
    expect(failover?.after.trafficDials).toEqual(AWAY_DIALS);
    expect(failback?.failback).toBe(true);
    expect(result.after).toMatchObject({ activeRegion: HOME, auroraWriterRegion: HOME });
    expect(result.after.trafficDials).toEqual(HOME_DIALS);
    expect(result.after.workloads).toEqual(result.before.workloads);
    expect(subjects(result)).toEqual([...FAILBACK, ...FAILOVER, SEED]);

    // The failback's report links the failover it undoes; that one's report is kept beside it.
    const back = readReport(reportDir);
    expect(back.failback).toMatchObject({
      undoes: { execution: failover?.name, link: expect.stringContaining(failover?.name ?? "?") },
      checks: expect.arrayContaining([expect.stringMatching(/^aurora: member payments-usw2/)]),
    });
    expect(back.fence).toEqual([expect.objectContaining({ region: AWAY, fence: "verified" })]);
    const md = readFileSync(join(reportDir, "report.md"), "utf8");
    expect(md).toMatch(/^# Failback succeeded: us-east-2 -> us-west-2/);
    expect(md).toContain(`- Failback: undoes the failover [${failover?.name}]`);
    const first = join(reportDir, failover?.name ?? "?");
    expect(existsSync(join(first, "report.md"))).toBe(true);
    expect(readReport(first)).toMatchObject({
      status: "SUCCEEDED",
      execution: { name: failover?.name },
      fence: [expect.objectContaining({ region: HOME, fence: "verified" })],
      undoneBy: {
        execution: failback?.name,
        link: expect.stringContaining(failback?.name ?? "?"),
      },
    });
    expect(readFileSync(join(first, "report.md"), "utf8")).toContain(
      `- Undone by: the failback [${failback?.name}]`,
    );
  });

  it("aurora-not-rejoined: the failback is refused in its pre-checks (Plan, before anything changes) naming the pending-resync member; nothing moves back", async () => {
    const result = await runDrill({
      ...DRILL_DEFAULTS,
      mode: "ungraceful",
      failback: true,
      faults: ["aurora-not-rejoined"],
      reportDir: join(root, "not-rejoined"),
    });

    expect(result.status).toBe("FAILED");
    expect(result.failedStep).toBe("Plan");
    expect(result.error).toMatch(
      /^FailbackRefused: \[Plan\] refusing to fail back to us-west-2: its Aurora cluster cannot take the writer back; nothing was changed: aurora: .*payments-usw2 \(us-west-2\) has not rejoined global cluster payments-global: it is pending-resync.*SynchronizationStatus connected/,
    );
    expect(result.after).toMatchObject({ activeRegion: AWAY, auroraWriterRegion: AWAY });
    expect(result.after.trafficDials).toEqual(AWAY_DIALS);
    expect(subjects(result)).toEqual([...FAILOVER, SEED]);
    expect(result.executions[1]?.report?.manualSteps).toEqual([
      "Nothing was changed: nothing to undo. Users are still served by us-east-2.",
      expect.stringMatching(/^Fix the cause \(FailbackRefused\)/),
    ]);
  });

  it("`failback` with no --to goes back to the region the newest failover left (failback: true in the input), refused first while an app there is Degraded", async () => {
    const reportDir = join(root, "cli");
    const sandbox = await startSandbox({ reportDir, waitMs: 5 });
    try {
      const endpointFile = join(root, "sandbox.json");
      await writeSandboxFile(endpointFile, {
        stateMachineArn: sandbox.stateMachineArn,
        region: "us-east-1",
        env: sandbox.env,
        reportDir,
      });
      const moved = await cli(
        ...["start", "--sandbox", endpointFile, "--target", AWAY],
        ...["--reason", "planned move", "--name", "move-away"],
      );
      expect(moved.code).toBe(0);
      expect((await cli("watch", "move-away", "--sandbox", endpointFile)).code).toBe(0);
      await recoverRegion(sandbox, HOME, { auroraRejoins: true });

      // An app of us-west-2 lost its ready pods: refused before any commit, naming the check.
      const spoke = sandbox.spokes.find((sp) => sp.region === HOME);
      const [victim] = spoke?.deployments() ?? [];
      if (!spoke || !victim) throw new Error("no Deployment in us-west-2");
      spoke.setDeploymentAvailable(victim.namespace, victim.name, false);
      // Until Argo CD reports it (bounded in time, not in reconciles: a loaded machine is slow).
      const degraded = () =>
        sandbox.argo
          .applications()
          .some((a) => a.health === "Degraded" && a.name.startsWith(`${spoke.name}-`));
      for (const until = Date.now() + 30_000; !degraded() && Date.now() < until; )
        await sandbox.settle();
      expect(degraded()).toBe(true);
      const before = await sandbox.state();
      const refused = await cli(
        ...["failback", "--sandbox", endpointFile, "--reason", "too early", "--name", "too-early"],
      );
      expect(refused.code).toBe(0);
      const watchedRefusal = await cli("watch", "too-early", "--sandbox", endpointFile);
      expect(watchedRefusal.code).toBe(1);
      const refusal = readReport(reportDir);
      expect(refusal.failedStep, JSON.stringify(refusal.error)).toBe("VerifySpoke");
      expect(refusal.error?.name).toBe("FailbackRefused");
      expect(refusal.error?.message).toMatch(
        /^\[VerifySpoke\] refusing to fail back to us-west-2: \d pre-check\(s\) failed; nothing was changed: .*gitops NOT_READY: its applications are not Synced and Healthy in passive mode: /,
      );
      expect(await sandbox.state()).toEqual(before);
      spoke.setDeploymentAvailable(victim.namespace, victim.name, true);
      for (
        let i = 0;
        i < 100 && sandbox.argo.applications().some((a) => a.health !== "Healthy");
        i++
      )
        await sandbox.settle();

      const started = await cli(
        ...["failback", "--sandbox", endpointFile, "--reason", "us-west-2 is healthy again"],
        ...["--name", "back-home", "--json"],
      );
      expect(started.code).toBe(0);
      expect(JSON.parse(started.out)).toMatchObject({
        name: "back-home",
        input: { targetRegion: HOME, mode: "graceful", failback: true },
      });
      const watched = await cli("watch", "back-home", "--sandbox", endpointFile);
      expect(watched.code, watched.out).toBe(0);
      expect(await sandbox.state()).toMatchObject({
        activeRegion: HOME,
        auroraWriterRegion: HOME,
        trafficDials: HOME_DIALS,
      });
      expect(readReport(reportDir).failback?.undoes?.execution).toBe("move-away");

      // Capacity parity for Aurora: the standby's MinCapacity was raised to the writer's peak
      // before each promotion call, and the failback gave the one the failover raised back.
      const { rds } = sandbox.aws;
      const arn = (region: string) => sandbox.topology.regions[region]?.aurora.clusterArn ?? "?";
      const [there, home] = rds.promotions();
      const mods = rds.modifications();
      expect(mods.map((m) => [m.clusterArn, m.before.min, m.after.min])).toEqual([
        [arn(AWAY), 0.5, 12],
        [arn(AWAY), 12, 0.5],
        [arn(HOME), 2, 12],
      ]);
      expect(mods[0]?.at).toBeLessThanOrEqual(there?.startedAt ?? 0);
      expect(there).toMatchObject({ to: AWAY, kind: "switchover" });
      expect(mods[1]?.at).toBeLessThanOrEqual(home?.startedAt ?? 0);
      expect(mods[2]?.at).toBeLessThanOrEqual(home?.startedAt ?? 0);
      expect(home).toMatchObject({ to: HOME });
      expect(rds.serverlessRange(arn(AWAY))).toEqual({ min: 0.5, max: 64 });
      const back = readReport(reportDir).auroraCapacity;
      expect(back?.restore).toMatchObject({ region: AWAY, from: 12, to: 0.5, restored: true });
      expect(readFileSync(join(reportDir, "report.md"), "utf8")).toMatch(
        /## Aurora capacity[\s\S]*us-east-2 payments-use2 MinCapacity restored 12 -> 0.5/,
      );
    } finally {
      await sandbox.stop();
    }
  });
});
