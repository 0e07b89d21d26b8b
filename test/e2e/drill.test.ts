/**
 * Drills end to end: the real ASL, the real functions, the sandbox's stand-ins over real
 * protocols. Each scenario asserts the platform afterwards from the stand-ins themselves — the
 * Git history, the spokes' Deployments, the Aurora writer, the dials, and the calls the
 * stand-ins saw — not from the report.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import https from "node:https";
import { join, resolve } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import { verifyChain } from "../../functions/lib/audit.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { drillProblems } from "../../sandbox/drill.ts";
import {
  auditOf,
  COMPENSATE,
  CONCURRENT,
  DEMOTE,
  drill,
  expectFailedBeforeTraffic,
  expectFailedOver,
  expectInvariants,
  expectUsersServed,
  MOVED_TRAFFIC,
  PASSIVE,
  RETARGET,
  root,
  running,
  SEED,
  SOURCE,
  settled,
  step,
  subjects,
  TARGET,
  UNCHANGED_TRAFFIC,
  updates,
} from "./drill-helpers.ts";

describe("drill: happy path", () => {
  it("fails over us-west-2 -> us-east-2: two commits, pods, Aurora writer, dials", async () => {
    const result = await drill();

    expectFailedOver(result);
    expect(result.calls.gitPushes).toBe(2);
    expect(updates(result)).toEqual(["ok", "ok"]);
    expect(result.executions[0]?.steps.map((s) => [s.name, s.status])).toEqual([
      ["Plan", "SUCCEEDED"],
      ["Approval", "SKIPPED"],
      ["VerifySpoke", "SUCCEEDED"],
      ["CommitRetarget", "SUCCEEDED"],
      ["AwaitArgoSync", "SUCCEEDED"],
      ["AwaitCapacity", "SUCCEEDED"],
      ["PromoteAurora", "SUCCEEDED"],
      ["AwaitAurora", "SUCCEEDED"],
      ["ShiftTraffic", "SUCCEEDED"],
      ["VerifyTraffic", "SUCCEEDED"],
      ["DemoteSource", "SUCCEEDED"],
      ["Fence", "SUCCEEDED"],
      ["Compensate", "NOT_RUN"],
      ["Report", "SUCCEEDED"],
      ["Notify", "SUCCEEDED"],
    ]);
    expect(step(result, "ShiftTraffic")).toMatchObject({ invocations: 1, retries: 0 });
    const report = result.executions[0]?.report;
    expect(report).toMatchObject({ status: "SUCCEEDED", failedStep: null });
    const markdown = readFileSync(join(result.reportDir, "report.md"), "utf8");
    expect(markdown).toContain("```mermaid\ngantt");
    expect(markdown).toMatch(/RTO: \d+ s/);
    expect(markdown).toMatch(
      /- us-west-2 fence: verified \(dial 0, not the writer, apps Synced at [0-9a-f]{7} \(passive\) and Healthy\)/,
    );
    expect(verifyChain(auditOf(result))).toMatchObject({ intact: true });
    // Two commits, and the window in which users and the writer were apart: the switchover.
    const [activate, demote] = result.after.gitLog;
    expect(report).toMatchObject({
      commits: [
        { phase: "activate", sha: demote?.sha, subject: RETARGET },
        { phase: "demote", sha: activate?.sha, subject: DEMOTE },
      ],
      order: { kind: "sequential", split: { seconds: expect.any(Number) } },
    });
    expect(markdown).toMatch(/- Commit \(activate\): \[[0-9a-f]{12}\]/);
    expect(markdown).toMatch(/- Commit \(demote\): \[[0-9a-f]{12}\]/);
    expect(markdown).toMatch(/- Users and writer apart: [\d.]+ s, from the promotion call/);
    // The source kept its full size until traffic had left it.
    const demoted = auditOf(result).find((e) => e.step === "DemoteSource");
    const shifted = auditOf(result).find((e) => e.step === "ShiftTraffic");
    expect(demoted?.seq).toBeGreaterThan(shifted?.seq ?? Number.POSITIVE_INFINITY);
  });

  it("ungraceful: apps and data converge in parallel, the report says why, two commits", async () => {
    const result = await drill({ mode: "ungraceful" });

    expectFailedOver(result);
    const report = result.executions[0]?.report as unknown as FailoverReport;
    expect(report.order).toMatchObject({
      kind: "parallel",
      why: expect.stringMatching(/^ungraceful: the source region is down/),
    });
    expect(report.criticalPath).not.toEqual(
      expect.arrayContaining(["AwaitArgoSync", "AwaitAurora"]),
    );
    const md = readFileSync(join(result.reportDir, "report.md"), "utf8");
    expect(md).toContain("- Order: parallel: ungraceful: the source region is down");
  });

  it("repeats: the second execution skips every step and changes nothing anywhere", async () => {
    const result = await drill({ repeat: 2 });

    expectFailedOver(result);
    const [first, second] = result.executions;
    expect(first?.status).toBe("SUCCEEDED");
    expect(second?.status).toBe("SUCCEEDED");
    expect(second?.before).toEqual(first?.after);
    expect(second?.after).toEqual(second?.before);
    expect(second?.after.gitLog).toHaveLength(3);
    expect(result.calls.gitPushes).toBe(2);
    expect(updates(result)).toEqual(["ok", "ok"]);
    expect(second?.steps.map((s) => [s.name, s.status])).toEqual([
      ["Plan", "SKIPPED"],
      ["Approval", "SKIPPED"],
      ["VerifySpoke", "SKIPPED"],
      ["CommitRetarget", "SKIPPED"],
      ["AwaitArgoSync", "SKIPPED"],
      ["AwaitCapacity", "SKIPPED"],
      ["PromoteAurora", "SKIPPED"],
      ["AwaitAurora", "SKIPPED"],
      ["ShiftTraffic", "SKIPPED"],
      ["VerifyTraffic", "SKIPPED"],
      ["DemoteSource", "SKIPPED"],
      ["Fence", "SKIPPED"],
      ["Compensate", "SKIPPED"],
      ["Report", "SUCCEEDED"],
      ["Notify", "SUCCEEDED"],
    ]);
  });

  it("dry run: the plan, and no write anywhere", async () => {
    const result = await drill({ dryRun: true });

    expect(result.status).toBe("SUCCEEDED");
    expectInvariants(result);
    expect(result.after).toEqual(result.before);
    expect(result.calls.gitPushes).toBe(0);
    expect(updates(result)).toEqual([]);
    const plan = result.executions[0]?.report?.plan as {
      actions: string[];
      needs: Record<string, boolean>;
    };
    expect(plan.needs).toEqual({ retarget: true, aurora: true, traffic: true, demote: true });
    expect(plan.actions.join("\n")).toMatch(
      /commit envs\/production\/values.yaml regions.us-east-2.active = true on main/,
    );
    // Its own complete, verifiable report: no file of an earlier run left behind.
    expect(result.executions[0]?.report).toMatchObject({ dryRun: true, status: "SUCCEEDED" });
    const md = readFileSync(join(result.reportDir, "report.md"), "utf8");
    expect(md).toMatch(/^# Dry run of a failover: us-west-2 -> us-east-2\n/);
    expect(md).toContain("- commit envs/production/values.yaml regions.us-east-2.active = true");
    expect(verifyChain(auditOf(result))).toMatchObject({ intact: true });
    const printed: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      printed.push(String(chunk));
      return true;
    });
    try {
      expect(await main(["node", "gitops-failover", "audit", "verify", result.reportDir])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    expect(printed.join("")).toMatch(/^audit trail intact: 2 events, .*matches report\.json/);
  });
});

describe("drill: faults that stop before anything changes", () => {
  it.each([
    ["spoke-unreachable", "VerifySpoke", "SpokeUnreachable", 4],
    ["spoke-nodes-not-ready", "VerifySpoke", "SpokeNotReady", 0],
    ["git-auth-failure", "Plan", "GitAuthError", 0],
  ] as const)(
    "%s stops at %s with %s; Git, pods, writer and dials untouched",
    async (fault, failedStep, error, retries) => {
      const result = await drill({ faults: [fault] });

      expectFailedBeforeTraffic(result, failedStep, error);
      expect(result.after).toEqual(result.before);
      expect(result.calls.gitPushes).toBe(0);
      expect(step(result, failedStep)).toMatchObject({ invocations: retries + 1, retries });
    },
  );
});

describe("drill: faults after the retarget commit, compensated before traffic moves", () => {
  it.each([
    // fault, failed step, error, GA updates, workloads after
    // The controller never applies a commit: the spokes still run the seed's layout.
    ["argocd-sync-timeout", "AwaitArgoSync", "ArgoSyncTimeout", [], settled(SOURCE)],
    [
      "argocd-degraded",
      "AwaitArgoSync",
      "ArgoSyncTimeout",
      [],
      // The source never shrank; the target's rollouts never become ready (back to its standby size).
      { ...settled(SOURCE), "us-east-2": { ...running(PASSIVE), ready: 0, minReady: 0 } },
    ],
    ["aurora-failover-stuck", "AwaitAurora", "AuroraPromotionTimeout", [], settled(SOURCE)],
    // Compensation first tries to move users to the writer's region; GA refuses that too.
    [
      "ga-update-fails",
      "ShiftTraffic",
      "TrafficShiftFailed",
      ["AccessDeniedException", "AccessDeniedException"],
      settled(SOURCE),
    ],
  ] as const)(
    "%s stops at %s with %s: the first commit undone, users, pods and writer on the source",
    async (fault, failedStep, error, gaUpdates, workloads) => {
      const result = await drill({ faults: [fault] });

      expectFailedBeforeTraffic(result, failedStep, error);
      expect(subjects(result.after)).toEqual([COMPENSATE, RETARGET, SEED]);
      expect(result.calls.gitPushes).toBe(2);
      expect(result.after).toMatchObject({
        activeRegion: SOURCE,
        auroraWriterRegion: SOURCE,
        workloads,
      });
      expect(updates(result)).toEqual(gaUpdates);
      const report = result.executions[0]?.report as unknown as FailoverReport;
      expect(report.commits.map((c) => c.phase)).toEqual(["activate", "compensate"]);
      expect(report.compensation.at(-1)).toMatchObject({
        action: "revert-commit",
        outcome: "DONE",
      });
      expect(step(result, "Compensate")?.status).toBe(
        fault === "aurora-failover-stuck" ? "FAILED" : "SUCCEEDED",
      );
      // Graceful: the switchover waits for the apps, so a sync failure never moves the writer.
      if (failedStep === "AwaitArgoSync")
        expect(step(result, "PromoteAurora")?.status).toBe("NOT_RUN");
    },
  );

  it("aurora-failover-stuck: the manual steps start with Aurora, which compensation could not settle", async () => {
    const result = await drill({ faults: ["aurora-failover-stuck"], mode: "ungraceful" });

    expectFailedBeforeTraffic(result, "AwaitAurora", "AuroraPromotionTimeout");
    const report = result.executions[0]?.report as unknown as FailoverReport;
    expect(report.manualSteps[0]).toMatch(/^Check Aurora before anything else/);
    expect(report.compensation.map((a) => [a.action, a.outcome])).toEqual([
      ["wait", "FAILED"],
      ["revert-commit", "DONE"],
    ]);
  });
});

describe("drill: faults the failover must absorb", () => {
  it("git-push-conflict: the concurrent commit lands first, the retarget is pushed again on top of it", async () => {
    const result = await drill({ faults: ["git-push-conflict"] });

    expectFailedOver(result, [CONCURRENT, SEED]);
    expect(result.calls.gitPushes).toBe(3);
    const commit = auditOf(result).find((e) => e.step === "CommitRetarget");
    expect(commit?.after).toMatchObject({ changes: [{ from: false, to: true }] });
  });

  it("argocd-hub-down: the primary hub refuses connections, the standby serves the sync check", async () => {
    const result = await drill({ faults: ["argocd-hub-down"] });

    expectFailedOver(result);
    expect(result.calls.argocd["hub-primary"]).toMatchObject({ served: 0 });
    expect(result.calls.argocd["hub-primary"]?.refused).toBeGreaterThan(0);
    expect(result.calls.argocd["hub-standby"]?.served).toBeGreaterThan(0);
    const argo = result.executions[0]?.report?.steps.find((s) => s.name === "AwaitArgoSync") as
      | { detail?: string }
      | undefined;
    expect(argo?.detail).toContain("via hub-standby");
  });

  it("ga-throttled: UpdateEndpointGroup throttled beyond the SDK's retries, the ASL's Retry gets it through", async () => {
    const result = await drill({ faults: ["ga-throttled"] });

    expectFailedOver(result);
    // The SDK tries 3 times in the first ShiftTraffic, which then fails AwsThrottled; the retry's
    // first attempt is throttled once more, its second goes through, then the source's dial.
    expect(updates(result)).toEqual([
      "ThrottlingException",
      "ThrottlingException",
      "ThrottlingException",
      "ThrottlingException",
      "ok",
      "ok",
    ]);
    expect(step(result, "ShiftTraffic")).toMatchObject({
      status: "SUCCEEDED",
      invocations: 2,
      retries: 1,
    });
  });
});

describe("drill: commits pushed on top of the retarget during AwaitArgoSync", () => {
  const IMAGE_BUMP = "build: automatic update of api to 1.0.1";
  const UNDO = "chore: sync production values from staging";

  it("commit-on-top: Argo CD deploys the newer commit, which still makes the target active: the failover completes", async () => {
    // In split accounts: the read-only Git token is read through the secrets account's role too.
    const result = await drill({ faults: ["commit-on-top"], accounts: "split" });

    expect(result.status).toBe("SUCCEEDED");
    expect(drillProblems(result, {})).toEqual([]);
    expectInvariants(result);
    expect(result.after).toMatchObject({
      activeRegion: TARGET,
      auroraWriterRegion: TARGET,
      trafficDials: MOVED_TRAFFIC,
      workloads: settled(TARGET),
    });
    // The image updater's commit sits right on the retarget; DemoteSource builds on it.
    expect(subjects(result.after)).toEqual([DEMOTE, IMAGE_BUMP, RETARGET, SEED]);
    expectUsersServed(result);
    const [, onTop, retarget] = result.after.gitLog;
    const argo = auditOf(result).find(
      (e) => e.step === "AwaitArgoSync" && e.outcome === "SUCCEEDED",
    );
    expect(argo?.after).toMatchObject({
      revision: retarget?.sha,
      acceptedRevisions: [onTop?.sha],
    });
    const report = result.executions[0]?.report as unknown as FailoverReport;
    expect(report.steps.find((s) => s.name === "AwaitArgoSync")?.detail).toBe(
      `2/2 apps Synced and Healthy via hub-primary, at ${onTop?.sha.slice(0, 12)} pushed on top of the retarget commit (still making the target active)`,
    );
    expect(report.commits.map((c) => [c.phase, c.subject])).toEqual([
      ["activate", RETARGET],
      ["demote", DEMOTE],
    ]);
  });

  it("commit-undoes-retarget: fails with RetargetUndone naming that commit, before the writer or traffic move", async () => {
    const result = await drill({ faults: ["commit-undoes-retarget"] });

    expectFailedBeforeTraffic(result, "AwaitArgoSync", "RetargetUndone");
    const [undo, retarget] = result.after.gitLog;
    expect(subjects(result.after)).toEqual([UNDO, RETARGET, SEED]);
    expect(result.error).toContain(
      `commit ${undo?.sha.slice(0, 12)} ("${UNDO}" by sandbox <sandbox@localhost>) on top of the retarget commit ${retarget?.sha.slice(0, 12)} undoes it`,
    );
    expect(result.calls.gitPushes).toBe(1);
    expect(result.after).toMatchObject({
      activeRegion: SOURCE,
      auroraWriterRegion: SOURCE,
      trafficDials: UNCHANGED_TRAFFIC,
      workloads: settled(SOURCE),
    });
    expect(step(result, "PromoteAurora")?.status).toBe("NOT_RUN");
    const report = result.executions[0]?.report as unknown as FailoverReport;
    expect(report.failedStep).toBe("AwaitArgoSync");
    // Git already makes the target passive again: nothing for compensation to revert.
    expect(report.compensation.map((a) => [a.action, a.outcome])).toEqual([
      ["revert-commit", "NOT_NEEDED"],
    ]);
  });
});

describe("drill: trigger guards", () => {
  it("kill switch: the trigger starts nothing, for that reason", async () => {
    const result = await drill({ via: "alarm", killSwitch: true });

    expect(result.status).toBe("NOT_STARTED");
    expect(result.trigger.map((d) => d.decision)).toEqual(["kill-switch-on"]);
    expect(drillProblems(result, { killSwitch: true })).toEqual([]);
    expect(result.after).toEqual(result.before);
    // Not starting for another reason is not what a kill-switch drill must show.
    const otherReason = {
      ...result,
      trigger: result.trigger.map((d) => ({ ...d, decision: "not-corroborated" as const })),
    };
    expect(drillProblems(otherReason, { killSwitch: true })).toEqual([
      expect.stringMatching(
        /^alarm delivery 1: trigger decided not-corroborated .*expected kill-switch-on$/,
      ),
    ]);
    expect(drillProblems(result, { cooldownHit: true })).toEqual([
      expect.stringMatching(/expected cooldown$/),
      "the failover before the cooldown did not succeed",
    ]);
  });
});

const BIN = resolve(import.meta.dirname, "../../cli/bin.js");
const SANDBOX_DIRS = /^(gitops-failover-sandbox|sandbox-git)-/;

/** Runs the CLI in a child with its own TMPDIR; `onOutput` sees stdout as it grows. */
function cliChild(
  args: string[],
  onOutput: (out: string, child: ReturnType<typeof spawn>, tmp: string) => void,
): Promise<{ code: number | null; out: string; tmp: string }> {
  const tmp = mkdtempSync(join(root, "tmp-"));
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, TMPDIR: tmp },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  return new Promise((done) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      onOutput(out, child, tmp);
    });
    child.on("close", (code) => done({ code, out, tmp }));
  });
}

describe("drill: sizes", () => {
  it.each([
    [["--spokes", "2"], /--spokes.*from 3 \(one spoke per region\) to 300/],
    [["--spokes", "4", "--apps", "5"], /--apps 5 with --spokes 4: .*a multiple of 4 \(4 or 8\)/],
    [["--spokes", "3", "--apps", "2"], /--apps 2 with --spokes 3: .*a multiple of 3 \(3\)/],
  ])("refuses %j with a message saying why, exit 2", async (args, message) => {
    const errors: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk) => {
      errors.push(String(chunk));
      return true;
    });
    try {
      const code = await main(["node", "gitops-failover", "drill", ...args]);

      expect(code).toBe(2);
      expect(errors.join("")).toMatch(message);
    } finally {
      spy.mockRestore();
    }
  });

  it("builds exactly what is asked: 4 spokes, 8 apps", async () => {
    const result = await drill({ spokes: 4, apps: 8, dryRun: true });

    const deployments = Object.values(result.before.workloads).map((w) => w.deployments);
    expect(deployments.reduce((a, b) => a + b, 0)).toBe(8);
    expect(deployments).toEqual([4, 2, 2]);
  });
});

describe("sandbox up", () => {
  it("prints working paths and credentials, and removes everything on Ctrl-C", async () => {
    const endpointFile = join(root, "sandbox.json");
    let checked: Promise<Record<string, unknown>> | undefined;
    const run = await cliChild(
      ["sandbox", "up", "--endpoint-file", endpointFile, "--report-dir", join(root, "up")],
      (out, child) => {
        if (checked || !out.includes("Ctrl-C stops everything")) return;
        checked = inspect(out, endpointFile).finally(() => child.kill("SIGINT"));
      },
    );
    const seen = await checked;

    expect(seen).toMatchObject({ caIsPem: true, endpointFile: true, username: "admin" });
    expect(run.out).toMatch(
      /--region us-west-2 globalaccelerator list-endpoint-groups --listener-arn arn:aws:globalaccelerator::000000000000:accelerator\/[^/]+\/listener\/\w+\n/,
    );
    expect(run.out).toMatch(
      /us-east-2 +endpoint group arn:aws:globalaccelerator::.*\/endpoint-group\//,
    );
    expect(run.out).toContain("global cluster payments-global");
    expect(run.out).toContain("sandbox stopped");
    expect(run.code).toBe(0);
    expect(existsSync(endpointFile)).toBe(false);
    expect(readdirSync(run.tmp).filter((f) => SANDBOX_DIRS.test(f))).toEqual([]);
  }, 60_000);
});

/** Uses what `sandbox up` printed: the CA file, and an Argo CD session for the admin. */
async function inspect(out: string, endpointFile: string): Promise<Record<string, unknown>> {
  const ca = /^CA: +(\S+)/m.exec(out)?.[1] ?? "";
  const hub = /^Argo CD: +hub-primary (\S+)/m.exec(out)?.[1] ?? "";
  const [, username = "", password = ""] =
    /admin login: user (\S+), password (\S+)/.exec(out) ?? [];
  const caPem = readFileSync(ca, "utf8");
  const call = (path: string, init: { method?: string; token?: string; body?: string }) =>
    new Promise<Record<string, unknown>>((done, fail) => {
      const req = https.request(
        new URL(path, hub),
        {
          method: init.method ?? "GET",
          ca: caPem,
          headers: init.token ? { authorization: `Bearer ${init.token}` } : {},
        },
        (res) => {
          let text = "";
          res.on("data", (c: Buffer) => {
            text += c.toString();
          });
          res.on("end", () => done(JSON.parse(text) as Record<string, unknown>));
        },
      );
      req.on("error", fail);
      req.end(init.body);
    });
  const session = await call("/api/v1/session", {
    method: "POST",
    body: JSON.stringify({ username, password }),
  });
  const user = await call("/api/v1/session/userinfo", { token: String(session.token) });
  return {
    caIsPem: caPem.startsWith("-----BEGIN CERTIFICATE-----"),
    endpointFile: existsSync(endpointFile),
    username: user.username,
  };
}

describe("drill: Ctrl-C", () => {
  it("stops the sandbox, removes its temporary files and exits 130", async () => {
    let during: string[] = [];
    const run = await cliChild(
      ["drill", "--fault", "argocd-sync-timeout", "--report-dir", join(root, "interrupted")],
      (out, child, tmp) => {
        if (!out.includes("execution drill-") || child.killed) return;
        during = readdirSync(tmp).filter((f) => SANDBOX_DIRS.test(f));
        child.kill("SIGINT");
      },
    );

    expect(run.out).toContain("SIGINT: stopping the sandbox");
    expect(run.code).toBe(130);
    expect(during).toHaveLength(2);
    expect(readdirSync(run.tmp).filter((f) => SANDBOX_DIRS.test(f))).toEqual([]);
  }, 60_000);
});

describe("drill: cross-account (--accounts split)", () => {
  const NETWORK = "arn:aws:iam::111111111111:role/gitops-failover-network";
  const DATA = "arn:aws:iam::222222222222:role/gitops-failover-data";

  it("orchestrator, network, data and secrets in four accounts: fails over, each AWS change audited with its account and session", async () => {
    const result = await drill({ accounts: "split" });

    expectFailedOver(result);
    const name = result.executions[0]?.name ?? "";
    const audit = auditOf(result);
    expect(verifyChain(audit)).toMatchObject({ intact: true });
    const promote = audit.find((e) => e.step === "PromoteAurora")?.after;
    expect(promote).toMatchObject({
      action: "switchover",
      actor: { account: "222222222222", roleArn: DATA, sessionName: name },
    });
    const shift = audit.find((e) => e.step === "ShiftTraffic")?.after as {
      actors?: { region: string; account: string; roleArn: string; sessionName: string }[];
    };
    expect(shift.actors?.map((a) => a.region).sort()).toEqual([SOURCE, TARGET].sort());
    for (const a of shift.actors ?? [])
      expect(a).toMatchObject({ account: "111111111111", roleArn: NETWORK, sessionName: name });
    // The spokes' tokens live in the secrets account: Plan read the source's capacity live.
    const report = result.executions[0]?.report as unknown as FailoverReport;
    expect(report.capacity?.source).toBe("live");
  });

  it("assume-role-denied: Plan stops naming the data account's role and its missing trust; nothing changed", async () => {
    const result = await drill({ faults: ["assume-role-denied"] });

    expectFailedBeforeTraffic(result, "Plan", "AssumeRoleRefused");
    expect(result.after).toEqual(result.before);
    expect(result.calls.gitPushes).toBe(0);
    expect(result.error).toContain(`cannot assume ${DATA} (account 222222222222)`);
    expect(result.error).toContain("sts:ExternalId = the externalId the topology gives this role");
    expect(result.error).not.toContain("gitops-failover-data-sandbox");
    // Refused, not transient: asked once, never retried.
    expect(step(result, "Plan")).toMatchObject({ invocations: 1, retries: 0 });
  });
});
