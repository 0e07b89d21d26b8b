/** PromoteAurora: switchover or guarded failover to the target. */
import { stepHandler } from "../lib/middleware.ts";
import { promoteAuroraStep } from "../lib/steps.ts";

export const handler = stepHandler("PromoteAurora", promoteAuroraStep);
