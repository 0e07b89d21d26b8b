/**
 * An emulator of the Argo CD API server + application controller, for the sandbox and the tests.
 * It reads the REAL Git repository (bare, on disk, with isomorphic-git), renders every
 * ApplicationSet's cluster generator over the registered clusters, and "syncs" by creating or
 * replacing the rendered objects on the fake spokes over their Kubernetes API (HTTPS, bearer
 * token, sandbox CA). Health comes from the spokes' own object status; sync status is Synced when
 * what was last applied equals what Git renders at the branch head.
 *
 * The REST subset the orchestrator uses is served over HTTPS, once per hub name (a primary and a
 * standby listener with the same state behind them), with Argo CD's error shape
 * `{"error","code","message"}`, bearer tokens, `selector`, and the application list's `fields`
 * filter with argocd-server's allow-list (other paths are dropped; Get ignores `fields`). A sync
 * with a `revision` other than the target revision is refused on an auto-synced app, as Argo CD.
 *
 * What is simplified, on purpose:
 * - The "chart": the source path holds plain manifests; `helm.valueFiles` (relative to the path)
 *   and `helm.parameters` make the values, and a Deployment gets `replicas.active` when the
 *   `region` value's `regions.<region>.active` is true (or, in a one-value layout, equals
 *   `global.activeRegion`), else `replicas.passive` (see gitops-layout.ts).
 * - ApplicationSets are read from every YAML file in the repository (standing in for the
 *   app-of-apps that applies them to the hub); only the cluster generator is rendered.
 * - Applications whose cluster stops matching are dropped from the API, and their workloads are
 *   left on the spoke (as `preserveResourcesOnDeletion: true` does); nothing is ever pruned.
 * - An automated sync that Failed at a revision is not retried at that revision (as Argo CD);
 *   an explicit sync is. An unreachable spoke leaves the app Unknown and is retried every poll.
 * - Every Application lives in namespace `argocd`, project as its template says.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import fs from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import http from "node:http";
import https from "node:https";
import type { Socket } from "node:net";
import { posix } from "node:path";
import git from "isomorphic-git";
import { parseAllDocuments } from "yaml";

/** A cluster registered with the hub: what Argo CD keeps in its cluster Secret. */
export interface ArgoClusterSecret {
  name: string;
  server: string;
  labels: Record<string, string>;
  token: string;
  caPem: string;
}

/** What the emulator serves: the repository it reads, the clusters it deploys to, its credentials. */
export interface ArgoEmulatorOptions {
  /** The bare repository on disk (the Git server's repoDir). */
  gitRepoDir: string;
  branch: string;
  clusters: ArgoClusterSecret[];
  /** The API token the orchestrator uses (an Argo CD account's token). */
  apiToken: string;
  /** Local admin for POST /api/v1/session. */
  admin?: { username: string; password: string };
  tls: { certPem: string; keyPem: string };
  /** Compressed Git poll / reconcile interval (Argo CD's default is 120 s + jitter). */
  pollIntervalMs: number;
  /** Names of the listeners; default ["hub-primary", "hub-standby"]. */
  hubs?: string[];
  /**
   * The time model (sandbox/time-model.ts), in sandbox milliseconds. Without it an app sees a
   * new commit at the next pass and syncs at once. With it, an app compares with a new commit
   * only at its own Git poll tick (every `gitPollMs` plus a per-app share of `gitPollJitterMs`,
   * at a per-app phase) or once refreshed (GET ?refresh, a Git webhook), and its sync operation
   * completes `syncMs` after it started.
   */
  timing?: { syncMs: number; gitPollMs: number; gitPollJitterMs: number };
  /**
   * argocd-secret's `webhook.github.secret`: when set, a delivery must carry
   * `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>` or is answered 400.
   */
  webhookSecret?: string;
}

/** An app's way to a commit, in the emulator's own event times (ms epoch). */
export interface AppSyncEvent {
  app: string;
  cluster: string;
  revision: string;
  /** The app compared with the commit (Git poll tick or refresh). */
  detectedAt: number;
  /** Its sync operation to the commit succeeded: Synced and Healthy. */
  syncedAt?: number;
}

/** One Git webhook delivery argocd-server accepted, and how many apps it refreshed. */
export interface WebhookEvent {
  at: number;
  event: string;
  revision: string;
  refreshed: number;
  /** The delivery carried an Authorization header (a Git host sends none). */
  authorization: boolean;
}

/** A running emulator: its hub URLs, fault switches, what it manages, and stop(). */
export interface ArgoEmulator {
  /** Hub name -> `https://127.0.0.1:<port>`; every listener serves the same state. */
  urls: Record<string, string>;
  /** false: connections to that listener are reset (fault argocd-hub-down). */
  setHubReachable(hub: string, reachable: boolean): void;
  /** Per hub: API requests answered (errors included) and connections reset while unreachable. */
  requests(): Record<string, { served: number; refused: number }>;
  /** true: the controller never applies anything new (fault argocd-sync-timeout). */
  setSyncStalled(stalled: boolean): void;
  applications(): {
    name: string;
    cluster: string;
    syncStatus: string;
    revision: string;
    health: string;
  }[];
  /** Runs one reconcile pass now (Git poll, sync, health) and waits for it. */
  reconcileNow(): Promise<void>;
  /**
   * Holds every read of the branch head until the returned release is called: commits pushed
   * meanwhile land between two Git polls, as they can on a real hub that polls every 3 minutes.
   */
  holdGitPolls(): () => void;
  stop(): Promise<void>;
  /** Every app's detection of and sync to each commit since start (time model runs). */
  syncEvents(): AppSyncEvent[];
  /** Every Git webhook delivery accepted (POST /api/webhook), with what it refreshed. */
  webhooks(): WebhookEvent[];
}

type Json = Record<string, unknown>;

const APP_NAMESPACE = "argocd";
const TRACKING_LABEL = "app.kubernetes.io/instance";
const TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id";
const SPOKE_TIMEOUT_MS = 5_000;
const CLUSTER_CONCURRENCY = 8;
const APP_CONCURRENCY = 4;
const MAX_BODY_BYTES = 1024 * 1024;
const RENDER_CACHE_LIMIT = 20_000;
const HEALTH_ORDER = ["Healthy", "Suspended", "Progressing", "Missing", "Degraded", "Unknown"];

/** gRPC codes Argo CD puts in its error bodies. */
const CODES: Record<number, number> = { 400: 3, 401: 16, 403: 7, 404: 5, 405: 12, 409: 6, 500: 13 };

class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code = CODES[status] ?? 2,
  ) {
    super(message);
  }
}

/** The spoke did not answer usably: the app is Unknown and retried at the next poll. */
class SpokeDown extends Error {}
/** The spoke refused an object (4xx): the sync operation fails. */
class ApplyRejected extends Error {}
/** Git does not render for this app (missing path or value file, bad YAML). */
class RenderError extends Error {}

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function sha1(text: string): string {
  return createHash("sha1").update(text).digest("hex");
}

// ---------------------------------------------------------------- selectors and fields

type Requirement = (labels: Record<string, string>) => boolean;

/** A Kubernetes label selector string: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`. */
function parseLabelSelector(selector: string): Requirement[] {
  if (!selector.trim()) return [];
  return selector.split(/,(?![^(]*\))/).map((raw) => {
    const part = raw.trim();
    const set = /^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (set?.[1] && set[3] !== undefined) {
      const key = set[1];
      const options = new Set(set[3].split(",").map((o) => o.trim()));
      return set[2] === "in"
        ? (l) => l[key] !== undefined && options.has(l[key])
        : (l) => l[key] === undefined || !options.has(l[key]);
    }
    const cmp = /^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./-]*)$/.exec(part);
    if (cmp?.[1] && cmp[3] !== undefined) {
      const [key, want] = [cmp[1], cmp[3]];
      return cmp[2] === "!=" ? (l) => l[key] !== want : (l) => l[key] === want;
    }
    const exists = /^(!?)([A-Za-z0-9_./-]+)$/.exec(part);
    if (exists?.[2]) {
      const key = exists[2];
      return exists[1] ? (l) => l[key] === undefined : (l) => l[key] !== undefined;
    }
    throw new ApiError(400, `error parsing labelSelector: unable to parse requirement "${part}"`);
  });
}

/** A metav1.LabelSelector (matchLabels + matchExpressions), as generators use. */
function matchesLabelSelector(selector: unknown, labels: Record<string, string>): boolean {
  if (!isObject(selector)) return true;
  const matchLabels = isObject(selector.matchLabels) ? selector.matchLabels : {};
  for (const [k, v] of Object.entries(matchLabels)) if (labels[k] !== v) return false;
  const expressions = Array.isArray(selector.matchExpressions) ? selector.matchExpressions : [];
  return expressions.every((e: unknown) => {
    if (!isObject(e) || typeof e.key !== "string") return false;
    const values = Array.isArray(e.values) ? e.values.map(String) : [];
    const value = labels[e.key];
    switch (e.operator) {
      case "In":
        return value !== undefined && values.includes(value);
      case "NotIn":
        return value === undefined || !values.includes(value);
      case "Exists":
        return value !== undefined;
      case "DoesNotExist":
        return value === undefined;
      default:
        return false;
    }
  });
}

/** A JSON value at a dotted path, or undefined. */
function at(value: unknown, path: string): unknown {
  let cur = value;
  for (const key of path.split(".")) {
    if (!isObject(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

/**
 * argocd-server's allow-list for the application list's `fields` (argo-cd v3.5.1,
 * pkg/apiclient/application/forwarder_overwrite.go `appFields`), over the JSON of a full
 * Application. Undefined: Go returned a nil interface and the key is left out; null: Go returned
 * a typed nil pointer/slice, which is encoded as `null`. Structs (health, destination, summary,
 * startedAt) are always there. NOTE the server's quirk: `status.operationState.operation.sync`
 * answers with `status.operationState.syncResult` (revision, revisions, resources, source(s)),
 * not with the requested operation. Before v3.5.0 the `spec.*` entries and
 * `status.sync.revision` are not in the list: only `spec` as a whole.
 */
const LIST_FIELDS: Record<string, (app: Json) => unknown> = {
  "metadata.name": (a) => at(a, "metadata.name") ?? "",
  "metadata.namespace": (a) => at(a, "metadata.namespace") ?? "",
  "metadata.annotations": (a) => at(a, "metadata.annotations") ?? null,
  "metadata.labels": (a) => at(a, "metadata.labels") ?? null,
  "metadata.creationTimestamp": (a) => at(a, "metadata.creationTimestamp") ?? null,
  "metadata.deletionTimestamp": (a) => at(a, "metadata.deletionTimestamp") ?? null,
  spec: (a) => at(a, "spec") ?? {},
  "spec.destination": (a) => at(a, "spec.destination") ?? {},
  "spec.project": (a) => at(a, "spec.project") ?? "",
  "spec.source": (a) => at(a, "spec.source") ?? null,
  "spec.sources": (a) => at(a, "spec.sources") ?? null,
  "spec.sourceHydrator": (a) => at(a, "spec.sourceHydrator") ?? null,
  "spec.syncPolicy": (a) => at(a, "spec.syncPolicy") ?? null,
  "status.sourceHydrator": (a) => at(a, "status.sourceHydrator") ?? {},
  "status.summary": (a) => at(a, "status.summary") ?? {},
  "status.sync.status": (a) => at(a, "status.sync.status") ?? "",
  "status.sync.revision": (a) => at(a, "status.sync.revision") ?? "",
  "status.health": (a) => at(a, "status.health") ?? {},
  "status.operationState.startedAt": (a) => at(a, "status.operationState.startedAt"),
  "status.operationState.finishedAt": (a) =>
    at(a, "status.operationState")
      ? (at(a, "status.operationState.finishedAt") ?? null)
      : undefined,
  "status.resources": (a) => {
    const resources = at(a, "status.resources");
    return Array.isArray(resources) && resources.length ? resources : undefined;
  },
  "operation.sync": (a) => (at(a, "operation") ? (at(a, "operation.sync") ?? null) : undefined),
  "status.operationState.phase": (a) => at(a, "status.operationState.phase"),
  "status.operationState.operation.sync": (a) =>
    at(a, "status.operationState")
      ? (at(a, "status.operationState.syncResult") ?? null)
      : undefined,
};

/**
 * The application list as argocd-server answers it with `fields`: only allow-listed per-app
 * paths (each asked for as `items.<path>`, or all but those when the list starts with `-`) are
 * returned; any other path, a sub-path of an allowed one included (`items.status.health.status`),
 * is silently dropped. The list's own `metadata` always comes back. Asking for a path and one
 * of its ancestors (`items.spec` with `items.spec.destination`) makes v3.5.1 fail with
 * "field ... is not a map" depending on Go map order: answered here as that 500, always.
 */
export function filterApplicationList(
  list: { metadata: Json; items: Json[] },
  fields: string | null,
): unknown {
  if (!fields) return list;
  const exclude = fields.startsWith("-");
  const asked = new Set((exclude ? fields.slice(1) : fields).split(","));
  const selected = Object.keys(LIST_FIELDS).filter((f) => asked.has(`items.${f}`) !== exclude);
  for (const field of selected) {
    const parts = field.split(".");
    for (let i = 1; i < parts.length; i++) {
      if (selected.includes(parts.slice(0, i).join("."))) {
        throw new ApiError(500, `field ${field} is not a map`);
      }
    }
  }
  const items = list.items.map((app) => {
    const out: Json = {};
    for (const field of selected) {
      const value = (LIST_FIELDS[field] as (app: Json) => unknown)(app);
      if (value === undefined) continue;
      const parts = field.split(".");
      let node = out;
      parts.slice(0, -1).forEach((key) => {
        if (!isObject(node[key])) node[key] = {};
        node = node[key] as Json;
      });
      node[parts.at(-1) as string] = value;
    }
    return out;
  });
  // Go encodes an empty (nil) item slice as null.
  return { metadata: list.metadata, items: items.length ? items : null };
}

// ---------------------------------------------------------------- Git

/** The files of one commit: path -> blob oid, and directory -> its files' paths. */
interface Snapshot {
  sha: string;
  files: Map<string, string>;
  dirs: Map<string, string[]>;
  appSets: Json[];
}

class GitReader {
  private readonly cache = {};
  private readonly trees = new Map<string, Map<string, string>>();
  private readonly docs = new Map<string, Json[]>();
  private readonly snapshots = new Map<string, Promise<Snapshot>>();

  constructor(
    private readonly gitdir: string,
    private readonly branch: string,
  ) {}

  /** While set, reads of the head wait for it (see ArgoEmulator.holdGitPolls). */
  hold: Promise<void> | undefined;

  async head(): Promise<string> {
    while (this.hold) await this.hold;
    return git.resolveRef({ fs, gitdir: this.gitdir, ref: `refs/heads/${this.branch}` });
  }

  /** A commit SHA for a sync request's revision: a SHA, `HEAD`, a branch or a tag. */
  async resolve(revision: string): Promise<string> {
    if (!revision || revision === "HEAD") return this.head();
    if (/^[0-9a-f]{40}$/i.test(revision)) {
      await git.readCommit({
        fs,
        gitdir: this.gitdir,
        oid: revision.toLowerCase(),
        cache: this.cache,
      });
      return revision.toLowerCase();
    }
    return git.resolveRef({ fs, gitdir: this.gitdir, ref: revision });
  }

  snapshot(sha: string): Promise<Snapshot> {
    let pending = this.snapshots.get(sha);
    if (!pending) {
      pending = this.load(sha);
      pending.catch(() => this.snapshots.delete(sha));
      if (this.snapshots.size > 16) this.snapshots.clear();
      this.snapshots.set(sha, pending);
    }
    return pending;
  }

  private async load(sha: string): Promise<Snapshot> {
    const files = new Map<string, string>();
    await this.walk(sha, "", files);
    const dirs = new Map<string, string[]>();
    for (const path of [...files.keys()].sort()) {
      const dir = posix.dirname(path);
      const list = dirs.get(dir) ?? [];
      list.push(path);
      dirs.set(dir, list);
    }
    const appSets: Json[] = [];
    for (const [path, oid] of [...files].sort(([a], [b]) => a.localeCompare(b))) {
      if (!/\.ya?ml$/.test(path)) continue;
      for (const doc of await this.documents(oid, path)) {
        if (doc.kind === "ApplicationSet" && String(doc.apiVersion).startsWith("argoproj.io/")) {
          appSets.push(doc);
        }
      }
    }
    return { sha, files, dirs, appSets };
  }

  /** Flattens a tree; subtrees are cached by oid, so an unchanged directory is read once. */
  private async walk(oid: string, prefix: string, into: Map<string, string>): Promise<void> {
    let flat = this.trees.get(oid);
    if (!flat) {
      flat = new Map();
      const { tree } = await git.readTree({ fs, gitdir: this.gitdir, oid, cache: this.cache });
      for (const entry of tree) {
        if (entry.type === "blob") flat.set(entry.path, entry.oid);
        else if (entry.type === "tree") {
          const sub = new Map<string, string>();
          await this.walk(entry.oid, "", sub);
          for (const [p, o] of sub) flat.set(`${entry.path}/${p}`, o);
        }
      }
      this.trees.set(oid, flat);
    }
    for (const [p, o] of flat) into.set(prefix + p, o);
  }

  /** The YAML/JSON documents of a blob, parsed once per oid. */
  async documents(oid: string, path: string): Promise<Json[]> {
    const cached = this.docs.get(oid);
    if (cached) return cached;
    const { blob } = await git.readBlob({ fs, gitdir: this.gitdir, oid, cache: this.cache });
    const text = Buffer.from(blob).toString("utf8");
    const parsed = parseAllDocuments(text);
    const docs: Json[] = [];
    for (const doc of Array.isArray(parsed) ? parsed : [parsed]) {
      if (doc.errors.length)
        throw new RenderError(`${path}: ${doc.errors[0]?.message.split("\n")[0]}`);
      const value = doc.toJS();
      if (isObject(value)) docs.push(value);
    }
    this.docs.set(oid, docs);
    return docs;
  }
}

// ---------------------------------------------------------------- ApplicationSets

interface AppSpec {
  project?: string;
  source?: {
    repoURL?: string;
    targetRevision?: string;
    path?: string;
    directory?: { recurse?: boolean };
    helm?: {
      valueFiles?: string[];
      parameters?: { name?: string; value?: string }[];
      values?: string;
      valuesObject?: Json;
    };
  };
  destination?: { name?: string; server?: string; namespace?: string };
  syncPolicy?: {
    automated?: { prune?: boolean; selfHeal?: boolean } | null;
    syncOptions?: string[];
  };
}

interface GeneratedApp {
  name: string;
  appSet: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  spec: AppSpec;
}

function render(template: unknown, params: Record<string, string>): unknown {
  if (typeof template === "string") {
    return template.replace(
      /\{\{\s*\.?([A-Za-z0-9_./-]+)\s*\}\}/g,
      (whole, key: string) => params[key] ?? whole,
    );
  }
  if (Array.isArray(template)) return template.map((t) => render(t, params));
  if (isObject(template)) {
    return Object.fromEntries(
      Object.entries(template).map(([k, v]) => [render(k, params), render(v, params)]),
    );
  }
  return template;
}

function stringMap(v: unknown): Record<string, string> {
  return isObject(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, String(x)])) : {};
}

/** Renders every cluster generator of an ApplicationSet over the clusters it selects. */
function generate(appSet: Json, clusters: ArgoClusterSecret[]): GeneratedApp[] {
  const meta = isObject(appSet.metadata) ? appSet.metadata : {};
  const spec = isObject(appSet.spec) ? appSet.spec : {};
  const template = isObject(spec.template) ? spec.template : {};
  const generators = Array.isArray(spec.generators) ? spec.generators : [];
  const apps: GeneratedApp[] = [];
  for (const generator of generators) {
    if (!isObject(generator) || !isObject(generator.clusters)) continue;
    const selector = generator.clusters.selector;
    const extra = stringMap(generator.clusters.values);
    for (const cluster of clusters) {
      const labels = { "argocd.argoproj.io/secret-type": "cluster", ...cluster.labels };
      if (!matchesLabelSelector(selector, labels)) continue;
      const params: Record<string, string> = {
        name: cluster.name,
        nameNormalized: cluster.name.toLowerCase().replace(/[^a-z0-9-.]/g, "-"),
        server: cluster.server,
      };
      for (const [k, v] of Object.entries(labels)) params[`metadata.labels.${k}`] = v;
      for (const [k, v] of Object.entries(extra)) params[`values.${k}`] = v;
      const rendered = render(template, params) as Json;
      const m = isObject(rendered.metadata) ? rendered.metadata : {};
      if (typeof m.name !== "string" || !m.name) continue;
      apps.push({
        name: m.name,
        appSet: String(meta.name ?? ""),
        labels: stringMap(m.labels),
        annotations: stringMap(m.annotations),
        spec: (isObject(rendered.spec) ? rendered.spec : {}) as AppSpec,
      });
    }
  }
  return apps;
}

// ---------------------------------------------------------------- manifests ("chart")

interface Manifest {
  key: string;
  group: string;
  version: string;
  kind: string;
  namespace: string;
  name: string;
  /** Collection URL path on the spoke. */
  collection: string;
  body: Json;
  hash: string;
}

function getPath(values: Json, path: string): unknown {
  let cur: unknown = values;
  for (const key of path.split(".")) {
    if (!isObject(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

function setPath(values: Json, path: string, value: unknown): void {
  const keys = path.split(".");
  let cur = values;
  keys.forEach((key, i) => {
    if (i === keys.length - 1) cur[key] = value;
    else {
      if (!isObject(cur[key])) cur[key] = {};
      cur = cur[key] as Json;
    }
  });
}

function deepMerge(target: Json, source: Json): Json {
  const out: Json = { ...target };
  for (const [k, v] of Object.entries(source)) {
    out[k] = isObject(v) && isObject(out[k]) ? deepMerge(out[k] as Json, v) : v;
  }
  return out;
}

function plural(kind: string): string {
  const lower = kind.toLowerCase();
  if (lower.endsWith("s")) return `${lower}es`;
  if (lower.endsWith("y")) return `${lower.slice(0, -1)}ies`;
  return `${lower}s`;
}

function collectionPath(group: string, version: string, namespace: string, kind: string): string {
  const base = group ? `/apis/${group}/${version}` : `/api/${version}`;
  return `${base}/namespaces/${encodeURIComponent(namespace)}/${plural(kind)}`;
}

/** Renders an app's manifests at a snapshot: the directory's objects plus the chart rule. */
async function renderManifests(
  reader: GitReader,
  snap: Snapshot,
  app: GeneratedApp,
): Promise<Manifest[]> {
  const source = app.spec.source ?? {};
  const dir = posix.normalize(source.path ?? ".").replace(/^\.\/?|\/+$/g, "") || ".";
  const paths = source.directory?.recurse
    ? [...snap.files.keys()].filter((p) => dir === "." || p.startsWith(`${dir}/`))
    : (snap.dirs.get(dir) ?? []);
  const manifestPaths = paths.filter((p) => /\.(ya?ml|json)$/.test(p));
  if (!manifestPaths.length)
    throw new RenderError(`app path does not exist or holds no manifests: ${dir}`);

  let values: Json = {};
  for (const file of source.helm?.valueFiles ?? []) {
    const path = posix.normalize(posix.join(dir, file));
    const oid = snap.files.get(path);
    if (!oid)
      throw new RenderError(
        `values file ${path} (from ${file}) does not exist at ${snap.sha.slice(0, 7)}`,
      );
    for (const doc of await reader.documents(oid, path)) values = deepMerge(values, doc);
  }
  if (source.helm?.values) {
    const docs = parseAllDocuments(source.helm.values);
    for (const doc of Array.isArray(docs) ? docs : [docs]) {
      const v = doc.toJS();
      if (isObject(v)) values = deepMerge(values, v);
    }
  }
  if (source.helm?.valuesObject) values = deepMerge(values, source.helm.valuesObject);
  for (const p of source.helm?.parameters ?? []) if (p.name) setPath(values, p.name, p.value ?? "");

  const region = getPath(values, "region");
  const activeRegion = getPath(values, "global.activeRegion");
  const flags = getPath(values, "regions");
  const activeReplicas = getPath(values, "replicas.active");
  const passiveReplicas = getPath(values, "replicas.passive");
  const isActive =
    typeof region !== "string"
      ? undefined
      : typeof activeRegion === "string"
        ? region === activeRegion
        : isObject(flags)
          ? isObject(flags[region]) && flags[region].active === true
          : undefined;
  const chartReplicas =
    isActive !== undefined && typeof activeReplicas === "number"
      ? isActive
        ? activeReplicas
        : typeof passiveReplicas === "number"
          ? passiveReplicas
          : 0
      : undefined;

  const manifests: Manifest[] = [];
  for (const path of manifestPaths) {
    const oid = snap.files.get(path) as string;
    for (const doc of await reader.documents(oid, path)) {
      if (typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") continue;
      const body = structuredClone(doc);
      const meta = (isObject(body.metadata) ? body.metadata : {}) as Json;
      if (typeof meta.name !== "string")
        throw new RenderError(`${path}: a ${doc.kind} has no metadata.name`);
      const [group, version] = doc.apiVersion.includes("/")
        ? doc.apiVersion.split("/")
        : ["", doc.apiVersion];
      const namespace = String(meta.namespace ?? app.spec.destination?.namespace ?? "default");
      const key = `${group}/${doc.kind}/${namespace}/${meta.name}`;
      meta.namespace = namespace;
      meta.labels = { ...stringMap(meta.labels), [TRACKING_LABEL]: app.name };
      meta.annotations = {
        ...stringMap(meta.annotations),
        [TRACKING_ANNOTATION]: `${app.name}:${group}/${doc.kind}:${namespace}/${meta.name}`,
      };
      body.metadata = meta;
      // Capacity parity's committed floor: an active region runs at least
      // regions.<region>.minReplicas.<name>; the HPA of the same name starts from that figure.
      const floor =
        isActive && typeof region === "string"
          ? getPath(values, `regions.${region}.minReplicas.${meta.name}`)
          : undefined;
      const replicas =
        chartReplicas !== undefined && typeof floor === "number"
          ? Math.max(chartReplicas, floor)
          : chartReplicas;
      if (doc.kind === "Deployment" && replicas !== undefined && isObject(body.spec)) {
        body.spec.replicas = replicas;
      }
      // The HPA's ceiling: regions.<region>.maxReplicas.<name> where set. Never raised to fit the
      // floor: minReplicas above it is an invalid HPA, which the spoke's API server refuses.
      const ceiling =
        typeof region === "string"
          ? getPath(values, `regions.${region}.maxReplicas.${meta.name}`)
          : undefined;
      if (doc.kind === "HorizontalPodAutoscaler" && replicas !== undefined && isObject(body.spec)) {
        body.spec.minReplicas = Math.max(1, replicas);
        if (typeof ceiling === "number") body.spec.maxReplicas = ceiling;
      }
      manifests.push({
        key,
        group: group ?? "",
        version: version ?? "v1",
        kind: doc.kind,
        namespace,
        name: meta.name,
        collection: collectionPath(group ?? "", version ?? "v1", namespace, doc.kind),
        body,
        hash: sha1(JSON.stringify(body)),
      });
    }
  }
  return manifests;
}

/** The cache key of a render: everything it reads, by content (blob oids), plus the app. */
function renderKey(snap: Snapshot, app: GeneratedApp): string {
  const source = app.spec.source ?? {};
  const dir = posix.normalize(source.path ?? ".").replace(/^\.\/?|\/+$/g, "") || ".";
  const inputs = source.directory?.recurse
    ? [snap.sha]
    : (snap.dirs.get(dir) ?? []).map((p) => snap.files.get(p));
  const valueOids = (source.helm?.valueFiles ?? []).map((f) =>
    snap.files.get(posix.normalize(posix.join(dir, f))),
  );
  return `${app.name}|${JSON.stringify(app.spec)}|${inputs.join(",")}|${valueOids.join(",")}`;
}

// ---------------------------------------------------------------- health

interface Live {
  health: string;
  message?: string;
}

function condition(obj: Json, type: string): Json | undefined {
  const status = isObject(obj.status) ? obj.status : {};
  const conditions = Array.isArray(status.conditions) ? status.conditions : [];
  return conditions.find((c: unknown): c is Json => isObject(c) && c.type === type);
}

/** Argo CD's built-in health for Deployments and ExternalSecrets; anything else is Healthy. */
function objectHealth(kind: string, obj: Json): Live {
  const status = isObject(obj.status) ? obj.status : {};
  const meta = isObject(obj.metadata) ? obj.metadata : {};
  if (kind === "Deployment") {
    const progressing = condition(obj, "Progressing");
    if (progressing?.reason === "ProgressDeadlineExceeded") {
      return {
        health: "Degraded",
        message: String(progressing.message ?? "progress deadline exceeded"),
      };
    }
    const spec = isObject(obj.spec) ? obj.spec : {};
    const replicas = typeof spec.replicas === "number" ? spec.replicas : 1;
    const n = (v: unknown) => (typeof v === "number" ? v : 0);
    if (n(status.observedGeneration) < n(meta.generation)) {
      return {
        health: "Progressing",
        message: "Waiting for rollout to finish: observed generation less than desired",
      };
    }
    if (n(status.updatedReplicas) < replicas) {
      return {
        health: "Progressing",
        message: `Waiting for rollout to finish: ${n(status.updatedReplicas)} out of ${replicas} new replicas have been updated`,
      };
    }
    if (n(status.replicas) > n(status.updatedReplicas)) {
      return {
        health: "Progressing",
        message: "Waiting for rollout to finish: old replicas are pending termination",
      };
    }
    if (n(status.availableReplicas) < n(status.updatedReplicas)) {
      return {
        health: "Progressing",
        message: `Waiting for rollout to finish: ${n(status.availableReplicas)} of ${n(status.updatedReplicas)} updated replicas are available`,
      };
    }
    return { health: "Healthy" };
  }
  if (kind === "ExternalSecret") {
    const ready = condition(obj, "Ready");
    if (ready?.status === "True") return { health: "Healthy" };
    if (ready?.status === "False")
      return { health: "Degraded", message: String(ready.message ?? "not ready") };
    return { health: "Progressing", message: "Waiting for the ExternalSecret to sync" };
  }
  return { health: "Healthy" };
}

function worst(a: string, b: string): string {
  return HEALTH_ORDER.indexOf(b) > HEALTH_ORDER.indexOf(a) ? b : a;
}

// ---------------------------------------------------------------- spokes

interface ClusterRuntime {
  secret: ArgoClusterSecret;
  agent: http.Agent;
  /** Objects known to exist on the spoke (PUT rather than POST). */
  existing: Set<string>;
  namespaces: Set<string>;
  live: Map<string, Live>;
  listedAt: number;
  /** Why the spoke did not answer, until it answers again. */
  down?: string;
  /** The pass in which it went down: its other apps wait for the next pass. */
  downInPass?: number;
}

interface SpokeAnswer {
  status: number;
  body: Json;
}

function spokeRequest(
  c: ClusterRuntime,
  method: string,
  path: string,
  body?: Json,
): Promise<SpokeAnswer> {
  const url = new URL(c.secret.server.replace(/\/+$/, "") + path);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const transport = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const req = transport.request(
      url,
      {
        method,
        agent: c.agent,
        timeout: SPOKE_TIMEOUT_MS,
        headers: {
          authorization: `Bearer ${c.secret.token}`,
          accept: "application/json",
          ...(payload !== undefined
            ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) }
            : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", (e) => reject(new SpokeDown(`${e.message}`)));
        res.on("end", () => {
          let parsed: Json = {};
          try {
            const value: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"));
            if (isObject(value)) parsed = value;
          } catch {
            parsed = {};
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("timeout", () => req.destroy(new SpokeDown(`no answer within ${SPOKE_TIMEOUT_MS} ms`)));
    req.on("error", (e) => {
      const code = (e as NodeJS.ErrnoException).code;
      reject(
        e instanceof SpokeDown ? e : new SpokeDown(code ? `${code}: ${e.message}` : e.message),
      );
    });
    req.end(payload);
  });
}

function statusMessage(answer: SpokeAnswer): string {
  return typeof answer.body.message === "string" ? answer.body.message : `HTTP ${answer.status}`;
}

/** A spoke answer that means "the cluster is not usable" rather than "this object is wrong". */
function checkReachable(c: ClusterRuntime, answer: SpokeAnswer): SpokeAnswer {
  if (answer.status >= 500 || answer.status === 401 || answer.status === 403) {
    throw new SpokeDown(`HTTP ${answer.status}: ${statusMessage(answer)}`);
  }
  c.down = undefined;
  return answer;
}

async function ensureNamespace(c: ClusterRuntime, namespace: string): Promise<void> {
  if (c.namespaces.has(namespace)) return;
  const answer = checkReachable(
    c,
    await spokeRequest(c, "POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: namespace },
    }),
  );
  if (answer.status !== 201 && answer.status !== 409) {
    throw new ApplyRejected(`namespace ${namespace}: ${statusMessage(answer)}`);
  }
  c.namespaces.add(namespace);
}

/** Creates or replaces one object; returns its health from the spoke's answer. */
async function applyObject(
  c: ClusterRuntime,
  m: Manifest,
  createNamespace: boolean,
): Promise<Live> {
  if (createNamespace) await ensureNamespace(c, m.namespace);
  const item = `${m.collection}/${encodeURIComponent(m.name)}`;
  const put = () => spokeRequest(c, "PUT", item, m.body);
  const post = () => spokeRequest(c, "POST", m.collection, m.body);
  let answer = checkReachable(c, await (c.existing.has(m.key) ? put() : post()));
  if (answer.status === 404 && c.existing.has(m.key)) answer = checkReachable(c, await post());
  else if (answer.status === 409 && !c.existing.has(m.key)) answer = checkReachable(c, await put());
  if (answer.status < 200 || answer.status > 299) {
    c.existing.delete(m.key);
    throw new ApplyRejected(`${m.kind} ${m.namespace}/${m.name}: ${statusMessage(answer)}`);
  }
  c.existing.add(m.key);
  return objectHealth(m.kind, answer.body);
}

// ---------------------------------------------------------------- applications

interface Operation {
  phase: "Running" | "Succeeded" | "Failed" | "Error";
  message: string;
  revision: string;
  initiatedBy: { automated: true } | { username: string };
  startedAt: string;
  finishedAt?: string;
  /** Time model: the operation completes no earlier than this (ms epoch). */
  dueAt?: number;
}

interface AppRecord extends GeneratedApp {
  uid: string;
  createdAt: string;
  resourceVersion: number;
  /** The revision Git was last compared at (the branch head then). */
  comparedRevision?: string;
  desired: Manifest[];
  renderError?: string;
  /** Object key -> hash of what was last applied successfully. */
  applied: Map<string, string>;
  operation?: Operation;
  /** An automated sync Failed at this revision: not retried automatically. */
  failedRevision?: string;
  reconciledAt?: string;
  lock: Promise<unknown>;
  /** Last refresh asked for (GET ?refresh or a webhook), ms epoch. */
  refreshRequestedAt?: number;
}

function now(): string {
  return new Date().toISOString();
}

function withLock<T>(app: AppRecord, work: () => Promise<T>): Promise<T> {
  const run = app.lock.then(work, work);
  app.lock = run.catch(() => undefined);
  return run;
}

async function inPool<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) await work(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * argocd-server's GetWebURLRegex: any repoURL naming the same repository as a webhook's web URL
 * (optional scheme http/https/ssh, user, `ssh.`/`altssh.` host prefix, port, `.git`); undefined
 * when the URL does not parse (nothing is refreshed).
 */
export function webUrlRegex(webUrl: string): RegExp | undefined {
  let url: URL;
  try {
    url = new URL(webUrl);
  } catch {
    return undefined;
  }
  const quote = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const host = quote(url.hostname);
  const path = quote(url.pathname.slice(1));
  return new RegExp(
    `^((https?|ssh)://)?([\\w.][\\w.-]{0,30}[\\w.$-]?@)?((alt)?ssh\\.)?${host}(:\\d+)?[:/]${path}(\\.git)?$`,
    "i",
  );
}

/**
 * util/app/path AppFilesHaveChanged: no changed files listed, or no
 * `argocd.argoproj.io/manifest-generate-paths` annotation, means refresh; otherwise a changed
 * file must be one of the paths (absolute from the repo root, else relative to the source path)
 * or under one.
 */
function filesChanged(
  app: { annotations: Record<string, string> },
  source: { path?: string },
  changed: string[],
): boolean {
  const annotation = app.annotations["argocd.argoproj.io/manifest-generate-paths"];
  if (!changed.length || !annotation) return true;
  const paths = annotation
    .split(";")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) =>
      p.startsWith("/") ? p.slice(1) : posix.normalize(posix.join(source.path ?? "", p)),
    );
  if (!paths.length) return true;
  return changed.some((f) =>
    paths.some((p) => f === p || f.startsWith(`${p.replace(/\/$/, "")}/`)),
  );
}

// ---------------------------------------------------------------- the emulator

/** Starts the listeners, loads Git and runs a first full reconcile before resolving. */
export async function startArgoCd(o: ArgoEmulatorOptions): Promise<ArgoEmulator> {
  const hubNames = o.hubs ?? ["hub-primary", "hub-standby"];
  if (!hubNames.length) throw new Error("startArgoCd: give at least one hub name");
  const reader = new GitReader(o.gitRepoDir, o.branch);
  const clusters = new Map<string, ClusterRuntime>(
    o.clusters.map((secret) => [
      secret.name,
      {
        secret,
        agent: secret.server.startsWith("https:")
          ? new https.Agent({ keepAlive: true, maxSockets: APP_CONCURRENCY, ca: secret.caPem })
          : new http.Agent({ keepAlive: true, maxSockets: APP_CONCURRENCY }),
        existing: new Set(),
        namespaces: new Set(),
        live: new Map(),
        listedAt: 0,
      },
    ]),
  );
  const apps = new Map<string, AppRecord>();
  const renders = new Map<string, Manifest[]>();
  const sessions = new Map<string, string>();
  const background = new Set<Promise<unknown>>();
  const healthEveryMs = Math.max(1_000, o.pollIntervalMs * 5);
  let modelSha: string | undefined;
  let modelChain: Promise<unknown> = Promise.resolve();
  let passChain: Promise<unknown> = Promise.resolve();
  let pass = 0;
  let stalled = false;
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  const timers = new Set<NodeJS.Timeout>();
  let resourceVersion = 1;
  const startedAtMs = Date.now();
  /** When the emulator first saw each branch head (ms epoch). */
  const headsSeen = new Map<string, number>();
  const syncLog = new Map<string, AppSyncEvent>();
  const webhookLog: WebhookEvent[] = [];

  const bump = (app: AppRecord) => {
    app.resourceVersion = ++resourceVersion;
  };

  function clusterOf(app: AppRecord): ClusterRuntime | undefined {
    const dest = app.spec.destination ?? {};
    if (dest.name) return clusters.get(dest.name);
    const server = dest.server?.replace(/\/+$/, "");
    return [...clusters.values()].find((c) => c.secret.server.replace(/\/+$/, "") === server);
  }

  async function desiredAt(snap: Snapshot, app: GeneratedApp): Promise<Manifest[]> {
    const key = renderKey(snap, app);
    const cached = renders.get(key);
    if (cached) return cached;
    const manifests = await renderManifests(reader, snap, app);
    if (renders.size >= RENDER_CACHE_LIMIT) renders.clear();
    renders.set(key, manifests);
    return manifests;
  }

  /** Regenerates the Applications when the branch head moved (serialized). */
  function advance(sha: string): Promise<Snapshot> {
    const run = modelChain.then(async () => {
      const snap = await reader.snapshot(sha);
      if (!headsSeen.has(sha)) headsSeen.set(sha, Date.now());
      if (modelSha === sha) return snap;
      const generated = new Map<string, GeneratedApp>();
      for (const appSet of snap.appSets) {
        for (const g of generate(appSet, o.clusters))
          if (!generated.has(g.name)) generated.set(g.name, g);
      }
      for (const name of apps.keys()) if (!generated.has(name)) apps.delete(name);
      for (const [name, g] of generated) {
        const existing = apps.get(name);
        if (existing)
          Object.assign(existing, { labels: g.labels, annotations: g.annotations, spec: g.spec });
        else {
          apps.set(name, {
            ...g,
            uid: randomBytes(16).toString("hex"),
            createdAt: now(),
            resourceVersion: ++resourceVersion,
            desired: [],
            applied: new Map(),
            lock: Promise.resolve(),
          });
        }
      }
      modelSha = sha;
      return snap;
    });
    modelChain = run.catch(() => undefined);
    return run;
  }

  /** A per-app number in [0, 1) that stays the same for the app (its poll phase, its jitter). */
  function share(app: AppRecord, salt: string): number {
    return Number.parseInt(sha1(`${salt}:${app.name}`).slice(0, 8), 16) / 2 ** 32;
  }

  /**
   * Time model: has the app compared with `sha` by now? At its first load, when refreshed since
   * the head appeared, or when one of its Git poll ticks fell after the head appeared.
   */
  function detects(app: AppRecord, sha: string): boolean {
    const timing = o.timing;
    if (!timing || app.comparedRevision === undefined || app.comparedRevision === sha) return true;
    const seen = headsSeen.get(sha) ?? Date.now();
    if ((app.refreshRequestedAt ?? -1) >= seen) return true;
    const period = timing.gitPollMs + share(app, "jitter") * timing.gitPollJitterMs;
    const phase = share(app, "phase") * period;
    const tick = (at: number) => Math.floor((at - startedAtMs - phase) / period);
    return tick(Date.now()) > tick(seen);
  }

  /** Time model: the operation runs once `syncMs` passed (the sync and the rollout). */
  function startTimed(app: AppRecord, operation: Operation, syncMs: number): void {
    operation.dueAt = Date.now() + syncMs;
    app.operation = operation;
    bump(app);
    const timer = setTimeout(() => {
      timers.delete(timer);
      const work = withLock(app, async () => {
        if (app.operation !== operation || !running(app)) return;
        await runOperation(app, await reader.snapshot(operation.revision), operation);
      });
      background.add(work);
      void work.catch(() => undefined).finally(() => background.delete(work));
    }, syncMs);
    timers.add(timer);
    timer.unref();
  }

  function synced(app: AppRecord): boolean {
    return !app.renderError && app.desired.every((m) => app.applied.get(m.key) === m.hash);
  }

  function running(app: AppRecord): boolean {
    return app.operation?.phase === "Running";
  }

  function automated(app: AppRecord): boolean {
    return Boolean(app.spec.syncPolicy?.automated);
  }

  function createsNamespace(app: AppRecord): boolean {
    return (app.spec.syncPolicy?.syncOptions ?? []).includes("CreateNamespace=true");
  }

  function syncStatus(app: AppRecord): string {
    const c = clusterOf(app);
    if (!c || c.down || app.renderError || !app.comparedRevision) return "Unknown";
    return synced(app) ? "Synced" : "OutOfSync";
  }

  function health(app: AppRecord): Live {
    const c = clusterOf(app);
    if (!c)
      return {
        health: "Unknown",
        message: `cluster ${app.spec.destination?.name ?? "?"} is not registered`,
      };
    if (c.down)
      return { health: "Unknown", message: `cluster ${c.secret.name} unreachable: ${c.down}` };
    if (app.renderError) return { health: "Unknown" };
    let result: Live = { health: "Healthy" };
    for (const m of app.desired) {
      const live = c.live.get(m.key) ?? {
        health: "Missing",
        message: `${m.kind} ${m.name} does not exist`,
      };
      if (worst(result.health, live.health) !== result.health) result = live;
    }
    return result;
  }

  /** Applies an app's manifests at `snap`, recording the operation's outcome. */
  async function runOperation(app: AppRecord, snap: Snapshot, operation: Operation): Promise<void> {
    app.operation = operation;
    bump(app);
    if (stalled) return;
    const c = clusterOf(app);
    if (!c) {
      finish(
        app,
        "Error",
        `cluster ${app.spec.destination?.name ?? app.spec.destination?.server} is not registered`,
      );
      return;
    }
    let manifests: Manifest[];
    try {
      manifests = await desiredAt(snap, app);
    } catch (e) {
      finish(app, "Error", `ComparisonError: ${(e as Error).message}`);
      return;
    }
    try {
      for (const m of manifests) {
        if (app.applied.get(m.key) === m.hash && c.existing.has(m.key)) continue;
        c.live.set(m.key, await applyObject(c, m, createsNamespace(app)));
        app.applied.set(m.key, m.hash);
      }
      finish(app, "Succeeded", "successfully synced (all tasks run)");
    } catch (e) {
      if (e instanceof SpokeDown) {
        c.down = e.message;
        c.downInPass = pass;
        operation.message = `waiting for cluster ${c.secret.name}: ${e.message}`;
        bump(app);
        return;
      }
      if (e instanceof ApplyRejected) {
        finish(app, "Failed", `one or more objects failed to apply, reason: ${e.message}`);
        if ("automated" in operation.initiatedBy) app.failedRevision = operation.revision;
        return;
      }
      throw e;
    }
  }

  function finish(app: AppRecord, phase: Operation["phase"], message: string): void {
    if (!app.operation) return;
    const event = syncLog.get(`${app.name}@${app.operation.revision}`);
    if (event && phase === "Succeeded") event.syncedAt ??= Date.now();
    app.operation = { ...app.operation, phase, message, finishedAt: now() };
    bump(app);
  }

  /** Compares an app with Git at `snap`, then auto-syncs or resumes its operation if due. */
  async function reconcileApp(app: AppRecord, snap: Snapshot): Promise<void> {
    const before = `${app.comparedRevision}|${app.renderError}|${synced(app)}`;
    // The platform is deployed before anything is measured: only later syncs take `syncMs`.
    const firstLoad = app.comparedRevision === undefined;
    try {
      app.desired = await desiredAt(snap, app);
      app.renderError = undefined;
    } catch (e) {
      app.desired = [];
      app.renderError = (e as Error).message;
    }
    if (o.timing && app.comparedRevision !== undefined && app.comparedRevision !== snap.sha) {
      const key = `${app.name}@${snap.sha}`;
      if (!syncLog.has(key))
        syncLog.set(key, {
          app: app.name,
          cluster: clusterOf(app)?.secret.name ?? app.spec.destination?.name ?? "",
          revision: snap.sha,
          detectedAt: Date.now(),
        });
    }
    app.comparedRevision = snap.sha;
    app.reconciledAt = now();
    if (`${app.comparedRevision}|${app.renderError}|${synced(app)}` !== before) bump(app);
    const c = clusterOf(app);
    if (stalled || !c || app.renderError || c.downInPass === pass) return;
    if (running(app) && app.operation) {
      if (app.operation.dueAt !== undefined && Date.now() < app.operation.dueAt) return;
      const target = await reader.snapshot(app.operation.revision);
      await runOperation(app, target, app.operation);
      return;
    }
    if (!synced(app) && automated(app) && app.failedRevision !== snap.sha) {
      const operation: Operation = {
        phase: "Running",
        message: "",
        revision: snap.sha,
        initiatedBy: { automated: true },
        startedAt: now(),
      };
      if (o.timing && !firstLoad) startTimed(app, operation, o.timing.syncMs);
      else await runOperation(app, snap, operation);
    }
  }

  /** Re-reads the health of everything the apps on a cluster manage (one list per kind). */
  async function refreshLive(c: ClusterRuntime, clusterApps: AppRecord[]): Promise<void> {
    const kinds = new Map<string, Manifest>();
    for (const app of clusterApps)
      for (const m of app.desired) kinds.set(`${m.group}/${m.version}/${m.kind}`, m);
    const live = new Map<string, Live>();
    /** Kind prefixes (`group/Kind/`) the spoke listed: only those can be known to be missing. */
    const listed = new Set<string>();
    try {
      for (const m of kinds.values()) {
        const base = m.group ? `/apis/${m.group}/${m.version}` : `/api/${m.version}`;
        const answer = checkReachable(
          c,
          await spokeRequest(
            c,
            "GET",
            `${base}/${plural(m.kind)}?labelSelector=${encodeURIComponent(TRACKING_LABEL)}`,
          ),
        );
        if (answer.status !== 200) continue;
        listed.add(`${m.group}/${m.kind}/`);
        for (const item of Array.isArray(answer.body.items) ? answer.body.items : []) {
          if (!isObject(item) || !isObject(item.metadata)) continue;
          const key = `${m.group}/${m.kind}/${String(item.metadata.namespace)}/${String(item.metadata.name)}`;
          live.set(key, objectHealth(m.kind, item));
        }
      }
    } catch (e) {
      if (!(e instanceof SpokeDown)) throw e;
      c.down = e.message;
      c.downInPass = pass;
      return;
    }
    const gone = (key: string) =>
      !live.has(key) && listed.has(key.slice(0, key.indexOf("/", key.indexOf("/") + 1) + 1));
    for (const [key, value] of c.live) if (!gone(key) && !live.has(key)) live.set(key, value);
    c.live = live;
    c.listedAt = Date.now();
    for (const key of [...c.existing]) if (gone(key)) c.existing.delete(key);
    for (const app of clusterApps) {
      const before = synced(app);
      for (const key of [...app.applied.keys()]) if (gone(key)) app.applied.delete(key);
      if (synced(app) !== before) bump(app);
    }
  }

  /** One controller pass: poll Git, reconcile what changed, refresh health where due. */
  async function reconcilePass(): Promise<void> {
    pass++;
    const snap = await advance(await reader.head());
    const byCluster = new Map<ClusterRuntime | undefined, AppRecord[]>();
    for (const app of apps.values()) {
      const c = clusterOf(app);
      const list = byCluster.get(c) ?? [];
      list.push(app);
      byCluster.set(c, list);
    }
    await inPool([...byCluster], CLUSTER_CONCURRENCY, async ([c, clusterApps]) => {
      const due = clusterApps.filter(
        (a) =>
          detects(a, snap.sha) &&
          (a.comparedRevision !== snap.sha ||
            !synced(a) ||
            running(a) ||
            (c !== undefined && Boolean(c.down))),
      );
      await inPool(due, APP_CONCURRENCY, (app) => withLock(app, () => reconcileApp(app, snap)));
      if (!c || c.downInPass === pass) return;
      const unhealthy = clusterApps.some((a) => health(a).health !== "Healthy");
      if (c.down || unhealthy || Date.now() - c.listedAt >= healthEveryMs)
        await refreshLive(c, clusterApps);
    });
  }

  function reconcileNow(): Promise<void> {
    const run = passChain.then(reconcilePass, reconcilePass);
    passChain = run.catch(() => undefined);
    return run;
  }

  function schedule(): void {
    if (stopping) return;
    timer = setTimeout(() => {
      reconcileNow()
        .catch(() => undefined)
        .finally(schedule);
    }, o.pollIntervalMs);
  }

  /** GET with `refresh`: compare with the head now and auto-sync, before answering. */
  async function refreshApp(app: AppRecord): Promise<void> {
    const snap = await advance(await reader.head());
    app.refreshRequestedAt = Date.now();
    await withLock(app, () => reconcileApp(app, snap));
  }

  // ------------------------------------------------------------ API views

  function appView(app: AppRecord): Json {
    const h = health(app);
    const c = clusterOf(app);
    const op = app.operation;
    const conditions: Json[] = [];
    if (app.renderError) conditions.push({ type: "ComparisonError", message: app.renderError });
    if (c?.down)
      conditions.push({
        type: "UnknownError",
        message: `cluster ${c.secret.name} unreachable: ${c.down}`,
      });
    return {
      metadata: {
        name: app.name,
        namespace: APP_NAMESPACE,
        uid: app.uid,
        resourceVersion: String(app.resourceVersion),
        creationTimestamp: app.createdAt,
        labels: app.labels,
        ...(Object.keys(app.annotations).length ? { annotations: app.annotations } : {}),
        ownerReferences: [
          {
            apiVersion: "argoproj.io/v1alpha1",
            kind: "ApplicationSet",
            name: app.appSet,
            controller: true,
          },
        ],
      },
      spec: app.spec,
      // Argo CD keeps the requested operation on the app until the controller completes it.
      ...(op?.phase === "Running"
        ? { operation: { sync: { revision: op.revision }, initiatedBy: op.initiatedBy } }
        : {}),
      status: {
        sync: {
          status: syncStatus(app),
          ...(app.comparedRevision ? { revision: app.comparedRevision } : {}),
          comparedTo: { source: app.spec.source, destination: app.spec.destination },
        },
        health: { status: h.health, ...(h.message ? { message: h.message } : {}) },
        ...(op
          ? {
              operationState: {
                operation: { sync: { revision: op.revision }, initiatedBy: op.initiatedBy },
                phase: op.phase,
                message: op.message,
                startedAt: op.startedAt,
                // The controller records the resolved revision in syncResult as it starts.
                syncResult: { revision: op.revision },
                ...(op.finishedAt ? { finishedAt: op.finishedAt } : {}),
              },
            }
          : {}),
        summary: {},
        ...(conditions.length ? { conditions } : {}),
        ...(app.reconciledAt ? { reconciledAt: app.reconciledAt } : {}),
        sourceType: app.spec.source?.helm ? "Helm" : "Directory",
        resources: app.desired.map((m) => ({
          group: m.group,
          version: m.version,
          kind: m.kind,
          namespace: m.namespace,
          name: m.name,
          status: app.applied.get(m.key) === m.hash ? "Synced" : "OutOfSync",
          health: { status: c?.live.get(m.key)?.health ?? "Missing" },
        })),
      },
    };
  }

  function clusterView(c: ClusterRuntime): Json {
    const count = [...apps.values()].filter((a) => clusterOf(a) === c).length;
    return {
      name: c.secret.name,
      server: c.secret.server,
      labels: c.secret.labels,
      config: { tlsClientConfig: { insecure: false } },
      connectionState: c.down
        ? { status: "Failed", message: `unable to connect to cluster: ${c.down}` }
        : { status: "Successful", message: "" },
      info: { applicationsCount: count },
    };
  }

  function findApp(name: string, query: URLSearchParams): AppRecord {
    const ns = query.get("appNamespace");
    const app = apps.get(name);
    if (!app || (ns && ns !== APP_NAMESPACE)) {
      throw new ApiError(404, `applications.argoproj.io "${name}" not found`);
    }
    return app;
  }

  // ------------------------------------------------------------ API

  function tokenEquals(a: string, b: string): boolean {
    const digest = (s: string) => createHash("sha256").update(s).digest();
    return timingSafeEqual(digest(a), digest(b));
  }

  /** The caller's user name, or 401. */
  function authenticate(req: IncomingMessage): string {
    const header = req.headers.authorization ?? "";
    const bearer = /^Bearer\s+(.+)$/i.exec(header)?.[1];
    const cookie = /(?:^|;\s*)argocd\.token=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
    const token = bearer ?? cookie;
    if (!token) throw new ApiError(401, "no session information");
    if (tokenEquals(token, o.apiToken)) return "gitops-failover";
    for (const [session, user] of sessions) if (tokenEquals(token, session)) return user;
    throw new ApiError(401, "invalid session: token signature is invalid");
  }

  async function readJson(req: IncomingMessage): Promise<Json> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES) throw new ApiError(400, "request body too large");
      chunks.push(chunk as Buffer);
    }
    const text = Buffer.concat(chunks).toString("utf8").trim();
    if (!text) return {};
    try {
      const value: unknown = JSON.parse(text);
      if (isObject(value)) return value;
    } catch {
      // answered below
    }
    throw new ApiError(400, "the request body is not a JSON object");
  }

  async function route(req: IncomingMessage, url: URL): Promise<unknown> {
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "");
    const q = url.searchParams;
    const only = (...allowed: string[]) => {
      if (!allowed.includes(method)) throw new ApiError(405, "Method Not Allowed");
    };
    if (path === "/api/v1/session") {
      only("POST");
      const body = await readJson(req);
      const admin = o.admin;
      if (
        !admin ||
        typeof body.username !== "string" ||
        typeof body.password !== "string" ||
        !tokenEquals(body.username, admin.username) ||
        !tokenEquals(body.password, admin.password)
      ) {
        throw new ApiError(401, "Invalid username or password");
      }
      const token = `argocd-session-${randomBytes(24).toString("hex")}`;
      sessions.set(token, admin.username);
      return { token };
    }
    const user = authenticate(req);
    if (path === "/api/v1/session/userinfo") {
      only("GET");
      return { loggedIn: true, username: user, iss: "argocd" };
    }
    if (path === "/api/v1/applications") {
      only("GET");
      const selector = parseLabelSelector(q.get("selector") ?? "");
      const ns = q.get("appNamespace");
      const projects = [...q.getAll("projects"), ...q.getAll("project")];
      const name = q.get("name");
      const repo = q.get("repo");
      const items = [...apps.values()]
        .filter(
          (a) =>
            (!ns || ns === APP_NAMESPACE) &&
            (!name || a.name === name) &&
            (!projects.length || projects.includes(a.spec.project ?? "default")) &&
            (!repo || a.spec.source?.repoURL === repo) &&
            selector.every((r) => r(a.labels)),
        )
        .sort((a, b) => a.name.localeCompare(b.name))
        .map(appView);
      return filterApplicationList(
        { metadata: { resourceVersion: String(resourceVersion) }, items },
        q.get("fields"),
      );
    }
    const appPath = /^\/api\/v1\/applications\/([^/]+)(\/sync)?$/.exec(path);
    if (appPath?.[1]) {
      const app = findApp(decodeURIComponent(appPath[1]), q);
      if (!appPath[2]) {
        only("GET");
        const refresh = q.get("refresh");
        if (refresh === "hard" || refresh === "normal") await refreshApp(app);
        // The Get answer is not filtered by `fields` (only the list's forwarder reads it).
        return appView(app);
      }
      only("POST");
      const body = await readJson(req);
      if (running(app)) throw new ApiError(400, "another operation is already in progress", 9);
      const wanted = typeof body.revision === "string" && body.revision ? body.revision : "HEAD";
      const targetRevision = app.spec.source?.targetRevision || "HEAD";
      if (automated(app) && wanted !== "HEAD" && wanted !== targetRevision && !body.dryRun) {
        // argocd-server refuses a revision override on an auto-synced app (FailedPrecondition).
        throw new ApiError(
          400,
          `Cannot sync to ${wanted}: auto-sync currently set to ${app.spec.source?.targetRevision ?? ""}`,
          9,
        );
      }
      let sha: string;
      try {
        sha = await reader.resolve(wanted === app.spec.source?.targetRevision ? "HEAD" : wanted);
      } catch {
        throw new ApiError(400, `unable to resolve '${wanted}' to a commit SHA`);
      }
      const operation: Operation = {
        phase: "Running",
        message: "",
        revision: sha,
        initiatedBy: { username: user },
        startedAt: now(),
      };
      if (o.timing) {
        startTimed(app, operation, o.timing.syncMs);
        return appView(app);
      }
      app.operation = operation;
      bump(app);
      const work = withLock(app, async () =>
        runOperation(app, await reader.snapshot(sha), operation),
      );
      background.add(work);
      void work.catch(() => undefined).finally(() => background.delete(work));
      return appView(app);
    }
    if (path === "/api/v1/applicationsets") {
      only("GET");
      const selector = parseLabelSelector(q.get("selector") ?? "");
      const snap = await reader.snapshot(modelSha ?? (await reader.head()));
      const items = snap.appSets.filter((s) =>
        selector.every((r) => r(stringMap(isObject(s.metadata) ? s.metadata.labels : {}))),
      );
      return { metadata: {}, items };
    }
    const appSetPath = /^\/api\/v1\/applicationsets\/([^/]+)$/.exec(path);
    if (appSetPath?.[1]) {
      only("GET");
      const name = decodeURIComponent(appSetPath[1]);
      const snap = await reader.snapshot(modelSha ?? (await reader.head()));
      const found = snap.appSets.find((s) => isObject(s.metadata) && s.metadata.name === name);
      if (!found) throw new ApiError(404, `applicationsets.argoproj.io "${name}" not found`);
      return found;
    }
    if (path === "/api/v1/clusters") {
      only("GET");
      const server = q.get("server") ?? (q.get("id.type") !== "name" ? q.get("id.value") : null);
      const name = q.get("name") ?? (q.get("id.type") === "name" ? q.get("id.value") : null);
      const items = [...clusters.values()]
        .filter((c) => (!server || c.secret.server === server) && (!name || c.secret.name === name))
        .map(clusterView);
      return { metadata: {}, items };
    }
    throw new ApiError(404, "Not Found");
  }

  function send(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
    });
    res.end(text);
  }

  /**
   * POST /api/webhook as argocd-server serves it (util/webhook/webhook.go), for GitHub's payload
   * shape: no API token (a webhook secret would be checked instead; the sandbox sets none), the
   * provider told by its event header, answered at once, the refreshes done afterwards by a
   * worker. A push refreshes (normal) every app with a source whose repoURL names the payload's
   * repository (scheme, user, port and `.git` aside) and whose targetRevision the push moved:
   * HEAD or empty when the pushed branch is the default one, else the same branch name. Apps
   * with a `manifest-generate-paths` annotation are refreshed only when a changed file is under
   * one of its paths or the payload lists no changed files.
   */
  async function webhook(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fail = (status: number, message: string) => {
      req.resume();
      res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
      res.end(`${message}\n`);
    };
    const event = req.headers["x-github-event"];
    if (typeof event !== "string" || !event) {
      // GitLab, Bitbucket, Gogs and Azure DevOps deliveries are not emulated.
      fail(400, "Unknown webhook event");
      return;
    }
    if (req.method !== "POST") {
      fail(405, "Webhook processing failed: invalid HTTP Method");
      return;
    }
    if (event !== "push" && event !== "ping") {
      fail(400, "Webhook processing failed: event not defined to be parsed");
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    if (o.webhookSecret) {
      const want = `sha256=${createHmac("sha256", o.webhookSecret).update(raw).digest("hex")}`;
      const got = String(req.headers["x-hub-signature-256"] ?? "");
      if (!got || !tokenEquals(got, want)) {
        fail(400, "Webhook processing failed: HMAC verification failed");
        return;
      }
    }
    let body: Json;
    try {
      const parsed: unknown = JSON.parse(raw.toString("utf8") || "{}");
      if (!isObject(parsed)) throw new Error("not an object");
      body = parsed;
    } catch {
      fail(400, "Webhook processing failed: error parsing payload");
      return;
    }
    res.writeHead(200);
    res.end();
    if (event === "ping") return;
    const repository = isObject(body.repository) ? body.repository : {};
    const webUrl = typeof repository.html_url === "string" ? repository.html_url : "";
    const ref = typeof body.ref === "string" ? body.ref : "";
    const revision = ref.split("/").slice(2).join("/") || ref;
    const touchedHead = repository.default_branch === revision;
    const changed = (Array.isArray(body.commits) ? body.commits : []).flatMap((c) =>
      isObject(c)
        ? ["added", "modified", "removed"].flatMap((k) =>
            Array.isArray(c[k]) ? (c[k] as unknown[]).map(String) : [],
          )
        : [],
    );
    const record: WebhookEvent = {
      at: Date.now(),
      event,
      revision: typeof body.after === "string" ? body.after : "",
      refreshed: 0,
      authorization: req.headers.authorization !== undefined,
    };
    webhookLog.push(record);
    const repoRegex = webUrlRegex(webUrl);
    if (!repoRegex) return;
    // Like a refresh, the worker compares with the branch head as it is now.
    await advance(await reader.head());
    const at = Date.now();
    for (const app of apps.values()) {
      const sources = [app.spec.source ?? {}];
      const moved = sources.some((src) => {
        const target = (src.targetRevision ?? "").split("/").slice(-1)[0] ?? "";
        const revisionMoved =
          target === "HEAD" || target === ""
            ? touchedHead
            : /^refs\/(heads|tags)\//.test(src.targetRevision ?? "")
              ? revision === target
              : src.targetRevision === revision;
        return (
          revisionMoved && repoRegex.test(src.repoURL ?? "") && filesChanged(app, src, changed)
        );
      });
      if (!moved) continue;
      app.refreshRequestedAt = at;
      record.refreshed++;
    }
    if (record.refreshed) void reconcileNow().catch(() => undefined);
  }

  async function handle(hub: Listener, req: IncomingMessage, res: ServerResponse): Promise<void> {
    hub.served++;
    if (new URL(req.url ?? "/", "https://127.0.0.1").pathname === "/api/webhook") {
      await webhook(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
      return;
    }
    try {
      const body = await route(req, new URL(req.url ?? "/", "https://127.0.0.1"));
      send(res, 200, body);
    } catch (e) {
      const error = e instanceof ApiError ? e : new ApiError(500, (e as Error).message);
      req.resume();
      send(res, error.status, { error: error.message, code: error.code, message: error.message });
    }
  }

  // ------------------------------------------------------------ listeners

  interface Listener {
    server: https.Server;
    sockets: Set<Socket>;
    reachable: boolean;
    served: number;
    refused: number;
  }
  const listeners = new Map<string, Listener>();
  const urls: Record<string, string> = {};

  async function closeListeners(): Promise<void> {
    await Promise.all(
      [...listeners.values()].map(
        (l) =>
          new Promise<void>((resolve) => {
            l.server.close(() => resolve());
            l.server.closeAllConnections();
            for (const s of l.sockets) s.destroy();
          }),
      ),
    );
  }

  try {
    for (const name of hubNames) {
      const listener: Listener = {
        server: https.createServer({ cert: o.tls.certPem, key: o.tls.keyPem }, (req, res) => {
          void handle(listener, req, res);
        }),
        sockets: new Set(),
        reachable: true,
        served: 0,
        refused: 0,
      };
      listener.server.on("connection", (socket: Socket) => {
        if (!listener.reachable) {
          listener.refused++;
          socket.resetAndDestroy();
          return;
        }
        listener.sockets.add(socket);
        socket.once("close", () => listener.sockets.delete(socket));
      });
      listeners.set(name, listener);
      await new Promise<void>((resolve, reject) => {
        listener.server.once("error", reject);
        listener.server.listen(0, "127.0.0.1", () => {
          listener.server.off("error", reject);
          resolve();
        });
      });
      const address = listener.server.address();
      if (!address || typeof address === "string")
        throw new Error(`listener ${name} has no TCP address`);
      urls[name] = `https://127.0.0.1:${address.port}`;
    }
    await reconcileNow();
  } catch (e) {
    await closeListeners();
    for (const c of clusters.values()) c.agent.destroy();
    throw e;
  }
  schedule();

  return {
    urls,
    setHubReachable(hub, reachable) {
      const listener = listeners.get(hub);
      if (!listener) throw new Error(`no hub listener "${hub}" (known: ${hubNames.join(", ")})`);
      listener.reachable = reachable;
      if (!reachable) {
        for (const s of listener.sockets) s.resetAndDestroy();
        listener.sockets.clear();
      }
    },
    requests: () =>
      Object.fromEntries(
        [...listeners].map(([name, l]) => [name, { served: l.served, refused: l.refused }]),
      ),
    setSyncStalled(value) {
      stalled = value;
    },
    applications() {
      return [...apps.values()]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((a) => ({
          name: a.name,
          cluster: clusterOf(a)?.secret.name ?? a.spec.destination?.name ?? "",
          syncStatus: syncStatus(a),
          revision: a.comparedRevision ?? "",
          health: health(a).health,
        }));
    },
    reconcileNow,
    holdGitPolls() {
      let release: () => void = () => {};
      const hold = new Promise<void>((resolve) => {
        release = resolve;
      });
      reader.hold = hold;
      return () => {
        if (reader.hold === hold) reader.hold = undefined;
        release();
      };
    },
    syncEvents: () => [...syncLog.values()].map((e) => ({ ...e })),
    webhooks: () => webhookLog.map((e) => ({ ...e })),
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      for (const t of timers) clearTimeout(t);
      await passChain;
      await Promise.allSettled([...background]);
      await closeListeners();
      for (const c of clusters.values()) c.agent.destroy();
    },
  };
}
