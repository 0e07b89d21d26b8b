/** Report: the runbook report of a completed (or already-done) failover. */
import { stepHandler } from "../lib/middleware.ts";
import { reportStep } from "../lib/report.ts";

export const handler = stepHandler("Report", reportStep, { audit: false });
