/**
 * Failback: a graceful failover back to the region an earlier failover left, once that region is
 * healthy again. Its pre-checks are readiness's checks of that region (not the platform's), run
 * live by VerifySpoke (one code path for "is it ready" and "go"), plus Git making it passive (as
 * Plan read it); any check not READY refuses the failback before anything changes (the first
 * commit comes after VerifySpoke), with the check's own fix.
 */
import type { Topology } from "./config.ts";
import { type AuroraPromotionRefused, FailbackRefused } from "./errors.ts";
import type { FailoverCommit } from "./gitops.ts";
import { regionReadiness } from "./readiness.ts";
import type { PlatformSnapshot } from "./state.ts";

/** The pre-checks' bound: VerifySpoke's Lambda timeout holds them and its own spoke inspection. */
export const FAILBACK_CHECK_SECONDS = 40;

/** What the checks of readiness stand for in a failback's refusal. */
const CHECK_MEANING: Record<string, string> = {
  spoke: "its spoke is not ready",
  gitops: "its applications are not Synced and Healthy in passive mode",
  aurora:
    "its Aurora cluster has not rejoined the global cluster or its replication lag is too high",
  "health-check": "its health check is failing",
  traffic: "its endpoints are not healthy",
  fence: "its fence is not verified",
};

/**
 * Refuses (FailbackRefused, nothing changed) unless `target` can take the platform back: Git
 * makes it passive, and every readiness check of the region is READY. Returns the checks passed.
 */
export async function assertFailbackReady(
  t: Topology,
  target: string,
  before: PlatformSnapshot,
): Promise<string[]> {
  const problems: string[] = [];
  if (!before.passiveRegions.includes(target)) {
    problems.push(
      `git: ${t.git.branch} does not make ${target} passive (active: ${before.activeRegions.join(", ") || "none"}): a failback returns to the region a failover left, which that failover's second commit made passive`,
    );
  }
  const mine = await regionReadiness(t, target, before.gitHead, FAILBACK_CHECK_SECONDS);
  for (const r of mine.filter((x) => x.status !== "READY"))
    problems.push(`${r.check} ${r.status}: ${CHECK_MEANING[r.check] ?? r.check}: ${r.detail}`);
  if (problems.length) {
    throw new FailbackRefused(
      `[VerifySpoke] refusing to fail back to ${target}: ${problems.length} pre-check(s) failed; nothing was changed`,
      problems,
    );
  }
  return mine.map((r) => `${r.check}: ${r.detail}`);
}

/**
 * The failover a failback undoes: the newest failover commit's execution (ARN), when that
 * failover moved to the region the failback leaves.
 */
export function undoneFailover(
  last: FailoverCommit | undefined,
  leaving: string | null,
): string | null {
  if (!last || !leaving || last.target !== leaving) return null;
  return last.execution;
}

/**
 * Plan's Aurora pre-check refusing a failback (the old primary not rejoined, the writer's region
 * silent) as the failback's refusal: the same finding and fix, named as a failback pre-check.
 */
export function failbackRefusalOf(target: string, e: AuroraPromotionRefused): FailbackRefused {
  return new FailbackRefused(
    `[Plan] refusing to fail back to ${target}: its Aurora cluster cannot take the writer back; nothing was changed`,
    [`aurora: ${e.message.replace(/^\[Plan\] /, "")}`, ...e.details],
    { cause: e },
  );
}
