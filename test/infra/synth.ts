/**
 * Synthesizes the CDK app for the infra tests the way `cdk synth` does (same settings loader,
 * same derivation, cdk-nag on), into a temporary directory. Bundling is skipped unless asked
 * for: the templates do not depend on the bundles, and the derivation bundles on its own.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App, type Stack } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import type { CloudAssembly } from "aws-cdk-lib/cx-api";
import { buildDeployment, type Deployment, FUNCTION_ENTRIES } from "../../infra/lib/app.ts";
import { deriveSdkAccess, type FunctionAccess } from "../../infra/lib/sdk-access.ts";
import { loadSettings, type Settings } from "../../infra/lib/settings.ts";

export interface Synthesized {
  app: App;
  settings: Settings;
  deployment: Deployment;
  assembly: CloudAssembly;
  access: Map<string, FunctionAccess>;
  template(stack: Stack): Template;
}

/** The SDK access of every function, derived once per test file. */
export function deriveAll(): Promise<Map<string, FunctionAccess>> {
  return deriveSdkAccess(FUNCTION_ENTRIES);
}

export function synthesize(
  context: Record<string, unknown>,
  access: Map<string, FunctionAccess>,
  options: { bundle?: boolean } = {},
): Synthesized {
  const app = new App({
    outdir: mkdtempSync(join(tmpdir(), "gf-cdk-")),
    context: { ...context, ...(options.bundle ? {} : { "aws:cdk:bundling-stacks": [] }) },
  });
  const settings = loadSettings((key) => app.node.tryGetContext(key));
  const deployment = buildDeployment(app, settings, access);
  const assembly = app.synth();
  return {
    app,
    settings,
    deployment,
    assembly,
    access,
    template: (stack) => Template.fromJSON(assembly.getStackByName(stack.stackName).template),
  };
}
