/**
 * What the drill tests share (drill.test.ts, drill-faults.test.ts, split so two workers can
 * run them side by side): a drill in this file's temporary directory, the platform's expected
 * states and the invariants every drill must keep.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import type { AuditEvent } from "../../functions/lib/audit.ts";
import {
  DRILL_DEFAULTS,
  type DrillOptions,
  type DrillResult,
  drillProblems,
  runDrill,
} from "../../sandbox/drill.ts";
import { DEFAULT_REPLICAS } from "../../sandbox/gitops-layout.ts";
import type { RegionWorkloads, SandboxState } from "../../sandbox/index.ts";

export const root = mkdtempSync(join(tmpdir(), "gf-e2e-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
export function drill(options: Partial<DrillOptions> = {}): Promise<DrillResult> {
  n += 1;
  return runDrill({
    ...DRILL_DEFAULTS,
    reportDir: join(root, `report-${n}`),
    ...options,
  });
}

export const SOURCE = "us-west-2";
export const TARGET = "us-east-2";
export const UNCHANGED_TRAFFIC = { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 };
export const MOVED_TRAFFIC = { "us-west-2": 0, "us-east-2": 100, "eu-west-1": 0 };
export const SEED = "Initial commit";
export const RETARGET = "failover(payments): make us-east-2 active";
export const DEMOTE = "failover(payments): make us-west-2 passive (traffic is on us-east-2)";
export const COMPENSATE =
  "failover(payments): compensate: make us-east-2 passive again (users stay on us-west-2)";
export const CONCURRENT = "Concurrent change by another committer";
/** 6 apps on 3 spokes: 2 components, so 2 Deployments per region. */
const DEPLOYMENTS = 2;
export const { active: ACTIVE, passive: PASSIVE } = DEFAULT_REPLICAS;

/** A region whose Deployments all run `each` ready replicas. */
export const running = (each: number): RegionWorkloads => ({
  deployments: DEPLOYMENTS,
  replicas: DEPLOYMENTS * each,
  ready: DEPLOYMENTS * each,
  minReady: each,
});
/** Every region settled with `active` serving and the others warm standbys. */
export function settled(active: string): Record<string, RegionWorkloads> {
  return {
    "us-west-2": running(active === "us-west-2" ? ACTIVE : PASSIVE),
    "us-east-2": running(active === "us-east-2" ? ACTIVE : PASSIVE),
    "eu-west-1": running(active === "eu-west-1" ? ACTIVE : PASSIVE),
  };
}

export const subjects = (s: SandboxState) => s.gitLog.map((c) => c.subject);
export const updates = (r: DrillResult) =>
  r.calls.globalAccelerator.filter((c) => c.action === "UpdateEndpointGroup").map((c) => c.outcome);
export const step = (r: DrillResult, name: string, execution = 0) =>
  r.executions[execution]?.steps.find((s) => s.name === name);

export function auditOf(result: DrillResult): AuditEvent[] {
  return readFileSync(join(result.reportDir, "audit.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as AuditEvent);
}

/**
 * What must hold after every drill, read from the stand-ins: wherever the dials still send
 * traffic to the source region, every one of its Deployments has ready replicas; the Git head
 * is the newest commit of the history.
 */
export function expectInvariants(result: DrillResult): void {
  for (const state of [result.before, result.after, ...result.executions.map((e) => e.after)]) {
    expect(state.gitHead).toBe(state.gitLog[0]?.sha);
    for (const [region, dial] of Object.entries(state.trafficDials)) {
      if (dial > 0) expect(state.workloads[region]?.minReady).toBeGreaterThan(0);
    }
  }
  expect(result.before).toMatchObject({
    activeRegion: SOURCE,
    auroraWriterRegion: SOURCE,
    trafficDials: UNCHANGED_TRAFFIC,
    workloads: settled(SOURCE),
  });
  expect(subjects(result.before)).toEqual([SEED]);
}

/** The region users are sent to: the highest dial. */
function servingRegion(state: SandboxState): string | undefined {
  return Object.entries(state.trafficDials).sort(([, a], [, b]) => b - a)[0]?.[0];
}

/**
 * What must hold after any drill, however it ended: the region users are sent to holds the
 * Aurora writer (their database is writable) and runs at least the ready pods it had before
 * (the source when the failover stopped, the target when it completed).
 */
export function expectUsersServed(result: DrillResult): void {
  const serving = servingRegion(result.after) ?? "none";
  expect([SOURCE, TARGET]).toContain(serving);
  expect(result.after.auroraWriterRegion).toBe(serving);
  const before = result.before.workloads[serving]?.ready ?? 0;
  const expected = serving === SOURCE ? before : DEPLOYMENTS * ACTIVE;
  expect(result.after.workloads[serving]?.ready).toBeGreaterThanOrEqual(expected);
}

/** A completed failover: the two commits on top of `history`, writer, dials, pods moved. */
export function expectFailedOver(result: DrillResult, history: string[] = [SEED]): void {
  expect(result.status).toBe("SUCCEEDED");
  expect(drillProblems(result, {})).toEqual([]);
  expectInvariants(result);
  expect(result.after).toMatchObject({
    activeRegion: TARGET,
    auroraWriterRegion: TARGET,
    trafficDials: MOVED_TRAFFIC,
    workloads: settled(TARGET),
  });
  expect(subjects(result.after)).toEqual([DEMOTE, RETARGET, ...history]);
  expectUsersServed(result);
}

/** A failover that stopped before traffic moved: the dials and the serving region untouched. */
export function expectFailedBeforeTraffic(
  result: DrillResult,
  failedStep: string,
  error: string,
): void {
  expect(result.status).toBe("FAILED");
  expect(result.failedStep).toBe(failedStep);
  expect(result.error).toMatch(new RegExp(`^${error}`));
  expectInvariants(result);
  expect(result.after.trafficDials).toEqual(UNCHANGED_TRAFFIC);
  expect(result.after.workloads[SOURCE]?.minReady).toBeGreaterThanOrEqual(PASSIVE);
  expect(step(result, failedStep)?.status).toBe("FAILED");
  if (failedStep !== "ShiftTraffic") {
    expect(step(result, "ShiftTraffic")?.status).toBe("NOT_RUN");
    expect(updates(result)).toEqual([]);
  }
  expect(step(result, "RecordFailure")).toMatchObject({ status: "SUCCEEDED", invocations: 1 });
  expect(step(result, "Notify")).toMatchObject({ status: "SUCCEEDED", invocations: 1 });
  expect(readFileSync(join(result.reportDir, "report.md"), "utf8")).toContain("## Manual steps");
  expectUsersServed(result);
}
