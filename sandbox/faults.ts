/**
 * What the sandbox offers, without starting it: its regions and the faults a drill can inject
 * (kept apart from the stand-ins so the CLI can list and validate them cheaply).
 */
export const SANDBOX_REGIONS = ["us-west-2", "us-east-2", "eu-west-1"] as const;

/** Every fault the sandbox can inject, with what it does to the platform. */
export const FAULTS = {
  "spoke-unreachable": "the target region's spokes refuse connections",
  "spoke-nodes-not-ready": "the target region's spokes have 1 Ready node (3 required)",
  "git-auth-failure": "the Git server's password was rotated; the secret still holds the old one",
  "git-push-conflict":
    "a concurrent commit lands just before the first push (must be retried and succeed)",
  "argocd-hub-down": "the primary Argo CD hub is unreachable (must succeed via the standby)",
  "argocd-degraded": "the target's rollouts never become ready: Argo CD reports Degraded",
  "argocd-sync-timeout": "Argo CD never applies the new commit",
  "aurora-failover-stuck": "the Aurora promotion never completes",
  "ga-throttled":
    "Global Accelerator throttles UpdateEndpointGroup beyond the SDK's retries (the ASL's Retry must absorb it)",
  "ga-update-fails": "Global Accelerator refuses UpdateEndpointGroup (AccessDenied)",
  "commit-on-top":
    "an image updater pushes on top of the retarget commit: Argo CD deploys that commit, never the retarget itself (must succeed)",
  "commit-undoes-retarget":
    "a commit pushed on top of the retarget makes the target passive again (must fail, naming it, before traffic moves)",
  "assume-role-denied":
    "the data account's role no longer trusts the orchestrator (implies --accounts split): AssumeRole is refused, Plan must stop naming the role",
  "old-region-returns-active":
    "as the failover's second commit arrives, someone raises the old region's traffic dial back to 50 by hand (Fence must fail)",
  "old-region-unreachable":
    "the old region's spokes refuse connections for the whole failover (Fence: pending, re-checked by readiness)",
  "aurora-not-rejoined":
    "with --mode ungraceful --failback: the old Aurora primary stays pending-resync, never rebuilt as a secondary (the failback must be refused in its pre-checks)",
  "target-capacity-short":
    "the target's nodes hold two pods fewer than the committed replicas: those stay Pending (the capacity gate must stop before traffic moves)",
  "source-capacity-unknown":
    "the source region's spokes refuse connections and readiness stored no capacity figure (capacity.whenSourceUnknown decides)",
} as const;
/** The name of a fault a drill can inject (`--fault <name>`). */
export type FaultName = keyof typeof FAULTS;

/** The fewest spokes a sandbox runs: one per region. */
export const MIN_SPOKES = SANDBOX_REGIONS.length;

/**
 * Why a sandbox of `spokes` spokes and `apps` Argo CD Applications cannot be built as asked
 * (empty when it can). Every region needs a spoke, and every component is deployed to every
 * spoke (one ApplicationSet per component, cluster generator), so `apps` must be a multiple of
 * `spokes`: the sandbox builds exactly what is asked or refuses.
 */
export function sizeProblems(spokes: number, apps: number): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(spokes) || spokes < MIN_SPOKES) {
    problems.push(
      `--spokes ${spokes}: at least ${MIN_SPOKES}, one per region (${SANDBOX_REGIONS.join(", ")})`,
    );
  } else if (!Number.isInteger(apps) || apps < spokes || apps % spokes !== 0) {
    const below = Math.floor(apps / spokes) * spokes;
    const above = Math.max(1, Math.ceil(apps / spokes)) * spokes;
    problems.push(
      `--apps ${apps} with --spokes ${spokes}: every component runs on every spoke, so --apps must be a multiple of ${spokes} (${below >= spokes ? `${below} or ` : ""}${above})`,
    );
  }
  return problems;
}

/**
 * Faults a readiness drill injects (`drill --readiness --fault <name>`): each breaks exactly one
 * region x check of the evaluation, for the target region the drill names.
 */
export const READINESS_FAULTS = {
  "standby-spoke-token-expired":
    "the target's spoke token in Secrets Manager expired: its spoke answers 401 (spoke)",
  "secret-replica-missing":
    "the Git secret was never replicated to the second orchestrator region (platform secrets)",
  "replica-lag-high": "the target's Aurora replication lag is 30 s, above maxRpoSeconds (aurora)",
  "standby-app-degraded":
    "one app on the target's spoke lost its ready pods: Argo CD reports Degraded (gitops)",
  "standby-hub-down": "the standby Argo CD hub is unreachable (platform argocd-hub/hub-standby)",
  "hub-backup-stale":
    "the primary hub's newest Velero backup completed 3 days ago (platform hub-backup/hub-primary)",
  "target-health-check-failing":
    "every Route 53 checker fails the target's health check (health-check)",
} as const;
/** The name of a readiness fault (`drill --readiness --fault <name>`). */
export type ReadinessFaultName = keyof typeof READINESS_FAULTS;
