/**
 * Readiness end to end: the readiness function against one embedded sandbox (real Git over
 * smart HTTP, HTTPS fake kube-apiservers for spokes and hub clusters, the Argo CD emulator, the
 * AWS emulators, dynalite), with each readiness fault injected and reset in turn. Every scenario
 * asserts the whole region x check matrix, so a fault that breaks a second check fails the test.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeSandboxFile } from "../../cli/sandbox-file.ts";
import { readAuditTrail, verifyChain } from "../../functions/lib/audit.ts";
import {
  collectMetrics,
  type Evaluation,
  latestReadiness,
  PLATFORM_ROW,
  type ReadinessStatus,
  readinessLine,
  readinessStep,
} from "../../functions/lib/readiness.ts";
import { planStep } from "../../functions/lib/steps.ts";
import { READINESS_FAULTS, type ReadinessFaultName } from "../../sandbox/faults.ts";
import { PLATFORM, type Sandbox, startSandbox } from "../../sandbox/index.ts";
import { injectReadinessFault, resetReadinessFaults } from "../../sandbox/readiness-faults.ts";
import { cli } from "./cli-run.ts";

const ACTIVE = "us-west-2";
const TARGET = "us-east-2";
const OTHER = "eu-west-1";
const PLATFORM_CHECKS = [
  "git",
  "secrets",
  "argocd-hub/hub-primary",
  "argocd-hub/hub-standby",
  "hub-backup/hub-primary",
  "hub-backup/hub-standby",
];
const REGION_CHECKS = ["spoke", "gitops", "aurora", "traffic", "health-check"];

/** Every row x check the evaluation must report, READY unless named in `broken`. */
function matrix(broken: Record<string, ReadinessStatus> = {}): Record<string, ReadinessStatus> {
  const keys = [
    ...[TARGET, OTHER].flatMap((r) => REGION_CHECKS.map((c) => `${r} ${c}`)),
    ...PLATFORM_CHECKS.map((c) => `${PLATFORM_ROW} ${c}`),
  ];
  return Object.fromEntries(keys.map((k) => [k, broken[k] ?? "READY"]));
}

const seen = (e: Evaluation) =>
  Object.fromEntries(e.results.map((r) => [`${r.region} ${r.check}`, r.status]));
const detailOf = (e: Evaluation, key: string) =>
  e.results.find((r) => `${r.region} ${r.check}` === key)?.detail ?? "";

/** The broken check of each fault and what its detail must tell the operator to do. */
const EXPECTED: Record<ReadinessFaultName, { key: string; fix: RegExp; both: boolean }> = {
  "standby-spoke-token-expired": {
    key: `${TARGET} spoke`,
    fix: /HTTP 401.*store a valid token of a ServiceAccount.*secret sandbox\/spoke-use2-1/,
    both: false,
  },
  "secret-replica-missing": {
    key: `${PLATFORM_ROW} secrets`,
    fix: /sandbox\/git has no replica in us-east-2; fix: aws secretsmanager replicate-secret-to-regions --region us-west-2 .*--add-replica-regions Region=us-east-2/,
    both: true,
  },
  "replica-lag-high": {
    key: `${TARGET} aurora`,
    fix: /replication lag .* is 30s, above aurora\.maxRpoSeconds 5s.*wait for the lag to fall/,
    both: false,
  },
  "standby-app-degraded": {
    key: `${TARGET} gitops`,
    fix: /1 of 2 apps on spoke-use2-1 not Synced at [0-9a-f]{7} and Healthy \(spoke-use2-1-[a-z]+: Degraded\).*argocd app get/,
    both: false,
  },
  "standby-hub-down": {
    key: `${PLATFORM_ROW} argocd-hub/hub-standby`,
    fix: /hub hub-standby .* did not answer .*connection reset.*check its argocd-server/,
    both: true,
  },
  "hub-backup-stale": {
    key: `${PLATFORM_ROW} hub-backup/hub-primary`,
    fix: /argocd-daily-latest completed 72\.0 h ago \(max 25 h\).*velero schedule get -n velero/,
    both: true,
  },
  "target-health-check-failing": {
    key: `${TARGET} health-check`,
    fix: /8\/8 Route 53 checkers failing.*fix what api-use2\.payments\.sandbox\.local answers/,
    both: false,
  },
};

let sandbox: Sandbox;
const root = mkdtempSync(join(tmpdir(), "gf-readiness-"));

beforeAll(async () => {
  sandbox = await startSandbox({ reportDir: join(root, "reports") });
}, 60_000);
afterAll(async () => {
  await sandbox?.stop();
  rmSync(root, { recursive: true, force: true });
});

async function evaluate(): Promise<{ evaluation: Evaluation; metrics: Record<string, unknown>[] }> {
  const metrics: Record<string, unknown>[] = [];
  const recorded = await readinessStep({}, sandbox.topology, {
    sink: collectMetrics(metrics as unknown[]),
  });
  return { evaluation: recorded.evaluation, metrics };
}

describe("readiness: a healthy sandbox", () => {
  it("reports every target region READY with each check listed, and TargetReady 1 per region", async () => {
    await resetReadinessFaults(sandbox, ACTIVE);
    const { evaluation, metrics } = await evaluate();
    expect(seen(evaluation)).toEqual(matrix());
    expect(evaluation.verdicts).toEqual({ [TARGET]: "READY", [OTHER]: "READY" });
    expect(evaluation.activeRegion).toBe(ACTIVE);
    expect(detailOf(evaluation, `${TARGET} gitops`)).toMatch(
      /Synced at [0-9a-f]{7} \(branch head\) and Healthy: 2 apps on hub hub-primary, 2 apps on hub hub-standby/,
    );
    expect(detailOf(evaluation, `${TARGET} aurora`)).toContain("replication lag 0.25 s (max 5 s)");
    expect(metrics.map((m) => [m.Region, m.TargetReady, m.FailingChecks])).toEqual([
      [TARGET, 1, 0],
      [OTHER, 1, 0],
    ]);
    expect(metrics[0]).toMatchObject({
      service: "gitops-failover",
      Platform: PLATFORM,
      _aws: { CloudWatchMetrics: [{ Namespace: "GitopsFailover" }] },
    });
  });
});

describe("readiness: each fault turns exactly its check NOT_READY", () => {
  for (const fault of Object.keys(READINESS_FAULTS) as ReadinessFaultName[]) {
    it(`${fault}: ${EXPECTED[fault].key} NOT_READY, everything else READY`, async () => {
      await resetReadinessFaults(sandbox, ACTIVE);
      await injectReadinessFault(sandbox, fault, TARGET);
      const { evaluation, metrics } = await evaluate();
      const { key, fix, both } = EXPECTED[fault];
      expect(seen(evaluation)).toEqual(matrix({ [key]: "NOT_READY" }));
      expect(detailOf(evaluation, key)).toMatch(fix);
      expect(evaluation.verdicts).toEqual({
        [TARGET]: "NOT_READY",
        [OTHER]: both ? "NOT_READY" : "READY",
      });
      expect(metrics.map((m) => [m.Region, m.TargetReady, m.FailingChecks])).toEqual([
        [TARGET, 0, 1],
        [OTHER, both ? 0 : 1, both ? 1 : 0],
      ]);
    });
  }
});

describe("readiness: the stored result and the audit trail", () => {
  it("overwrites the latest result per region and audits only the verdicts that changed", async () => {
    await resetReadinessFaults(sandbox, ACTIVE);
    await evaluate();
    const chain = `readiness-${PLATFORM}`;
    const before = (await readAuditTrail(chain)).length;
    await evaluate();
    expect(await readAuditTrail(chain)).toHaveLength(before);

    await injectReadinessFault(sandbox, "replica-lag-high", TARGET);
    await evaluate();
    const events = await readAuditTrail(chain);
    expect(events).toHaveLength(before + 1);
    expect(events.at(-1)).toMatchObject({
      step: "Readiness",
      outcome: "DECIDED",
      detail: `${TARGET}: READY -> NOT_READY`,
    });
    expect(verifyChain(events)).toMatchObject({ intact: true, events: events.length });
    const latest = await latestReadiness(PLATFORM, TARGET);
    expect(latest).toMatchObject({ region: TARGET, verdict: "NOT_READY" });
    expect(latest?.failing).toEqual([expect.stringMatching(/^us-east-2 aurora NOT_READY: /)]);
    expect(latest?.ageSeconds).toBeLessThan(60);
    expect(await latestReadiness(PLATFORM, OTHER)).toMatchObject({ verdict: "READY" });
  });
});

describe("readiness: Plan", () => {
  it("shows the target's latest readiness and its age, and still plans with its own live checks", async () => {
    await resetReadinessFaults(sandbox, ACTIVE);
    await injectReadinessFault(sandbox, "hub-backup-stale", TARGET);
    await evaluate();
    const state = await planStep({
      input: { targetRegion: TARGET, reason: "readiness e2e", dryRun: true },
      execution: {
        id: "arn:aws:states:us-east-1:000000000000:execution:x:plan-1",
        name: "plan-1",
        startTime: new Date().toISOString(),
      },
    });
    expect(state.plan.readiness).toMatchObject({ region: TARGET, verdict: "NOT_READY" });
    expect(state.plan.readiness?.ageSeconds).toBeLessThan(60);
    expect(state.plan.readiness?.failing).toEqual([
      expect.stringMatching(/^platform hub-backup\/hub-primary NOT_READY: newest Completed/),
    ]);
    expect(readinessLine(state.plan.readiness)).toMatch(
      /^NOT_READY, evaluated \d+ s ago in us-east-1: platform hub-backup\/hub-primary NOT_READY/,
    );
    expect(state.plan.noop).toBe(false);
  });
});

describe("readiness: the CLI", () => {
  it("readiness --sandbox prints the table and exits 1 while a target is NOT_READY, 0 once fixed", async () => {
    const file = join(root, "sandbox.json");
    await writeSandboxFile(file, {
      stateMachineArn: sandbox.stateMachineArn,
      region: sandbox.env.AWS_REGION ?? "us-east-1",
      env: sandbox.env,
    });
    await resetReadinessFaults(sandbox, ACTIVE);
    await injectReadinessFault(sandbox, "target-health-check-failing", TARGET);
    const failing = await cli("readiness", "--sandbox", file, "--region", TARGET);
    expect(failing.code).toBe(1);
    expect(failing.out).toMatch(/^us-east-2 +health-check +NOT_READY +health check /m);
    expect(failing.out).not.toMatch(/^eu-west-1 /m);
    expect(failing.out).toContain("target us-east-2: NOT_READY");

    await resetReadinessFaults(sandbox, ACTIVE);
    const fixed = await cli("readiness", "--sandbox", file, "--json");
    expect(fixed.code).toBe(0);
    const evaluation = JSON.parse(fixed.out) as Evaluation;
    expect(seen(evaluation)).toEqual(matrix());
  });

  it("refuses a bad region with exit 2, naming the problem", async () => {
    const bad = await cli("readiness", "--sandbox", join(root, "sandbox.json"), "--region", "mars");
    expect(bad.code).toBe(2);
    expect(bad.out).toContain('--region: "mars" is not a region name');
    const unknown = await cli("drill", "--readiness", "--fault", "spoke-unreachable");
    expect(unknown.code).toBe(2);
    expect(unknown.out).toContain("--fault spoke-unreachable: not a fault (known: standby-spoke");
  });

  it("drill --readiness on a fresh sandbox lists every check READY and exits 0", async () => {
    const { code, out } = await cli("drill", "--readiness");
    expect(code).toBe(0);
    for (const c of REGION_CHECKS) expect(out).toMatch(new RegExp(`^us-east-2 +${c} +READY `, "m"));
    for (const c of PLATFORM_CHECKS)
      expect(out).toMatch(new RegExp(`^platform +${c} +READY `, "m"));
    expect(out).toContain("target us-east-2: READY");
    expect(out).toContain("target eu-west-1: READY");
  }, 60_000);
});
