/**
 * CDK entry point (cdk.json): `npx cdk synth -c topology=<file>`. A topology or context problem
 * ends the synth with one line per problem and exit code 1, never a stack trace.
 */
import { App } from "aws-cdk-lib";
import { buildDeployment, FUNCTION_ENTRIES } from "../lib/app.ts";
import { deriveSdkAccess } from "../lib/sdk-access.ts";
import { loadSettings, SettingsError } from "../lib/settings.ts";

const app = new App();
try {
  const settings = loadSettings((key) => app.node.tryGetContext(key));
  buildDeployment(app, settings, await deriveSdkAccess(FUNCTION_ENTRIES));
  app.synth();
} catch (e) {
  if (!(e instanceof SettingsError)) throw e;
  process.stderr.write(`gitops-failover: cannot synth: ${e.message}\n`);
  process.exitCode = 1;
}
