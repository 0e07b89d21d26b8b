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
  "ga-throttled": "Global Accelerator throttles the next calls (must be retried and succeed)",
  "ga-update-fails": "Global Accelerator refuses UpdateEndpointGroup (AccessDenied)",
} as const;
export type FaultName = keyof typeof FAULTS;
