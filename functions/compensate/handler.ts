/** Compensate: after a failure before traffic moved, restore users and the writer to one region. */
import { stepHandler } from "../lib/middleware.ts";
import { EXPECTED_SECONDS, paced } from "../lib/pace.ts";
import { compensateStep } from "../lib/steps.ts";

export const handler = stepHandler(
  "Compensate",
  paced(compensateStep, EXPECTED_SECONDS.compensate, (s) => s.compensation),
);
