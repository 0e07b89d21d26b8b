/** AwaitAurora: one Aurora poll per invocation. */
import { stepHandler } from "../lib/middleware.ts";
import { awaitAuroraStep } from "../lib/steps.ts";

export const handler = stepHandler("AwaitAurora", awaitAuroraStep);
