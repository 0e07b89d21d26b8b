/** Fence: one check that the old region(s) cannot serve or write, once traffic is on the target. */
import { stepHandler } from "../lib/middleware.ts";
import { EXPECTED_SECONDS, paced } from "../lib/pace.ts";
import { fenceStep } from "../lib/steps.ts";

export const handler = stepHandler(
  "Fence",
  paced(fenceStep, EXPECTED_SECONDS.fence, (s) => s.fence),
);
