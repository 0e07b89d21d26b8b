/** VerifyTraffic: one health poll of the target endpoints. */
import { stepHandler } from "../lib/middleware.ts";
import { verifyTrafficStep } from "../lib/steps.ts";

export const handler = stepHandler("VerifyTraffic", verifyTrafficStep);
