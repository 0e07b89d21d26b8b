/** Plan: validate, snapshot, decide; dryRun ends after it. */
import { stepHandler } from "../lib/middleware.ts";
import { planStep } from "../lib/steps.ts";

export const handler = stepHandler("Plan", planStep);
