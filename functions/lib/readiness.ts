/**
 * DR readiness: whether every failover target would take the platform now, found out on a
 * schedule instead of one failed step at a time in the middle of an incident. Each check calls
 * the workflow's own modules the way the workflow does (spoke inspection as VerifySpoke, the Argo
 * CD check as AwaitArgoSync, Aurora's promotion pre-checks as Plan, the traffic and health reads
 * as VerifyTraffic and Plan, secrets by the replica rule), so "is it ready" and "make it so" are
 * one code path. Readiness never changes anything and never replaces the workflow's live checks.
 *
 * One result per region x check for every region other than the active one (`spoke`, `gitops`,
 * `aurora`, `traffic`, `health-check`), plus the platform-wide checks in the `platform` row
 * (`git`, `secrets`, `argocd-hub/<hub>`, `hub-backup/<hub>`). A target's verdict sums its own
 * checks and the platform's: NOT_READY if any is NOT_READY, else UNKNOWN if any could not be
 * evaluated (an AWS API that did not answer, the evaluation's time bound), else READY.
 */
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";
import { DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { type ArgoHubConnection, checkSync, type SyncCheck } from "./argocd.ts";
import { appendAuditEvent } from "./audit.ts";
import { assertPromotable, memberStatus, type PromotionPlan } from "./aurora.ts";
import { type ClusterCapacity, sampleServingAurora } from "./aurora-capacity.ts";
import { awsError, configuredRegion, dynamoClient } from "./aws.ts";
import { type CapacitySample, sampleServingCapacity } from "./capacity.ts";
import {
  defaultOrchestratorRegions,
  type Hub,
  otherRegions,
  RegionName,
  regionOf,
  renderEdit,
  roleOf,
  secretRole,
  type Topology,
} from "./config.ts";
import {
  AuroraPromotionRefused,
  describe,
  InputValidationError,
  isFailoverError,
  SpokeAuthError,
  UnexpectedError,
} from "./errors.ts";
import { checkFence, type FenceRecord, fenceRecord, recordFence } from "./fence.ts";
import { readValues } from "./gitops.ts";
import { readHealthCheck } from "./health.ts";
import { getSecret, secretNameOf, secretPresence } from "./secrets.ts";
import { assertSpokeReady, expectationsOf, inspectSpoke } from "./spoke.ts";
import {
  auroraTopology,
  gitAuth,
  gitRepo,
  SPOKE_TIMEOUT_MS,
  snapshot,
  trafficTopology,
} from "./steps.ts";
import { METRICS_NAMESPACE } from "./telemetry.ts";
import { checkTargetHealth, readTraffic } from "./traffic.ts";
import { newestHubBackup } from "./velero.ts";

export type ReadinessStatus = "READY" | "NOT_READY" | "UNKNOWN";

/** The row of the platform-wide checks. */
export const PLATFORM_ROW = "platform";

/** One check's result: what an operator reads in the table and acts on. */
export interface CheckResult {
  /** A target region, or {@link PLATFORM_ROW}. */
  region: string;
  check: string;
  status: ReadinessStatus;
  /** One line: what was found and, when not READY, what to do. */
  detail: string;
  observedAt: string;
}

export interface Evaluation {
  platform: string;
  /** The orchestrator region that evaluated (where Git, secrets and the APIs were read from). */
  evaluatedIn: string;
  /** The region serving now, as Git says (else Aurora's writer); null when none could be told. */
  activeRegion: string | null;
  startedAt: string;
  durationMs: number;
  /** Per target region: its own checks and the platform's, summed up. */
  verdicts: Record<string, ReadinessStatus>;
  results: CheckResult[];
}

export interface EvaluateOptions {
  /** Evaluate only this region (and the platform checks). */
  region?: string;
  /** Called as each check finishes, for progress on a terminal. */
  onResult?: (result: CheckResult, done: number, total: number) => void;
}

interface Verdict {
  status: ReadinessStatus;
  detail: string;
}

const MAX_DETAIL = 480;
/** Names shown in a detail before "and N more". */
const MAX_NAMES = 5;

const ready = (detail: string): Verdict => ({ status: "READY", detail });
const notReady = (detail: string): Verdict => ({ status: "NOT_READY", detail });
const unknown = (detail: string): Verdict => ({ status: "UNKNOWN", detail });

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > MAX_DETAIL ? `${line.slice(0, MAX_DETAIL - 1)}…` : line;
}

function listed(items: string[]): string {
  const shown = items.slice(0, MAX_NAMES).join("; ");
  return items.length > MAX_NAMES ? `${shown}; and ${items.length - MAX_NAMES} more` : shown;
}

/** Errors that mean "nothing is known": the AWS API did not answer, or a bug. */
const UNKNOWN_ERRORS = new Set(["AwsUnavailable", "AwsThrottled", "UnexpectedError"]);

/** A thrown error as a verdict: a named one is a finding (NOT_READY), anything else UNKNOWN. */
function verdictOf(e: unknown): Verdict {
  if (isFailoverError(e) && !UNKNOWN_ERRORS.has(e.name)) return notReady(e.message);
  return unknown(`could not be evaluated: ${describe(e)}`);
}

/** Resolves with `fallback` when `work` outlives `deadline` (the evaluation is bounded). */
async function within<T>(work: Promise<T>, deadline: number, fallback: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback()), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

const shortSha = (sha: string) => sha.slice(0, 7);

// ------------------------------------------------------------------------ region checks

/** What VerifySpoke checks, on every spoke of the region. */
async function spokeCheck(t: Topology, region: string): Promise<Verdict> {
  const spokes = regionOf(t, region).spokes;
  const found = await Promise.all(
    spokes.map(async (s) => {
      try {
        const { token } = await getSecret(s.tokenSecretArn, secretRole(t, s.tokenSecretArn));
        const report = await inspectSpoke(
          { name: s.name, apiServer: s.apiServer, caData: s.caData, token },
          expectationsOf(s),
          { timeoutMs: SPOKE_TIMEOUT_MS },
        );
        assertSpokeReady(report);
        return { ok: true, text: `${s.name} ${report.readyNodes} nodes` };
      } catch (e) {
        const v = verdictOf(e);
        if (v.status === "UNKNOWN") throw e;
        const where =
          e instanceof SpokeAuthError ? ` (secret ${secretNameOf(s.tokenSecretArn)})` : "";
        return { ok: false, text: `${v.detail}${where}` };
      }
    }),
  );
  const failed = found.filter((f) => !f.ok).map((f) => f.text);
  if (failed.length) return notReady(listed(failed));
  return ready(
    `${spokes.length} spoke(s) pass VerifySpoke's checks (readyz, nodes, namespaces, secret operators): ${listed(found.map((f) => f.text))}`,
  );
}

/** Per hub and target region: AwaitArgoSync's check at the branch head, or why the hub failed. */
type HubSweep = Map<string, Map<string, SyncCheck | Error>>;

/**
 * Asks every hub, for every target region, whether the region's apps are Synced at `head` and
 * Healthy (one list call each; no refresh, no sync: readiness changes nothing).
 */
async function sweepHubs(t: Topology, head: string, targets: string[]): Promise<HubSweep> {
  const sweep: HubSweep = new Map();
  /** A hub with its token, as AwaitArgoSync connects to it. */
  const hubConnection = async (hub: Hub): Promise<ArgoHubConnection> => {
    const { token } = await getSecret(hub.tokenSecretArn, secretRole(t, hub.tokenSecretArn));
    return { name: hub.name, url: hub.url, token, ...(hub.caData ? { caData: hub.caData } : {}) };
  };
  const asError = (e: unknown) => (e instanceof Error ? e : new UnexpectedError(String(e)));
  await Promise.all(
    t.argocd.hubs.map(async (hub) => {
      const byRegion = new Map<string, SyncCheck | Error>();
      sweep.set(hub.name, byRegion);
      let conn: ArgoHubConnection;
      try {
        conn = await hubConnection(hub);
      } catch (e) {
        for (const r of targets) byRegion.set(r, asError(e));
        return;
      }
      await Promise.all(
        targets.map(async (region) => {
          try {
            const result = await checkSync({
              hubs: [conn],
              selector: t.argocd.appSelector,
              ...(t.argocd.appNamespace ? { appNamespace: t.argocd.appNamespace } : {}),
              clusters: regionOf(t, region).spokes.map((s) => s.argocdCluster),
              revision: head,
              refresh: "none",
              sync: false,
              firstPoll: false,
              timeoutMs: t.argocd.requestTimeoutSeconds * 1000,
            });
            byRegion.set(region, result);
          } catch (e) {
            byRegion.set(region, asError(e));
          }
        }),
      );
    }),
  );
  return sweep;
}

function gitopsCheck(t: Topology, region: string, head: string, sweep: HubSweep): Verdict {
  const clusters = regionOf(t, region).spokes.map((s) => s.argocdCluster);
  const sha = shortSha(head);
  const problems: string[] = [];
  const fine: string[] = [];
  const notAsked: string[] = [];
  for (const hub of t.argocd.hubs) {
    const result = sweep.get(hub.name)?.get(region);
    if (!result || result instanceof Error) {
      notAsked.push(hub.name);
      continue;
    }
    if (result.status === "SUCCEEDED") {
      fine.push(`${result.total} apps on hub ${hub.name}`);
    } else if (result.error) {
      problems.push(result.error.message);
    } else {
      const pending = result.pending.map((p) => `${p.name}: ${p.reason}`);
      problems.push(
        `hub ${hub.name}: ${result.total - result.done} of ${result.total} apps on ${clusters.join(", ")} not Synced at ${sha} and Healthy (${listed(pending)}); see why on the spoke (kubectl describe) and in Argo CD (argocd app get <app>), fix it and let Argo CD sync`,
      );
    }
  }
  const skipped = notAsked.length
    ? `; not evaluated on ${notAsked.join(", ")} (see argocd-hub/${notAsked[0]})`
    : "";
  if (problems.length) return notReady(`${problems.join("; ")}${skipped}`);
  if (!fine.length) {
    return notReady(
      `no Argo CD hub answered for ${clusters.join(", ")}: see the argocd-hub checks`,
    );
  }
  return ready(
    `apps on ${clusters.join(", ")} Synced at ${sha} (branch head) and Healthy: ${fine.join(", ")}${skipped}`,
  );
}

function hubCheck(hub: Hub, sweep: HubSweep, home: string): Verdict {
  const results = [...(sweep.get(hub.name)?.values() ?? [])];
  const answered = results.filter((r): r is SyncCheck => !(r instanceof Error));
  if (answered.length) {
    const apps = answered.reduce((n, r) => n + r.total, 0);
    return ready(
      `hub ${hub.name} answered from ${home} and accepted its token (${apps} target apps listed)`,
    );
  }
  const error = results.find((r): r is Error => r instanceof Error);
  if (!error) return unknown(`hub ${hub.name} was not asked: no target region`);
  if (isFailoverError(error) && error.name === "ArgoUnreachable") {
    return notReady(
      `hub ${hub.name} (${hub.url}) did not answer from ${home}: ${error.details[0] ?? error.message}; a failover that needs it (the hub before it down) would find no hub: check its argocd-server and the network path to it`,
    );
  }
  return verdictOf(error);
}

/** Plan's Aurora pre-checks for a switchover and for a failover to the region, and its member's status. */
async function auroraCheck(t: Topology, region: string): Promise<Verdict> {
  const topo = auroraTopology(t);
  const request = (mode: "graceful" | "ungraceful") =>
    assertPromotable(topo, { targetRegion: region, mode, allowDataLoss: false }, "Readiness");
  const [switchover, failover, status] = await Promise.allSettled([
    request("graceful"),
    request("ungraceful"),
    memberStatus(topo, region),
  ]);
  const problems: string[] = [];
  const refusal = (what: string, r: PromiseSettledResult<PromotionPlan>) => {
    if (r.status === "fulfilled") return;
    if (!(r.reason instanceof AuroraPromotionRefused)) throw r.reason;
    problems.push(`${what} would be refused: ${r.reason.message.replace(/^\[Readiness\] /, "")}`);
  };
  refusal("a switchover", switchover);
  refusal("an ungraceful failover", failover);
  if (status.status === "rejected") throw status.reason;
  const id = topo.members[region]?.split(":").at(-1) ?? region;
  if (status.value !== "available") {
    problems.push(
      `member cluster ${id} is ${status.value}, not available: wait for it, or see its RDS events (aws rds describe-events --region ${region} --source-type db-cluster --source-identifier ${id})`,
    );
  }
  if (problems.length) return notReady(problems.join("; "));
  const plan = switchover.status === "fulfilled" ? switchover.value : undefined;
  if (plan?.action === "none") return ready(`member ${id} available and already the writer`);
  const lag = failover.status === "fulfilled" ? failover.value.rpoLagSeconds : undefined;
  return ready(
    `member ${id} available; switchover from ${plan?.calledIn ?? "?"} accepted; replication lag ${lag ?? "?"} s (max ${t.aurora.maxRpoSeconds} s)`,
  );
}

/** What VerifyTraffic would see: the endpoint group and its endpoints (or the weighted record). */
async function trafficCheck(t: Topology, region: string): Promise<Verdict> {
  const topo = trafficTopology(t);
  if (t.traffic.mode === "route53") {
    const { dials } = await readTraffic(topo);
    return ready(
      `weighted record ${t.traffic.recordName} (${regionOf(t, region).route53.setIdentifier}) present, weight ${dials[region] ?? 0}`,
    );
  }
  const health = await checkTargetHealth(topo, region);
  const group = regionOf(t, region).globalAccelerator?.endpointGroupArn ?? "";
  if (health.healthy) return ready(health.detail.join("; "));
  return notReady(
    `${listed(health.detail)}: Global Accelerator would send traffic nowhere; fix the endpoints of ${group} (aws globalaccelerator describe-endpoint-group --region us-west-2 --endpoint-group-arn ${group})`,
  );
}

/** Plan's rule: a target failing its own Route 53 health check is refused. */
async function healthCheck(t: Topology, region: string): Promise<Verdict> {
  const r = regionOf(t, region);
  const view = await readHealthCheck(r.route53.healthCheckId, roleOf(r.route53));
  const seen = `${view.failing}/${view.checkers} Route 53 checkers failing`;
  const threshold = t.trigger.corroborationThreshold;
  if (view.failingFraction >= threshold) {
    return notReady(
      `health check ${view.healthCheckId} of ${r.endpoint}: ${seen} (Plan refuses a target at ${threshold} or more): fix what ${r.endpoint} answers to the health check (aws route53 get-health-check-status --health-check-id ${view.healthCheckId})`,
    );
  }
  return ready(`health check ${view.healthCheckId} of ${r.endpoint}: ${seen}`);
}

/**
 * A fence the Fence step left pending (the old region did not answer): checked again, at the
 * branch head (the failover's commit or a later one). READY once the region answers fenced (the
 * record then says verified and the check goes away); NOT_READY the moment it answers while
 * still able to serve or write; UNKNOWN while it still does not answer.
 */
async function fenceCheck(t: Topology, record: FenceRecord, head: string | null): Promise<Verdict> {
  const [found] = await checkFence(t, {
    targetRegion: record.targetRegion,
    regions: [record.region],
    revision: head ?? record.revision,
    spokeTimeoutMs: SPOKE_TIMEOUT_MS,
  });
  const since = `since ${record.since} (execution ${record.execution})`;
  if (!found || found.fence === "pending")
    return unknown(`fence pending ${since}: ${found?.detail ?? "not checked"}`);
  if (found.fence === "live")
    return notReady(
      `the old region answers but is NOT fenced (${since}): ${found.live.join("; ")}; fence it: ${found.commands.join("; then ")}`,
    );
  await recordFence(t.platform, { ...record, status: "verified", since: new Date().toISOString() });
  return ready(`fence verified: ${found.detail} (was pending ${since})`);
}

// ---------------------------------------------------------------------- platform checks

/** The regions whose orchestrators must find every secret: ORCHESTRATOR_REGIONS, else CDK's default. */
function orchestratorRegions(t: Topology): string[] {
  const named = (process.env.ORCHESTRATOR_REGIONS ?? "")
    .split(",")
    .map((r) => r.trim())
    .filter(Boolean);
  return named.length ? named : defaultOrchestratorRegions(t);
}

/** Every secret ARN the workflow and readiness read. */
function topologySecrets(t: Topology): string[] {
  return [
    ...new Set([
      t.git.credentialsSecretArn,
      ...(t.git.readCredentialsSecretArn ? [t.git.readCredentialsSecretArn] : []),
      ...t.argocd.hubs.flatMap((h) => [
        h.tokenSecretArn,
        ...(h.backup ? [h.backup.tokenSecretArn] : []),
      ]),
      ...Object.values(t.regions).flatMap((r) => r.spokes.map((s) => s.tokenSecretArn)),
    ]),
  ];
}

/** The replica rule: every secret present in every orchestrator region. */
async function secretsCheck(t: Topology): Promise<Verdict> {
  const regions = orchestratorRegions(t);
  const arns = topologySecrets(t);
  const found = await Promise.all(
    regions.flatMap((region) => arns.map((arn) => secretPresence(arn, region, secretRole(t, arn)))),
  );
  const missing = found.flatMap((f) => (f.present ? [] : [f]));
  if (missing.length) {
    const [first] = missing;
    return notReady(
      `${missing.length} of ${found.length} secret copies missing: ${listed(missing.map((m) => m.why))}; fix: ${first?.fix}`,
    );
  }
  return ready(
    `${arns.length} secrets present in every orchestrator region (${regions.join(", ")})`,
  );
}

/** The hub's Velero backup of its Argo CD namespace: completed, and younger than the threshold. */
async function backupCheck(t: Topology, hub: Hub): Promise<Verdict> {
  const backup = hub.backup;
  if (!backup) {
    return unknown(
      `hub ${hub.name} has no argocd.hubs[].backup in the topology: its Velero backups are not checked; add apiServer, caData and tokenSecretArn of the hub cluster`,
    );
  }
  const { token } = await getSecret(backup.tokenSecretArn, secretRole(t, backup.tokenSecretArn));
  const found = await newestHubBackup(
    { name: hub.name, apiServer: backup.apiServer, caData: backup.caData, token },
    backup,
    { timeoutMs: SPOKE_TIMEOUT_MS },
  );
  const where = `namespace ${backup.argocdNamespace} on hub ${hub.name}`;
  const attempt = found.newerAttempt
    ? `; newer attempt ${found.newerAttempt.name} is ${found.newerAttempt.phase}`
    : "";
  const logs = `velero backup logs ${found.newerAttempt?.name ?? found.newest?.name ?? "<name>"} -n ${backup.namespace}`;
  if (found.verdict === "unserved") {
    return notReady(
      `the hub cluster does not serve velero.io/v1 Backups in ${backup.namespace} (${found.said}): install Velero there or fix argocd.hubs[].backup.namespace`,
    );
  }
  if (!found.newest) {
    return notReady(
      `no Completed Velero backup of ${where} (${found.listed} backups in ${backup.namespace})${attempt}: schedule one (velero schedule create argocd-hub --include-namespaces ${backup.argocdNamespace} --schedule "0 */6 * * *") and check ${logs}`,
    );
  }
  const age = `${found.newest.name} completed ${found.newest.ageHours.toFixed(1)} h ago (max ${backup.maxAgeHours} h)`;
  if (found.verdict === "stale") {
    return notReady(
      `newest Completed Velero backup of ${where} is stale: ${age}${attempt}; the hub's backups have stopped: check its schedule (velero schedule get -n ${backup.namespace}) and ${logs}`,
    );
  }
  return ready(`newest Completed Velero backup of ${where}: ${age}${attempt}`);
}

// ---------------------------------------------------------------------------- evaluation

/**
 * The branch head, read with the orchestrator's credentials (the Git check), and the active
 * region as Plan's snapshot tells it (null when the snapshot cannot be made: then every region
 * is evaluated as a target).
 */
async function readGitSide(t: Topology): Promise<{ head: string; activeRegion: string | null }> {
  const [first = ""] = Object.keys(t.regions);
  const [git, active] = await Promise.all([
    gitAuth(t).then((auth) =>
      readValues(
        gitRepo(t),
        auth,
        t.git.retarget.map((e) => renderEdit(e, first)),
      ),
    ),
    snapshot(t, first).then(
      (s) => s.activeRegion,
      () => null,
    ),
  ]);
  return { head: git.head, activeRegion: active };
}

/** One check to run: where it is shown and what decides it. */
interface Planned {
  region: string;
  check: string;
  run: () => Promise<Verdict>;
}

/**
 * Evaluates every failover target (or `options.region`) and the platform, each check bounded by
 * `readiness.timeoutSeconds` for the whole evaluation: a check still running then is UNKNOWN.
 * Git is read first (the active region and the branch head the GitOps check compares with);
 * every other check runs concurrently.
 */
export async function evaluateReadiness(
  t: Topology,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const start = Date.now();
  const deadline = start + t.readiness.timeoutSeconds * 1000;
  const home = configuredRegion() ?? "us-east-1";
  if (options.region !== undefined) regionOf(t, options.region);
  const git = await within(
    readGitSide(t).then(
      (g) => ({ ok: true as const, ...g }),
      (e: unknown) => ({ ok: false as const, verdict: verdictOf(e) }),
    ),
    deadline,
    () => ({
      ok: false as const,
      verdict: unknown(`Git did not answer within ${t.readiness.timeoutSeconds} s`),
    }),
  );
  const activeRegion = git.ok ? git.activeRegion : null;
  const targets = options.region
    ? [options.region]
    : activeRegion
      ? otherRegions(t, activeRegion)
      : Object.keys(t.regions);
  const gitVerdict: Verdict = git.ok
    ? ready(
        `branch ${t.git.branch} readable from ${home} at ${shortSha(git.head)}; active region ${git.activeRegion ?? "unknown (Git, Aurora and traffic could not be read together): every region evaluated as a target"}`,
      )
    : git.verdict;
  const sweep = git.ok ? sweepHubs(t, git.head, targets) : undefined;
  const noHead = () =>
    Promise.resolve(unknown("the branch head is unknown (see the git check): not evaluated"));
  const fences = (
    await Promise.all(targets.map((r) => fenceRecord(t.platform, r).catch(() => undefined)))
  ).filter((f): f is FenceRecord => f?.status === "pending");
  const planned: Planned[] = [
    ...targets.flatMap((region) => [
      { region, check: "spoke", run: () => spokeCheck(t, region) },
      {
        region,
        check: "gitops",
        run: () =>
          sweep && git.ok ? sweep.then((s) => gitopsCheck(t, region, git.head, s)) : noHead(),
      },
      { region, check: "aurora", run: () => auroraCheck(t, region) },
      { region, check: "traffic", run: () => trafficCheck(t, region) },
      { region, check: "health-check", run: () => healthCheck(t, region) },
    ]),
    ...fences.map((f) => ({
      region: f.region,
      check: "fence",
      run: () => fenceCheck(t, f, git.ok ? git.head : null),
    })),
    { region: PLATFORM_ROW, check: "git", run: () => Promise.resolve(gitVerdict) },
    { region: PLATFORM_ROW, check: "secrets", run: () => secretsCheck(t) },
    ...t.argocd.hubs.map((hub) => ({
      region: PLATFORM_ROW,
      check: `argocd-hub/${hub.name}`,
      run: () => (sweep ? sweep.then((s) => hubCheck(hub, s, home)) : noHead()),
    })),
    ...(t.argocd.hubs.some((h) => h.backup)
      ? t.argocd.hubs.map((hub) => ({
          region: PLATFORM_ROW,
          check: `hub-backup/${hub.name}`,
          run: () => backupCheck(t, hub),
        }))
      : [
          {
            region: PLATFORM_ROW,
            check: "hub-backup",
            run: () =>
              Promise.resolve(
                unknown(
                  "Velero is not configured: no argocd.hubs[].backup in the topology, so whether the hubs can be restored is not checked; add the hub cluster's apiServer, caData and a read-only tokenSecretArn",
                ),
              ),
          },
        ]),
  ];
  let done = 0;
  const results = await Promise.all(
    planned.map(async (p): Promise<CheckResult> => {
      const verdict = await within(p.run().catch(verdictOf), deadline, () =>
        unknown(`did not finish within readiness.timeoutSeconds (${t.readiness.timeoutSeconds} s)`),
      );
      const result = {
        region: p.region,
        check: p.check,
        status: verdict.status,
        detail: oneLine(verdict.detail),
        observedAt: new Date().toISOString(),
      };
      options.onResult?.(result, ++done, planned.length);
      return result;
    }),
  );
  return {
    platform: t.platform,
    evaluatedIn: home,
    activeRegion,
    startedAt: new Date(start).toISOString(),
    durationMs: Date.now() - start,
    verdicts: Object.fromEntries(targets.map((r) => [r, verdictFor(results, r)])),
    results,
  };
}

/**
 * One region's own checks (spoke, gitops at `head`, aurora, traffic, health-check, and a pending
 * fence), without the platform's: a failback's pre-checks in VerifySpoke, which reads only what
 * those need. Bounded by `boundSeconds` (or readiness.timeoutSeconds if shorter); nothing is stored.
 */
export async function regionReadiness(
  t: Topology,
  region: string,
  head: string,
  boundSeconds: number,
): Promise<CheckResult[]> {
  const seconds = Math.min(t.readiness.timeoutSeconds, boundSeconds);
  const deadline = Date.now() + seconds * 1000;
  const sweep = sweepHubs(t, head, [region]);
  const fence = await fenceRecord(t.platform, region).catch(() => undefined);
  const planned: Planned[] = [
    { region, check: "spoke", run: () => spokeCheck(t, region) },
    { region, check: "gitops", run: () => sweep.then((s) => gitopsCheck(t, region, head, s)) },
    { region, check: "aurora", run: () => auroraCheck(t, region) },
    { region, check: "traffic", run: () => trafficCheck(t, region) },
    { region, check: "health-check", run: () => healthCheck(t, region) },
    ...(fence?.status === "pending"
      ? [{ region, check: "fence", run: () => fenceCheck(t, fence, head) }]
      : []),
  ];
  return Promise.all(
    planned.map(async (p) => {
      const verdict = await within(p.run().catch(verdictOf), deadline, () =>
        unknown(`did not finish within ${seconds} s`),
      );
      return {
        region: p.region,
        check: p.check,
        status: verdict.status,
        detail: oneLine(verdict.detail),
        observedAt: new Date().toISOString(),
      };
    }),
  );
}

/** A target's verdict: its own checks and the platform's. */
function verdictFor(results: CheckResult[], region: string): ReadinessStatus {
  const mine = results.filter((r) => r.region === region || r.region === PLATFORM_ROW);
  if (mine.some((r) => r.status === "NOT_READY")) return "NOT_READY";
  if (mine.some((r) => r.status === "UNKNOWN")) return "UNKNOWN";
  return "READY";
}

/** The checks that keep a target from READY: its own and the platform's. */
function failingFor(e: Evaluation, region: string): CheckResult[] {
  return e.results.filter(
    (r) => (r.region === region || r.region === PLATFORM_ROW) && r.status !== "READY",
  );
}

// ------------------------------------------------------------------ latest result, signals

/** The latest evaluation of a target, as the trigger, Plan and the report read it. */
export interface TargetReadiness {
  region: string;
  verdict: ReadinessStatus;
  observedAt: string;
  /** Seconds between the evaluation and the read. */
  ageSeconds: number;
  /** `<row> <check>: <detail>` of each check keeping it from READY. */
  failing: string[];
  evaluatedIn: string;
}

const readinessKey = (platform: string, region: string) => ({
  pk: `readiness#${platform}`,
  sk: region,
});

function db(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient());
}

/**
 * The latest stored readiness of `region` (this orchestrator region's table), or undefined when
 * there is no table or no evaluation yet. Never throws for a missing result: callers use it to
 * prefer and to inform, never to block.
 */
export async function latestReadiness(
  platform: string,
  region: string,
  now = Date.now(),
): Promise<TargetReadiness | undefined> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return undefined;
  let item: Record<string, unknown> | undefined;
  try {
    const out = await db().send(
      new GetCommand({ TableName: table, Key: readinessKey(platform, region) }),
    );
    item = out.Item;
  } catch (e) {
    throw awsError(e, `reading the latest readiness of ${region} from ${table}`, UnexpectedError);
  }
  if (!item || typeof item.observedAt !== "string") return undefined;
  return {
    region,
    verdict: item.verdict as ReadinessStatus,
    observedAt: item.observedAt,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(item.observedAt)) / 1000)),
    failing: Array.isArray(item.failing) ? (item.failing as string[]) : [],
    evaluatedIn: String(item.evaluatedIn ?? ""),
  };
}

/** One line for Plan's output and the report: "READY, 4 min old" or what keeps it from READY. */
export function readinessLine(r: TargetReadiness | undefined): string {
  if (!r) return "no readiness evaluation stored yet";
  const age = r.ageSeconds < 120 ? `${r.ageSeconds} s` : `${Math.round(r.ageSeconds / 60)} min`;
  const why = r.failing.length ? `: ${r.failing.slice(0, 3).join("; ")}` : "";
  return `${r.verdict}, evaluated ${age} ago in ${r.evaluatedIn}${why}`;
}

const METRICS_SERVICE = "gitops-failover";
export const TARGET_READY_METRIC = "TargetReady";
const FAILING_CHECKS_METRIC = "FailingChecks";
/**
 * 1 when a region the Fence step left pending answers while not fenced (its `fence` check is
 * NOT_READY), else 0; emitted only for a region with a pending fence. CDK alarms on one datapoint.
 */
export const UNFENCED_METRIC = "OldRegionUnfenced";

/** The dimensions of the readiness metrics (CDK's alarms use the same). */
export function readinessMetricDimensions(
  platform: string,
  region: string,
): Record<string, string> {
  return { service: METRICS_SERVICE, Platform: platform, Region: region };
}

/**
 * Where a run's metrics go: the Lambda writes EMF documents to stdout (CloudWatch turns them into
 * metrics); the sandbox collects them. Powertools Metrics builds the documents either way.
 */
export type MetricsSink = (metrics: Metrics) => void;

const toStdout: MetricsSink = (m) => m.publishStoredMetrics();

/** A sink that keeps the EMF documents in `into` instead of printing them. */
export function collectMetrics(into: unknown[]): MetricsSink {
  return (m) => {
    into.push(m.serializeMetrics());
    m.clearMetrics();
    m.clearDimensions();
  };
}

/** A stored evaluation: each target's verdict, and whether it changed since the last one. */
export interface RecordedReadiness {
  evaluation: Evaluation;
  /** The serving region's capacity sampled into the rolling 24-hour maximum (capacity parity). */
  capacity?: CapacitySample;
  /** The serving region's Aurora cluster: its hourly ACU maxima as stored, or its instance class. */
  auroraCapacity?: ClusterCapacity;
  changed: { region: string; from: ReadinessStatus | null; to: ReadinessStatus }[];
}

/**
 * Stores each target's latest result (one item per region, overwritten), appends an audit event
 * for each target whose verdict changed (chain `readiness-<platform>`), and emits TargetReady
 * (1/0) and FailingChecks per target region.
 */
export async function recordReadiness(
  evaluation: Evaluation,
  sink: MetricsSink = toStdout,
): Promise<RecordedReadiness> {
  const table = process.env.AUDIT_TABLE;
  const metrics = new Metrics({
    namespace: METRICS_NAMESPACE,
    serviceName: METRICS_SERVICE,
  });
  const changed: RecordedReadiness["changed"] = [];
  for (const [region, verdict] of Object.entries(evaluation.verdicts)) {
    const failing = failingFor(evaluation, region);
    metrics.addDimensions({ Platform: evaluation.platform, Region: region });
    metrics.addMetric(TARGET_READY_METRIC, MetricUnit.Count, verdict === "READY" ? 1 : 0);
    metrics.addMetric(FAILING_CHECKS_METRIC, MetricUnit.Count, failing.length);
    const fence = evaluation.results.find((r) => r.region === region && r.check === "fence");
    if (fence)
      metrics.addMetric(UNFENCED_METRIC, MetricUnit.Count, fence.status === "NOT_READY" ? 1 : 0);
    sink(metrics);
    if (!table) continue;
    const previous = await latestReadiness(evaluation.platform, region);
    const observedAt = evaluation.startedAt;
    const lines = failing.map((f) => `${f.region} ${f.check} ${f.status}: ${f.detail}`);
    try {
      await db().send(
        new PutCommand({
          TableName: table,
          Item: {
            ...readinessKey(evaluation.platform, region),
            verdict,
            observedAt,
            evaluatedIn: evaluation.evaluatedIn,
            failing: lines,
            results: evaluation.results.filter(
              (r) => r.region === region || r.region === PLATFORM_ROW,
            ),
          },
        }),
      );
    } catch (e) {
      throw awsError(e, `storing the readiness of ${region} in ${table}`, UnexpectedError);
    }
    if (previous?.verdict === verdict) continue;
    changed.push({ region, from: previous?.verdict ?? null, to: verdict });
    await appendAuditEvent({
      execution: `readiness-${evaluation.platform}`,
      step: "Readiness",
      actor: `readiness:${evaluation.evaluatedIn}`,
      action: `evaluate failover target ${region}`,
      outcome: "DECIDED",
      before: previous ? { verdict: previous.verdict, observedAt: previous.observedAt } : null,
      after: { verdict, observedAt, failing: lines.slice(0, 10) },
      detail: `${region}: ${previous?.verdict ?? "none"} -> ${verdict}`,
      startedAt: evaluation.startedAt,
      endedAt: new Date(Date.parse(evaluation.startedAt) + evaluation.durationMs).toISOString(),
    });
  }
  return { evaluation, changed };
}

const ReadinessEvent = RegionName.optional();

/** Bound on each call reading the serving cluster's Aurora capacity. */
const AURORA_SAMPLE_TIMEOUT_MS = 10_000;

/**
 * The readiness function: evaluate (every target, or `event.region`), store, signal. The
 * schedule sends `{}`; the CLI may name one region.
 */
export async function readinessStep(
  event: { region?: unknown } | null | undefined,
  t: Topology,
  options: { sink?: MetricsSink; onResult?: EvaluateOptions["onResult"] } = {},
): Promise<RecordedReadiness> {
  const region = ReadinessEvent.safeParse(event?.region ?? undefined);
  if (!region.success) {
    throw new InputValidationError("readiness event is invalid", [
      `region: ${region.error.issues[0]?.message ?? "not a region name"}`,
    ]);
  }
  const evaluation = await evaluateReadiness(t, {
    ...(region.data ? { region: region.data } : {}),
    ...(options.onResult ? { onResult: options.onResult } : {}),
  });
  const recorded = await recordReadiness(evaluation, options.sink);
  const capacity = await sampleServingCapacity(t, evaluation.activeRegion);
  const auroraCapacity = await sampleServingAurora(
    t.platform,
    auroraTopology(t),
    t.capacity,
    evaluation.activeRegion,
    AURORA_SAMPLE_TIMEOUT_MS,
  );
  return {
    ...recorded,
    ...(capacity ? { capacity } : {}),
    ...(auroraCapacity ? { auroraCapacity } : {}),
  };
}
