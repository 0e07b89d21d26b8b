/** Compensate: after a failure before traffic moved, restore users and the writer to one region. */
import { stepHandler } from "../lib/middleware.ts";
import { compensateStep } from "../lib/steps.ts";

export const handler = stepHandler("Compensate", compensateStep);
