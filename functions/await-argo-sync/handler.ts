/** AwaitArgoSync: one Argo CD poll per invocation. */
import { stepHandler } from "../lib/middleware.ts";
import { awaitArgoSyncStep } from "../lib/steps.ts";

export const handler = stepHandler("AwaitArgoSync", awaitArgoSyncStep);
