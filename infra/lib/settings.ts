/**
 * What one synth deploys, read from CDK context: the topology (validated by the functions' own
 * zod schema, so synth time and run time cannot disagree), the regions that run an
 * orchestrator, and how the regional endpoints are health-checked. Bad input stops the synth
 * with one line per problem instead of a stack trace.
 */
import { z } from "zod";
import {
  deadlineName,
  FUNCTIONS,
  MAX_LAMBDA_TIMEOUT_SECONDS,
  pollBudget,
  timeoutOf,
} from "../../functions/catalog.ts";
import {
  defaultOrchestratorRegions,
  formatIssues,
  loadTopology,
  RegionName,
  type Topology,
} from "../../functions/lib/config.ts";
import { isFailoverError } from "../../functions/lib/errors.ts";
import { namePrefix } from "./naming.ts";

/** The topology synthesized when `-c topology=<file>` is not given. */
export const DEFAULT_TOPOLOGY = "config/topology.example.yaml";

/** How the Health stack gets its Route 53 health checks. */
export type HealthCheckSource = "create" | "topology";

export interface Settings {
  topologyPath: string;
  topology: Topology;
  /**
   * Regions that each run a full orchestrator (state machine, functions, table, bucket, topic).
   * An alarm about a region is delivered to the first of them that is not that region.
   */
  orchestratorRegions: string[];
  /**
   * `topology` (the default): alarm on the checks the topology names, the same ids the trigger
   * and Plan read, so detection and the functions always agree. `create`: one new HTTPS health
   * check per regional endpoint, for a first deploy; their ids are stack outputs that the
   * topology must then name (until it does, the trigger cannot map the new alarms to a region).
   */
  healthChecks: HealthCheckSource;
  /** Path the created health checks probe on each `regions.<r>.endpoint`. */
  healthCheckPath: string;
  /** S3 Object Lock on the report bucket: each report version is kept this long, in this mode. */
  reportLock: { retentionDays: number; mode: "governance" | "compliance" };
}

/** Input a synth cannot proceed with: `problems` holds one line each. */
export class SettingsError extends Error {
  override readonly name = "SettingsError";
  constructor(
    message: string,
    readonly problems: string[] = [],
    options?: { cause?: unknown },
  ) {
    super(
      problems.length ? `${message}:\n${problems.map((p) => `  - ${p}`).join("\n")}` : message,
      options,
    );
  }
}

const RegionList = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => (typeof v === "string" ? v.split(",").map((r) => r.trim()) : v).filter(Boolean))
  .pipe(
    z
      .array(RegionName)
      .min(1, "must name at least one region")
      .refine((l) => new Set(l).size === l.length, "must not repeat a region"),
  );

const ContextSchema = z.strictObject({
  topology: z.string().min(1).default(DEFAULT_TOPOLOGY),
  orchestratorRegions: RegionList.optional(),
  healthChecks: z.enum(["create", "topology"]).default("topology"),
  healthCheckPath: z
    .string()
    .regex(/^\/[A-Za-z0-9._~/-]{0,254}$/, "must be an absolute URL path such as /healthz")
    .default("/healthz"),
  reportRetentionDays: z.coerce
    .number()
    .int("must be a whole number of days")
    .min(1, "must be at least 1 day")
    .max(36500, "must be at most 36500 days (100 years, S3's limit)")
    .default(365),
  reportLockMode: z.enum(["governance", "compliance"]).default("governance"),
});

/** The context keys this app reads (`-c key=value`). */
const CONTEXT_KEYS = Object.keys(ContextSchema.shape) as (keyof typeof ContextSchema.shape)[];

/**
 * Reads and validates the settings from context values (`tryGetContext` for each of
 * CONTEXT_KEYS); throws SettingsError naming every problem.
 */
export function loadSettings(context: (key: string) => unknown): Settings {
  const raw = Object.fromEntries(
    CONTEXT_KEYS.map((k) => [k, context(k)]).filter(([, v]) => v !== undefined),
  );
  const parsed = ContextSchema.safeParse(raw);
  if (!parsed.success) {
    throw new SettingsError(
      "CDK context is invalid",
      formatIssues(parsed.error).map((l) => `-c ${l}`),
    );
  }
  const ctx = parsed.data;
  let topology: Topology;
  try {
    topology = loadTopology(ctx.topology);
  } catch (e) {
    if (isFailoverError(e) && e.details.length) {
      throw new SettingsError(`topology ${ctx.topology} is invalid`, e.details, { cause: e });
    }
    throw new SettingsError(
      isFailoverError(e) ? e.message : `cannot load ${ctx.topology}: ${String(e)}`,
      [],
      { cause: e },
    );
  }
  const prefix = namePrefix(topology.platform);
  if (prefix.length > 40) {
    throw new SettingsError(`topology ${ctx.topology} is invalid`, [
      `platform: "${topology.platform}" is too long to name AWS resources (at most ${40 - (prefix.length - topology.platform.length)} characters)`,
    ]);
  }
  const timing = pollTimingProblems(topology);
  if (timing.length) throw new SettingsError(`topology ${ctx.topology} is invalid`, timing);
  return {
    topologyPath: ctx.topology,
    topology,
    orchestratorRegions: ctx.orchestratorRegions ?? defaultOrchestratorRegions(topology),
    healthChecks: ctx.healthChecks,
    healthCheckPath: ctx.healthCheckPath,
    reportLock: { retentionDays: ctx.reportRetentionDays, mode: ctx.reportLockMode },
  };
}

/**
 * Each poller's Lambda timeout (its worst-case invocation, functions/catalog.ts) must fit in
 * Lambda's 900 s and in its step's deadline: one poll that outlasts the deadline makes the
 * deadline a fiction, and one cut short by Lambda never gets to its standby hub or region.
 */
export function pollTimingProblems(topology: Topology): string[] {
  return FUNCTIONS.flatMap((f) => {
    const budget = pollBudget(f.state, topology);
    if (!budget) return [];
    const sum = `${budget.seconds} s = ${budget.parts.join(" + ")}`;
    const lower =
      f.state === "AwaitArgoSync" ? " or lower argocd.requestTimeoutSeconds (or the hubs)" : "";
    if (budget.seconds > MAX_LAMBDA_TIMEOUT_SECONDS) {
      return [
        `argocd: one ${f.state} poll can take ${sum}, over Lambda's ${MAX_LAMBDA_TIMEOUT_SECONDS} s limit; lower argocd.requestTimeoutSeconds or the number of hubs`,
      ];
    }
    const deadline = budget.deadlineSeconds;
    const timeout = timeoutOf(f, topology);
    // Fence's window is fixed (FENCE_SECONDS), not a topology deadline: a poll longer than it makes
    // the next poll the window's last (a region still converging then fails OldRegionNotFenced,
    // after the failover completed; an unreachable one stays pending for readiness).
    if (timeout <= deadline || budget.deadlineKey === "FENCE_SECONDS") return [];
    return [
      `${deadlineName(budget)}: ${deadline} s is shorter than one worst-case ${f.state} poll (${sum}); raise it to at least ${timeout}${lower}`,
    ];
  });
}
