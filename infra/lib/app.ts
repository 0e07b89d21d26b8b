/**
 * The whole deployment of one platform: an orchestrator stack per orchestrator region and the
 * Health stack in us-east-1, tagged, ordered (orchestrators first: the health rules deliver to
 * their triggers) and checked by cdk-nag's AwsSolutions pack, which fails the synth on any
 * finding that is not acknowledged with a reason.
 */
import { type App, Tags, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { FUNCTIONS } from "../../functions/catalog.ts";
import { accountOfArn } from "../../functions/lib/config.ts";
import { topologyRoles } from "./access.ts";
import { HealthStack } from "./health-stack.ts";
import { MemberAccountRolesStack, type MemberRole } from "./member-roles.ts";
import {
  alarmRoutes,
  HEALTH_REGION,
  healthStackName,
  memberRolesStackName,
  orchestratorStackName,
} from "./naming.ts";
import { APPROVER, OrchestratorStack, TRIGGER } from "./orchestrator-stack.ts";
import { READINESS } from "./readiness.ts";
import type { FunctionAccess, FunctionEntry } from "./sdk-access.ts";
import type { Settings } from "./settings.ts";

/** Every function the orchestrator deploys: the catalog's steps, the trigger, readiness, the approver. */
export const FUNCTION_ENTRIES: FunctionEntry[] = [
  ...FUNCTIONS.map((f) => ({ name: f.state, entry: `functions/${f.dir}/handler.ts` })),
  { name: TRIGGER.name, entry: TRIGGER.entry },
  { name: READINESS.name, entry: READINESS.entry },
  { name: APPROVER.name, entry: APPROVER.entry },
];

export interface Deployment {
  orchestrators: OrchestratorStack[];
  health: HealthStack;
  /** Per member account of a cross-account topology, the roles it must offer. */
  memberAccounts: MemberAccountRolesStack[];
}

/** Adds the platform's stacks to `app`; `access` comes from deriveSdkAccess(FUNCTION_ENTRIES). */
export function buildDeployment(
  app: App,
  settings: Settings,
  access: Map<string, FunctionAccess>,
): Deployment {
  const { platform } = settings.topology;
  const account = settings.topology.orchestratorAccount ?? process.env.CDK_DEFAULT_ACCOUNT;
  const routes = alarmRoutes(Object.keys(settings.topology.regions), settings.orchestratorRegions);
  const orchestrators = settings.orchestratorRegions.map(
    (region) =>
      new OrchestratorStack(app, orchestratorStackName(platform, region), {
        env: { account, region },
        description: `gitops-failover ${platform}: failover orchestrator in ${region}`,
        terminationProtection: true,
        settings,
        access,
        alarmRegions: routes.get(region) ?? [],
      }),
  );
  const health = new HealthStack(app, healthStackName(platform), {
    env: { account, region: HEALTH_REGION },
    description: `gitops-failover ${platform}: endpoint health checks, alarms and their delivery to the trigger`,
    terminationProtection: true,
    settings,
  });
  for (const orchestrator of orchestrators) {
    health.addStackDependency(
      orchestrator,
      "the health rules deliver to the orchestrators' triggers",
    );
  }
  const memberAccounts = memberAccountStacks(app, settings, orchestrators);
  Tags.of(app).add("gitops-failover:platform", platform);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { orchestrators, health, memberAccounts };
}

/**
 * One stack per account the topology's roles are in: each role trusts exactly the function
 * roles (of every orchestrator region) whose code needs it, and allows the union of what they do
 * there. A role no function needs is still created, with no permission, so the topology and the
 * accounts never disagree about which roles exist.
 */
function memberAccountStacks(
  app: App,
  settings: Settings,
  orchestrators: OrchestratorStack[],
): MemberAccountRolesStack[] {
  const { topology } = settings;
  const roles = topologyRoles(topology);
  if (!roles.length || !topology.orchestratorAccount) return [];
  const needs = new Map<string, MemberRole>(
    roles.map((role) => [role.roleArn, { role, trusted: [], grants: [] }]),
  );
  for (const orchestrator of orchestrators) {
    for (const fn of orchestrator.functions.values()) {
      for (const [roleArn, grants] of fn.memberGrants) {
        const need = needs.get(roleArn);
        if (!need || !fn.roleArn) continue;
        need.trusted.push(fn.roleArn);
        for (const g of grants) {
          const known = need.grants.find(
            (k) =>
              k.action === g.action &&
              JSON.stringify(k.conditions) === JSON.stringify(g.conditions),
          );
          if (known) known.resources = [...new Set([...known.resources, ...g.resources])].sort();
          else need.grants.push({ ...g, resources: [...g.resources].sort() });
        }
      }
    }
  }
  const byAccount = new Map<string, MemberRole[]>();
  for (const need of needs.values()) {
    const account = accountOfArn(need.role.roleArn) ?? "";
    byAccount.set(account, [...(byAccount.get(account) ?? []), need]);
  }
  return [...byAccount.entries()].map(
    ([account, accountRoles]) =>
      new MemberAccountRolesStack(app, memberRolesStackName(topology.platform, account), {
        env: { account, region: HEALTH_REGION },
        description: `gitops-failover ${topology.platform}: the roles account ${account} offers the orchestrator in ${topology.orchestratorAccount}`,
        terminationProtection: true,
        orchestratorAccount: topology.orchestratorAccount as string,
        roles: accountRoles.map((r) => ({
          ...r,
          grants: r.grants.sort((a, b) => a.action.localeCompare(b.action)),
        })),
      }),
  );
}
