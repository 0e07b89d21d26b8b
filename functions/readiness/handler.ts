/** Readiness: evaluates every failover target on a schedule, stores the result, emits metrics. */
import { runtimeTopology } from "../lib/config.ts";
import { stepHandler } from "../lib/middleware.ts";
import { readinessStep } from "../lib/readiness.ts";

export const handler = stepHandler(
  "Readiness",
  (event: { region?: unknown }) => readinessStep(event, runtimeTopology()),
  { audit: false },
);
