/** Notify: tell the operators how the failover ended. */
import { stepHandler } from "../lib/middleware.ts";
import { notifyStep } from "../lib/notify.ts";

export const handler = stepHandler("Notify", notifyStep);
