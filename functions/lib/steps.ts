/**
 * The workflow's steps: each reads the topology, resolves its secrets, calls one domain module
 * and returns a small summary for the execution state. Handlers wrap these in middy; the ASL
 * decides the order. Every step reads the current state first, so re-runs and Redrive are safe.
 */
import { type ArgoHubConnection, checkSync, type SyncCheck } from "./argocd.ts";
import {
  type AuroraTopology,
  assertPromotable,
  checkAurora,
  describeAurora,
  type PromotionPlan,
  promoteAurora,
} from "./aurora.ts";
import {
  EXECUTION_TIMEOUT_SECONDS,
  type FailoverInput,
  otherRegions,
  parseInput,
  regionOf,
  renderEdit,
  runtimeTopology,
  type Topology,
} from "./config.ts";
import {
  ArgoSyncTimeout,
  AuroraPromotionRefused,
  AuroraPromotionTimeout,
  type ErrorData,
  type FailoverError,
  isFailoverError,
  TargetUnhealthy,
  TrafficPreconditionFailed,
  TrafficVerifyTimeout,
} from "./errors.ts";
import {
  commitRetarget,
  FAILOVER_LOOKBACK_COMMITS,
  type FailoverCommit,
  type GitAuth,
  type GitRepo,
  type RenderedEdit,
  readValues,
} from "./gitops.ts";
import { readHealthCheck } from "./health.ts";
import { acquireLock } from "./lock.ts";
import { type PollWindow, pollWindow } from "./poll.ts";
import { latestReadiness } from "./readiness.ts";
import { getSecret } from "./secrets.ts";
import { assertSpokeReady, inspectSpoke } from "./spoke.ts";
import type {
  ArgoProgress,
  AuroraProgress,
  ExecutionRef,
  FailoverState,
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

/** The topology's Git branch as the Git module reads it. */
export function gitRepo(t: Topology): GitRepo {
  return { url: t.git.url, branch: t.git.branch, author: t.git.author };
}

/** The orchestrator's Git credentials, from Secrets Manager. */
export async function gitAuth(t: Topology): Promise<GitAuth> {
  const secret = await getSecret(t.git.credentialsSecretArn);
  return { token: secret.token, ...(secret.username ? { username: secret.username } : {}) };
}

/** The topology's Aurora view: global cluster and one member per region. */
export function auroraTopology(t: Topology): AuroraTopology {
  return {
    globalClusterIdentifier: t.aurora.globalClusterIdentifier,
    maxRpoSeconds: t.aurora.maxRpoSeconds,
    members: Object.fromEntries(
      Object.entries(t.regions).map(([name, r]) => [name, r.aurora.clusterArn]),
    ),
  };
}

/** The topology's traffic view: endpoint groups or weighted records, and health checks. */
export function trafficTopology(t: Topology): TrafficTopology {
  return {
    mode: t.traffic.mode,
    ...(t.traffic.hostedZoneId ? { hostedZoneId: t.traffic.hostedZoneId } : {}),
    ...(t.traffic.recordName ? { recordName: t.traffic.recordName } : {}),
    regions: Object.fromEntries(
      Object.entries(t.regions).map(([name, r]) => [
        name,
        {
          healthCheckId: r.route53.healthCheckId,
          ...(r.globalAccelerator
            ? { endpointGroupArn: r.globalAccelerator.endpointGroupArn }
            : {}),
          ...(r.route53.setIdentifier ? { setIdentifier: r.route53.setIdentifier } : {}),
        },
      ]),
    ),
  };
}

function editsFor(t: Topology, region: string): RenderedEdit[] {
  return t.git.retarget.map((e) => renderEdit(e, region));
}

/**
 * Reads Git, Aurora and traffic as they are now; Aurora is asked in the target region first.
 * With `lookback`, also the newest failover commit among that many commits of the branch.
 */
export async function snapshot(
  t: Topology,
  targetRegion: string,
  lookback = 0,
): Promise<PlatformSnapshot & { lastFailover?: FailoverCommit }> {
  const regions = Object.keys(t.regions);
  const edits = regions.flatMap((r) => editsFor(t, r));
  const [git, aurora, traffic] = await Promise.all([
    readValues(gitRepo(t), await gitAuth(t), edits, { lookback }),
    describeAurora(auroraTopology(t), [targetRegion, ...otherRegions(t, targetRegion)]),
    readTraffic(trafficTopology(t)),
  ]);
  const valueAt = (file: string, path: string) =>
    git.values.find((v) => v.file === file && v.path === path)?.value;
  const activeRegion =
    regions.find((r) => editsFor(t, r).every((e) => valueAt(e.file, e.path) === e.value)) ?? null;
  return {
    activeRegion,
    gitHead: git.head,
    auroraWriterRegion: aurora.writerRegion ?? null,
    trafficDials: traffic.dials,
    ...(git.lastFailover ? { lastFailover: git.lastFailover } : {}),
  };
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
  const lookback = input.failedRegion ? FAILOVER_LOOKBACK_COMMITS : 0;
  const { lastFailover, ...before } = await snapshot(t, target, lookback);
  const sourceRegion =
    [before.activeRegion, maxDialRegion(before.trafficDials), before.auroraWriterRegion].find(
      (r): r is string => !!r && r !== target,
    ) ?? null;
  // An alarm on a region that is not serving (a passive one) is no reason to move anything.
  const bystander = !!input.failedRegion && input.failedRegion !== sourceRegion;
  const held = bystander ? undefined : cooldownHold(t, event.execution, lastFailover);
  const idle = bystander || !!held;
  const needs = {
    retarget: !idle && before.activeRegion !== target,
    aurora: !idle && before.auroraWriterRegion !== target,
    traffic: !idle && !trafficAtTarget(before.trafficDials, target),
  };
  const noop = !needs.retarget && !needs.aurora && !needs.traffic;
  if (!noop) await assertTargetHealthy(t, target);
  const promotion = needs.aurora ? await checkPromotion(t, input) : undefined;
  // Informs, never decides: Plan's own live checks above are what hold the failover back.
  const readiness = await latestReadiness(t.platform, target).catch(() => undefined);
  const plan: Plan = {
    ...(readiness ? { readiness } : {}),
    sourceRegion,
    targetRegion: target,
    before,
    needs,
    noop,
    approvalTimeoutSeconds: t.timeouts.approvalSeconds,
    actions: bystander
      ? [
          `nothing to do: ${input.failedRegion} failed but ${sourceRegion ?? "another region"} is serving`,
        ]
      : held
        ? [held]
        : planActions(t, input, before, needs, promotion),
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
    throw e;
  }
}

/** Refuses a target whose own Route 53 health check is failing: moving there would not help. */
async function assertTargetHealthy(t: Topology, target: string): Promise<void> {
  const health = await readHealthCheck(regionOf(t, target).route53.healthCheckId);
  if (health.failingFraction >= t.trigger.corroborationThreshold) {
    throw new TargetUnhealthy(
      `[Plan] ${target} is failing its own health check (${health.failing}/${health.checkers} Route 53 checkers): refusing to fail over into it; nothing was changed`,
      [`choose another region (gitops-failover validate-config lists them) or fix ${target} first`],
    );
  }
}

function maxDialRegion(dials: Record<string, number>): string | null {
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
  if (needs.retarget) {
    for (const e of editsFor(t, target))
      actions.push(`commit ${e.file} ${e.path} = ${String(e.value)} on ${t.git.branch}`);
    actions.push(
      `wait for Argo CD: apps matching ${t.argocd.appSelector} Synced at the commit and Healthy`,
    );
  }
  if (needs.aurora) actions.push(auroraAction(t, input, before, promotion));
  if (needs.traffic) {
    actions.push(
      `shift traffic to ${target} in stages ${t.traffic.stages.join("%, ")}% (${t.traffic.mode})`,
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
  const spokes = regionOf(t, state.plan.targetRegion).spokes;
  const reports = await Promise.all(
    spokes.map(async (s) => {
      const { token } = await getSecret(s.tokenSecretArn);
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
  return { status: "SUCCEEDED", spokes: reports };
}

/** One line, no control characters: a reason typed into the console goes into a Git trailer. */
function trailerValue(text: string): string {
  return text.replace(/\s+/g, " ").trim().slice(0, 200);
}

/** CommitRetarget: the Git commit that makes the target region active (fencing the old one). */
export async function commitRetargetStep(state: FailoverState): Promise<RetargetResultState> {
  const t = runtimeTopology();
  const target = state.plan.targetRegion;
  const subject = `failover(${t.platform}): make ${target} active`;
  const result = await commitRetarget(
    gitRepo(t),
    await gitAuth(t),
    editsFor(t, target),
    {
      subject,
      body: `Source region: ${state.plan.sourceRegion ?? "unknown"}. Mode: ${state.input.mode}.`,
      trailers: {
        "Failover-Execution": state.execution.id,
        "Failover-Target": target,
        "Failover-Reason": trailerValue(state.input.reason),
        "Requested-By": trailerValue(state.input.requestedBy),
      },
    },
    { maxAttempts: t.git.pushAttempts, plannedHead: state.plan.before.gitHead },
  );
  return {
    status: "SUCCEEDED",
    skipped: result.skipped,
    sha: result.sha,
    previousSha: result.previousSha,
    attempts: result.attempts,
    changes: result.changes,
    subject,
  };
}

async function argoHubs(t: Topology): Promise<ArgoHubConnection[]> {
  return Promise.all(
    t.argocd.hubs.map(async (h) => ({
      name: h.name,
      url: h.url,
      token: (await getSecret(h.tokenSecretArn)).token,
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
      sync: t.argocd.sync,
      // `hub` is set once a hub answered in this window: until then no refresh was made.
      firstPoll: window.polls === 1 || !previous?.hub,
      timeoutMs: t.argocd.requestTimeoutSeconds * 1000,
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

/**
 * PromoteAurora: switchover (graceful) or guarded failover (ungraceful) after Plan's checks run
 * again; skipped when already writer. `startedDespite`: the call's error, when the re-read showed
 * the promotion started anyway.
 */
export async function promoteAuroraStep(
  state: FailoverState,
): Promise<PromotionState & { startedDespite?: string }> {
  const t = runtimeTopology();
  const result = await promoteAurora(auroraTopology(t), {
    targetRegion: state.plan.targetRegion,
    mode: state.input.mode,
    allowDataLoss: state.input.allowDataLoss,
  });
  return {
    status: "SUCCEEDED",
    skipped: result.skipped,
    action: result.action,
    ...(result.calledIn ? { calledIn: result.calledIn } : {}),
    ...(result.rpoLagSeconds !== undefined ? { rpoLagSeconds: result.rpoLagSeconds } : {}),
    ...(result.startedDespite ? { startedDespite: result.startedDespite } : {}),
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
