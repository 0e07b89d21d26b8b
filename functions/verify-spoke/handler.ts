/** VerifySpoke: the target spoke(s) reachable, Ready, secrets in place. */
import { stepHandler } from "../lib/middleware.ts";
import { verifySpokeStep } from "../lib/steps.ts";

export const handler = stepHandler("VerifySpoke", verifySpokeStep);
