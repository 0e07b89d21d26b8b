/**
 * The readiness faults (READINESS_FAULTS in faults.ts) on a running sandbox: each breaks exactly
 * one region x check of the readiness evaluation, the way the thing it stands for rots in
 * production, and {@link resetReadinessFaults} puts every one back so one sandbox serves many
 * drills.
 */
import { clearSecretCache } from "../functions/lib/secrets.ts";
import type { ReadinessFaultName } from "./faults.ts";
import { freshHubBackups, PASSIVE_RPO_LAG_MS, type Sandbox } from "./index.ts";

const HIGH_LAG_MS = 30_000;
const STANDBY_HUB = "hub-standby";
const PRIMARY_HUB = "hub-primary";

/** The second orchestrator region: where a missing replica hurts (the first is where we run). */
function secondOrchestratorRegion(s: Sandbox): string {
  const [, second] = (s.env.ORCHESTRATOR_REGIONS ?? "").split(",");
  if (!second) throw new Error("the sandbox names fewer than two orchestrator regions");
  return second;
}

/** The Deployment an app-degraded fault stops: the first one on the target's first spoke. */
function victim(s: Sandbox, target: string) {
  const spoke = s.spokes.find((sp) => sp.region === target);
  const deployment = spoke?.deployments().sort((a, b) => a.name.localeCompare(b.name))[0];
  if (!spoke || !deployment) throw new Error(`no Deployment on a spoke of ${target}`);
  return { spoke, deployment };
}

function hubCluster(s: Sandbox, hub: string) {
  const cluster = s.hubClusters[hub];
  if (!cluster) throw new Error(`no hub cluster ${hub}`);
  return cluster;
}

/**
 * Injects a readiness fault against `target` (a region that is not active). Argo CD's view is
 * settled before returning, so an evaluation right after sees it.
 */
export async function injectReadinessFault(
  s: Sandbox,
  fault: ReadinessFaultName,
  target: string,
): Promise<void> {
  const region = s.topology.regions[target];
  if (!region) throw new Error(`no region ${target} in the sandbox`);
  switch (fault) {
    case "standby-spoke-token-expired":
      for (const spoke of region.spokes)
        s.aws.secrets.put(spoke.tokenSecretArn, JSON.stringify({ token: "expired-sa-token" }));
      break;
    case "secret-replica-missing":
      s.aws.secrets.removeReplica(s.topology.git.credentialsSecretArn, secondOrchestratorRegion(s));
      break;
    case "replica-lag-high":
      s.aws.cloudwatch.setRpoLagMs(target, HIGH_LAG_MS);
      break;
    case "standby-app-degraded": {
      const { spoke, deployment } = victim(s, target);
      spoke.setDeploymentAvailable(deployment.namespace, deployment.name, false);
      await untilArgoSees(s, "Degraded");
      break;
    }
    case "standby-hub-down":
      s.argo.setHubReachable(STANDBY_HUB, false);
      break;
    case "hub-backup-stale":
      hubCluster(s, PRIMARY_HUB).setVeleroBackups(freshHubBackups(Date.now() - 70 * 3_600_000));
      break;
    case "target-health-check-failing":
      s.aws.route53.setFailingFraction(region.route53.healthCheckId, 1);
      break;
  }
  clearSecretCache();
}

/** Puts back everything a readiness fault changes, for every region but the active one. */
export async function resetReadinessFaults(s: Sandbox, activeRegion: string): Promise<void> {
  const token = JSON.stringify({ token: s.credentials.spokeToken });
  const second = secondOrchestratorRegion(s);
  s.aws.secrets.replicate(s.topology.git.credentialsSecretArn, second);
  let degraded = false;
  for (const [name, region] of Object.entries(s.topology.regions)) {
    for (const spoke of region.spokes) s.aws.secrets.put(spoke.tokenSecretArn, token);
    s.aws.route53.setFailingFraction(region.route53.healthCheckId, 0);
    if (name === activeRegion) continue;
    s.aws.cloudwatch.setRpoLagMs(name, PASSIVE_RPO_LAG_MS);
    for (const spoke of s.spokes.filter((sp) => sp.region === name)) {
      for (const d of spoke.deployments()) {
        if (d.readyReplicas < d.replicas) {
          spoke.setDeploymentAvailable(d.namespace, d.name, true);
          degraded = true;
        }
      }
    }
  }
  s.argo.setHubReachable(STANDBY_HUB, true);
  for (const cluster of Object.values(s.hubClusters)) cluster.setVeleroBackups(freshHubBackups());
  if (degraded) await untilArgoSees(s, "Healthy");
  clearSecretCache();
}

/**
 * Waits until Argo CD's health of every app (Healthy), or of some app (Degraded), says so: the
 * emulator re-reads live health on its own cadence, as Argo CD's controller does.
 */
async function untilArgoSees(s: Sandbox, health: "Healthy" | "Degraded"): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await s.settle();
    const apps = s.argo.applications();
    const seen =
      health === "Degraded"
        ? apps.some((a) => a.health === "Degraded")
        : apps.every((a) => a.health === "Healthy");
    if (seen) return;
    if (Date.now() > deadline) throw new Error(`Argo CD did not report ${health} within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
