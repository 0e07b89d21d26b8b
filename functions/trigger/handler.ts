/** Trigger: turns a Route 53 health-check alarm into a failover decision (and maybe an execution). */
import { stepHandler } from "../lib/middleware.ts";
import { triggerOnAlarm } from "../lib/trigger.ts";

export const handler = stepHandler("Trigger", triggerOnAlarm);
