/**
 * The automatic trigger: turns a Route 53 health-check alarm ("CloudWatch Alarm State Change"
 * from EventBridge) into one decision. Guards run in a fixed order — event shape, ALARM state,
 * topology mapping, corroboration by Route 53 checkers, kill switch, cooldown, healthy target —
 * and only then does the configured mode act. Every decision, including "did nothing, because
 * …", is logged and appended to the audit trail under the incident's deterministic name; a bad
 * event is a decision too, never an exception. When the trigger itself fails (an AWS API, its
 * configuration) it records an `error` decision with what it knew so far, then rethrows so
 * Lambda retries the event and, in the end, its failure destination tells humans.
 *
 * The cooldown counts only failovers that changed something (the `failover#<platform>` item
 * Report and RecordFailure write through releaseLock), so a dry run or a no-op never holds back
 * a real failover, and a failover that failed half-way still does.
 */
import { ListExecutionsCommand, type SFNClient, StartExecutionCommand } from "@aws-sdk/client-sfn";
import { PublishCommand } from "@aws-sdk/client-sns";
import { GetParameterCommand } from "@aws-sdk/client-ssm";
import { z } from "zod";
import { type AuditOutcome, appendAuditEvent } from "./audit.ts";
import { awsError, regionOfArn, sfnClient, snsClient, ssmClient } from "./aws.ts";
import {
  type FailoverInput,
  FailoverInputSchema,
  formatIssues,
  otherRegions,
  roleOf,
  runtimeTopology,
  type Topology,
} from "./config.ts";
import { ConfigError, describe, UnexpectedError } from "./errors.ts";
import { type HealthCheckView, readHealthCheck } from "./health.ts";
import { claimIncident, lastFailover, unclaimIncident } from "./lock.ts";
import { recordTriggerDecision } from "./metrics.ts";
import { logger } from "./middleware.ts";
import { latestReadiness, type ReadinessStatus, type TargetReadiness } from "./readiness.ts";

/** What the trigger can do with one event (the dashboard charts each: infra/lib/dashboard.ts). */
export const TRIGGER_OUTCOMES = [
  "ignored",
  "not-corroborated",
  "kill-switch-on",
  "cooldown",
  "no-healthy-target",
  "started",
  "already-started",
  "notified",
  "error",
] as const;
/** What the trigger did with one event. */
export type TriggerOutcome = (typeof TRIGGER_OUTCOMES)[number];

/** The execution input the trigger sends (FailoverInputSchema, defaults left to Plan). */
export type TriggerInput = Omit<FailoverInput, "dryRun">;

export interface TriggerDecision {
  decision: TriggerOutcome;
  /** One sentence a human can act on. */
  reason: string;
  alarmName?: string;
  failedRegion?: string;
  /** The deterministic execution name of this incident (also its audit chain). */
  incident?: string;
  mode?: Topology["trigger"]["mode"];
  corroboration?: HealthCheckView;
  /**
   * Target candidates checked, in priority order, until a healthy one whose latest readiness is
   * READY was found (or all were checked); `readiness` is each healthy one's latest verdict.
   */
  candidates?: {
    region: string;
    failing: number;
    checkers: number;
    healthy: boolean;
    readiness?: ReadinessStatus;
  }[];
  targetRegion?: string;
  /** The readiness result the choice used: the target's latest evaluation and its age. */
  targetReadiness?: Pick<TargetReadiness, "verdict" | "observedAt" | "ageSeconds" | "evaluatedIn">;
  input?: TriggerInput;
  executionArn?: string;
  /** True when an SNS message went out for this decision. */
  notified: boolean;
  /** Set when publishing or auditing failed: the decision stands, the gap is logged. */
  problems?: string[];
}

/** Values of the kill-switch parameter that stop automatic failovers (trimmed, any case). */
const KILL_SWITCH_ON = ["on", "true", "enabled"] as const;

const Dimensions = z.record(z.string(), z.string());

/**
 * An ISO 8601 time with a 4-digit year, as CloudWatch writes it (`2024-05-01T12:34:56.789+0000`);
 * an extended year (`+010000-…`) or a bare date would name no sensible incident.
 */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})$/;

/** The part of EventBridge's "CloudWatch Alarm State Change" event the trigger reads. */
const AlarmEventSchema = z.object({
  "detail-type": z.literal("CloudWatch Alarm State Change"),
  detail: z.object({
    alarmName: z.string().min(1).max(255),
    state: z.object({
      value: z.string().min(1),
      timestamp: z
        .string()
        .refine(
          (t) => ISO_TIME.test(t) && !Number.isNaN(Date.parse(t)),
          "must be an ISO 8601 timestamp with a 4-digit year",
        ),
    }),
    configuration: z.object({
      metrics: z
        .array(
          z.object({
            metricStat: z
              .object({ metric: z.object({ dimensions: Dimensions.optional() }) })
              .optional(),
          }),
        )
        .default([]),
    }),
  }),
});
export type AlarmEvent = z.infer<typeof AlarmEventSchema>;

/**
 * The execution name for one incident: `auto-<failedRegion>-<yyyymmddThhmmssZ>` from the alarm
 * state's timestamp, so duplicate or replayed deliveries of the same alarm start one execution.
 * Always a valid execution name: only `[A-Za-z0-9_-]`, at most 80 characters.
 */
export function incidentName(failedRegion: string, alarmTimestamp: string): string {
  const time = new Date(alarmTimestamp);
  const stamp = Number.isNaN(time.getTime())
    ? "invalid-time"
    : time
        .toISOString()
        .replace(/\.\d+Z$/, "Z")
        .replace(/[-:]/g, "");
  return `auto-${failedRegion}-${stamp}`.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 80);
}

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new ConfigError(`${name} is not set: the trigger was deployed without it`);
  return value;
}

/** The regions whose health check the alarm watches (by its `HealthCheckId` dimensions). */
function regionsOfAlarm(
  event: AlarmEvent,
  topology: Topology,
): { ids: string[]; regions: string[] } {
  const ids = event.detail.configuration.metrics.flatMap((m) => {
    const id = m.metricStat?.metric.dimensions?.HealthCheckId;
    return id ? [id] : [];
  });
  const regions = Object.entries(topology.regions)
    .filter(([, r]) => ids.includes(r.route53.healthCheckId))
    .map(([name]) => name);
  return { ids, regions };
}

const healthCheckOf = (topology: Topology, region: string) =>
  topology.regions[region]?.route53.healthCheckId ?? "";

/** On, off, or unreadable (treated as on: automation must not run when the switch cannot be read). */
async function readKillSwitch(name: string): Promise<{ on: boolean; why: string }> {
  try {
    const out = await ssmClient().send(new GetParameterCommand({ Name: name }));
    const value = (out.Parameter?.Value ?? "").trim().toLowerCase();
    return {
      on: (KILL_SWITCH_ON as readonly string[]).includes(value),
      why: `${name} = "${value.slice(0, 20)}"`,
    };
  } catch (e) {
    if ((e as { name?: string }).name === "ParameterNotFound")
      return { on: false, why: `${name} is not set` };
    return { on: true, why: `${name} could not be read (${describe(e)}), treated as on` };
  }
}

async function runningExecutions(client: SFNClient, stateMachineArn: string) {
  const items = [];
  let nextToken: string | undefined;
  do {
    const out = await client.send(
      new ListExecutionsCommand({
        stateMachineArn,
        statusFilter: "RUNNING",
        maxResults: 100,
        ...(nextToken ? { nextToken } : {}),
      }),
    );
    items.push(...(out.executions ?? []));
    nextToken = out.nextToken;
  } while (nextToken);
  return items;
}

/**
 * Why a new failover must wait, or null: another execution is running (ListExecutions), or the
 * platform's last failover that changed something ended within the cooldown (its marker in the
 * table; dry runs and no-ops write none). An execution with this incident's own name does not
 * count: StartExecution then dedupes it (running, same input) or answers ExecutionAlreadyExists.
 */
async function cooldownReason(
  stateMachineArn: string,
  platform: string,
  incident: string,
  minutes: number,
): Promise<{ wait: string | null; sameRunning: boolean }> {
  const client = sfnClient(regionOfArn(stateMachineArn));
  let running: Awaited<ReturnType<typeof runningExecutions>>;
  try {
    running = await runningExecutions(client, stateMachineArn);
  } catch (e) {
    throw awsError(e, `listing executions of ${stateMachineArn}`, UnexpectedError);
  }
  const sameRunning = running.some((e) => e.name === incident);
  const other = running.find((e) => e.name !== incident);
  if (other) return { wait: `execution ${other.name} is running`, sameRunning };
  if (minutes === 0) return { wait: null, sameRunning };
  const last = await lastFailover(platform);
  if (!last || last.execution === incident) return { wait: null, sameRunning };
  const ago = Date.now() - Date.parse(last.endedAt);
  if (!(ago < minutes * 60_000)) return { wait: null, sameRunning };
  const what = last.changed.length === 1 ? "1 change" : `${last.changed.length} changes`;
  return {
    wait: `cooldown: failover ${last.execution} changed the platform ${Math.floor(Math.max(0, ago) / 60_000)} min ago (${what}; cooldown ${minutes} min)`,
    sameRunning,
  };
}

/** Starts the failover; a name already used for this incident means it was started before. */
async function startFailover(
  stateMachineArn: string,
  incident: string,
  input: TriggerInput,
): Promise<{ executionArn: string; existed: boolean }> {
  try {
    const out = await sfnClient(regionOfArn(stateMachineArn)).send(
      new StartExecutionCommand({ stateMachineArn, name: incident, input: JSON.stringify(input) }),
    );
    return { executionArn: out.executionArn ?? "", existed: false };
  } catch (e) {
    if ((e as { name?: string }).name === "ExecutionAlreadyExists") {
      return {
        executionArn: `${stateMachineArn.replace(":stateMachine:", ":execution:")}:${incident}`,
        existed: true,
      };
    }
    throw awsError(e, `starting execution ${incident}`, UnexpectedError);
  }
}

const NOTIFY: Partial<Record<TriggerOutcome, string>> = {
  "kill-switch-on": "automatic failover suppressed (kill switch on)",
  cooldown: "automatic failover held back (cooldown)",
  "no-healthy-target": "no healthy failover target",
  notified: "failover recommended",
  started: "automatic failover started",
};

/** Quotes one shell word (POSIX sh), so a printed command can be pasted as it is. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** The command that starts this failover by hand (when the trigger held back or only advised). */
function manualStart(d: TriggerDecision): string | undefined {
  const stateMachineArn = process.env.STATE_MACHINE_ARN;
  if (!d.targetRegion || !stateMachineArn) return undefined;
  const reason =
    d.input?.reason ?? `${d.failedRegion} health check in ALARM (${d.alarmName ?? "alarm"})`;
  return [
    "npx gitops-failover start",
    `--state-machine ${shellQuote(stateMachineArn)}`,
    `--target ${shellQuote(d.targetRegion)}`,
    "--mode ungraceful",
    `--reason ${shellQuote(reason)}`,
  ].join(" ");
}

/** Publishes the decision for humans; a failure is recorded on the decision, not thrown. */
async function publish(d: TriggerDecision): Promise<TriggerDecision> {
  const what = NOTIFY[d.decision];
  const topic = process.env.TOPIC_ARN;
  if (!what || (d.decision === "started" && d.mode !== "auto")) return d;
  if (!topic)
    return { ...d, problems: [...(d.problems ?? []), "TOPIC_ARN is not set: nobody was told"] };
  const subject = `[gitops-failover] ${d.failedRegion}: ${what}`;
  const lines = [
    subject,
    `Alarm: ${d.alarmName}`,
    `Decision: ${d.decision}: ${d.reason}`,
    ...(d.corroboration
      ? [
          `Checkers failing: ${d.corroboration.failing}/${d.corroboration.checkers} (${d.corroboration.healthCheckId})`,
        ]
      : []),
    ...(d.executionArn
      ? [
          `Execution: ${d.executionArn}`,
          `Watch: npx gitops-failover watch ${shellQuote(d.executionArn)}`,
        ]
      : []),
  ];
  const start = d.decision === "started" ? undefined : manualStart(d);
  if (start) lines.push(`${d.decision === "notified" ? "Start" : "To fail over anyway"}: ${start}`);
  try {
    await snsClient(regionOfArn(topic)).send(
      new PublishCommand({
        TopicArn: topic,
        Subject: subject.slice(0, 99),
        Message: lines.join("\n"),
      }),
    );
    return { ...d, notified: true };
  } catch (e) {
    return {
      ...d,
      problems: [...(d.problems ?? []), `publishing to ${topic} failed: ${describe(e)}`],
    };
  }
}

const OUTCOME: Record<TriggerOutcome, AuditOutcome> = {
  ignored: "SKIPPED",
  "not-corroborated": "SKIPPED",
  "kill-switch-on": "SKIPPED",
  cooldown: "SKIPPED",
  "no-healthy-target": "SKIPPED",
  "already-started": "SKIPPED",
  notified: "DECIDED",
  started: "SUCCEEDED",
  error: "FAILED",
};

/** Events that never name an incident (malformed, unknown alarm) share one chain. */
const UNMATCHED_CHAIN = "trigger-unmatched";

async function record(d: TriggerDecision, startedAt: string): Promise<TriggerDecision> {
  let result = d;
  try {
    await appendAuditEvent({
      execution: d.incident ?? UNMATCHED_CHAIN,
      step: "Trigger",
      actor: d.alarmName ? `trigger:${d.alarmName}` : "trigger",
      action: d.targetRegion
        ? `${d.decision} (${d.failedRegion} -> ${d.targetRegion})`
        : d.decision,
      outcome: OUTCOME[d.decision],
      ...(d.corroboration
        ? { before: { corroboration: d.corroboration, candidates: d.candidates } }
        : {}),
      after: {
        decision: d.decision,
        executionArn: d.executionArn,
        input: d.input,
        notified: d.notified,
      },
      detail: d.reason,
      startedAt,
      endedAt: new Date().toISOString(),
    });
  } catch (e) {
    result = { ...d, problems: [...(d.problems ?? []), `audit append failed: ${describe(e)}`] };
  }
  const level =
    result.problems?.length || d.decision === "error"
      ? "error"
      : NOTIFY[d.decision] && d.decision !== "started"
        ? "warn"
        : "info";
  logger[level](`trigger decision: ${d.decision}`, { decision: result });
  recordTriggerDecision(platformOrUnknown(), d.decision);
  return result;
}

/** The platform to count a decision under; an `error` decision may be about the topology itself. */
function platformOrUnknown(): string {
  try {
    return runtimeTopology().platform;
  } catch {
    return "unknown";
  }
}

/** What the trigger has learned so far: an `error` decision carries it to the audit trail. */
type Progress = Partial<Omit<TriggerDecision, "decision" | "reason" | "notified">>;

/** A region's latest readiness, or undefined when there is none or it cannot be read. */
async function readinessOf(platform: string, region: string) {
  try {
    return await latestReadiness(platform, region);
  } catch (e) {
    logger.warn("latest readiness unreadable: choosing by health alone", {
      region,
      error: describe(e),
    });
    return undefined;
  }
}

/**
 * The target: among the other regions in priority order, the first healthy one (its own health
 * check not failing) whose latest readiness is READY; else the first healthy one. Readiness only
 * orders the healthy candidates, it never rules one out: Plan makes its own live checks.
 */
async function chooseTarget(topology: Topology, failedRegion: string) {
  const threshold = topology.trigger.corroborationThreshold;
  const candidates: NonNullable<TriggerDecision["candidates"]> = [];
  let first: { region: string; readiness: TargetReadiness | undefined } | undefined;
  let ready: typeof first;
  for (const region of otherRegions(topology, failedRegion)) {
    const view = await readHealthCheck(
      healthCheckOf(topology, region),
      roleOf(topology.regions[region]?.route53),
    );
    const healthy = view.checkers > 0 && view.failingFraction < threshold;
    const readiness = healthy ? await readinessOf(topology.platform, region) : undefined;
    candidates.push({
      region,
      failing: view.failing,
      checkers: view.checkers,
      healthy,
      ...(readiness ? { readiness: readiness.verdict } : {}),
    });
    if (!healthy) continue;
    first ??= { region, readiness };
    if (readiness?.verdict === "READY") {
      ready = { region, readiness };
      break;
    }
  }
  const chosen = ready ?? first;
  const r = chosen?.readiness;
  return {
    candidates,
    targetRegion: chosen?.region,
    targetReadiness: r
      ? {
          verdict: r.verdict,
          observedAt: r.observedAt,
          ageSeconds: r.ageSeconds,
          evaluatedIn: r.evaluatedIn,
        }
      : undefined,
  };
}

async function decide(raw: unknown, seen: Progress): Promise<TriggerDecision> {
  const parsed = AlarmEventSchema.safeParse(raw);
  if (!parsed.success) {
    return {
      decision: "ignored",
      reason: `malformed event: ${formatIssues(parsed.error).join("; ")}`,
      notified: false,
    };
  }
  const event = parsed.data;
  const alarmName = event.detail.alarmName;
  const base = { alarmName, notified: false };
  seen.alarmName = alarmName;
  if (event.detail.state.value !== "ALARM") {
    return {
      ...base,
      decision: "ignored",
      reason: `alarm state is ${event.detail.state.value}, not ALARM`,
    };
  }
  const topology = runtimeTopology();
  const { ids, regions } = regionsOfAlarm(event, topology);
  if (ids.length === 0) {
    return {
      ...base,
      decision: "ignored",
      reason: "unknown alarm: its metric has no HealthCheckId dimension",
    };
  }
  const [failedRegion, ...more] = regions;
  if (!failedRegion) {
    return {
      ...base,
      decision: "ignored",
      reason: `unknown alarm: health check ${ids.join(", ")} belongs to no region of the topology`,
    };
  }
  if (more.length) {
    return {
      ...base,
      decision: "ignored",
      reason: `ambiguous alarm: it watches several regions (${regions.join(", ")})`,
    };
  }
  const settings = topology.trigger;
  const incident = incidentName(failedRegion, event.detail.state.timestamp);
  const known = { ...base, failedRegion, incident, mode: settings.mode };
  Object.assign(seen, { failedRegion, incident, mode: settings.mode });

  const corroboration = await readHealthCheck(
    healthCheckOf(topology, failedRegion),
    roleOf(topology.regions[failedRegion]?.route53),
  );
  const counted = `${corroboration.failing}/${corroboration.checkers} checkers failing`;
  const withHealth = { ...known, corroboration };
  seen.corroboration = corroboration;
  if (
    corroboration.checkers === 0 ||
    corroboration.failingFraction < settings.corroborationThreshold
  ) {
    return {
      ...withHealth,
      decision: "not-corroborated",
      reason: `${counted}, below the threshold ${settings.corroborationThreshold}`,
    };
  }

  const { candidates, targetRegion, targetReadiness } = await chooseTarget(topology, failedRegion);
  const assessed = {
    ...withHealth,
    candidates,
    ...(targetRegion ? { targetRegion } : {}),
    ...(targetReadiness ? { targetReadiness } : {}),
  };
  Object.assign(seen, { candidates, targetRegion });

  const killSwitch = await readKillSwitch(settings.killSwitchParameter);
  if (killSwitch.on) {
    return {
      ...assessed,
      decision: "kill-switch-on",
      reason: `kill switch on (${killSwitch.why}); would have failed over to ${targetRegion ?? "no healthy region"}`,
    };
  }
  const stateMachineArn = requiredEnv("STATE_MACHINE_ARN");
  const cooldown = await cooldownReason(
    stateMachineArn,
    topology.platform,
    incident,
    settings.cooldownMinutes,
  );
  if (cooldown.wait) return { ...assessed, decision: "cooldown", reason: cooldown.wait };
  if (!targetRegion) {
    return {
      ...assessed,
      decision: "no-healthy-target",
      reason: `no healthy target: ${candidates.map((c) => `${c.region} ${c.failing}/${c.checkers} failing`).join(", ")}`,
    };
  }

  const input: TriggerInput = {
    targetRegion,
    reason: `${failedRegion} health check ${corroboration.healthCheckId} in ALARM: ${counted}`,
    mode: "ungraceful",
    allowDataLoss: false,
    requestedBy: `trigger:${alarmName}`.slice(0, 128),
    detectedAt: new Date(event.detail.state.timestamp).toISOString(),
    requireApproval: settings.mode === "approval",
    failedRegion,
  };
  const valid = FailoverInputSchema.safeParse(input);
  if (!valid.success)
    throw new ConfigError(
      "the trigger built an invalid execution input",
      formatIssues(valid.error),
    );
  const decided = { ...assessed, targetRegion, input };
  seen.input = input;
  if (settings.mode === "notify") {
    return {
      ...decided,
      decision: "notified",
      reason: `notify mode: failover to ${targetRegion} recommended (${counted})`,
    };
  }
  // Concurrent deliveries of one alarm can all get here, and StartExecution answers each with
  // the same running execution: the claim decides which one started it. The others still call
  // StartExecution (idempotent), so a claimer that died before starting is made good.
  const claimed = await claimIncident(topology.platform, incident);
  let started: Awaited<ReturnType<typeof startFailover>>;
  try {
    started = await startFailover(stateMachineArn, incident, input);
  } catch (e) {
    if (claimed) await unclaimIncident(topology.platform, incident).catch(() => undefined);
    throw e;
  }
  seen.executionArn = started.executionArn;
  if (!claimed || started.existed || cooldown.sameRunning) {
    return {
      ...decided,
      decision: "already-started",
      reason: `already started for this incident: ${incident}`,
      executionArn: started.executionArn,
    };
  }
  const gate = settings.mode === "approval" ? "waiting for approval" : "automatic";
  return {
    ...decided,
    decision: "started",
    reason: `started ${incident} (${gate}): ${counted}`,
    executionArn: started.executionArn,
  };
}

/**
 * Handles one EventBridge alarm event: decides, tells humans where it matters (notify mode,
 * kill switch, cooldown, no healthy target, automatic start), records and logs the decision,
 * returns it. A failure of the trigger itself is recorded as an `error` decision and rethrown.
 */
export async function triggerOnAlarm(event: unknown): Promise<TriggerDecision> {
  const startedAt = new Date().toISOString();
  const seen: Progress = {};
  let decision: TriggerDecision;
  try {
    decision = await decide(event, seen);
  } catch (e) {
    await record(
      { ...seen, decision: "error", reason: `the trigger failed: ${describe(e)}`, notified: false },
      startedAt,
    );
    throw e;
  }
  return record(await publish(decision), startedAt);
}
