/** AwaitCapacity: one check of the target's Ready replicas against the committed floors per invocation. */
import { awaitCapacityStep } from "../lib/capacity.ts";
import { stepHandler } from "../lib/middleware.ts";

export const handler = stepHandler("AwaitCapacity", awaitCapacityStep);
