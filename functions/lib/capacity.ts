/**
 * Capacity parity: a warm standby is small on purpose, so before traffic moves onto it the target
 * must be sized for the load it is about to take. In a GitOps platform that size must be
 * committed: `kubectl scale` would be undone by Argo CD's selfHeal within seconds. So:
 *  - observed: the source region's running capacity per application (Deployment ready replicas,
 *    HPA current/desired replicas), sampled by readiness into DynamoDB as a rolling 24-hour
 *    maximum, so it is known even when the source region is gone;
 *  - committed: `ceil(targetPercent x observed)` per spoke, bounded by the app's min/max, written
 *    to the value path the topology names, in the retarget commit itself;
 *  - the gate: every selected app on the target has `minimumSuccessPercent` of the committed
 *    replicas Ready before traffic moves, stragglers named with their Pending pods.
 */
import { DynamoDBDocumentClient, GetCommand, UpdateCommand } from "@aws-sdk/lib-dynamodb";
import { awsError, dynamoClient } from "./aws.ts";
import {
  type CapacityApp,
  type CapacityConfig,
  type FailoverInput,
  regionOf,
  runtimeTopology,
  type Spoke,
  secretRole,
  type Topology,
} from "./config.ts";
import {
  CapacityUnknown,
  isFailoverError,
  SpokeUnreachable,
  TargetCapacityShort,
  UnexpectedError,
} from "./errors.ts";
import type { RenderedEdit } from "./gitops.ts";
import { EXPECTED_SECONDS, MIN_WAIT_SECONDS, paceOf } from "./pace.ts";
import { pollsSpent, pollWindow } from "./poll.ts";
import { getSecret } from "./secrets.ts";
import { clusterClient, type SpokeClient } from "./spoke.ts";
import type { CapacityProgress, FailoverState } from "./state.ts";

/** How long a sample counts towards the observed figure: the last 24 hours. */
const WINDOW_HOURS = 24;

/** `namespace/deployment`: an app's key in the samples. */
export function appKey(app: Pick<CapacityApp, "namespace" | "deployment">): string {
  return `${app.namespace}/${app.deployment}`;
}

/** One app as it runs on one spoke. */
interface SpokeApp {
  spoke: string;
  /** `spec.replicas` of the Deployment (absent: the Deployment does not exist there). */
  replicas?: number;
  ready: number;
  hpaCurrent?: number;
  hpaDesired?: number;
  /** The Deployment's own `spec.selector` as a label selector string: its Pods, whatever their labels. */
  selector?: string;
}

/** A Deployment's `spec.selector` (matchLabels and matchExpressions, ANDed). */
export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

/**
 * A LabelSelector as the `labelSelector` query string kube-apiserver parses (apimachinery's
 * LabelSelectorAsSelector): matchLabels as `k=v`, matchExpressions as `k in (a,b)`,
 * `k notin (a,b)`, `k`, `!k`. Undefined for a selector that selects nothing or everything (no
 * requirement, or an operator Kubernetes does not define): never list every Pod of a namespace.
 */
export function labelSelectorOf(selector: LabelSelector | undefined): string | undefined {
  if (!selector) return undefined;
  const parts = Object.entries(selector.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector.matchExpressions ?? []) {
    const values = [...(e.values ?? [])].sort().join(",");
    if (e.operator === "In") parts.push(`${e.key} in (${values})`);
    else if (e.operator === "NotIn") parts.push(`${e.key} notin (${values})`);
    else if (e.operator === "Exists") parts.push(e.key);
    else if (e.operator === "DoesNotExist") parts.push(`!${e.key}`);
    else return undefined;
  }
  return parts.length ? parts.join(",") : undefined;
}

/** The running capacity of one spoke's selected apps. */
async function readSpoke(
  client: SpokeClient,
  spoke: string,
  apps: CapacityApp[],
): Promise<Map<string, SpokeApp>> {
  const out = new Map<string, SpokeApp>();
  for (const namespace of [...new Set(apps.map((a) => a.namespace))]) {
    const mine = apps.filter((a) => a.namespace === namespace);
    const deployments = await client.call(
      `GET /apis/apps/v1/namespaces/${namespace}/deployments`,
      () => client.apps.listNamespacedDeployment({ namespace }),
    );
    if (!("value" in deployments))
      throw new SpokeUnreachable(
        `spoke ${spoke}: listing Deployments in ${namespace} answered HTTP ${deployments.status}: ${deployments.message}`,
      );
    const hpas = mine.some((a) => a.hpa)
      ? await client.call(
          `GET /apis/autoscaling/v2/namespaces/${namespace}/horizontalpodautoscalers`,
          () =>
            client.custom.listNamespacedCustomObject({
              group: "autoscaling",
              version: "v2",
              namespace,
              plural: "horizontalpodautoscalers",
            }) as Promise<{
              items?: {
                metadata?: { name?: string };
                status?: { currentReplicas?: number; desiredReplicas?: number };
              }[];
            }>,
        )
      : { value: { items: [] } };
    const hpaItems = "value" in hpas ? (hpas.value.items ?? []) : [];
    for (const app of mine) {
      const d = deployments.value.items.find((i) => i.metadata?.name === app.deployment);
      const h = app.hpa ? hpaItems.find((i) => i.metadata?.name === app.hpa) : undefined;
      const selector = labelSelectorOf(d?.spec?.selector);
      out.set(appKey(app), {
        spoke,
        ...(d ? { replicas: d.spec?.replicas ?? 1 } : {}),
        ...(selector ? { selector } : {}),
        ready: d?.status?.readyReplicas ?? 0,
        ...(h?.status?.currentReplicas !== undefined
          ? { hpaCurrent: h.status.currentReplicas }
          : {}),
        ...(h?.status?.desiredReplicas !== undefined
          ? { hpaDesired: h.status.desiredReplicas }
          : {}),
      });
    }
  }
  return out;
}

/** A client per spoke of `region`, with the spoke's read-only token. */
async function spokeClients(
  t: Topology,
  region: string,
  timeoutMs: number,
): Promise<{ spoke: Spoke; client: SpokeClient }[]> {
  return Promise.all(
    regionOf(t, region).spokes.map(async (spoke) => {
      const { token } = await getSecret(spoke.tokenSecretArn, secretRole(t, spoke.tokenSecretArn));
      const conn = { name: spoke.name, apiServer: spoke.apiServer, caData: spoke.caData, token };
      return { spoke, client: clusterClient(conn, timeoutMs) };
    }),
  );
}

/** Every spoke of `region`, read concurrently: app key -> one entry per spoke. */
async function readRegion(
  t: Topology,
  c: CapacityConfig,
  region: string,
  timeoutMs: number,
): Promise<Map<string, SpokeApp[]>> {
  const clients = await spokeClients(t, region, timeoutMs);
  const read = await Promise.all(
    clients.map(({ spoke, client }) => readSpoke(client, spoke.name, c.apps)),
  );
  return new Map(c.apps.map((a) => [appKey(a), read.flatMap((m) => m.get(appKey(a)) ?? [])]));
}

/** A region's running capacity per app: replicas summed over its spokes. */
export interface CapacitySample {
  region: string;
  observedAt: string;
  /** App key -> the largest of Deployment ready replicas, HPA current and HPA desired, summed over spokes. */
  apps: Record<string, number>;
}

/** What the source region runs now, read from its spokes (throws when a spoke cannot be read). */
export async function observeCapacity(
  t: Topology,
  region: string,
  timeoutMs: number,
): Promise<CapacitySample> {
  const c = t.capacity;
  if (!c) return { region, observedAt: new Date().toISOString(), apps: {} };
  const read = await readRegion(t, c, region, timeoutMs);
  const apps: Record<string, number> = {};
  for (const [key, perSpoke] of read) {
    apps[key] = perSpoke.reduce(
      (sum, s) => sum + Math.max(s.ready, s.hpaCurrent ?? 0, s.hpaDesired ?? 0),
      0,
    );
  }
  return { region, observedAt: new Date().toISOString(), apps };
}

// ------------------------------------------------------------------ rolling 24-hour maximum

function db(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient());
}

const capacityKey = (platform: string, region: string) => ({
  pk: `capacity#${platform}`,
  sk: region,
});

/** `2026-12-06T01`: the hour a sample falls in (one stored maximum per hour and app). */
const hourOf = (iso: string) => iso.slice(0, 13);

/**
 * Folds a sample into the region's stored hourly maxima and drops hours older than the window.
 * One item per region: hours x apps stays small (25 x the apps the topology lists).
 */
export async function recordCapacity(platform: string, sample: CapacitySample): Promise<void> {
  const table = process.env.AUDIT_TABLE;
  if (!table || !Object.keys(sample.apps).length) return;
  const stored = await storedHours(platform, sample.region);
  const hour = hourOf(sample.observedAt);
  const current = stored.hours[hour] ?? {};
  for (const [app, n] of Object.entries(sample.apps)) current[app] = Math.max(current[app] ?? 0, n);
  const oldest = hourOf(
    new Date(Date.parse(sample.observedAt) - WINDOW_HOURS * 3_600_000).toISOString(),
  );
  const hours = Object.fromEntries(
    Object.entries({ ...stored.hours, [hour]: current }).filter(([h]) => h >= oldest),
  );
  try {
    await db().send(
      new UpdateCommand({
        TableName: table,
        Key: capacityKey(platform, sample.region),
        UpdateExpression: "SET #hours = :hours, #at = :at",
        ExpressionAttributeNames: { "#hours": "hours", "#at": "observedAt" },
        ExpressionAttributeValues: { ":hours": hours, ":at": sample.observedAt },
      }),
    );
  } catch (e) {
    throw awsError(
      e,
      `storing the observed capacity of ${sample.region} in ${table}`,
      UnexpectedError,
    );
  }
}

async function storedHours(
  platform: string,
  region: string,
): Promise<{ hours: Record<string, Record<string, number>>; observedAt?: string }> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return { hours: {} };
  try {
    const out = await db().send(
      new GetCommand({ TableName: table, Key: capacityKey(platform, region) }),
    );
    const hours = (out.Item?.hours ?? {}) as Record<string, Record<string, number>>;
    const at = out.Item?.observedAt;
    return { hours, ...(typeof at === "string" ? { observedAt: at } : {}) };
  } catch (e) {
    throw awsError(e, `reading the observed capacity of ${region} from ${table}`, UnexpectedError);
  }
}

/** The stored 24-hour maximum of each app in `region`, with the newest sample's time; undefined when none. */
export async function storedCapacity(
  platform: string,
  region: string,
  now = Date.now(),
): Promise<CapacitySample | undefined> {
  const { hours, observedAt } = await storedHours(platform, region);
  const oldest = hourOf(new Date(now - WINDOW_HOURS * 3_600_000).toISOString());
  const apps: Record<string, number> = {};
  for (const [hour, figures] of Object.entries(hours)) {
    if (hour < oldest) continue;
    for (const [app, n] of Object.entries(figures)) apps[app] = Math.max(apps[app] ?? 0, n);
  }
  if (!observedAt || !Object.keys(apps).length) return undefined;
  return { region, observedAt, apps };
}

// ------------------------------------------------------------------ committed floor

/** One app's line of the capacity plan: what the report shows as observed / committed / ready. */
export interface AppFloor {
  app: string;
  /** Replicas the source ran (summed over its spokes); null when unknown. */
  observed: number | null;
  /** The floor committed per target spoke; null when nothing is committed (unknown source). */
  committed: number | null;
  file: string;
  path: string;
  /** The floor `targetPercent` asked for, when the HPA's maxReplicas capped it (`committed` is that max). */
  wanted?: number;
  /**
   * The target's HPA maxReplicas in Git (`maxReplicasPath`), when the topology names it: its
   * value at Plan's head (null: not a number there), and `raisedTo` when the commit raises it.
   */
  maxReplicas?: { path: string; value: number | null; raisedTo?: number };
}

/**
 * Applies the target's HPA maxReplicas (as Git has it) to a floor: a floor above it would be an
 * invalid HPA, so it is capped there (`cap`) or maxReplicas is raised to it (`raise`).
 */
export function limitFloor(
  app: CapacityApp,
  floor: number,
  maxReplicas: unknown,
  targetRegion: string,
): Pick<AppFloor, "committed" | "wanted" | "maxReplicas"> {
  if (!app.maxReplicasPath) return { committed: floor };
  const path = app.maxReplicasPath.replaceAll("{{targetRegion}}", targetRegion);
  const value =
    typeof maxReplicas === "number" && Number.isInteger(maxReplicas) ? maxReplicas : null;
  if (value === null || floor <= value) return { committed: floor, maxReplicas: { path, value } };
  if (app.aboveMaxReplicas === "raise")
    return { committed: floor, maxReplicas: { path, value, raisedTo: floor } };
  return { committed: value, wanted: floor, maxReplicas: { path, value } };
}

/** Where an app's HPA maxReplicas is in Git for `targetRegion` (a read: its value is unused). */
function maxReplicasAt(app: CapacityApp, targetRegion: string): RenderedEdit[] {
  if (!app.maxReplicasPath) return [];
  const path = app.maxReplicasPath.replaceAll("{{targetRegion}}", targetRegion);
  return [{ file: app.file, path, value: 0 }];
}

/** The Git values Plan reads for capacity parity: each app's maxReplicas in the target region. */
export function capacityReads(t: Topology, targetRegion: string): RenderedEdit[] {
  return (t.capacity?.apps ?? []).flatMap((a) => maxReplicasAt(a, targetRegion));
}

/** Plan's capacity decision, carried in the execution state to CommitRetarget and the gate. */
export interface CapacityPlan {
  /** `live`: read from the source now; `stored`: readiness's 24-hour maximum; `unknown`: neither. */
  source: "live" | "stored" | "unknown";
  sourceRegion: string | null;
  /** When the figures were observed, and how old they were when Plan read them. */
  observedAt?: string;
  ageSeconds?: number;
  /** Why the live figure was not used, when it was not. */
  liveError?: string;
  minimumSuccessPercent: number;
  apps: AppFloor[];
}

/** `ceil(percent x observed / spokes)`, within the app's bounds: the floor per target spoke. */
export function floorOf(
  app: CapacityApp,
  c: CapacityConfig,
  observed: number,
  spokes: number,
): number {
  const percent = app.targetPercent ?? c.targetPercent;
  const wanted = Math.ceil((percent * observed) / 100 / Math.max(1, spokes));
  return Math.min(app.max, Math.max(app.min, wanted));
}

/**
 * Decides the floors: the source's live figure when it answers, the stored 24-hour maximum
 * otherwise, else the topology's `whenSourceUnknown` (baseline: commit nothing; refuse: stop).
 */
export async function planCapacity(
  t: Topology,
  input: Pick<FailoverInput, "targetRegion" | "mode">,
  sourceRegion: string | null,
  timeoutMs: number,
  now = Date.now(),
  git: { file: string; path: string; value: unknown }[] = [],
): Promise<CapacityPlan | undefined> {
  const c = t.capacity;
  if (!c) return undefined;
  let sample: CapacitySample | undefined;
  let source: CapacityPlan["source"] = "unknown";
  let liveError: string | undefined;
  if (sourceRegion) {
    try {
      sample = await observeCapacity(t, sourceRegion, timeoutMs);
      source = "live";
    } catch (e) {
      if (!isFailoverError(e)) throw e;
      liveError = e.message;
      sample = await storedCapacity(t.platform, sourceRegion, now);
      if (sample) source = "stored";
    }
  } else liveError = "no source region (nothing serves traffic)";
  const spokes = regionOf(t, input.targetRegion).spokes.length;
  const apps = c.apps.map((a): AppFloor => {
    const observed = sample?.apps[appKey(a)];
    const path = a.path.replaceAll("{{targetRegion}}", input.targetRegion);
    const [max] = maxReplicasAt(a, input.targetRegion);
    const inGit = git.find((v) => v.file === max?.file && v.path === max?.path)?.value;
    return {
      app: appKey(a),
      observed: observed ?? null,
      committed: null,
      file: a.file,
      path,
      ...(observed === undefined
        ? {}
        : limitFloor(a, floorOf(a, c, observed, spokes), inGit, input.targetRegion)),
    };
  });
  if (source === "unknown" && c.whenSourceUnknown === "refuse") {
    throw new CapacityUnknown(
      `the capacity of ${sourceRegion ?? "the source region"} is unknown: it did not answer (${liveError ?? "?"}) and readiness has stored no figure in the last ${WINDOW_HOURS} hours; capacity.whenSourceUnknown is refuse`,
      [
        "run the readiness evaluation while the source answers, or set capacity.whenSourceUnknown: baseline to fail over at the Git baseline",
      ],
    );
  }
  return {
    source,
    sourceRegion,
    ...(sample
      ? {
          observedAt: sample.observedAt,
          ageSeconds: Math.max(0, Math.round((now - Date.parse(sample.observedAt)) / 1000)),
        }
      : {}),
    ...(liveError ? { liveError } : {}),
    minimumSuccessPercent: c.minimumSuccessPercent[input.mode],
    apps,
  };
}

/** The Git edits that commit the floors (none for an app whose source figure is unknown). */
export function capacityEdits(plan: CapacityPlan | undefined): RenderedEdit[] {
  return (plan?.apps ?? []).flatMap((a) =>
    a.committed === null
      ? []
      : [
          { file: a.file, path: a.path, value: a.committed },
          // aboveMaxReplicas: raise: maxReplicas follows the floor in the same commit.
          ...(a.maxReplicas?.raisedTo !== undefined
            ? [{ file: a.file, path: a.maxReplicas.path, value: a.maxReplicas.raisedTo }]
            : []),
        ],
  );
}

/** What the HPA's maxReplicas did to an app's floor, for the plan, report and commit message. */
export function maxReplicasNote(a: AppFloor): string {
  const m = a.maxReplicas;
  if (!m) return "";
  if (m.value === null)
    return ` (HPA maxReplicas not found at ${m.path} in Git: the floor is not checked against it)`;
  if (m.raisedTo !== undefined)
    return ` (HPA maxReplicas raised ${m.value} -> ${m.raisedTo} at ${m.path})`;
  if (a.wanted !== undefined)
    return ` (CAPPED at the HPA's maxReplicas ${m.value} at ${m.path}; ${a.wanted} wanted)`;
  return "";
}

/** One line for Plan's output and the report: where the figures came from and how old they are. */
export function capacityLine(plan: CapacityPlan): string {
  const age =
    plan.ageSeconds === undefined
      ? ""
      : plan.ageSeconds < 120
        ? `, ${plan.ageSeconds} s old`
        : `, ${Math.round(plan.ageSeconds / 60)} min old`;
  const from = plan.sourceRegion ?? "the source region";
  if (plan.source === "unknown")
    return `capacity of ${from} UNKNOWN (${plan.liveError ?? "no figure"}; none stored): NO floor committed, the target runs its Git baseline`;
  const how =
    plan.source === "live"
      ? `live from ${from}`
      : `stored 24-hour maximum of ${from} (live read failed: ${plan.liveError ?? "?"})`;
  const apps = plan.apps
    .map(
      (a) =>
        `${a.app} observed ${a.observed ?? "?"} -> floor ${a.committed ?? "unchanged"}${maxReplicasNote(a)}`,
    )
    .join(", ");
  return `capacity ${how}${age}: ${apps}; gate at ${plan.minimumSuccessPercent}% Ready`;
}

// ------------------------------------------------------------------ the gate

/** One app on the target, as the gate found it. */
export interface AppReadiness {
  app: string;
  observed: number | null;
  committed: number;
  /** Ready replicas on the target, summed over its spokes. */
  ready: number;
  /** Ready replicas each spoke needs: `ceil(minimumSuccessPercent x committed)`. */
  needed: number;
  /** Spokes short of `needed`, with their Pending pods. */
  short: string[];
}

export interface CapacityCheck {
  status: "SUCCEEDED" | "IN_PROGRESS";
  apps: AppReadiness[];
}

/**
 * Pods of a Deployment on a spoke that wait for a node (phase Pending), found by the Deployment's
 * own `spec.selector` (a chart's labels need not include `app.kubernetes.io/name`). 0 when the
 * selector is unknown or the list is refused: the straggler is still named, with its Ready count.
 */
export async function pendingPods(
  client: SpokeClient,
  namespace: string,
  selector: string | undefined,
): Promise<number> {
  if (!selector) return 0;
  const answer = await client.call(`GET /api/v1/namespaces/${namespace}/pods`, () =>
    client.core.listNamespacedPod({
      namespace,
      fieldSelector: "status.phase=Pending",
      labelSelector: selector,
    }),
  );
  // Pending also covers pods scheduled and still pulling images: only those no node can take.
  return "value" in answer
    ? answer.value.items.filter((pod) =>
        (pod.status?.conditions ?? []).some(
          (c) => c.type === "PodScheduled" && c.status === "False" && c.reason === "Unschedulable",
        ),
      ).length
    : 0;
}

/**
 * One check of the target: every app with a committed floor has, on every target spoke, the
 * Deployment at (at least) that floor and `minimumSuccessPercent` of it Ready.
 */
export async function checkCapacity(
  t: Topology,
  plan: CapacityPlan,
  targetRegion: string,
  timeoutMs: number,
): Promise<CapacityCheck> {
  const c = t.capacity;
  if (!c) return { status: "SUCCEEDED", apps: [] };
  const floors = plan.apps.filter(
    (a): a is AppFloor & { committed: number } => a.committed !== null,
  );
  const wanted = c.apps.filter((a) => floors.some((f) => f.app === appKey(a)));
  const clients = await spokeClients(t, targetRegion, timeoutMs);
  const read = await Promise.all(
    clients.map(({ spoke, client }) => readSpoke(client, spoke.name, wanted)),
  );
  // Spokes short of an app's floor although it is applied: their Pending pods are counted, a
  // spoke's lookups at once and at most PENDING_LOOKUPS of them, so one check stays bounded.
  const lookups = new Map<string, Promise<number>>();
  const lookupsPerSpoke = new Map<number, number>();
  const pendingOf = (i: number, app: CapacityApp, s: SpokeApp): Promise<number> | undefined => {
    const key = `${i}/${appKey(app)}`;
    const known = lookups.get(key);
    if (known) return known;
    const n = lookupsPerSpoke.get(i) ?? 0;
    if (n >= PENDING_LOOKUPS) return undefined;
    lookupsPerSpoke.set(i, n + 1);
    const { client } = clients[i] as (typeof clients)[number];
    const lookup = pendingPods(client, app.namespace, s.selector);
    lookups.set(key, lookup);
    return lookup;
  };
  const rows = floors.map((floor) => {
    const app = wanted.find((a) => appKey(a) === floor.app) as CapacityApp;
    const needed = Math.ceil((plan.minimumSuccessPercent * floor.committed) / 100);
    const spokes = read.map((m, i) => {
      const s = m.get(floor.app);
      const scaled = (s?.replicas ?? 0) >= floor.committed;
      const ok = !!s && scaled && s.ready >= needed;
      return { i, s, scaled, ok, pending: s && scaled && !ok ? pendingOf(i, app, s) : undefined };
    });
    return { floor, needed, spokes };
  });
  await Promise.all(lookups.values());
  const apps: AppReadiness[] = [];
  for (const { floor, needed, spokes } of rows) {
    let ready = 0;
    const short: string[] = [];
    for (const { i, s, scaled, ok, pending } of spokes) {
      ready += s?.ready ?? 0;
      if (ok) continue;
      const name = (clients[i] as (typeof clients)[number]).spoke.name;
      short.push(
        !s || s.replicas === undefined
          ? `${name}: Deployment ${floor.app} not found`
          : !scaled
            ? `${name}: ${s.replicas} replicas, the committed floor ${floor.committed} not applied yet`
            : pending
              ? `${name}: ${s.ready}/${floor.committed} Ready, ${await pending} Pending`
              : `${name}: ${s.ready}/${floor.committed} Ready, Pending pods not counted (over ${PENDING_LOOKUPS} short apps on the spoke)`,
      );
    }
    apps.push({
      app: floor.app,
      observed: floor.observed,
      committed: floor.committed,
      ready,
      needed,
      short,
    });
  }
  return { status: apps.some((a) => a.short.length) ? "IN_PROGRESS" : "SUCCEEDED", apps };
}

/**
 * Pending-pod lookups per spoke and check, run at once: bounds a check to one more call's time
 * (the pollBudget in catalog.ts counts it) however many apps are short.
 */
export const PENDING_LOOKUPS = 10;

/** The gate's failure at its deadline: every straggler by name, with its Pending pods. */
export function capacityShort(
  apps: AppReadiness[],
  seconds: number,
  percent: number,
  since = "",
): TargetCapacityShort {
  const short = apps.filter((a) => a.short.length);
  return new TargetCapacityShort(
    `[AwaitCapacity] ${short.length} of ${apps.length} apps below ${percent}% of their committed replicas Ready ${seconds}s ${since || "into the gate"}; traffic was not moved`,
    short
      .slice(0, 10)
      .map(
        (a) =>
          `${a.app} (committed ${a.committed}/spoke, need ${a.needed} Ready): ${a.short.join(", ")}`,
      ),
  );
}

/** Per-call HTTP bound on the target's spokes (as VerifySpoke's). */
const GATE_TIMEOUT_MS = 10_000;

/**
 * AwaitCapacity: one check of the target per invocation, in the same loop as Argo CD's wait (each
 * pass polls Argo CD, then this gate, then waits once), so before Aurora and traffic move. Until
 * Argo CD is done it reads the target only once its own deadline has come.
 * SUCCEEDED once every app with a committed floor has `minimumSuccessPercent` of it Ready on
 * every target spoke. It fails with TargetCapacityShort, naming the apps, when pods are still
 * Pending (no node can take them) at its deadline, or when the floors are still not Ready
 * `gateSeconds` after Argo CD reported the commit Synced and Healthy: a floor never met never
 * lets traffic move. It also sets the loop's wait: Argo CD's pace until Argo CD is done, then its
 * own, short at first (the replicas are expected as soon as Argo CD's rollout is).
 */
export async function awaitCapacityStep(state: FailoverState): Promise<CapacityProgress> {
  const t = runtimeTopology();
  const plan = state.plan.capacity;
  const c = t.capacity;
  const previous = state.capacityGate;
  const argo = state.argo;
  if (previous?.status === "SUCCEEDED") return { ...previous, ...loopPace(previous, argo) };
  if (!c || !plan?.apps.some((a) => a.committed !== null))
    return { status: "SUCCEEDED", skipped: true, ...loopPace(undefined, argo) };
  const window = pollWindow(previous, c.gateSeconds);
  // Once Argo CD is done, the gate's time is the `gateSeconds` after that, whatever it finds.
  const settle =
    argo?.status === "SUCCEEDED"
      ? settleWindow(previous, argo, c.gateSeconds, t.timeouts.argoSyncSeconds)
      : undefined;
  const settling = settle !== undefined;
  const expired = settle ? settle.expired : window.expired;
  const progress = (apps: AppReadiness[] | undefined) => {
    const p = {
      ...window,
      ...(settle ? { settleStartedAt: settle.startedAt, settlePolls: settle.polls } : {}),
      ...(apps ? { apps } : {}),
    };
    return { ...p, ...loopPace({ ...previous, ...p }, argo, previous) };
  };
  // While Argo CD is not done the apps are not ready whatever the gate finds: it reads the target
  // only at its deadline (pods Pending fail it then), not on every pass (no time on the path).
  if (!settling && !expired) return { ...progress(previous?.apps), status: "IN_PROGRESS" };
  let check: CapacityCheck;
  try {
    check = await checkCapacity(t, plan, state.plan.targetRegion, GATE_TIMEOUT_MS);
  } catch (e) {
    if (!(e instanceof SpokeUnreachable)) throw e;
    if (!expired) return { ...progress(previous?.apps), status: "IN_PROGRESS" };
    const failure = new TargetCapacityShort(
      `[AwaitCapacity] the target's spokes did not answer for ${c.gateSeconds}s; traffic was not moved`,
      [e.message],
    );
    return { ...progress(previous?.apps), status: "FAILED", error: failure.toData() };
  }
  // Held only once Argo CD is done: a count read while it still rolls out proves nothing yet.
  if (check.status === "SUCCEEDED" && settling)
    return { ...progress(check.apps), status: "SUCCEEDED" };
  const pending = check.apps.some((a) => a.short.some((s) => PENDING.test(s)));
  if (expired && (settling || pending))
    return {
      ...progress(check.apps),
      status: "FAILED",
      error: capacityShort(
        check.apps,
        c.gateSeconds,
        plan.minimumSuccessPercent,
        settling && !pending ? "after Argo CD reported the commit Synced and Healthy" : "",
      ).toData(),
    };
  return { ...progress(check.apps), status: "IN_PROGRESS" };
}

/**
 * The gate's time after Argo CD's rollout: it opens when Argo CD first reports SUCCEEDED and
 * closes `seconds` later, or at Argo CD's own deadline if that comes first (the apps phase has one
 * deadline), like every poll window (functions/lib/poll.ts).
 */
function settleWindow(
  previous: CapacityProgress | undefined,
  argo: NonNullable<FailoverState["argo"]>,
  seconds: number,
  appsSeconds: number,
  now = new Date(),
): { startedAt: string; polls: number; expired: boolean } {
  const startedAt = previous?.settleStartedAt ?? argo.checkedAt ?? now.toISOString();
  const polls = (previous?.settlePolls ?? 0) + 1;
  const since = (iso: string | undefined) => (now.getTime() - Date.parse(iso ?? "")) / 1000 || 0;
  // The waits the loop asked for since Argo CD's success, and before it in Argo CD's window.
  const waited = previous?.settleStartedAt
    ? (previous.settlePacedSeconds ?? 0) + (previous.nextWaitSeconds ?? 0)
    : 0;
  const argoWaited = (argo.pacedSeconds ?? 0) + (argo.nextWaitSeconds ?? 0);
  const expired =
    since(startedAt) >= seconds ||
    pollsSpent(polls, waited, seconds) ||
    since(argo.startedAt) >= appsSeconds ||
    pollsSpent((argo.polls ?? 0) + polls, argoWaited + waited, appsSeconds);
  return { startedAt, polls, expired };
}

/**
 * The loop's wait after this pass: Argo CD's own while it is not done (the gate rides along),
 * then the gate's pace from Argo CD's success (EXPECTED_SECONDS.capacity after it).
 */
function loopPace(
  gate: CapacityProgress | undefined,
  argo: FailoverState["argo"],
  previous?: CapacityProgress,
): Pick<CapacityProgress, "nextWaitSeconds" | "settlePacedSeconds"> {
  if (argo?.status !== "SUCCEEDED" || !gate?.settleStartedAt)
    return { nextWaitSeconds: argo?.nextWaitSeconds ?? MIN_WAIT_SECONDS };
  const { nextWaitSeconds, pacedSeconds } = paceOf(
    { startedAt: gate.settleStartedAt, checkedAt: gate.checkedAt },
    previous?.settleStartedAt
      ? {
          startedAt: previous.settleStartedAt,
          pacedSeconds: previous.settlePacedSeconds ?? 0,
          nextWaitSeconds: previous.nextWaitSeconds ?? 0,
        }
      : undefined,
    EXPECTED_SECONDS.capacity,
  );
  return { nextWaitSeconds, settlePacedSeconds: pacedSeconds };
}

/** A straggler line with pods waiting for a node. */
const PENDING = /, [1-9]\d* Pending$/;

/**
 * Readiness's part of capacity parity: samples the serving region's running capacity and folds
 * it into the stored 24-hour maximum, so a failover knows it even once that region is gone.
 * Never fails the evaluation: a region that does not answer leaves the stored figures as they are.
 */
export async function sampleServingCapacity(
  t: Topology,
  activeRegion: string | null,
  timeoutMs = GATE_TIMEOUT_MS,
): Promise<CapacitySample | undefined> {
  if (!t.capacity || !activeRegion) return undefined;
  let sample: CapacitySample;
  try {
    sample = await observeCapacity(t, activeRegion, timeoutMs);
  } catch (e) {
    if (isFailoverError(e)) return undefined;
    throw e;
  }
  await recordCapacity(t.platform, sample);
  return sample;
}
