/**
 * A region coming back after an incident, as `drill --failback` needs it before failing back:
 * its spokes answer again, its health check passes, and — after an unplanned failover — Aurora
 * rebuilds its old primary as a secondary that catches up (unless the drill's fault
 * aurora-not-rejoined keeps it pending-resync). Nothing here touches Git, Argo CD or traffic:
 * those are the orchestrator's to move.
 */
import { GLOBAL_CLUSTER, PASSIVE_RPO_LAG_MS, type Sandbox } from "./index.ts";

/** What recovery did, one line each, for the drill's output. */
export async function recoverRegion(
  s: Sandbox,
  region: string,
  options: { auroraRejoins: boolean },
): Promise<string[]> {
  const r = s.topology.regions[region];
  if (!r) throw new Error(`no region ${region} in the sandbox`);
  const lines: string[] = [];
  for (const spoke of s.spokes.filter((sp) => sp.region === region)) spoke.setReachable(true);
  lines.push(`${region}: spokes answer again`);
  s.aws.route53.setFailingFraction(r.route53.healthCheckId, 0);
  lines.push(`${region}: health check ${r.route53.healthCheckId} passing`);
  if (options.auroraRejoins) {
    s.aws.rds.rejoin(region);
    // A caught-up secondary publishes its replication lag; the writer publishes none.
    s.aws.cloudwatch.setRpoLagMs(
      region,
      PASSIVE_RPO_LAG_MS,
      r.aurora.clusterArn.split(":cluster:")[1],
    );
    s.aws.cloudwatch.setRpoLagMs(s.aws.rds.writerRegion(GLOBAL_CLUSTER), null);
    lines.push(
      `${region}: Aurora member rejoined global cluster ${GLOBAL_CLUSTER}, lag ${PASSIVE_RPO_LAG_MS} ms`,
    );
  } else {
    lines.push(`${region}: Aurora member NOT rejoined (fault aurora-not-rejoined)`);
  }
  // Argo CD reconciles the spokes that answer again: they run what Git says (passive).
  await s.settle();
  return lines;
}
