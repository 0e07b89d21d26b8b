/**
 * CloudWatch, in both protocols the service accepts: awsJson1_0 with awsQueryCompatible (as the
 * installed SDK speaks it) and awsQuery 2010-08-01 (as the AWS CLI v2 and older SDKs do): the Aurora
 * RPO lag the ungraceful-failover guard reads, per region (published in secondary regions
 * only, so a region without a value has no datapoints). The orchestrator's own metrics are EMF
 * log lines (functions/lib/metrics.ts), not PutMetricData calls.
 */
import {
  AwsServiceError,
  type JsonServiceHandler,
  optionalString,
  type QueryServiceHandler,
  queryInput,
  queryOutput,
  type RequestContext,
  requireString,
  type XmlObject,
} from "./protocol.ts";

/** CloudWatch errors by `__type`, with the awsQuery code the compatible SDK resolves them by. */
export const CLOUDWATCH_QUERY_ERRORS: Record<string, string> = {
  InvalidParameterValueException: "InvalidParameterValue",
  InvalidParameterCombinationException: "InvalidParameterCombination",
  MissingRequiredParameterException: "MissingParameter",
};

/** Control surface of the CloudWatch emulator. */
export interface CloudWatchEmulator {
  handler: JsonServiceHandler;
  /** The same operations over awsQuery (form parameters in, XML out, awsQuery error codes). */
  queryHandler: QueryServiceHandler;
  /**
   * AWS/RDS AuroraGlobalDBRPOLag in `region`; null: the metric has no datapoints there. The
   * cluster identifier is the metric's DBClusterIdentifier dimension, as ListMetrics shows it.
   */
  setRpoLagMs(region: string, ms: number | null, clusterIdentifier?: string): void;
  /**
   * AWS/RDS ServerlessDatabaseCapacity (dimension DBClusterIdentifier) from a history the RDS
   * emulator keeps: each period's Maximum is the largest ACU value in effect during it.
   */
  setServerlessCapacitySource(source: ServerlessCapacitySource): void;
}

/** The ACUs a Serverless v2 cluster ran since `since` (ms epoch), oldest first; undefined: no such cluster. */
export type ServerlessCapacitySource = (
  region: string,
  clusterIdentifier: string,
  since: number,
) => { at: number; acu: number }[] | undefined;

const CAPACITY_METRIC = "ServerlessDatabaseCapacity";

const RPO_NAMESPACE = "AWS/RDS";
const RPO_METRIC = "AuroraGlobalDBRPOLag";
const MAX_POINTS = 60;
/** awsQuery members that are numbers and timestamps in the JSON operations. */
const QUERY_NUMBERS = new Set([
  "Value",
  "Values",
  "Counts",
  "Period",
  "StorageResolution",
  "MaxDatapoints",
]);
const QUERY_TIMESTAMPS = new Set(["StartTime", "EndTime", "Timestamp", "Timestamps"]);
const STATISTICS = new Set(["SampleCount", "Average", "Sum", "Minimum", "Maximum"]);

function missing(key: string): AwsServiceError {
  return new AwsServiceError(
    "MissingRequiredParameterException",
    `The parameter ${key} is required.`,
  );
}

function invalid(message: string): AwsServiceError {
  return new AwsServiceError("InvalidParameterValueException", message);
}

function requireNumber(input: Record<string, unknown>, key: string): number {
  const v = input[key];
  if (v === undefined || v === null) throw missing(key);
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw invalid(`The value for parameter ${key} is invalid.`);
  }
  return v;
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : {};
}

function list(input: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const v = input[key];
  if (!Array.isArray(v) || v.length === 0) throw missing(key);
  return v.map(record);
}

/** Creates the emulator; `handler` serves the `monitoring` credential scope. */
export function createCloudWatch(): CloudWatchEmulator {
  const rpoLag = new Map<string, number>();
  const rpoCluster = new Map<string, string>();
  let capacitySource: ServerlessCapacitySource | undefined;

  /**
   * Per period (newest first) the Maximum of ServerlessDatabaseCapacity: the largest value in
   * effect during it. Periods before the cluster's first value have no datapoint.
   */
  function capacitySeries(
    ctx: RequestContext,
    dimensions: Record<string, unknown>[],
    start: number,
    end: number,
    period: number,
  ): { timestamps: number[]; values: number[] } | undefined {
    const id = dimensions.find((d) => d.Name === "DBClusterIdentifier")?.Value;
    if (typeof id !== "string" || dimensions.length !== 1) return undefined;
    const points = capacitySource?.(ctx.region, id, start * 1000);
    if (!points?.length) return undefined;
    const timestamps: number[] = [];
    const values: number[] = [];
    // The newest period may be partial (it holds the latest values), as CloudWatch returns it.
    let t = Math.ceil(end / period) * period - period;
    while (t + period > start && timestamps.length < MAX_POINTS * 24) {
      const from = t * 1000;
      const to = (t + period) * 1000;
      const inEffect = points.filter((p, i) => p.at < to && (points[i + 1]?.at ?? Infinity) > from);
      if (inEffect.length) {
        timestamps.push(t);
        values.push(Math.max(...inEffect.map((p) => p.acu)));
      }
      t -= period;
    }
    return { timestamps, values };
  }

  /** Period start times (epoch s), newest first, and the value, for a metric with data. */
  function series(
    ctx: RequestContext,
    namespace: string,
    metricName: string,
    start: number,
    end: number,
    period: number,
  ): { timestamps: number[]; value: number } | undefined {
    if (period <= 0) throw invalid("The parameter Period must be greater than 0.");
    if (end <= start) throw invalid("The parameter StartTime must be less than EndTime.");
    const value = rpoLag.get(ctx.region);
    if (namespace !== RPO_NAMESPACE || metricName !== RPO_METRIC || value === undefined) {
      return undefined;
    }
    const timestamps: number[] = [];
    let t = Math.floor((end - period) / period) * period;
    while (t >= start && timestamps.length < MAX_POINTS) {
      timestamps.push(t);
      t -= period;
    }
    return { timestamps, value };
  }

  function getMetricData(input: Record<string, unknown>, ctx: RequestContext) {
    const queries = list(input, "MetricDataQueries");
    const start = requireNumber(input, "StartTime");
    const end = requireNumber(input, "EndTime");
    const results = queries.map((q) => {
      const id = requireString(q, "Id", missing);
      if (q.Expression !== undefined) {
        throw invalid(`Query ${id}: the sandbox serves MetricStat queries only.`);
      }
      const stat = record(q.MetricStat);
      const metric = record(stat.Metric);
      const metricName = requireString(metric, "MetricName", missing);
      const namespace = requireString(metric, "Namespace", missing);
      if (namespace === RPO_NAMESPACE && metricName === CAPACITY_METRIC) {
        if (requireString(stat, "Stat", missing) !== "Maximum")
          throw invalid(`Query ${id}: the sandbox serves ${CAPACITY_METRIC} with Stat Maximum.`);
        const period = requireNumber(stat, "Period");
        if (period <= 0 || period % 60 !== 0)
          throw invalid("The parameter Period must be a multiple of 60.");
        if (end <= start) throw invalid("The parameter StartTime must be less than EndTime.");
        const dims = Array.isArray(metric.Dimensions) ? metric.Dimensions.map(record) : [];
        const found = capacitySeries(ctx, dims, start, end, period);
        return {
          Id: id,
          Label: optionalString(q, "Label") ?? metricName,
          Timestamps: found?.timestamps ?? [],
          Values: found?.values ?? [],
          StatusCode: "Complete",
        };
      }
      const points = series(ctx, namespace, metricName, start, end, requireNumber(stat, "Period"));
      return {
        Id: id,
        Label: optionalString(q, "Label") ?? metricName,
        Timestamps: points?.timestamps ?? [],
        Values: points?.timestamps.map(() => points.value) ?? [],
        StatusCode: "Complete",
      };
    });
    return { MetricDataResults: results, Messages: [] };
  }

  function getMetricStatistics(input: Record<string, unknown>, ctx: RequestContext) {
    const metricName = requireString(input, "MetricName", missing);
    const statistics = Array.isArray(input.Statistics) ? input.Statistics.map(String) : [];
    if (statistics.length === 0) {
      throw new AwsServiceError(
        "InvalidParameterCombinationException",
        "Must specify either Statistics or ExtendedStatistics, but not both.",
      );
    }
    for (const s of statistics) {
      if (!STATISTICS.has(s)) throw invalid(`The value ${s} for parameter Statistics is invalid.`);
    }
    const points = series(
      ctx,
      requireString(input, "Namespace", missing),
      metricName,
      requireNumber(input, "StartTime"),
      requireNumber(input, "EndTime"),
      requireNumber(input, "Period"),
    );
    const datapoints = (points?.timestamps ?? []).map((t) => ({
      Timestamp: t,
      Unit: "Milliseconds",
      ...Object.fromEntries(
        statistics.map((s) => [s, s === "SampleCount" ? 1 : (points?.value ?? 0)]),
      ),
    }));
    return { Label: metricName, Datapoints: datapoints };
  }

  /** ListMetrics: the metrics with data in the caller's region, filtered as asked. */
  function listMetrics(input: Record<string, unknown>, ctx: RequestContext) {
    const namespace = optionalString(input, "Namespace");
    const metricName = optionalString(input, "MetricName");
    const filters = Array.isArray(input.Dimensions) ? input.Dimensions.map(record) : [];
    const found = new Map<
      string,
      { Namespace: string; MetricName: string; Dimensions: Record<string, string> }
    >();
    const cluster = rpoCluster.get(ctx.region);
    if (rpoLag.has(ctx.region) && cluster) {
      found.set("rpo", {
        Namespace: RPO_NAMESPACE,
        MetricName: RPO_METRIC,
        Dimensions: { DBClusterIdentifier: cluster },
      });
    }
    const metrics = [...found.values()].filter(
      (m) =>
        (!namespace || m.Namespace === namespace) &&
        (!metricName || m.MetricName === metricName) &&
        filters.every((f) => {
          const value = m.Dimensions[String(f.Name)];
          return value !== undefined && (f.Value === undefined || f.Value === value);
        }),
    );
    return {
      Metrics: metrics.map((m) => ({
        Namespace: m.Namespace,
        MetricName: m.MetricName,
        Dimensions: Object.entries(m.Dimensions).map(([Name, Value]) => ({ Name, Value })),
      })),
    };
  }

  const handler: JsonServiceHandler = (action, input, ctx) => {
    switch (action) {
      case "ListMetrics":
        return listMetrics(input, ctx);
      case "GetMetricData":
        return getMetricData(input, ctx);
      case "GetMetricStatistics":
        return getMetricStatistics(input, ctx);
      default:
        throw new AwsServiceError("UnknownOperationException", `Unknown operation ${action}`);
    }
  };

  /** awsQuery: strings converted to the numbers and epoch seconds the JSON operations take. */
  const queryHandler: QueryServiceHandler = async (action, params, ctx) => {
    const coerce = (v: unknown, key: string): unknown => {
      if (Array.isArray(v)) return v.map((x) => coerce(x, key));
      // A dimension's Value is a string, unlike a datum's.
      if (key === "Dimensions") return v;
      if (typeof v === "object" && v !== null) {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, coerce(x, k)]));
      }
      if (typeof v !== "string") return v;
      if (QUERY_NUMBERS.has(key)) return Number(v);
      if (QUERY_TIMESTAMPS.has(key)) return Date.parse(v) / 1000;
      return v;
    };
    try {
      const output = await handler(
        action,
        coerce(queryInput(params), "") as Record<string, unknown>,
        ctx,
      );
      return queryOutput(output ?? {}, QUERY_TIMESTAMPS) as XmlObject;
    } catch (e) {
      if (!(e instanceof AwsServiceError)) throw e;
      const code =
        e.code === "UnknownOperationException"
          ? "InvalidAction"
          : (CLOUDWATCH_QUERY_ERRORS[e.code] ?? e.code);
      throw new AwsServiceError(code, e.message, e.statusCode);
    }
  };

  return {
    handler,
    queryHandler,
    setServerlessCapacitySource(source) {
      capacitySource = source;
    },
    setRpoLagMs(region, ms, clusterIdentifier) {
      if (ms === null) rpoLag.delete(region);
      else rpoLag.set(region, ms);
      if (clusterIdentifier) rpoCluster.set(region, clusterIdentifier);
    },
  };
}
