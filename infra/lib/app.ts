/**
 * The whole deployment of one platform: an orchestrator stack per orchestrator region and the
 * Health stack in us-east-1, tagged, ordered (orchestrators first: the health rules deliver to
 * their triggers) and checked by cdk-nag's AwsSolutions pack, which fails the synth on any
 * finding that is not acknowledged with a reason.
 */
import { type App, Tags, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { FUNCTIONS } from "../../functions/catalog.ts";
import { HealthStack } from "./health-stack.ts";
import { alarmRoutes, HEALTH_REGION, healthStackName, orchestratorStackName } from "./naming.ts";
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
}

/** Adds the platform's stacks to `app`; `access` comes from deriveSdkAccess(FUNCTION_ENTRIES). */
export function buildDeployment(
  app: App,
  settings: Settings,
  access: Map<string, FunctionAccess>,
): Deployment {
  const { platform } = settings.topology;
  const account = process.env.CDK_DEFAULT_ACCOUNT;
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
  Tags.of(app).add("gitops-failover:platform", platform);
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { orchestrators, health };
}
