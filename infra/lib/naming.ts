/**
 * Deterministic names shared by the stacks. The Health stack (us-east-1) and the orchestrator
 * stacks (any region) refer to each other's resources by these names instead of cross-stack
 * references, which CloudFormation does not allow across regions.
 */

/** Route 53 publishes `AWS/Route53 HealthCheckStatus` only here: alarms and their rule live here. */
export const HEALTH_REGION = "us-east-1";

/** The CloudWatch namespace of the orchestrator's own metrics: the functions' EMF (metrics.ts). */
export { METRICS_NAMESPACE } from "../../functions/lib/telemetry.ts";

/** `gitops-failover-<platform>`, with the characters Lambda and Step Functions refuse replaced. */
export function namePrefix(platform: string): string {
  return `gitops-failover-${platform.replaceAll(".", "-")}`;
}

export function stateMachineName(platform: string): string {
  return namePrefix(platform);
}

export function triggerFunctionName(platform: string): string {
  return `${namePrefix(platform)}-trigger`;
}

/** The readiness function: the schedule invokes it, and so does `gitops-failover readiness`. */
export function readinessFunctionName(platform: string): string {
  return `${namePrefix(platform)}-readiness`;
}

/** The approval entry point: operators may invoke only its function URL (AWS_IAM auth). */
export function approverFunctionName(platform: string): string {
  return `${namePrefix(platform)}-approver`;
}

/** The alarm on a region's readiness (TargetReady 0 for two evaluations). */
export function readinessAlarmName(platform: string, region: string): string {
  return `${namePrefix(platform)}-${region}-not-ready`;
}

/** The alarm on an old region answering while not fenced (OldRegionUnfenced, one evaluation). */
export function unfencedAlarmName(platform: string, region: string): string {
  return `${namePrefix(platform)}-${region}-not-fenced`;
}

/** The alarm on a region's health check; the trigger finds the region by its HealthCheckId. */
export function alarmName(platform: string, region: string): string {
  return `${namePrefix(platform)}-${region}-unhealthy`;
}

/**
 * The role of a function that assumes roles in other accounts: named, so the member accounts'
 * trust policies can name it (`aws:PrincipalArn`) before it exists. At most 64 characters.
 */
export function functionRoleName(platform: string, step: string, region: string): string {
  const name = `${namePrefix(platform)}-${step}-${region}`;
  if (name.length <= 64) return name;
  let hash = 0;
  for (const c of name) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return `${name.slice(0, 55)}-${hash.toString(36).padStart(8, "0").slice(0, 8)}`;
}

/** The stack of the roles one member account offers the orchestrator (deployed in that account). */
export function memberRolesStackName(platform: string, account: string): string {
  return `GitopsFailover-${platform.replaceAll(".", "-")}-MemberRoles-${account}`;
}

export function orchestratorStackName(platform: string, region: string): string {
  return `GitopsFailover-${platform.replaceAll(".", "-")}-Orchestrator-${region}`;
}

export function healthStackName(platform: string): string {
  return `GitopsFailover-${platform.replaceAll(".", "-")}-Health`;
}

/**
 * Which orchestrator handles the alarm of each endpoint region: the first orchestrator region
 * that is not the failing region itself (an orchestrator in a failing region may be failing
 * too), or the only orchestrator when there is just one. Each alarm goes to exactly one
 * orchestrator, so one incident never starts two failovers.
 */
export function alarmRoutes(
  endpointRegions: string[],
  orchestratorRegions: string[],
): Map<string, string[]> {
  const routes = new Map<string, string[]>(orchestratorRegions.map((r) => [r, []]));
  for (const region of endpointRegions) {
    const handler = orchestratorRegions.find((o) => o !== region) ?? orchestratorRegions[0];
    if (handler) routes.get(handler)?.push(region);
  }
  return routes;
}
