/**
 * The container's three Powertools instances: the logger (structured JSON, every string
 * redacted), the metrics (CloudWatch EMF: log lines CloudWatch turns into metrics, so no API
 * call and no IAM) and the tracer (X-Ray; it turns itself off outside Lambda, where there is no
 * `AWS_EXECUTION_ENV` and no daemon, so the sandbox and the tests trace nothing). The middleware
 * (middleware.ts) flushes the metrics and closes the trace of every invocation.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics } from "@aws-lambda-powertools/metrics";
import { Tracer } from "@aws-lambda-powertools/tracer";
import { redact } from "./redact.ts";

const SERVICE = "gitops-failover";

/** The CloudWatch namespace of every metric the orchestrator emits (README, "Metrics"). */
export const METRICS_NAMESPACE = "GitopsFailover";

/** One logger per container; every string it writes passes through `redact`. */
export const logger = new Logger({
  serviceName: SERVICE,
  jsonReplacerFn: (_key: string, value: unknown) =>
    typeof value === "string" ? redact(value) : value,
});

/**
 * Powertools' own warnings go to the logger; "no metrics to publish" is expected of every
 * invocation that measures nothing (most of them) and is only a debug line.
 */
const metricsLog = {
  debug: (...a: unknown[]) => logger.debug(a.map(String).join(" ")),
  info: (...a: unknown[]) => logger.info(a.map(String).join(" ")),
  warn: (...a: unknown[]) =>
    /^No application metrics to publish/.test(String(a[0]))
      ? logger.debug(String(a[0]))
      : logger.warn(a.map(String).join(" ")),
  error: (...a: unknown[]) => logger.error(a.map(String).join(" ")),
};

/**
 * A metrics buffer with exactly our dimensions: Powertools adds a `service` dimension by
 * default, which would make every query name it.
 */
export function newMetrics(): Metrics {
  const m = new Metrics({ namespace: METRICS_NAMESPACE, serviceName: SERVICE, logger: metricsLog });
  m.clearDefaultDimensions();
  return m;
}

/** The invocation's metrics, flushed as one EMF line when the handler returns or throws. */
export const metrics = newMetrics();

/**
 * X-Ray: the handler's segment (middleware.ts), the AWS SDK clients (aws.ts) and every outbound
 * HTTP(S) request — `node:https` (Argo CD, the spokes' Kubernetes client, isomorphic-git's HTTP
 * transport) and `fetch` — as subsegments. Responses are not recorded: they are the platform's
 * state, and traces are outside our redaction.
 */
export const tracer = new Tracer({ serviceName: SERVICE, captureHTTPsRequests: true });
