/** ShiftTraffic: guard, then the next traffic stage. */
import { stepHandler } from "../lib/middleware.ts";
import { shiftTrafficStep } from "../lib/steps.ts";

export const handler = stepHandler("ShiftTraffic", shiftTrafficStep);
