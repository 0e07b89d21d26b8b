/**
 * Drills end to end: the real ASL, the real functions, the sandbox's stand-ins over real
 * protocols. Each scenario asserts the platform afterwards from the stand-ins themselves
 * (Git history, the spokes' Deployments, the Aurora writer, the dials), not from the report.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type AuditEvent, verifyChain } from "../../functions/lib/audit.ts";
import { type DrillOptions, type DrillResult, runDrill } from "../../sandbox/drill.ts";
import type { FaultName } from "../../sandbox/faults.ts";

const root = mkdtempSync(join(tmpdir(), "gf-e2e-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function drill(options: Partial<DrillOptions> = {}): Promise<DrillResult> {
  n += 1;
  return runDrill({
    target: "us-east-2",
    mode: "graceful",
    dryRun: false,
    spokes: 3,
    apps: 6,
    repeat: 1,
    faults: [],
    reportDir: join(root, `report-${n}`),
    ...options,
  });
}

const UNCHANGED_TRAFFIC = { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 };
const MOVED_TRAFFIC = { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 };

function auditOf(result: DrillResult): AuditEvent[] {
  return readFileSync(join(result.reportDir, "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as AuditEvent);
}

function expectFailedBeforeTraffic(result: DrillResult, step: string, error: string): void {
  expect(result.status).toBe("FAILED");
  expect(result.failedStep).toBe(step);
  expect(result.error).toMatch(new RegExp(`^${error}`));
  expect(result.after.trafficDials).toEqual(UNCHANGED_TRAFFIC);
  const report = result.executions[0]?.report;
  expect(report?.steps.find((s) => s.name === step)?.status).toBe("FAILED");
  if (step !== "ShiftTraffic")
    expect(report?.steps.find((s) => s.name === "ShiftTraffic")?.status).toBe("NOT_RUN");
  expect(readFileSync(join(result.reportDir, "report.md"), "utf8")).toContain("## Manual steps");
}

describe("drill: happy path", () => {
  it("fails over us-west-2 -> us-east-2: commit, apps Synced at it, Aurora writer, dials", async () => {
    const result = await drill();

    expect(result.status).toBe("SUCCEEDED");
    expect(result.before).toMatchObject({
      activeRegion: "us-west-2",
      auroraWriterRegion: "us-west-2",
      trafficDials: UNCHANGED_TRAFFIC,
    });
    expect(result.after).toMatchObject({
      activeRegion: "us-east-2",
      auroraWriterRegion: "us-east-2",
      trafficDials: MOVED_TRAFFIC,
    });
    expect(result.after.gitHead).not.toBe(result.before.gitHead);
    expect(result.before.replicas["us-west-2"]).toBeGreaterThan(0);
    expect(result.after.replicas).toMatchObject({ "us-west-2": 0, "eu-west-1": 0 });
    expect(result.after.replicas["us-east-2"]).toBe(result.before.replicas["us-west-2"]);
    const report = result.executions[0]?.report;
    expect(report).toMatchObject({ status: "SUCCEEDED", failedStep: null });
    expect(report?.steps.map((s) => [s.name, s.status])).toEqual([
      ["Plan", "SUCCEEDED"],
      ["Approval", "SKIPPED"],
      ["VerifySpoke", "SUCCEEDED"],
      ["CommitRetarget", "SUCCEEDED"],
      ["AwaitArgoSync", "SUCCEEDED"],
      ["PromoteAurora", "SUCCEEDED"],
      ["AwaitAurora", "SUCCEEDED"],
      ["ShiftTraffic", "SUCCEEDED"],
      ["VerifyTraffic", "SUCCEEDED"],
    ]);
    const markdown = readFileSync(join(result.reportDir, "report.md"), "utf8");
    expect(markdown).toContain("```mermaid\ngantt");
    expect(markdown).toMatch(/RTO: \d+ s/);
    expect(verifyChain(auditOf(result))).toMatchObject({ intact: true });
  });

  it("repeats: the second execution changes nothing and reports every step skipped", async () => {
    const result = await drill({ repeat: 2 });

    expect(result.status).toBe("SUCCEEDED");
    const [first, second] = result.executions;
    expect(first?.report?.status).toBe("SUCCEEDED");
    expect(
      second?.report?.steps.filter((s) => s.name !== "Plan").every((s) => s.status === "SKIPPED"),
    ).toBe(true);
    expect(second?.report?.before).toEqual(second?.report?.after);
    expect(result.after).toMatchObject({ activeRegion: "us-east-2", trafficDials: MOVED_TRAFFIC });
  });

  it("dry run: the plan, and no write anywhere", async () => {
    const result = await drill({ dryRun: true });

    expect(result.status).toBe("SUCCEEDED");
    expect(result.after).toEqual(result.before);
    const plan = result.executions[0]?.report?.plan as {
      actions: string[];
      needs: Record<string, boolean>;
    };
    expect(plan.needs).toEqual({ retarget: true, aurora: true, traffic: true });
    expect(plan.actions.join("\n")).toMatch(
      /commit envs\/production\/values.yaml global.activeRegion = us-east-2/,
    );
  });
});

describe("drill: faults", () => {
  it.each<[FaultName, string, string]>([
    ["spoke-unreachable", "VerifySpoke", "SpokeUnreachable"],
    ["spoke-nodes-not-ready", "VerifySpoke", "SpokeNotReady"],
  ])("%s stops at %s with %s and changes nothing", async (fault, step, error) => {
    const result = await drill({ faults: [fault] });

    expectFailedBeforeTraffic(result, step, error);
    expect(result.after).toEqual(result.before);
  });

  it("git-auth-failure stops at Plan (it reads Git first); nothing changes", async () => {
    const result = await drill({ faults: ["git-auth-failure"] });

    expectFailedBeforeTraffic(result, "Plan", "GitAuthError");
    expect(result.after).toEqual(result.before);
    expect(result.after.gitHead).toBe(result.before.gitHead);
    expect(result.after.activeRegion).toBe("us-west-2");
  });

  it.each<[FaultName, string, string]>([
    ["argocd-sync-timeout", "AwaitArgoSync", "ArgoSyncTimeout"],
    ["argocd-degraded", "AwaitArgoSync", "ArgoSyncTimeout"],
    ["aurora-failover-stuck", "AwaitAurora", "AuroraPromotionTimeout"],
    ["ga-update-fails", "ShiftTraffic", "TrafficShiftFailed"],
  ])(
    "%s stops at %s with %s, traffic where it was, and the report says what changed",
    async (fault, step, error) => {
      const result = await drill({ faults: [fault] });

      expectFailedBeforeTraffic(result, step, error);
      const report = result.executions[0]?.report as { changed: string[] } | null | undefined;
      if (result.after.gitHead !== result.before.gitHead) {
        expect(report?.changed.join("\n")).toContain("Git: active region us-west-2 -> us-east-2");
      }
    },
  );

  it("git-push-conflict: the concurrent commit lands first, the retarget is retried on top of it", async () => {
    const result = await drill({ faults: ["git-push-conflict"] });

    expect(result.status).toBe("SUCCEEDED");
    expect(result.after).toMatchObject({ activeRegion: "us-east-2", trafficDials: MOVED_TRAFFIC });
    const commit = auditOf(result).find((e) => e.step === "CommitRetarget");
    expect(commit?.after).toMatchObject({ changes: [{ from: "us-west-2", to: "us-east-2" }] });
  });

  it.each<[FaultName]>([["argocd-hub-down"], ["ga-throttled"]])(
    "%s is absorbed: the failover succeeds",
    async (fault) => {
      const result = await drill({ faults: [fault] });

      expect(result.status).toBe("SUCCEEDED");
      expect(result.after).toMatchObject({
        activeRegion: "us-east-2",
        auroraWriterRegion: "us-east-2",
        trafficDials: MOVED_TRAFFIC,
      });
    },
  );
});
