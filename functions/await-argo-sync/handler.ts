/** AwaitArgoSync: one Argo CD poll per invocation. */
import { stepHandler } from "../lib/middleware.ts";
import { EXPECTED_SECONDS, paced } from "../lib/pace.ts";
import { awaitArgoSyncStep } from "../lib/steps.ts";

export const handler = stepHandler(
  "AwaitArgoSync",
  paced(awaitArgoSyncStep, EXPECTED_SECONDS.argoSync, (s) => s.argo),
);
