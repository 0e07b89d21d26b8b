/**
 * Failback: a graceful failover back to the region an earlier failover left, once that region is
 * healthy again. Its pre-checks are readiness's checks of that region (not the platform's), run
 * live by VerifySpoke (one code path for "is it ready" and "go"), plus Git making it passive (as
 * Plan read it); any check not READY refuses the failback before anything changes (the first
 * commit comes after VerifySpoke), with the check's own fix.
 */
import type { RetargetEdit, Topology } from "./config.ts";
import { type AuroraPromotionRefused, FailbackRefused } from "./errors.ts";
import type { FailoverCommit, RenderedEdit, UndoneValues } from "./gitops.ts";
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

// ------------------------------------------------------------------ floors (capacity parity)

/**
 * A failback's restore of what the failover it undoes committed for capacity in the region the
 * failback leaves (its floors, a raised maxReplicas): back to the Git baseline from before that
 * failover, in the commit that makes the region passive, so no raised floor stays in Git forever.
 */
export interface FloorRestore {
  region: string;
  /** The undone failover's first commit: the baseline is its parent's values. */
  commit: string;
  edits: { file: string; path: string; from: RetargetEdit["value"]; to: RetargetEdit["value"] }[];
  /** Values left as they are, each with why and what the operator does. */
  kept: string[];
}

/** A region's capacity values in Git: each app's floor and maxReplicas (reads: values unused). */
function capacityValuesOf(t: Topology, region: string): RenderedEdit[] {
  return (t.capacity?.apps ?? []).flatMap((a) =>
    [a.path, ...(a.maxReplicasPath ? [a.maxReplicasPath] : [])].map((path) => ({
      file: a.file,
      path: path.replaceAll("{{targetRegion}}", region),
      value: 0,
    })),
  );
}

/** The capacity values of every region but `target` (a failback leaves one of them). */
export function floorReads(t: Topology, target: string): RenderedEdit[] {
  return Object.keys(t.regions)
    .filter((r) => r !== target)
    .flatMap((r) => capacityValuesOf(t, r));
}

const isScalar = (v: unknown): v is RetargetEdit["value"] =>
  typeof v === "string" || typeof v === "number" || typeof v === "boolean";

/**
 * What the failback commits to undo the undone failover's capacity values in `region`: each one
 * that failover changed goes back to its value before it, unless someone changed it since (an
 * SRE who lowered a floor by hand keeps it). Undefined when there is nothing to say.
 */
export function floorRestore(
  t: Topology,
  region: string,
  undone: UndoneValues | undefined,
  head: { file: string; path: string; value: unknown }[],
): FloorRestore | undefined {
  if (!undone || !t.capacity) return undefined;
  const mine = capacityValuesOf(t, region);
  const value = (list: typeof head, r: RenderedEdit) =>
    list.find((v) => v.file === r.file && v.path === r.path)?.value;
  const edits: FloorRestore["edits"] = [];
  const kept: string[] = [];
  const sha = undone.commit.slice(0, 12);
  for (const r of mine) {
    const at = value(undone.at, r);
    const now = value(head, r);
    if (undone.parent === null) {
      if (at !== undefined)
        kept.push(
          `${r.path}: the failover's commit ${sha} is older than the history read, so its baseline is unknown; set it by hand`,
        );
      continue;
    }
    const before = value(undone.before, r);
    if (at === before) continue;
    if (now !== at) {
      kept.push(
        `${r.path}: ${String(now)} in Git, changed since the failover committed ${String(at)}: left as it is`,
      );
    } else if (!isScalar(before) || !isScalar(now)) {
      kept.push(
        `${r.path}: unset before the failover (${sha}) committed ${String(at)}: remove it by hand if it is not wanted`,
      );
    } else edits.push({ file: r.file, path: r.path, from: now, to: before });
  }
  if (!edits.length && !kept.length) return undefined;
  return { region, commit: undone.commit, edits, kept };
}

/** One line for the plan and the commit message: what the failback restores, and what it keeps. */
export function floorRestoreLine(f: FloorRestore): string {
  const restored = f.edits.map((e) => `${e.path} ${String(e.from)} -> ${String(e.to)}`);
  return [
    restored.length
      ? `restore ${f.region}'s capacity values to their Git baseline from before ${f.commit.slice(0, 12)}: ${restored.join(", ")}`
      : `nothing of ${f.region}'s capacity values to restore`,
    ...f.kept.map((k) => `kept ${k}`),
  ].join("; ");
}
