/** Notify: tell the operators how the failover ended. */
import { stepHandler } from "../lib/middleware.ts";
import { notifyStep } from "../lib/notify.ts";

// Runs after Report/RecordFailure closed the audit chain: it appends nothing, so the closing
// event stays last and the report's recorded count and head describe the whole chain. Whether
// it published is in the execution history ($.notified).
export const handler = stepHandler("Notify", notifyStep, { audit: false });
