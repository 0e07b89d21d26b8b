/** VerifyTraffic: one health poll of the target endpoints. */
import { stepHandler } from "../lib/middleware.ts";
import { EXPECTED_SECONDS, paced } from "../lib/pace.ts";
import { verifyTrafficStep } from "../lib/steps.ts";

export const handler = stepHandler(
  "VerifyTraffic",
  paced(verifyTrafficStep, EXPECTED_SECONDS.trafficVerify, (s) => s.trafficHealth),
);
