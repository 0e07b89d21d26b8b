/** RecordFailure: what failed, what had changed, what to do by hand. */
import { stepHandler } from "../lib/middleware.ts";
import { recordFailureStep } from "../lib/report.ts";

export const handler = stepHandler("RecordFailure", recordFailureStep, { audit: false });
