/** AwaitCapacity: one check of the target's Ready replicas against the committed floors per invocation. */
import { awaitCapacityStep } from "../lib/capacity.ts";
import { stepHandler } from "../lib/middleware.ts";
import { EXPECTED_SECONDS, paced } from "../lib/pace.ts";

export const handler = stepHandler(
  "AwaitCapacity",
  paced(awaitCapacityStep, EXPECTED_SECONDS.capacity, (s) => s.capacityGate),
);
