/**
 * Argo CD over its REST API: one bounded check per AwaitArgoSync invocation of whether every
 * selected Application on the target cluster(s) is Synced at the retarget commit and Healthy.
 *
 * Cost is one list call per poll whatever the app count (label `selector` plus `fields`: a few
 * hundred bytes per app instead of several KiB); only the first poll adds per-app calls
 * (refresh, optional sync), and only for target apps that have not reached the commit yet.
 *
 * The hub suffers exactly when a region fails (argo-cd #19816), so every call is bounded and a
 * hub that does not answer (refused, reset, timeout, TLS failure, HTTP 5xx/429, not JSON) makes
 * the whole check move to the next hub in the list; an answer we dislike (401/403, 400) does not.
 *
 * Transport is node:http(s) rather than fetch: a hub with a private CA needs a custom `ca`, and
 * the only undici in node_modules (8.x, transitive) is rejected by Node 22's built-in fetch as a
 * dispatcher ("invalid onRequestStart method"); node:https needs no dependency at all.
 */
import http from "node:http";
import https from "node:https";
import {
  ArgoAuthError,
  ArgoSyncFailed,
  ArgoUnreachable,
  ConfigError,
  type ErrorData,
} from "./errors.ts";
import { redact, registerSecret } from "./redact.ts";

/** One Argo CD API server; hubs after the first are standbys tried when it does not answer. */
export interface ArgoHubConnection {
  name: string;
  url: string;
  token: string;
  /** PEM CA for a hub with a private certificate; it replaces the public roots for that hub. */
  caData?: string;
}

/** The outcome of one poll: small enough for the execution state at thousands of apps. */
export interface SyncCheck {
  status: "SUCCEEDED" | "IN_PROGRESS" | "FAILED";
  /** Name of the hub that answered. */
  hub: string;
  total: number;
  done: number;
  /** Target apps not done yet, by name, each with a short reason. */
  pending: { name: string; reason: string }[];
  error?: ErrorData;
}

/** What AwaitArgoSync asks for; see {@link checkSync}. */
export interface SyncCheckRequest {
  hubs: ArgoHubConnection[];
  /** Kubernetes label selector over the Applications' labels (argocd.appSelector). */
  selector: string;
  appNamespace?: string;
  /** Argo CD cluster names of the target region's spokes. */
  clusters: string[];
  /** The retarget commit SHA every target app must be Synced at. */
  revision: string;
  refresh: "hard" | "normal" | "none";
  /** Ask Argo CD to sync target apps to `revision` on the first poll (apps without auto-sync). */
  sync: boolean;
  firstPoll: boolean;
  /** Bound on each HTTP call (and on the whole first-poll refresh phase). */
  timeoutMs: number;
}

/** Parallel refreshes on the first poll: enough for a few hundred target apps, gentle on a sick hub. */
const REFRESH_CONCURRENCY = 8;
/** A list of 5,000 apps with `fields` is a few MiB; anything far larger is not an Argo CD answer. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** How many failed apps are named in an error (the execution state must stay small). */
const MAX_FAILED_DETAILS = 10;
const MAX_MESSAGE_CHARS = 300;

/**
 * `fields` is not among the swagger's query parameters, but argocd-server filters list answers
 * by it (the Argo CD UI lists applications with `fields=items.metadata.name,...`): only these
 * paths come back, which is what keeps one poll cheap at thousands of apps.
 */
const LIST_FIELDS = [
  "items.metadata.name",
  "items.metadata.namespace",
  "items.spec.destination",
  "items.status.sync.status",
  "items.status.sync.revision",
  "items.status.sync.revisions",
  "items.status.health.status",
  "items.status.operationState.phase",
  "items.status.operationState.message",
  "items.status.operationState.operation.sync.revision",
  "items.status.operationState.operation.sync.revisions",
  "items.status.operationState.syncResult.revision",
  "items.status.operationState.syncResult.revisions",
];

/** The Application fields we read, all optional: a `fields`-filtered answer omits empty ones. */
interface RawApplication {
  metadata?: { name?: string; namespace?: string };
  spec?: { destination?: { name?: string; server?: string } };
  status?: {
    sync?: { status?: string; revision?: string; revisions?: string[] | null };
    health?: { status?: string };
    operationState?: {
      phase?: string;
      message?: string;
      operation?: { sync?: { revision?: string; revisions?: string[] | null } };
      syncResult?: { revision?: string; revisions?: string[] | null };
    };
  };
}

interface TargetApp {
  name: string;
  namespace?: string;
  syncStatus: string;
  /** `status.sync.revision`, or every `status.sync.revisions` entry for a multi-source app. */
  revisions: string[];
  multiSource: boolean;
  health: string;
  phase?: string;
  message?: string;
  /** Revisions the last operation targeted or reached. */
  operationRevisions: string[];
  /** Why the first-poll refresh or sync could not be done; shown while the app is pending. */
  note?: string;
  /** Argo CD refused to start a sync at the revision (shown as a failure). */
  syncRefused?: string;
}

/** A hub that did not answer: the check moves to the next hub. */
class HubDown extends Error {
  readonly why: string;
  readonly timedOut: boolean;
  constructor(why: string, options?: { cause?: unknown; timedOut?: boolean }) {
    super(why, options?.cause === undefined ? undefined : { cause: options.cause });
    this.why = why;
    this.timedOut = options?.timedOut ?? false;
  }
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed while sending",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ENOTFOUND: "host name not found",
  EAI_AGAIN: "DNS lookup failed",
};

function networkReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const code = err.code ?? "";
  const known = NETWORK_REASONS[code];
  if (known) return known;
  if (/^(ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|DEPTH_ZERO|SELF_SIGNED|ERR_OSSL)/.test(code)) {
    return `TLS failure (${code}): ${redact(err.message)}; if the hub has a private CA, set its caData`;
  }
  return redact(`${code || err.name || "error"}: ${err.message}`);
}

interface HubResponse {
  status: number;
  text: string;
}

/** The Argo CD error message of a non-2xx answer (`{"error","code","message"}`), redacted. */
function argoMessage(text: string): string {
  let message = text;
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: unknown };
    const m = body.message ?? body.error;
    if (typeof m === "string") message = m;
  } catch {
    // not JSON: keep the raw text
  }
  return redact(message.replace(/\s+/g, " ").trim()).slice(0, MAX_MESSAGE_CHARS);
}

/** One hub for the duration of one check: a keep-alive agent and bounded calls. */
class HubClient {
  readonly hub: ArgoHubConnection;
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly timeoutMs: number;
  private serverNames: Map<string, string> | undefined;

  constructor(hub: ArgoHubConnection, timeoutMs: number) {
    this.hub = hub;
    this.timeoutMs = timeoutMs;
    try {
      this.base = new URL(hub.url);
    } catch (e) {
      throw new ConfigError(
        `Argo CD hub ${hub.name}: url "${hub.url}" is not a URL; set argocd.hubs[].url to the server's https:// base URL`,
        [],
        { cause: e },
      );
    }
    const options = { keepAlive: true, maxSockets: REFRESH_CONCURRENCY };
    this.agent =
      this.base.protocol === "https:"
        ? new https.Agent({ ...options, ...(hub.caData ? { ca: hub.caData } : {}) })
        : new http.Agent(options);
  }

  close(): void {
    this.agent.destroy();
  }

  private where(): string {
    return `Argo CD hub ${this.hub.name} (${this.base.origin})`;
  }

  /** Sends one request; HubDown when there is no usable answer, ArgoAuthError on 401/403. */
  async call(
    method: "GET" | "POST",
    path: string,
    query: Record<string, string | undefined>,
    options: { body?: unknown; timeoutMs?: number } = {},
  ): Promise<HubResponse> {
    const res = await this.send(
      method,
      path,
      query,
      options.body,
      options.timeoutMs ?? this.timeoutMs,
    );
    if (res.status === 401 || res.status === 403) {
      throw new ArgoAuthError(
        `${this.where()} answered HTTP ${res.status} to ${method} ${path}: the token from tokenSecretArn was rejected; it needs an Argo CD RBAC role with get (and sync) on the selected apps`,
        [argoMessage(res.text)].filter(Boolean),
      );
    }
    if (res.status >= 500 || res.status === 429) {
      throw new HubDown(`HTTP ${res.status} to ${method} ${path}: ${argoMessage(res.text)}`);
    }
    return res;
  }

  /** Parses a 2xx answer; an HTML login page or a proxy's error is "no usable answer". */
  json<T>(res: HubResponse, what: string): T {
    try {
      return JSON.parse(res.text) as T;
    } catch (e) {
      throw new HubDown(
        `answered ${what} with something that is not JSON (a proxy or login page?)`,
        {
          cause: e,
        },
      );
    }
  }

  private send(
    method: string,
    path: string,
    query: Record<string, string | undefined>,
    body: unknown,
    timeoutMs: number,
  ): Promise<HubResponse> {
    const url = new URL(this.base.href.replace(/\/+$/, "") + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = {
      authorization: `Bearer ${this.hub.token}`,
      accept: "application/json",
    };
    if (payload !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(payload);
    }
    const transport = url.protocol === "https:" ? https : http;
    return new Promise<HubResponse>((resolve, reject) => {
      let settled = false;
      const settle = (action: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        action();
      };
      const req = transport.request(url, { method, agent: this.agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) {
            settle(() =>
              reject(
                new HubDown(`answered ${method} ${path} with more than ${MAX_BODY_BYTES} bytes`),
              ),
            );
            req.destroy();
            return;
          }
          chunks.push(chunk);
        });
        res.on("end", () =>
          settle(() =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
          ),
        );
        res.on("error", (e) => settle(() => reject(new HubDown(networkReason(e), { cause: e }))));
      });
      const timer = setTimeout(() => {
        settle(() =>
          reject(
            new HubDown(`no answer to ${method} ${path} within ${timeoutMs} ms`, {
              timedOut: true,
            }),
          ),
        );
        req.destroy();
      }, timeoutMs);
      req.on("error", (e) => settle(() => reject(new HubDown(networkReason(e), { cause: e }))));
      req.end(payload);
    });
  }

  /**
   * Cluster server URL -> Argo CD cluster name, fetched at most once per check and only when an
   * Application names its destination by `server` alone.
   */
  async clusterNames(): Promise<Map<string, string>> {
    if (this.serverNames) return this.serverNames;
    const res = await this.call("GET", "/api/v1/clusters", { fields: "items.name,items.server" });
    const names = new Map<string, string>();
    if (res.status === 200) {
      const list = this.json<{ items?: { name?: string; server?: string }[] | null }>(
        res,
        "the cluster list",
      );
      for (const c of list.items ?? [])
        if (c.name && c.server) names.set(normalizeServer(c.server), c.name);
    }
    this.serverNames = names;
    return names;
  }

  describe(): string {
    return this.where();
  }
}

function normalizeServer(server: string): string {
  return server.replace(/\/+$/, "");
}

function short(sha: string | undefined): string {
  return sha ? sha.slice(0, 7) : "?";
}

function nonEmpty(values: (string | undefined | null)[]): string[] {
  return values.filter((v): v is string => typeof v === "string" && v.length > 0);
}

function toTarget(raw: RawApplication): TargetApp | undefined {
  const name = raw.metadata?.name;
  if (!name) return undefined;
  const sync = raw.status?.sync;
  const op = raw.status?.operationState;
  const multi = nonEmpty(sync?.revisions ?? []);
  return {
    name,
    ...(raw.metadata?.namespace ? { namespace: raw.metadata.namespace } : {}),
    syncStatus: sync?.status || "Unknown",
    revisions: multi.length ? multi : nonEmpty([sync?.revision]),
    multiSource: multi.length > 0,
    health: raw.status?.health?.status || "Unknown",
    ...(op?.phase ? { phase: op.phase } : {}),
    ...(op?.message ? { message: op.message } : {}),
    operationRevisions: nonEmpty([
      op?.operation?.sync?.revision,
      ...(op?.operation?.sync?.revisions ?? []),
      op?.syncResult?.revision,
      ...(op?.syncResult?.revisions ?? []),
    ]),
  };
}

function sameSha(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

function atRevision(app: TargetApp, revision: string): boolean {
  return app.revisions.some((r) => sameSha(r, revision));
}

function operationActive(app: TargetApp): boolean {
  return app.phase === "Running" || app.phase === "Terminating";
}

function isDone(app: TargetApp, revision: string): boolean {
  return (
    app.syncStatus === "Synced" &&
    atRevision(app, revision) &&
    app.health === "Healthy" &&
    !operationActive(app)
  );
}

/** The last operation targeted this revision and ended Failed/Error: Argo CD will not retry it. */
function failedAt(app: TargetApp, revision: string): boolean {
  return (
    (app.phase === "Failed" || app.phase === "Error") &&
    app.operationRevisions.some((r) => sameSha(r, revision))
  );
}

function pendingReason(app: TargetApp, revision: string): string {
  const parts: string[] = [];
  if (app.syncStatus !== "Synced") {
    parts.push(
      app.revisions.length ? `${app.syncStatus} at ${short(app.revisions[0])}` : app.syncStatus,
    );
  } else if (!atRevision(app, revision)) {
    parts.push(`Synced at ${short(app.revisions[0])}, not ${short(revision)}`);
  }
  if (app.health !== "Healthy") parts.push(app.health);
  if (operationActive(app)) parts.push(`operation ${app.phase}`);
  else if (app.phase === "Failed" || app.phase === "Error")
    parts.push(`last operation ${app.phase}`);
  if (app.note) parts.push(app.note);
  return parts.join(", ") || "waiting";
}

interface Listing {
  targets: TargetApp[];
  /** Clusters the selector matched apps on, other than the targets (for the "no apps" error). */
  otherClusters: Set<string>;
}

async function listTargets(client: HubClient, req: SyncCheckRequest): Promise<Listing> {
  const res = await client.call("GET", "/api/v1/applications", {
    selector: req.selector,
    appNamespace: req.appNamespace,
    fields: LIST_FIELDS.join(","),
  });
  if (res.status !== 200) {
    throw new ConfigError(
      `${client.describe()} refused to list applications (HTTP ${res.status}: ${argoMessage(res.text)}); check argocd.appSelector "${req.selector}"${req.appNamespace ? ` and argocd.appNamespace "${req.appNamespace}"` : ""} and that hubs[].url is the Argo CD server's base URL`,
    );
  }
  const list = client.json<{ items?: RawApplication[] | null }>(res, "the application list");
  const wanted = new Set(req.clusters);
  const targets: TargetApp[] = [];
  const otherClusters = new Set<string>();
  for (const raw of list.items ?? []) {
    const cluster = await destinationCluster(client, raw, wanted);
    const app = toTarget(raw);
    if (!app) continue;
    if (cluster !== undefined && wanted.has(cluster)) targets.push(app);
    else otherClusters.add(cluster ?? "(unknown destination)");
  }
  targets.sort((a, b) => a.name.localeCompare(b.name));
  return { targets, otherClusters };
}

/**
 * The Argo CD cluster name an Application deploys to: `spec.destination.name`, or for a
 * destination given by `server` the name of the cluster registered with that URL (or the URL
 * itself when `clusters` lists it as a URL).
 */
async function destinationCluster(
  client: HubClient,
  raw: RawApplication,
  wanted: Set<string>,
): Promise<string | undefined> {
  const dest = raw.spec?.destination;
  if (dest?.name) return dest.name;
  if (!dest?.server) return undefined;
  const server = normalizeServer(dest.server);
  if (wanted.has(server) || wanted.has(dest.server)) return dest.server;
  return (await client.clusterNames()).get(server) ?? dest.server;
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

function appQuery(app: TargetApp, req: SyncCheckRequest): Record<string, string | undefined> {
  return { appNamespace: req.appNamespace ?? app.namespace };
}

/**
 * First poll only: refresh the target apps that have not compared against the commit yet (so
 * Argo CD sees it now rather than at its next Git poll, up to 3 minutes away) and, when asked,
 * sync those not Synced at it. A refresh that times out is only noted: Argo CD's own poll will
 * get there. The refresh phase as a whole ends `timeoutMs` after it began.
 */
async function prime(
  client: HubClient,
  req: SyncCheckRequest,
  apps: TargetApp[],
): Promise<TargetApp[]> {
  const deadline = Date.now() + req.timeoutMs;
  const result = [...apps];
  await inPool(
    apps.map((app, index) => ({ app, index })),
    REFRESH_CONCURRENCY,
    async ({ app, index }) => {
      let current = app;
      if (req.refresh !== "none" && !atRevision(current, req.revision)) {
        current = await refreshApp(client, req, current, deadline - Date.now());
      }
      const syncedAtRevision = current.syncStatus === "Synced" && atRevision(current, req.revision);
      if (req.sync && !syncedAtRevision && !operationActive(current)) {
        current = await syncApp(client, req, current);
      }
      result[index] = current;
    },
  );
  return result;
}

async function refreshApp(
  client: HubClient,
  req: SyncCheckRequest,
  app: TargetApp,
  budgetMs: number,
): Promise<TargetApp> {
  if (budgetMs <= 0) return { ...app, note: "not refreshed (refresh phase out of time)" };
  const path = `/api/v1/applications/${encodeURIComponent(app.name)}`;
  try {
    const res = await client.call(
      "GET",
      path,
      { refresh: req.refresh, ...appQuery(app, req) },
      { timeoutMs: Math.min(req.timeoutMs, budgetMs) },
    );
    if (res.status !== 200) return { ...app, note: `refresh answered HTTP ${res.status}` };
    const refreshed = toTarget(client.json<RawApplication>(res, `the refresh of ${app.name}`));
    return refreshed
      ? { ...refreshed, ...(app.namespace ? { namespace: app.namespace } : {}) }
      : app;
  } catch (e) {
    if (e instanceof HubDown && e.timedOut) return { ...app, note: "refresh timed out" };
    throw e;
  }
}

async function syncApp(
  client: HubClient,
  req: SyncCheckRequest,
  app: TargetApp,
): Promise<TargetApp> {
  const namespace = req.appNamespace ?? app.namespace;
  // A multi-source app would need `revisions` + `sourcePositions` for the right source, which the
  // list does not tell us: it is synced to its target revisions (the branch head) instead.
  const body = {
    name: app.name,
    ...(namespace ? { appNamespace: namespace } : {}),
    ...(app.multiSource ? {} : { revision: req.revision }),
  };
  const res = await client.call(
    "POST",
    `/api/v1/applications/${encodeURIComponent(app.name)}/sync`,
    namespace ? { appNamespace: namespace } : {},
    { body },
  );
  if (res.status === 200) return { ...app, phase: "Running", operationRevisions: [req.revision] };
  const message = argoMessage(res.text);
  if (res.status === 404 || /another operation is already in progress/i.test(message)) return app;
  return { ...app, syncRefused: `sync refused (HTTP ${res.status}): ${message}` };
}

function evaluate(
  hub: string,
  req: SyncCheckRequest,
  listing: Listing,
  apps: TargetApp[],
): SyncCheck {
  const where = `cluster(s) ${req.clusters.join(", ")}`;
  if (apps.length === 0) {
    const others = [...listing.otherClusters].sort();
    return {
      status: "FAILED",
      hub,
      total: 0,
      done: 0,
      pending: [],
      error: new ArgoSyncFailed(
        `Argo CD hub ${hub}: no application matches selector "${req.selector}"${req.appNamespace ? ` in namespace ${req.appNamespace}` : ""} on ${where}; fix argocd.appSelector or the spokes' argocdCluster in the topology so they match the Applications' labels and spec.destination.name`,
        [
          others.length
            ? `the selector matched applications on other clusters only: ${others.slice(0, 10).join(", ")}`
            : "the selector matched no application at all on this hub",
        ],
      ).toData(),
    };
  }
  const done = apps.filter((a) => isDone(a, req.revision));
  const failed = apps.filter(
    (a) => !isDone(a, req.revision) && (a.syncRefused || failedAt(a, req.revision)),
  );
  const pending = apps
    .filter((a) => !isDone(a, req.revision))
    .map((a) => ({ name: a.name, reason: pendingReason(a, req.revision) }));
  const base = { hub, total: apps.length, done: done.length, pending };
  if (failed.length) {
    const details = failed
      .slice(0, MAX_FAILED_DETAILS)
      .map((a) =>
        redact(
          `${a.name}: ${a.syncRefused ?? `operation ${a.phase}: ${a.message ?? "no message"}`}`,
        ).slice(0, MAX_MESSAGE_CHARS),
      );
    if (failed.length > MAX_FAILED_DETAILS)
      details.push(`and ${failed.length - MAX_FAILED_DETAILS} more`);
    return {
      ...base,
      status: "FAILED",
      error: new ArgoSyncFailed(
        `Argo CD hub ${hub}: ${failed.length} of ${apps.length} application(s) on ${where} failed to sync at ${short(req.revision)}; fix the cause (the manifests at that commit, or the cluster), then sync them again (argocd app sync) and re-run: Argo CD does not retry a failed automated sync of the same revision`,
        details,
      ).toData(),
    };
  }
  return { ...base, status: pending.length ? "IN_PROGRESS" : "SUCCEEDED" };
}

async function checkOnHub(client: HubClient, req: SyncCheckRequest): Promise<SyncCheck> {
  const listing = await listTargets(client, req);
  const apps =
    req.firstPoll && (req.refresh !== "none" || req.sync)
      ? await prime(client, req, listing.targets)
      : listing.targets;
  return evaluate(client.hub.name, req, listing, apps);
}

/**
 * One poll: are all apps matching `selector` whose destination is one of `clusters` Synced at
 * `revision`, Healthy and without a running operation? On `firstPoll` it first refreshes (and,
 * with `sync`, syncs) the target apps not at the revision yet.
 *
 * Hubs are tried in order; a hub that does not answer passes the check to the next one, and
 * when none answers it throws ArgoUnreachable (retryable) naming each hub and why. A rejected
 * token throws ArgoAuthError at once: a standby is not a cure for a wrong RBAC role. Worst case
 * per hub: one list and one refresh phase of `timeoutMs` each, plus the sync requests.
 */
export async function checkSync(req: SyncCheckRequest): Promise<SyncCheck> {
  if (req.hubs.length === 0) {
    throw new ConfigError("no Argo CD hub is configured; add one to argocd.hubs in the topology");
  }
  const failures: string[] = [];
  let lastCause: unknown;
  for (const hub of req.hubs) {
    registerSecret(hub.token);
    const client = new HubClient(hub, req.timeoutMs);
    try {
      return await checkOnHub(client, req);
    } catch (e) {
      if (!(e instanceof HubDown)) throw e;
      failures.push(`${client.describe()}: ${e.why}`);
      lastCause = e;
    } finally {
      client.close();
    }
  }
  throw new ArgoUnreachable(
    `no Argo CD hub answered (${req.hubs.map((h) => h.name).join(", ")}); check each hub's argocd-server and the network path to it from the orchestrator, or add a standby hub to argocd.hubs`,
    failures,
    { cause: lastCause },
  );
}
