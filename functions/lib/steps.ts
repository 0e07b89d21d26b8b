/**
 * The workflow's steps: each reads the topology, resolves its secrets, calls one domain module
 * and returns a small summary for the execution state. Handlers wrap these in middy; the ASL
 * decides the order. Every step reads the current state first, so re-runs and Redrive are safe.
 */
import {
  type ArgoHubConnection,
  checkSync,
  type RevisionJudgement,
  type SyncCheck,
} from "./argocd.ts";
import { appendAuditEvent, readAuditTrail } from "./audit.ts";
import {
  type AuroraTopology,
  assertPromotable,
  checkAurora,
  describeAurora,
  type PromotionPlan,
  promoteAurora,
} from "./aurora.ts";
import {
  type AuroraRaise,
  type AuroraRestoreResult,
  auroraCapacityLine,
  planAuroraCapacity,
  raiseTargetMinCapacity,
  restoreMinCapacity,
  storeRaise,
} from "./aurora-capacity.ts";
import {
  type CapacityPlan,
  capacityEdits,
  capacityLine,
  capacityReads,
  checkCapacity,
  maxReplicasNote,
  planCapacity,
} from "./capacity.ts";
import {
  auroraRole,
  EXECUTION_TIMEOUT_SECONDS,
  type FailoverInput,
  otherRegions,
  parseInput,
  regionOf,
  renderEdit,
  roleOf,
  runtimeTopology,
  secretRole,
  type Topology,
} from "./config.ts";
import {
  ArgoSyncTimeout,
  AuroraPromotionRefused,
  AuroraPromotionTimeout,
  CompensationIncomplete,
  ConfigError,
  describe,
  type ErrorData,
  type FailoverError,
  isFailoverError,
  OldRegionNotFenced,
  TargetUnhealthy,
  TrafficPreconditionFailed,
  TrafficVerifyTimeout,
} from "./errors.ts";
import {
  assertFailbackReady,
  type FloorRestore,
  failbackRefusalOf,
  floorReads,
  floorRestore,
  floorRestoreLine,
  undoneFailover,
} from "./failback.ts";
import { checkFence, recordFence } from "./fence.ts";
import {
  commitRetarget,
  FAILOVER_LOOKBACK_COMMITS,
  type FailoverCommit,
  type GitAuth,
  type GitRepo,
  judgeRevisions,
  type RenderedEdit,
  type RetargetLineage,
  readValues,
  type UndoneValues,
  type ValueChange,
} from "./gitops.ts";
import { readHealthCheck } from "./health.ts";
import { acquireLock } from "./lock.ts";
import { type PollWindow, pollWindow } from "./poll.ts";
import { latestReadiness } from "./readiness.ts";
import { getSecret, type SecretValue } from "./secrets.ts";
import { assertSpokeReady, inspectSpoke } from "./spoke.ts";
import type {
  ArgoProgress,
  AuroraProgress,
  CompensationAction,
  CompensationProgress,
  DemotionState,
  ExecutionRef,
  FailoverState,
  FenceProgress,
  Plan,
  PlatformSnapshot,
  PromotionState,
  RetargetResultState,
  SpokeResult,
  TrafficHealthProgress,
  TrafficProgress,
} from "./state.ts";
import { applyNextStage, checkTargetHealth, readTraffic, type TrafficTopology } from "./traffic.ts";

/** Per-call HTTP bound for spokes: an unreachable region must fail fast. */
export const SPOKE_TIMEOUT_MS = 10_000;

/** Plan's bound on reading a (probably failed) source's capacity in an ungraceful failover. */
const UNGRACEFUL_LIVE_READ_MS = 3_000;

/** The topology's Git branch as the Git module reads it. */
export function gitRepo(t: Topology): GitRepo {
  return { url: t.git.url, branch: t.git.branch, author: t.git.author };
}

/** The Git credentials a Secrets Manager secret holds. */
function gitAuthOf(secret: SecretValue): GitAuth {
  return { token: secret.token, ...(secret.username ? { username: secret.username } : {}) };
}

/** The orchestrator's Git credentials (the push token), through its account's role if any. */
export async function gitAuth(t: Topology): Promise<GitAuth> {
  const arn = t.git.credentialsSecretArn;
  return gitAuthOf(await getSecret(t.git.credentialsSecretArn, secretRole(t, arn)));
}

/** The read-only Git credentials AwaitArgoSync judges commits on top with (never the push token). */
async function gitReadAuth(t: Topology): Promise<GitAuth> {
  if (!t.git.readCredentialsSecretArn)
    throw new ConfigError("git.readCredentialsSecretArn is not set in the topology");
  const arn = t.git.readCredentialsSecretArn;
  return gitAuthOf(await getSecret(t.git.readCredentialsSecretArn, secretRole(t, arn)));
}

/** The topology's Aurora view: global cluster and one member per region. */
export function auroraTopology(t: Topology): AuroraTopology {
  return {
    globalClusterIdentifier: t.aurora.globalClusterIdentifier,
    maxRpoSeconds: t.aurora.maxRpoSeconds,
    members: Object.fromEntries(
      Object.entries(t.regions).map(([name, r]) => [name, r.aurora.clusterArn]),
    ),
    roles: Object.fromEntries(
      Object.keys(t.regions).flatMap((name) => {
        const role = auroraRole(t, name);
        return role ? [[name, role]] : [];
      }),
    ),
  };
}

/** The topology's traffic view: endpoint groups or weighted records, and health checks. */
export function trafficTopology(t: Topology): TrafficTopology {
  return {
    mode: t.traffic.mode,
    ...(t.traffic.hostedZoneId ? { hostedZoneId: t.traffic.hostedZoneId } : {}),
    ...(t.traffic.recordName ? { recordName: t.traffic.recordName } : {}),
    ...(roleOf(t.traffic) ? { zoneRole: roleOf(t.traffic) } : {}),
    regions: Object.fromEntries(
      Object.entries(t.regions).map(([name, r]) => [
        name,
        {
          healthCheckId: r.route53.healthCheckId,
          ...(r.globalAccelerator
            ? { endpointGroupArn: r.globalAccelerator.endpointGroupArn }
            : {}),
          ...(r.route53.setIdentifier ? { setIdentifier: r.route53.setIdentifier } : {}),
          ...(roleOf(r.globalAccelerator) ? { gaRole: roleOf(r.globalAccelerator) } : {}),
          ...(roleOf(r.route53) ? { healthCheckRole: roleOf(r.route53) } : {}),
        },
      ]),
    ),
  };
}

function editsFor(t: Topology, region: string): RenderedEdit[] {
  return t.git.retarget.map((e) => renderEdit(e, region));
}

/** The edits that make `region` passive: the demote edits, or none with one-commit retarget edits. */
function demoteEditsFor(t: Topology, region: string): RenderedEdit[] {
  return (t.git.demote ?? []).map((e) => renderEdit(e, region));
}

/**
 * Reads Git, Aurora and traffic as they are now; Aurora is asked in the target region first.
 * With `lookback`, also the newest failover commit among that many commits of the branch.
 */
export async function snapshot(
  t: Topology,
  targetRegion: string,
  lookback = 0,
  reads: RenderedEdit[] = [],
  undone: RenderedEdit[] = [],
): Promise<
  PlatformSnapshot & {
    lastFailover?: FailoverCommit;
    /** The values of `reads`, in the same clone (when any were asked for). */
    read?: { file: string; path: string; value: unknown }[];
    /** The values of `undone` around the newest failover commit (when asked for and found). */
    undone?: UndoneValues;
  }
> {
  const regions = Object.keys(t.regions);
  const edits = regions.flatMap((r) => [...editsFor(t, r), ...demoteEditsFor(t, r)]);
  const [git, aurora, traffic] = await Promise.all([
    readValues(gitRepo(t), await gitAuth(t), [...edits, ...reads], { lookback, undone }),
    describeAurora(auroraTopology(t), [targetRegion, ...otherRegions(t, targetRegion)]),
    readTraffic(trafficTopology(t)),
  ]);
  return {
    ...gitRegionsOf(t, git.values),
    gitHead: git.head,
    auroraWriterRegion: aurora.writerRegion ?? null,
    ...(aurora.failoverState ? { auroraFailoverState: aurora.failoverState } : {}),
    trafficDials: traffic.dials,
    ...(git.lastFailover ? { lastFailover: git.lastFailover } : {}),
    ...(reads.length ? { read: git.values.slice(edits.length) } : {}),
    ...(git.undone ? { undone: git.undone } : {}),
  };
}

/**
 * What Git says of each region: active (every retarget edit rendered for it holds), passive
 * (every demote edit holds, or — with one-commit retarget edits — not active), and the one
 * active region when exactly one is.
 */
function gitRegionsOf(
  t: Topology,
  values: { file: string; path: string; value: unknown }[],
): Pick<PlatformSnapshot, "activeRegion" | "activeRegions" | "passiveRegions"> {
  const regions = Object.keys(t.regions);
  const holds = (es: RenderedEdit[]) =>
    es.every((e) => values.find((v) => v.file === e.file && v.path === e.path)?.value === e.value);
  const activeRegions = regions.filter((r) => holds(editsFor(t, r)));
  const passiveRegions = regions.filter((r) =>
    t.git.demote ? holds(demoteEditsFor(t, r)) : !activeRegions.includes(r),
  );
  return {
    activeRegion: activeRegions.length === 1 ? (activeRegions[0] ?? null) : null,
    activeRegions,
    passiveRegions,
  };
}

/** A snapshot some of whose parts could not be read: those are null and named in `unreadable`. */
export type PartialSnapshot = { [K in keyof PlatformSnapshot]-?: PlatformSnapshot[K] | null } & {
  /** One line per part that could not be read: which, and the error. */
  unreadable: string[];
};

/**
 * The reads of {@link snapshot}, each on its own: for a report after Plan failed, where one
 * unreachable part (Git with a rotated token) must not hide the others (writer, dials).
 */
export async function partialSnapshot(t: Topology, targetRegion: string): Promise<PartialSnapshot> {
  const regions = Object.keys(t.regions);
  const edits = regions.flatMap((r) => [...editsFor(t, r), ...demoteEditsFor(t, r)]);
  const [git, aurora, traffic] = await Promise.allSettled([
    gitAuth(t).then((auth) => readValues(gitRepo(t), auth, edits)),
    describeAurora(auroraTopology(t), [targetRegion, ...otherRegions(t, targetRegion)]),
    readTraffic(trafficTopology(t)),
  ]);
  const unreadable: string[] = [];
  const read = <T>(part: string, r: PromiseSettledResult<T>): T | undefined => {
    if (r.status === "fulfilled") return r.value;
    unreadable.push(`${part}: ${describe(r.reason)}`);
    return undefined;
  };
  const values = read("Git", git);
  const writer = read("Aurora", aurora);
  return {
    ...(values
      ? gitRegionsOf(t, values.values)
      : { activeRegion: null, activeRegions: null, passiveRegions: null }),
    gitHead: values?.head ?? null,
    auroraWriterRegion: writer?.writerRegion ?? null,
    auroraFailoverState: writer?.failoverState ?? null,
    trafficDials: read("traffic", traffic)?.dials ?? null,
    unreadable,
  };
}

/**
 * The region serving before a failover to `target`: Git's one active region, the top dial, any
 * other region Git still makes active, the writer.
 */
export function sourceRegionOf(
  before: Pick<
    PartialSnapshot,
    "activeRegion" | "activeRegions" | "trafficDials" | "auroraWriterRegion"
  >,
  target: string,
): string | null {
  return (
    [
      before.activeRegion,
      before.trafficDials ? maxDialRegion(before.trafficDials) : null,
      ...(before.activeRegions ?? []),
      before.auroraWriterRegion,
    ].find((r): r is string => !!r && r !== target) ?? null
  );
}

/** The regions a two-phase retarget still has to make passive once traffic is on `target`. */
function regionsToDemote(t: Topology, s: PlatformSnapshot, target: string): string[] {
  if (!t.git.demote) return [];
  return Object.keys(t.regions).filter((r) => r !== target && !s.passiveRegions.includes(r));
}

function trafficAtTarget(dials: Record<string, number>, target: string): boolean {
  return Object.entries(dials).every(([region, dial]) =>
    region === target ? dial === 100 : dial === 0,
  );
}

/**
 * Plan: validates the input against the topology, snapshots the platform and decides what is
 * left to do. Nothing is changed here, so a dry run ends after it.
 */
export async function planStep(event: {
  input: unknown;
  execution: ExecutionRef;
}): Promise<FailoverState> {
  const t = runtimeTopology();
  const input = parseInput(event.input, t);
  const target = input.targetRegion;
  // Only an automatic execution (the trigger sets failedRegion) is held back by the cooldown.
  const lookback = input.failedRegion || input.failback ? FAILOVER_LOOKBACK_COMMITS : 0;
  // A failback reads the capacity values the failover it undoes changed in the region it leaves.
  const restoreReads = input.failback ? floorReads(t, target) : [];
  const { lastFailover, read, undone, ...before } = await snapshot(
    t,
    target,
    lookback,
    [...capacityReads(t, target), ...restoreReads],
    restoreReads,
  );
  const sourceRegion = sourceRegionOf(before, target);
  // An alarm on a region that is not serving (a passive one) is no reason to move anything.
  const bystander = !!input.failedRegion && input.failedRegion !== sourceRegion;
  // Only an automatic execution is held back by the cooldown (a failback reads the history too).
  const held =
    bystander || !input.failedRegion ? undefined : cooldownHold(t, event.execution, lastFailover);
  const idle = bystander || !!held;
  const needs = {
    retarget: !idle && !before.activeRegions.includes(target),
    aurora: !idle && before.auroraWriterRegion !== target,
    traffic: !idle && !trafficAtTarget(before.trafficDials, target),
    demote: !idle && regionsToDemote(t, before, target).length > 0,
  };
  const demoteRegions = needs.demote ? regionsToDemote(t, before, target) : [];
  const noop = !needs.retarget && !needs.aurora && !needs.traffic && !needs.demote;
  if (!noop) await assertTargetHealthy(t, target);
  // A failback's pre-checks run in VerifySpoke (they read the region's spoke and Argo CD).
  const undoes = input.failback ? undoneFailover(lastFailover, sourceRegion) : null;
  const floors =
    undoes && sourceRegion && undone?.execution === undoes
      ? floorRestore(t, sourceRegion, undone, read ?? [])
      : undefined;
  const failback = input.failback ? { undoes, ...(floors ? { floors } : {}) } : undefined;
  const promotion = needs.aurora ? await checkPromotion(t, input) : undefined;
  // Capacity parity for Aurora: the source writer's ACUs against the target's range (and the
  // source's own raise to give back), for PromoteAurora to act on before its call; read while the
  // apps' figures are (both may wait on a dead source's bound).
  const auroraPlanned = (
    needs.aurora
      ? planAuroraCapacity(
          t.capacity,
          auroraTopology(t),
          t.platform,
          input,
          before.auroraWriterRegion,
          input.mode === "ungraceful" ? UNGRACEFUL_LIVE_READ_MS : SPOKE_TIMEOUT_MS,
        )
      : Promise.resolve(undefined)
  ).then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  // Capacity parity: the floors the retarget commit writes, from the source's live or stored
  // figure. Ungraceful: the source is likely down, so its live read gets a short bound (RTO).
  const capacity = needs.retarget
    ? await planCapacity(
        t,
        input,
        sourceRegion,
        input.mode === "ungraceful" ? UNGRACEFUL_LIVE_READ_MS : SPOKE_TIMEOUT_MS,
        Date.now(),
        read,
      )
    : undefined;
  const aurora = await auroraPlanned;
  if ("error" in aurora) throw aurora.error;
  const auroraCapacity = aurora.value;
  // Informs, never decides: Plan's own live checks above are what hold the failover back.
  const readiness = await latestReadiness(t.platform, target).catch(() => undefined);
  const plan: Plan = {
    ...(readiness ? { readiness } : {}),
    ...(failback ? { failback } : {}),
    ...(capacity ? { capacity } : {}),
    ...(auroraCapacity ? { auroraCapacity } : {}),
    sourceRegion,
    targetRegion: target,
    before,
    needs,
    noop,
    order: input.mode === "graceful" ? "sequential" : "parallel",
    demoteRegions,
    retarget: t.git.demote ? "two-phase" : "one-commit",
    approvalTimeoutSeconds: t.timeouts.approvalSeconds,
    actions: bystander
      ? [
          `nothing to do: ${input.failedRegion} failed but ${sourceRegion ?? "another region"} is serving`,
        ]
      : held
        ? [held]
        : [
            ...planActions(t, input, before, needs, promotion),
            ...(capacity ? [capacityLine(capacity)] : []),
            ...(floors ? [floorRestoreLine(floors)] : []),
            ...(auroraCapacity ? [auroraCapacityLine(auroraCapacity)] : []),
          ],
  };
  if (!input.dryRun) {
    await acquireLock(
      t.platform,
      { name: event.execution.name, arn: event.execution.id },
      LOCK_LEASE_SECONDS,
    );
  }
  return { execution: event.execution, input, plan };
}

/**
 * Why an automatic failover must wait, or undefined: the newest failover commit in Git is another
 * execution's and younger than the trigger's cooldown. Git is global, so this holds whichever
 * orchestrator region made that failover (the trigger's own cooldown marker is per region).
 */
function cooldownHold(
  t: Topology,
  execution: ExecutionRef,
  last: FailoverCommit | undefined,
): string | undefined {
  const minutes = t.trigger.cooldownMinutes;
  if (!last || last.execution === execution.id) return undefined;
  const ago = Math.max(0, Date.now() - Date.parse(last.committedAt));
  if (!(ago < minutes * 60_000)) return undefined;
  const name = last.execution.split(":").at(-1);
  return `held back: execution ${name} failed over to ${last.target ?? "another region"} ${Math.floor(ago / 60_000)} min ago; cooldown ${minutes} min; an operator can start one by hand`;
}

/** The lock outlives the longest execution (the ASL's TimeoutSeconds) so it never lapses mid-run. */
export const LOCK_LEASE_SECONDS = EXECUTION_TIMEOUT_SECONDS + 300;

/**
 * PromoteAurora's checks, run before anything changes: the Parallel commits to Git while Aurora
 * is promoted, so a refusal found only there would leave Git switched and the writer and traffic
 * in the source. A refusal fails the execution here; a dry run reports it as its Aurora action
 * ("would refuse: ...") and succeeds, as an SRE asking "what would happen?" expects. PromoteAurora
 * runs the same checks again (things change in between).
 */
async function checkPromotion(
  t: Topology,
  input: FailoverInput,
): Promise<PromotionPlan | AuroraPromotionRefused> {
  const req = {
    targetRegion: input.targetRegion,
    mode: input.mode,
    allowDataLoss: input.allowDataLoss,
  };
  try {
    return await assertPromotable(auroraTopology(t), req, "Plan");
  } catch (e) {
    if (input.dryRun && e instanceof AuroraPromotionRefused) return e;
    if (input.failback && e instanceof AuroraPromotionRefused)
      throw failbackRefusalOf(input.targetRegion, e);
    throw e;
  }
}

/** Refuses a target whose own Route 53 health check is failing: moving there would not help. */
async function assertTargetHealthy(t: Topology, target: string): Promise<void> {
  const { route53 } = regionOf(t, target);
  const health = await readHealthCheck(route53.healthCheckId, roleOf(route53));
  if (health.failingFraction >= t.trigger.corroborationThreshold) {
    throw new TargetUnhealthy(
      `[Plan] ${target} is failing its own health check (${health.failing}/${health.checkers} Route 53 checkers): refusing to fail over into it; nothing was changed`,
      [`choose another region (gitops-failover validate-config lists them) or fix ${target} first`],
    );
  }
}

/** The region with the most traffic (users are served there), or null when none has any. */
export function maxDialRegion(dials: Record<string, number>): string | null {
  const top = Object.entries(dials).sort(([, a], [, b]) => b - a)[0];
  return top && top[1] > 0 ? top[0] : null;
}

function planActions(
  t: Topology,
  input: FailoverInput,
  before: PlatformSnapshot,
  needs: Plan["needs"],
  promotion: PromotionPlan | AuroraPromotionRefused | undefined,
): string[] {
  const target = input.targetRegion;
  const actions = [
    `verify spoke(s) ${regionOf(t, target)
      .spokes.map((s) => s.name)
      .join(", ")} in ${target}`,
  ];
  const phase = t.git.demote ? " (the serving region stays active until traffic has moved)" : "";
  if (needs.retarget) {
    for (const e of editsFor(t, target))
      actions.push(`commit ${e.file} ${e.path} = ${String(e.value)} on ${t.git.branch}${phase}`);
    actions.push(
      `wait for Argo CD: apps matching ${t.argocd.appSelector} Synced at the commit and Healthy`,
    );
  }
  if (needs.aurora) {
    const when = !needs.retarget
      ? ""
      : input.mode === "graceful"
        ? " (once the apps are Synced and Healthy, so traffic can follow at once)"
        : " (in parallel with the apps: ungraceful, the source is down)";
    actions.push(`${auroraAction(t, input, before, promotion)}${when}`);
  }
  if (needs.traffic) {
    actions.push(
      `shift traffic to ${target} in stages ${t.traffic.stages.join("%, ")}% (${t.traffic.mode})`,
    );
  }
  if (needs.demote) {
    for (const region of regionsToDemote(t, before, target))
      for (const e of demoteEditsFor(t, region))
        actions.push(
          `once traffic is on ${target}: commit ${e.file} ${e.path} = ${String(e.value)} (make ${region} passive)`,
        );
  }
  return actions;
}

/** The plan's Aurora line: what PromoteAurora will do, as Plan's checks found it. */
function auroraAction(
  t: Topology,
  input: FailoverInput,
  before: PlatformSnapshot,
  promotion: PromotionPlan | AuroraPromotionRefused | undefined,
): string {
  const target = input.targetRegion;
  const move = `${before.auroraWriterRegion ?? "?"} -> ${target}`;
  const cluster = `Aurora ${t.aurora.globalClusterIdentifier}`;
  const how = input.mode === "graceful" ? "switchover" : "failover (AllowDataLoss, RPO guard)";
  if (promotion instanceof AuroraPromotionRefused) {
    return `would refuse: ${cluster} ${how} ${move}: ${promotion.message.replace(/^\[Plan\] /, "")}`;
  }
  if (promotion?.skipped) {
    return promotion.action === "none"
      ? `${cluster}: ${target} is already the writer`
      : `${cluster}: a ${promotion.action} to ${target} is already under way; wait for it`;
  }
  const lag =
    promotion?.rpoLagSeconds !== undefined
      ? `, RPO lag ${promotion.rpoLagSeconds}s (max ${t.aurora.maxRpoSeconds}s${input.allowDataLoss ? ", loss accepted" : ""})`
      : input.allowDataLoss && input.mode === "ungraceful"
        ? ", RPO lag unknown (loss accepted)"
        : "";
  const where = promotion?.calledIn ? `, asked in ${promotion.calledIn}` : "";
  return `${cluster}: ${how} ${move}${where}${lag}`;
}

/** VerifySpoke: every spoke of the target region reachable, Ready and with its secrets in place. */
export async function verifySpokeStep(state: FailoverState): Promise<SpokeResult> {
  const t = runtimeTopology();
  await recordApproval(state);
  const spokes = regionOf(t, state.plan.targetRegion).spokes;
  const reports = await Promise.all(
    spokes.map(async (s) => {
      const { token } = await getSecret(s.tokenSecretArn, secretRole(t, s.tokenSecretArn));
      const report = await inspectSpoke(
        { name: s.name, apiServer: s.apiServer, caData: s.caData, token },
        {
          minReadyNodes: s.minReadyNodes,
          namespaces: s.namespaces,
          ...(s.secretOperators.externalSecrets
            ? { externalSecrets: s.secretOperators.externalSecrets }
            : {}),
          ...(s.secretOperators.sealedSecrets
            ? { sealedSecrets: s.secretOperators.sealedSecrets }
            : {}),
        },
        { timeoutMs: SPOKE_TIMEOUT_MS },
      );
      assertSpokeReady(report);
      return { spoke: report.spoke, readyNodes: report.readyNodes, checks: report.checks.length };
    }),
  );
  const failbackChecks = state.input.failback
    ? await assertFailbackReady(t, state.plan.targetRegion, state.plan.before)
    : undefined;
  return { status: "SUCCEEDED", spokes: reports, ...(failbackChecks ? { failbackChecks } : {}) };
}

/**
 * Appends the operator's answer to the audit trail: it arrives through SendTaskSuccess, which
 * runs no code of ours, so the first step after Approval records who approved, when (this
 * step's start: Step Functions starts it as the answer lands) and how long the request waited.
 * Once per execution: a retried VerifySpoke finds the record there.
 */
async function recordApproval(state: FailoverState): Promise<void> {
  if (!state.approval) return;
  const events = await readAuditTrail(state.execution.name);
  if (events.some((e) => e.step === "Approval" && e.outcome === "DECIDED")) return;
  const asked = events.find((e) => e.step === "Approval");
  const askedAt = asked?.startedAt ?? asked?.recordedAt;
  const now = new Date();
  const waitedSeconds = askedAt
    ? Math.max(0, Math.round((now.getTime() - Date.parse(askedAt)) / 1000))
    : null;
  const by = state.approval.approvedBy ?? "unknown";
  const principal = state.approval.principal ?? null;
  await appendAuditEvent({
    execution: state.execution.name,
    step: "Approval",
    actor: by,
    action: "an operator approved the failover",
    outcome: "DECIDED",
    after: {
      approvedBy: by,
      principal,
      approvedAt: now.toISOString(),
      askedAt: askedAt ?? null,
      waitedSeconds,
    },
    detail: `approved by ${by}${principal ? ` (verified principal ${principal})` : ""}${waitedSeconds !== null ? ` after ${waitedSeconds} s` : ""}`,
    ...(askedAt ? { startedAt: askedAt } : {}),
    endedAt: now.toISOString(),
  });
}

/** One line, no control characters: a reason typed into the console goes into a Git trailer. */
function trailerValue(text: string): string {
  return text.replace(/\s+/g, " ").trim().slice(0, 200);
}

/**
 * The trailers of every commit a failover makes: the execution (the cross-region guard reads
 * it), the target, why and who, and which of its commits this is.
 */
function trailers(
  state: FailoverState,
  phase: "activate" | "demote" | "compensate",
): Record<string, string> {
  return {
    "Failover-Execution": state.execution.id,
    "Failover-Target": state.plan.targetRegion,
    "Failover-Phase": phase,
    "Failover-Reason": trailerValue(state.input.reason),
    "Requested-By": trailerValue(state.input.requestedBy),
  };
}

/**
 * CommitRetarget: the Git commit that makes the target region active. With demote edits in the
 * topology (two-phase), the source stays active and keeps its size until DemoteSource; with
 * one-commit edits, the same commit makes the old region passive.
 */
export async function commitRetargetStep(state: FailoverState): Promise<RetargetResultState> {
  const t = runtimeTopology();
  const target = state.plan.targetRegion;
  const subject = `failover(${t.platform}): make ${target} active`;
  const capacity = state.plan.capacity;
  const floors = capacityEdits(capacity);
  const isFloor = (c: ValueChange) => floors.some((f) => f.file === c.file && f.path === c.path);
  // One-commit retarget: this commit makes the old region passive, so a failback restores its floors here.
  const restore = t.git.demote
    ? { edits: [], body: "" }
    : restoredFloors(
        state.plan.failback?.floors,
        state.plan.sourceRegion ? [state.plan.sourceRegion] : [],
      );
  const intro = `Source region: ${state.plan.sourceRegion ?? "unknown"}. Mode: ${state.input.mode}.${t.git.demote ? " The source stays active until traffic has moved (two-phase retarget)." : ""}`;
  const result = await commitRetarget(
    gitRepo(t),
    await gitAuth(t),
    [...editsFor(t, target), ...floors, ...restore.edits],
    {
      subject,
      body: capacity
        ? (changes) => `${intro}\n\n${capacityBody(capacity, changes)}${restore.body}`
        : `${intro}${restore.body}`,
      trailers: trailers(state, "activate"),
    },
    { maxAttempts: t.git.pushAttempts, plannedHead: state.plan.before.gitHead },
  );
  return {
    status: "SUCCEEDED",
    skipped: result.skipped,
    sha: result.sha,
    previousSha: result.previousSha,
    attempts: result.attempts,
    changes: result.changes.filter((c) => !isFloor(c)),
    ...(floors.length ? { floors: result.changes.filter(isFloor) } : {}),
    subject,
  };
}

/**
 * The judge of revisions Argo CD reports other than the retarget commit (commits pushed on top
 * of it): a descendant that still makes the target active counts as the commit. Git that cannot
 * be read leaves those apps pending (the poll's deadline names why), never failing the poll.
 */
function retargetJudge(
  t: Topology,
  state: FailoverState,
  target: string,
  sha: string,
  auth: () => Promise<GitAuth>,
  lineage: Pick<RetargetLineage, "edits" | "claim"> = { edits: editsFor(t, target) },
): (revisions: string[]) => Promise<Map<string, RevisionJudgement>> {
  const ancestors = [
    state.converge?.retarget?.previousSha ?? state.retarget?.previousSha,
    state.plan.before.gitHead,
    state.converge?.retarget?.sha ?? state.retarget?.sha,
  ].filter((a): a is string => !!a && a !== sha);
  // One bound for all the Git work of this poll, however many times Argo CD's answer asks.
  const until = Date.now() + t.argocd.requestTimeoutSeconds * 1000;
  return async (revisions) => {
    try {
      return await judgeRevisions(
        gitRepo(t),
        await auth(),
        { sha, target, ...lineage, ancestors },
        revisions,
        { timeoutMs: Math.max(1, until - Date.now()) },
      );
    } catch (e) {
      const reason = `Git could not be read to judge it: ${describe(e)}`;
      return new Map(revisions.map((r) => [r, { status: "pending", reason }]));
    }
  };
}

/**
 * A failback's restore of the capacity values the failover it undoes raised in a region this
 * commit makes passive: the edits (back to the Git baseline) and the commit message's paragraph.
 */
function restoredFloors(
  floors: FloorRestore | undefined,
  passive: string[],
): { edits: RenderedEdit[]; body: string } {
  if (!floors || !passive.includes(floors.region)) return { edits: [], body: "" };
  return {
    edits: floors.edits.map((e) => ({ file: e.file, path: e.path, value: e.to })),
    body: `\n\nFailback: ${floorRestoreLine(floors)}.`,
  };
}

/**
 * The commit message's capacity lines: where the figures came from, then per app its old and new
 * floor and the observed figure it follows (or that no floor was committed).
 */
function capacityBody(capacity: CapacityPlan, changes: ValueChange[]): string {
  const head =
    capacity.source === "unknown"
      ? `Capacity: the source's capacity is UNKNOWN (${capacity.liveError ?? "no figure"}; nothing stored); no floor committed, the target runs its Git baseline.`
      : `Capacity (${capacity.source === "live" ? "live" : "stored 24-hour maximum"} from ${capacity.sourceRegion ?? "?"}, observed ${capacity.observedAt ?? "?"}):`;
  const lines = capacity.apps
    .filter((a) => a.committed !== null)
    .map((a) => {
      const change = changes.find((c) => c.file === a.file && c.path === a.path);
      return `- ${a.app}: ${a.path} ${String(change?.from ?? "unset")} -> ${String(a.committed)} (observed ${String(a.observed)})${maxReplicasNote(a)}`;
    });
  return [head, ...lines].join("\n");
}

/** The Argo CD hubs with their tokens (each read through its account's role). */
export async function argoHubs(t: Topology): Promise<ArgoHubConnection[]> {
  return Promise.all(
    t.argocd.hubs.map(async (h) => ({
      name: h.name,
      url: h.url,
      token: (await getSecret(h.tokenSecretArn, secretRole(t, h.tokenSecretArn))).token,
      ...(h.caData ? { caData: h.caData } : {}),
    })),
  );
}

function timedOut(
  error: ErrorData,
  window: { startedAt: string; deadline: string; polls: number },
) {
  return { status: "FAILED" as const, ...window, error };
}

/**
 * Errors a poll outlives until its deadline: the Argo CD hubs or an AWS API not answering for a
 * while (the hub struggles exactly during a regional failure, argo-cd #19816). The ASL's Retry
 * alone (~30 s) would fail a failover whose deadline is minutes away. StepTimeout is not here:
 * middy throws it outside the step, so the ASL's Retry handles it.
 */
const OUTLIVED = new Set(["ArgoUnreachable", "AwsUnavailable", "AwsThrottled"]);

/** The latest transient error of a poll window, and the poll that met it. */
interface PollNote {
  lastError?: ErrorData & { poll: number };
}

/** A transient error as the poll's note; anything else (auth, config, a bug) is thrown on. */
function outlived(e: unknown, poll: number): ErrorData & { poll: number } {
  if (!isFailoverError(e) || !OUTLIVED.has(e.name)) throw e;
  return { name: e.name, message: e.message, poll };
}

/** The timeout's detail line for the latest transient error of the window, if any. */
function lastErrorDetail(note: PollNote["lastError"]): string[] {
  return note ? [`poll ${note.poll} failed with ${note.name}: ${note.message}`] : [];
}

/**
 * A poll that met an error: a transient one leaves the poll IN_PROGRESS (with what earlier polls
 * found, `known`) until the deadline, then FAILED with the step's timeout error naming it;
 * anything else is thrown on.
 */
function outage<K extends object>(
  e: unknown,
  window: PollWindow,
  known: K,
  timeout: (lastError: ErrorData & { poll: number }) => FailoverError,
) {
  const lastError = outlived(e, window.polls);
  const progress = { ...window, ...known, lastError };
  if (!window.expired) return { ...progress, status: "IN_PROGRESS" as const };
  return { ...progress, ...timedOut(timeout(lastError).toData(), window) };
}

/**
 * AwaitArgoSync: one poll of Argo CD; FAILED with ArgoSyncTimeout once the deadline passes. A
 * poll no hub answers is IN_PROGRESS with `lastError` until the deadline, which then names it;
 * the first poll a hub answers refreshes (and syncs) as the first poll would have.
 */
export async function awaitArgoSyncStep(state: FailoverState): Promise<ArgoProgress & PollNote> {
  const t = runtimeTopology();
  const revision = state.retarget?.sha;
  if (!revision)
    throw new TrafficPreconditionFailed("AwaitArgoSync ran without a commit (state.retarget.sha)");
  const previous: (ArgoProgress & PollNote) | undefined = state.argo;
  const seconds = t.timeouts.argoSyncSeconds;
  const window = pollWindow(previous, seconds);
  const sha = revision.slice(0, 7);
  let result: SyncCheck;
  try {
    result = await checkSync({
      hubs: await argoHubs(t),
      selector: t.argocd.appSelector,
      ...(t.argocd.appNamespace ? { appNamespace: t.argocd.appNamespace } : {}),
      clusters: regionOf(t, state.plan.targetRegion).spokes.map((s) => s.argocdCluster),
      revision,
      refresh: t.argocd.refresh,
      webhook: {
        repoUrl: t.argocd.webhookRepoUrl ?? t.git.url,
        branch: t.git.branch,
        ...(state.retarget?.previousSha ? { previousRevision: state.retarget.previousSha } : {}),
      },
      sync: t.argocd.sync,
      // `hub` is set once a hub answered in this window: until then no refresh was made.
      firstPoll: window.polls === 1 || !previous?.hub,
      timeoutMs: t.argocd.requestTimeoutSeconds * 1000,
      acceptProgressing: progressingAccepted(state),
      // Commits on top are judged with the read-only token, never the push token.
      ...(t.git.readCredentialsSecretArn
        ? {
            judgeRevisions: retargetJudge(t, state, state.plan.targetRegion, revision, () =>
              gitReadAuth(t),
            ),
          }
        : {}),
    });
  } catch (e) {
    const known = previous?.hub
      ? { hub: previous.hub, total: previous.total, done: previous.done, pending: previous.pending }
      : {};
    return outage(
      e,
      window,
      { ...known, revision },
      (last) =>
        new ArgoSyncTimeout(
          `[AwaitArgoSync] apps not confirmed Synced at ${sha} and Healthy after ${seconds}s: the last poll failed with ${last.name}`,
          lastErrorDetail(last),
        ),
    );
  }
  const progress = {
    ...window,
    hub: result.hub,
    revision,
    total: result.total,
    done: result.done,
    pending: result.pending.slice(0, 10),
    ...(result.acceptedRevisions ? { acceptedRevisions: result.acceptedRevisions } : {}),
    ...(result.webhook ? { webhook: result.webhook } : {}),
    ...(result.progressing
      ? { progressing: result.progressing, progressingCount: result.progressingCount }
      : {}),
    ...(previous?.lastError ? { lastError: previous.lastError } : {}),
  };
  if (result.status === "IN_PROGRESS" && window.expired) {
    const pending = result.pending.slice(0, 5).map((p) => `${p.name}: ${p.reason}`);
    return {
      ...progress,
      ...timedOut(
        new ArgoSyncTimeout(
          `[AwaitArgoSync] ${result.total - result.done} of ${result.total} apps not Synced at ${sha} and Healthy after ${seconds}s`,
          [...pending, ...lastErrorDetail(previous?.lastError)],
        ).toData(),
        window,
      ),
    };
  }
  return { ...progress, status: result.status, ...(result.error ? { error: result.error } : {}) };
}

/** Bound on each capacity-parity call PromoteAurora makes before its promotion call. */
const AURORA_CAPACITY_CALL_MS = 5_000;

/**
 * An ungraceful run whose capacity parity committed floors and asks for less than all of them
 * Ready: the floors' Deployments (`namespace/name`), whose Progressing (a rollout waiting for
 * nodes) Argo CD's check accepts, since the capacity gate in the same loop holds each floor to
 * `minimumSuccessPercent` Ready before traffic moves. Otherwise a target short of nodes would stay
 * Progressing past Argo CD's deadline, and the lower minimum would never take effect.
 */
function progressingAccepted(state: FailoverState): string[] {
  const c = state.plan.capacity;
  if (state.input.mode !== "ungraceful" || !c || c.minimumSuccessPercent >= 100) return [];
  return c.apps.filter((a) => a.committed !== null).map((a) => a.app);
}

/**
 * PromoteAurora: switchover (graceful) or guarded failover (ungraceful) after Plan's checks run
 * again; skipped when already writer. `startedDespite`: the call's error, when the re-read showed
 * the promotion started anyway.
 */
export async function promoteAuroraStep(
  state: FailoverState,
): Promise<PromotionState & { startedDespite?: string }> {
  const t = runtimeTopology();
  const topo = auroraTopology(t);
  const capacity = state.plan.auroraCapacity;
  let raise: AuroraRaise | undefined;
  let restore: AuroraRestoreResult | undefined;
  // Capacity parity: once the checks pass and right before the call, the cluster the writer
  // leaves gets back a MinCapacity an earlier promotion raised (a failback's above all), then the
  // target's is raised (and kept until the writer leaves it in turn).
  const beforeCall = capacity
    ? async () => {
        if (capacity.restore)
          restore = await restoreMinCapacity(
            t.platform,
            topo,
            capacity.restore,
            AURORA_CAPACITY_CALL_MS,
          );
        const raised = await raiseTargetMinCapacity(
          topo,
          capacity,
          state.input.mode,
          AURORA_CAPACITY_CALL_MS,
        );
        raise = await storeRaise(t.platform, raised, state.execution.name);
      }
    : undefined;
  const result = await promoteAurora(
    topo,
    {
      targetRegion: state.plan.targetRegion,
      mode: state.input.mode,
      allowDataLoss: state.input.allowDataLoss,
    },
    beforeCall,
  );
  return {
    ...(raise ? { auroraCapacity: raise } : {}),
    ...(restore ? { auroraRestore: restore } : {}),
    status: "SUCCEEDED",
    skipped: result.skipped,
    action: result.action,
    ...(result.calledIn ? { calledIn: result.calledIn } : {}),
    ...(result.rpoLagSeconds !== undefined ? { rpoLagSeconds: result.rpoLagSeconds } : {}),
    ...(result.startedDespite ? { startedDespite: result.startedDespite } : {}),
    ...(result.actor ? { actor: result.actor } : {}),
    writerBefore: result.before.writerRegion ?? null,
  };
}

/**
 * AwaitAurora: one poll; SUCCEEDED when the target is writer and the global cluster idle. A poll
 * no region's RDS API answers is IN_PROGRESS with `lastError` until the deadline, which names it.
 */
export async function awaitAuroraStep(state: FailoverState): Promise<AuroraProgress & PollNote> {
  const t = runtimeTopology();
  const previous: (AuroraProgress & PollNote) | undefined = state.aurora;
  const seconds = t.timeouts.auroraSeconds;
  const target = state.plan.targetRegion;
  const window = pollWindow(previous, seconds);
  let result: Awaited<ReturnType<typeof checkAurora>>;
  try {
    result = await checkAurora(auroraTopology(t), target, state.promotion?.writerBefore);
  } catch (e) {
    const known = {
      writerRegion: previous?.writerRegion ?? null,
      failoverState: previous?.failoverState ?? null,
    };
    return outage(
      e,
      window,
      known,
      (last) =>
        new AuroraPromotionTimeout(
          `[AwaitAurora] ${target} not confirmed as the writer after ${seconds}s: the last poll failed with ${last.name}`,
          lastErrorDetail(last),
        ),
    );
  }
  const progress = {
    ...window,
    writerRegion: result.state.writerRegion ?? null,
    failoverState: result.state.failoverState ?? null,
    ...(previous?.lastError ? { lastError: previous.lastError } : {}),
  };
  if (result.status === "IN_PROGRESS" && window.expired) {
    return {
      ...progress,
      ...timedOut(
        new AuroraPromotionTimeout(
          `[AwaitAurora] ${target} is not the writer after ${seconds}s (writer ${progress.writerRegion ?? "unknown"}, failover state ${progress.failoverState ?? "none"})`,
          lastErrorDetail(previous?.lastError),
        ).toData(),
        window,
      ),
    };
  }
  return { ...progress, status: result.status, ...(result.error ? { error: result.error } : {}) };
}

/**
 * The guard in front of every traffic change: the target spoke was verified, Argo CD reported
 * every app Synced at the committed SHA and Healthy, and Aurora's writer is the target. Checked
 * on the state (what the earlier steps proved) and, for Aurora, live — whatever the ASL says.
 */
async function assertTrafficMayMove(state: FailoverState, t: Topology): Promise<void> {
  const target = state.plan.targetRegion;
  const problems: string[] = [];
  const c = state.converge;
  if (state.spoke?.status !== "SUCCEEDED") problems.push("the target spoke was not verified");
  if (!c?.retarget?.sha) problems.push("no retarget commit is recorded");
  if (c?.argo?.status !== "SUCCEEDED" || !c.retarget || c.argo.revision !== c.retarget.sha) {
    problems.push(
      "Argo CD has not reported the target apps Synced at the committed SHA and Healthy",
    );
  }
  // Capacity parity: floors were committed, so the gate must have passed (the ASL's order holds
  // this; checked again here like the rest).
  const floors = state.plan.capacity?.apps.some((a) => a.committed !== null) ?? false;
  if (floors && c?.capacityGate?.status !== "SUCCEEDED")
    problems.push("the capacity gate has not reported the target's committed replicas Ready");
  if (c?.aurora?.status !== "SUCCEEDED" || c.aurora.writerRegion !== target) {
    problems.push(`Aurora has not reported ${target} as writer`);
  } else {
    const live = await describeAurora(auroraTopology(t), [target, ...otherRegions(t, target)]);
    if (live.writerRegion !== target || live.failoverState) {
      problems.push(`Aurora's writer is ${live.writerRegion ?? "unknown"} now, not ${target}`);
    }
  }
  if (problems.length) {
    throw new TrafficPreconditionFailed(
      "[ShiftTraffic] refusing to move traffic; nothing was changed",
      problems,
    );
  }
}

/**
 * ShiftTraffic: after the guard above, the next stage of the traffic shift — or a later one when
 * the live dials show the target already past it (a new execution after a half-done one resumes
 * there; traffic never restarts from the first stage or moves back).
 */
export async function shiftTrafficStep(state: FailoverState): Promise<TrafficProgress> {
  const t = runtimeTopology();
  await assertTrafficMayMove(state, t);
  const result = await applyNextStage(trafficTopology(t), {
    targetRegion: state.plan.targetRegion,
    stages: t.traffic.stages,
    next: (state.traffic?.stage ?? -1) + 1,
  });
  return {
    status: "SUCCEEDED",
    skipped: result.skipped,
    stage: result.stage,
    percent: result.percent,
    complete: result.percent === 100,
    changes: result.changes,
    dials: result.after.dials,
  };
}

/** VerifyTraffic: one health poll of the target's endpoints for the current stage. */
export async function verifyTrafficStep(state: FailoverState): Promise<TrafficHealthProgress> {
  const t = runtimeTopology();
  const stage = state.traffic?.stage ?? 0;
  const window = pollWindow(
    state.trafficHealth,
    t.timeouts.trafficVerifySeconds,
    new Date(),
    stage,
  );
  const health = await checkTargetHealth(trafficTopology(t), state.plan.targetRegion);
  const progress = {
    ...window,
    stage,
    healthy: health.healthy,
    detail: health.detail.slice(0, 10),
  };
  if (health.healthy) return { ...progress, status: "SUCCEEDED" };
  if (window.expired) {
    return {
      ...progress,
      ...timedOut(
        new TrafficVerifyTimeout(
          `[VerifyTraffic] ${state.plan.targetRegion} endpoints not healthy ${t.timeouts.trafficVerifySeconds}s after stage ${stage + 1} (${state.traffic?.percent ?? 100}%)`,
          health.detail.slice(0, 5),
        ).toData(),
        window,
      ),
    };
  }
  return { ...progress, status: "IN_PROGRESS" };
}

/**
 * DemoteSource: the second commit of a two-phase retarget, made only once traffic is on the
 * target: the old region(s) the plan named become passive. Checked live first: a region that
 * still receives traffic is never made passive. Skipped with one-commit retarget edits (the
 * first commit already did it) and when the regions are passive already.
 */
export async function demoteSourceStep(state: FailoverState): Promise<DemotionState> {
  const t = runtimeTopology();
  const target = state.plan.targetRegion;
  const regions = state.plan.demoteRegions;
  const head = state.converge?.retarget?.sha ?? state.plan.before.gitHead;
  const skipped = (reason: string): DemotionState => ({
    status: "SUCCEEDED",
    skipped: true,
    reason,
    regions,
    sha: head,
    previousSha: head,
    changes: [],
  });
  if (!t.git.demote)
    return skipped("one-commit retarget: the retarget commit made the other regions passive");
  if (!regions.length) return skipped("the other regions were passive already");
  const { dials } = await readTraffic(trafficTopology(t));
  const serving = regions.filter((r) => (dials[r] ?? 0) > 0);
  if (serving.length || (dials[target] ?? 0) !== 100) {
    throw new TrafficPreconditionFailed(
      `[DemoteSource] refusing to make ${regions.join(", ")} passive; nothing was committed`,
      [
        `traffic is ${dialsText(dials)}: the regions made passive must have none, and ${target} all`,
      ],
    );
  }
  const subject = `failover(${t.platform}): make ${regions.join(", ")} passive (traffic is on ${target})`;
  const restore = restoredFloors(state.plan.failback?.floors, regions);
  const result = await commitRetarget(
    gitRepo(t),
    await gitAuth(t),
    [...regions.flatMap((r) => demoteEditsFor(t, r)), ...restore.edits],
    {
      subject,
      body: `Second commit of the failover to ${target}: traffic and the Aurora writer have moved, so ${regions.join(", ")} now run their standby size.${restore.body}`,
      trailers: trailers(state, "demote"),
    },
    {
      maxAttempts: t.git.pushAttempts,
      plannedHead: head,
      // Never both passive: a commit on top that undid the target's activation stops the demote.
      requires: { region: target, edits: editsFor(t, target) },
    },
  );
  return {
    status: "SUCCEEDED",
    skipped: result.skipped,
    regions,
    sha: result.sha,
    previousSha: result.previousSha,
    changes: result.changes,
    subject,
  };
}

/**
 * The regions a failover moved away from: the source, the regions it demoted, and any other
 * region that was active in Git, held the writer or had traffic before it began.
 */
export function fenceRegionsOf(plan: Plan): string[] {
  const b = plan.before;
  const served = Object.entries(b.trafficDials)
    .filter(([, d]) => d > 0)
    .map(([r]) => r);
  const all = [
    plan.sourceRegion,
    ...plan.demoteRegions,
    ...b.activeRegions,
    b.auroraWriterRegion,
    ...served,
  ];
  return [...new Set(all)].filter((r): r is string => !!r && r !== plan.targetRegion);
}

const FENCE_LABEL = {
  verified: "verified",
  pending: "pending (unreachable)",
  live: "not fenced",
} as const;

/**
 * Fence: one check, once traffic is on the target, that each old region can neither serve nor
 * write (fence.ts). A dial up or the writer there fails at once with OldRegionNotFenced (a
 * person raised or kept it: nothing here will clear it); apps not yet Synced at the passive
 * commit are waited for until the Argo CD deadline. A region whose spokes do not answer is
 * `pending (unreachable)`, not a failure: it is kept for readiness to re-check.
 */
/**
 * Fence's window: its first poll has Argo CD look at Git at once (the demote commit is seconds
 * old), so the old region's apps go passive within a rollout; a dial or the writer fails at once.
 * Short, because traffic is already on the target and every loop counts against the execution's
 * state transitions (test/asl/transitions.test.ts).
 */
export const FENCE_SECONDS = 120;

export async function fenceStep(state: FailoverState): Promise<FenceProgress> {
  const t = runtimeTopology();
  const target = state.plan.targetRegion;
  const regions = fenceRegionsOf(state.plan);
  const revision =
    state.demotion?.sha ?? state.converge?.retarget?.sha ?? state.plan.before.gitHead;
  const window = pollWindow(state.fence, FENCE_SECONDS);
  if (!regions.length)
    return { ...window, status: "SUCCEEDED", skipped: true, revision, regions: [] };
  const found = await checkFence(t, {
    targetRegion: target,
    regions,
    revision,
    spokeTimeoutMs: SPOKE_TIMEOUT_MS,
    firstPoll: window.polls === 1,
    // A commit pushed on top of the demote commit counts when it keeps the region passive.
    ...(t.git.readCredentialsSecretArn
      ? {
          judge: (region: string) => {
            const demote = demoteEditsFor(t, region);
            return retargetJudge(t, state, region, revision, () => gitReadAuth(t), {
              edits: demote.length ? demote : editsFor(t, target),
              claim: demote.length ? `makes ${region} passive` : `makes ${target} active`,
            });
          },
        }
      : {}),
  });
  const progress = {
    ...window,
    skipped: false,
    revision,
    regions: found.map((f) => ({
      region: f.region,
      fence: FENCE_LABEL[f.fence],
      detail: f.detail,
      live: f.live,
      commands: f.commands,
    })),
  };
  const live = found.filter((f) => f.fence === "live");
  if (live.some((f) => !f.converging) || (live.length && window.expired)) {
    return {
      ...progress,
      ...timedOut(
        new OldRegionNotFenced(
          `[Fence] ${live.map((f) => f.region).join(", ")} can still serve or write after the failover; traffic is on ${target} (the failover itself completed)`,
          live.flatMap((f) => [
            `${f.region} still live: ${f.live.join("; ")}`,
            ...f.commands.map((c) => `${f.region} fence it: ${c}`),
          ]),
        ).toData(),
        window,
      ),
    };
  }
  if (live.length) return { ...progress, status: "IN_PROGRESS" };
  for (const f of found) {
    await recordFence(t.platform, {
      region: f.region,
      status: f.fence === "pending" ? "pending" : "verified",
      targetRegion: target,
      revision,
      execution: state.execution.name,
      since: window.checkedAt,
    });
  }
  return { ...progress, status: "SUCCEEDED" };
}

/** Traffic per region on one line (`us-west-2 100%, us-east-2 0%`), for messages and reports. */
export function dialsText(dials: Record<string, unknown>): string {
  return Object.entries(dials)
    .map(([r, d]) => `${r} ${String(d)}%`)
    .join(", ");
}

/**
 * The retarget commit of this execution: from the state, else from CommitRetarget's audit event
 * (a Catch on the Parallel state keeps neither branch's output).
 */
async function retargetCommitOf(state: FailoverState): Promise<string | undefined> {
  const known = state.converge?.retarget?.sha;
  if (known) return known;
  const events = await readAuditTrail(state.execution.name);
  const commit = events.findLast((e) => e.step === "CommitRetarget" && e.outcome === "SUCCEEDED");
  const sha = (commit?.after as { gitHead?: unknown } | undefined)?.gitHead;
  return typeof sha === "string" ? sha : undefined;
}

/**
 * Is every selected app of `region` Synced at `revision` (or a commit on top of it that still
 * makes `region` active, as AwaitArgoSync accepts) and Healthy, live (no refresh, no sync)?
 */
async function appsReadyAt(
  t: Topology,
  state: FailoverState,
  region: string,
  revision: string,
): Promise<string | null> {
  try {
    const check = await checkSync({
      hubs: await argoHubs(t),
      selector: t.argocd.appSelector,
      ...(t.argocd.appNamespace ? { appNamespace: t.argocd.appNamespace } : {}),
      clusters: regionOf(t, region).spokes.map((s) => s.argocdCluster),
      revision,
      refresh: "none",
      sync: false,
      firstPoll: false,
      timeoutMs: t.argocd.requestTimeoutSeconds * 1000,
      judgeRevisions: retargetJudge(t, state, region, revision, () => gitAuth(t)),
    });
    if (check.status === "SUCCEEDED") return null;
    if (check.error) return check.error.message;
    const pending = check.pending.slice(0, 3).map((p) => `${p.name}: ${p.reason}`);
    return `${check.total - check.done} of ${check.total} apps not Synced at ${revision.slice(0, 7)} and Healthy (${pending.join("; ")})`;
  } catch (e) {
    return `Argo CD could not be asked: ${describe(e)}`;
  }
}

/**
 * Why `region` is too small to take the users (capacity parity): the committed floors not Ready
 * there at the run's minimumSuccessPercent; null when it holds them, or nothing was committed.
 */
async function capacityShortAt(
  state: FailoverState,
  t: Topology,
  region: string,
): Promise<string | null> {
  const plan = state.plan.capacity;
  if (!plan?.apps.some((a) => a.committed !== null)) return null;
  try {
    const check = await checkCapacity(t, plan, region, SPOKE_TIMEOUT_MS);
    if (check.status === "SUCCEEDED") return null;
    const short = check.apps.filter((a) => a.short.length);
    return `${short.length} app(s) below ${plan.minimumSuccessPercent}% of their committed replicas Ready (${short
      .slice(0, 3)
      .map((a) => `${a.app}: ${a.short.join(", ")}`)
      .join("; ")})`;
  } catch (e) {
    return `its capacity could not be read: ${describe(e)}`;
  }
}

/**
 * Compensate: after a failure that stopped before traffic moved, restores a serving state —
 * users and a writable database in one region, that region at its full size. One decision per
 * invocation, from what it reads live:
 *  1. traffic already moved (a later stage failed): nothing automatic; the report says what to do;
 *  2. an Aurora promotion under way: wait for it to end (until the deadline);
 *  3. the writer is away from the traffic: move the traffic to the writer's region when its apps
 *     are Synced and Healthy at the commit, else switch the writer back (once) and wait;
 *  4. writer and traffic together: revert the first-phase commit if it activated a target
 *     nobody will use (with one-commit edits: make the serving region active again).
 * Idempotent: a retried or repeated invocation re-reads everything and redoes nothing done.
 */
export async function compensateStep(state: FailoverState): Promise<CompensationProgress> {
  const t = runtimeTopology();
  const target = state.plan.targetRegion;
  const previous = state.compensation;
  const window = pollWindow(previous, t.timeouts.auroraSeconds);
  const actions: CompensationAction[] = [...(previous?.actions ?? [])];
  const note = (
    action: CompensationAction["action"],
    outcome: CompensationAction["outcome"],
    detail: string,
  ) => actions.push({ at: window.checkedAt, action, outcome, detail });
  const [aurora, traffic] = await Promise.all([
    describeAurora(auroraTopology(t), [target, ...otherRegions(t, target)]),
    readTraffic(trafficTopology(t)),
  ]);
  const serving = maxDialRegion(traffic.dials);
  const writer = aurora.writerRegion ?? null;
  const progress = (
    status: CompensationProgress["status"],
    extra: Partial<CompensationProgress> = {},
  ): CompensationProgress => ({
    ...window,
    ...(previous?.switchBackRequested ? { switchBackRequested: true } : {}),
    ...(previous?.revertCommit ? { revertCommit: previous.revertCommit } : {}),
    ...extra,
    status,
    actions,
    servingRegion: serving,
    writerRegion: writer,
  });
  const incomplete = (
    message: string,
    details: string[],
    revertCommit?: { sha: string; subject: string },
  ) =>
    progress("FAILED", {
      error: new CompensationIncomplete(`[Compensate] ${message}`, details).toData(),
      ...(revertCommit ? { revertCommit } : {}),
    });

  const before = state.plan.before.trafficDials;
  if (Object.entries(traffic.dials).some(([r, d]) => before[r] !== d)) {
    // A stage (or half of one) went through: finish the move to the writer, never undo it.
    if (
      writer === target &&
      !aurora.failoverState &&
      (await moveTrafficToWriter(state, t, target, note))
    )
      return progress("SUCCEEDED");
    note(
      "none",
      "FAILED",
      `traffic had already moved (${dialsText(traffic.dials)}): left as it is`,
    );
    return incomplete("traffic had already moved; nothing was undone automatically", [
      `traffic is ${dialsText(traffic.dials)}, Aurora's writer is ${writer ?? "unknown"}`,
    ]);
  }
  if (!serving) {
    note("none", "FAILED", "no region receives traffic");
    return incomplete("no region receives traffic", []);
  }
  if (aurora.failoverState) {
    if (!window.expired) return progress("IN_PROGRESS");
    note(
      "wait",
      "FAILED",
      `Aurora's promotion did not end within ${t.timeouts.auroraSeconds}s (${aurora.failoverState})`,
    );
    const reverted = await revertActivation(state, t, serving, note);
    return incomplete(
      `Aurora is still ${aurora.failoverState}; the writer is ${writer ?? "unknown"}`,
      [...reverted.problems, "check Aurora first (the report's manual steps)"],
      reverted.commit,
    );
  }
  if (writer && writer !== serving) {
    if (previous?.switchBackRequested) {
      if (!window.expired) return progress("IN_PROGRESS");
      note(
        "switch-writer-back",
        "FAILED",
        `the writer is still ${writer} after ${t.timeouts.auroraSeconds}s`,
      );
      return incomplete(`the writer did not come back to ${serving}`, []);
    }
    // Once a move to the writer failed, later polls (waiting for a rejoin) do not ask again.
    const moveFailed = actions.some((a) => a.action === "move-traffic" && a.outcome === "FAILED");
    if (writer === target && !moveFailed) {
      const moved = await moveTrafficToWriter(state, t, target, note);
      if (moved) return progress("SUCCEEDED");
    }
    const sick = await failingHealthCheck(t, serving);
    if (sick) {
      note("switch-writer-back", "NOT_NEEDED", `not to ${serving}: ${sick}`);
      return incomplete(`the writer is ${writer} and ${serving} is failing its health check`, [
        sick,
      ]);
    }
    // The old primary of an unplanned failover takes the writer back only once it has rejoined
    // the global cluster (Aurora rebuilds it as a secondary): wait for that, within the window.
    const resyncing = aurora.members.some(
      (m) => m.region === serving && m.synchronization === "pending-resync",
    );
    if (resyncing && !window.expired) return progress("IN_PROGRESS");
    try {
      const back = await promoteAurora(auroraTopology(t), {
        targetRegion: serving,
        mode: "graceful",
        allowDataLoss: false,
      });
      note(
        "switch-writer-back",
        "STARTED",
        `${back.action} of the writer ${writer} -> ${serving} asked in ${back.calledIn ?? "?"}`,
      );
      return progress("IN_PROGRESS", { switchBackRequested: true });
    } catch (e) {
      note("switch-writer-back", "FAILED", describe(e));
      return incomplete(`the writer is ${writer} while users are served by ${serving}`, [
        describe(e),
      ]);
    }
  }
  const reverted = await revertActivation(state, t, serving, note);
  return reverted.problems.length
    ? incomplete("the first-phase commit could not be reverted", reverted.problems)
    : progress("SUCCEEDED", reverted.commit ? { revertCommit: reverted.commit } : {});
}

/**
 * Why `region` must not get the writer back (its own Route 53 health check is failing: an
 * ungraceful failover's source that is really down), or null.
 */
async function failingHealthCheck(t: Topology, region: string): Promise<string | null> {
  const { route53 } = regionOf(t, region);
  const health = await readHealthCheck(route53.healthCheckId, roleOf(route53));
  return health.failingFraction >= t.trigger.corroborationThreshold
    ? `${region} is failing its health check (${health.failing}/${health.checkers} Route 53 checkers)`
    : null;
}

/** Moves all traffic to the target at once when its apps are ready there; false when it did not. */
async function moveTrafficToWriter(
  state: FailoverState,
  t: Topology,
  target: string,
  note: (a: CompensationAction["action"], o: CompensationAction["outcome"], d: string) => void,
): Promise<boolean> {
  const revision = await retargetCommitOf(state);
  const notReady =
    state.spoke?.status !== "SUCCEEDED"
      ? `the spoke(s) of ${target} were not verified`
      : !revision
        ? "no retarget commit is recorded"
        : ((await appsReadyAt(t, state, target, revision)) ??
          (await capacityShortAt(state, t, target)));
  if (notReady) {
    note("move-traffic", "NOT_NEEDED", `not to ${target}, which holds the writer: ${notReady}`);
    return false;
  }
  try {
    const result = await applyNextStage(trafficTopology(t), {
      targetRegion: target,
      stages: [100],
      next: 0,
    });
    note(
      "move-traffic",
      "DONE",
      `all traffic to ${target}, which holds the writer (${dialsText(result.after.dials)})`,
    );
    return true;
  } catch (e) {
    note("move-traffic", "FAILED", `to ${target}: ${describe(e)}`);
    return false;
  }
}

/**
 * Reverts the first-phase commit when Git makes the target active while users stay on
 * `serving`: the target's demote edits (two-phase), or the serving region's retarget edits
 * (one-commit). Returns the problems (empty when done or not needed).
 */
async function revertActivation(
  state: FailoverState,
  t: Topology,
  serving: string,
  note: (a: CompensationAction["action"], o: CompensationAction["outcome"], d: string) => void,
): Promise<{ problems: string[]; commit?: { sha: string; subject: string } }> {
  const target = state.plan.targetRegion;
  if (serving === target) return { problems: [] };
  // One-commit: a failback's retarget commit also restored the floors of the region it left (serving again).
  const unrestore =
    !t.git.demote && state.plan.failback?.floors?.region === serving
      ? state.plan.failback.floors.edits.map((e) => ({ file: e.file, path: e.path, value: e.from }))
      : [];
  const edits = t.git.demote ? demoteEditsFor(t, target) : [...editsFor(t, serving), ...unrestore];
  const subject = t.git.demote
    ? `failover(${t.platform}): compensate: make ${target} passive again (users stay on ${serving})`
    : `failover(${t.platform}): compensate: make ${serving} active again`;
  try {
    const result = await commitRetarget(
      gitRepo(t),
      await gitAuth(t),
      edits,
      {
        subject,
        body: `The failover to ${target} stopped before traffic moved (${state.error?.Error ?? "error"}): undo its first commit.`,
        trailers: trailers(state, "compensate"),
      },
      {
        maxAttempts: t.git.pushAttempts,
        plannedHead: (await retargetCommitOf(state)) ?? state.plan.before.gitHead,
      },
    );
    if (result.skipped) {
      note("revert-commit", "NOT_NEEDED", `Git already makes ${target} passive`);
      return { problems: [] };
    }
    note("revert-commit", "DONE", `${result.sha.slice(0, 12)} ${subject}`);
    return { problems: [], commit: { sha: result.sha, subject } };
  } catch (e) {
    note("revert-commit", "FAILED", describe(e));
    return { problems: [describe(e)] };
  }
}
