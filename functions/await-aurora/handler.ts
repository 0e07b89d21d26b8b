/** AwaitAurora: one Aurora poll per invocation. */
import { stepHandler } from "../lib/middleware.ts";
import { EXPECTED_SECONDS, paced } from "../lib/pace.ts";
import { awaitAuroraStep } from "../lib/steps.ts";

export const handler = stepHandler(
  "AwaitAurora",
  paced(awaitAuroraStep, EXPECTED_SECONDS.aurora, (s) => s.aurora),
);
