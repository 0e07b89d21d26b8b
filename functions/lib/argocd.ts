/**
 * Argo CD over its REST API: one bounded check per AwaitArgoSync invocation of whether every
 * selected Application on the target cluster(s) is Synced at the retarget commit and Healthy.
 *
 * Cost is one list call per poll whatever the app count (label `selector` plus `fields`, which
 * argocd-server honours only for an allow-list of paths, see LIST_FIELDS) for single-source apps.
 * Per-app Gets are added, bounded in number, concurrency and time, only where the list cannot
 * answer: on the first poll the refresh (and optional sync) of target apps not at the commit yet;
 * on any poll the synced `revisions` of a multi-source app that otherwise looks done (the list
 * never carries them), and the message of an operation that failed at the commit.
 *
 * The hub suffers exactly when a region fails (argo-cd #19816), so every call is bounded and a
 * hub whose list does not answer (refused, reset, timeout, TLS failure, HTTP 5xx/429, not JSON)
 * makes the whole check move to the next hub in the list; an answer we dislike (401/403, 400)
 * does not, nor does a per-app Get that is slow (timeout, 504, 500 "deadline exceeded"): that app
 * stays pending.
 *
 * Transport is node:http(s) rather than fetch: a hub with a private CA needs a custom `ca`, and
 * the only undici in node_modules (8.x, transitive) is rejected by Node 22's built-in fetch as a
 * dispatcher ("invalid onRequestStart method"); node:https needs no dependency at all.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import https from "node:https";
import {
  ArgoAuthError,
  ArgoSyncFailed,
  ArgoUnreachable,
  ConfigError,
  type ErrorData,
  ResponseTooLarge,
} from "./errors.ts";
import { redact, registerSecret } from "./redact.ts";
import { invalidateSecretToken } from "./secrets.ts";

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
  /** Argo CD API calls this check made on the hub that answered (list, clusters, per-app). */
  apiCalls?: number;
  /** Revisions other than the requested one that apps were counted done at (commits on top). */
  acceptedRevisions?: string[];
  /** First poll with `refresh: webhook`: "delivered", or why the delivery was not accepted. */
  webhook?: string;
  /** Apps counted done while Progressing (`acceptProgressing`): the first few, and how many. */
  progressing?: string[];
  progressingCount?: number;
}

/** What the caller makes of a revision an app reports other than the requested one. */
export type RevisionJudgement =
  | { status: "accepted" }
  | { status: "pending"; reason: string }
  | { status: "failed"; error: ErrorData };

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
  /**
   * First poll: `hard`/`normal` refresh each target app not at the commit (one GET each);
   * `webhook` delivers one Git push event to argocd-server instead (see `webhook`), which
   * refreshes every app of the repository the push moved: one call whatever the app count.
   */
  refresh: "hard" | "normal" | "none" | "webhook";
  /** For `refresh: webhook`: the repository's web URL as the apps name it, and the branch pushed. */
  webhook?: { repoUrl: string; branch: string; previousRevision?: string };
  /** Ask Argo CD to sync target apps to `revision` on the first poll (apps without auto-sync). */
  sync: boolean;
  firstPoll: boolean;
  /** Bound on each HTTP call (and on the whole first-poll refresh phase). */
  timeoutMs: number;
  /**
   * Judges the commit SHAs target apps report (Synced at, or a failed operation at) other than
   * `revision`, such as a commit pushed on top of it: an accepted one counts as `revision`, a
   * failed one fails the check. Without it only `revision` itself counts.
   */
  judgeRevisions?: (revisions: string[]) => Promise<Map<string, RevisionJudgement>>;
  /**
   * The capacity floors' Deployments (`namespace/name`) of an ungraceful run whose capacity parity
   * asks for less than 100 % Ready: an app Synced at the commit and Progressing only because of
   * these (a rollout short of nodes) counts as done, and the capacity gate holds their Ready
   * replicas to the minimum. Any other resource not Healthy, or Degraded, still is not done.
   */
  acceptProgressing?: string[];
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
 * by it, and only for an allow-list of per-app paths (argo-cd
 * pkg/apiclient/application/forwarder_overwrite.go `appFields`): any other path, a sub-path of
 * an allowed one included (`items.status.health.status`), is silently dropped. So: `spec` as a
 * whole (its sub-paths are allowed only from v3.5.0, and asking for both fails v3.5.1 with
 * "field ... is not a map"), `status.health` as a whole, and no `status.sync.revisions`
 * (multi-source apps are read with a Get), no operation message (read with a Get on failure).
 * `status.sync.revision` is allowed from v3.5.0 only; an older hub leaves it out and those apps
 * are read with a Get too. `status.operationState.operation.sync` answers with the operation's
 * syncResult (revision, revisions), which is what ties a Failed phase to a commit.
 */
const LIST_FIELDS = [
  "items.metadata.name",
  "items.metadata.namespace",
  "items.spec",
  "items.status.sync.status",
  "items.status.sync.revision",
  "items.status.health",
  "items.status.operationState.phase",
  "items.status.operationState.operation.sync",
];

interface RawRevisions {
  revision?: string;
  revisions?: string[] | null;
}

/** The Application fields we read, all optional: a `fields`-filtered answer omits many. */
interface RawApplication {
  metadata?: { name?: string; namespace?: string };
  spec?: {
    destination?: { name?: string; server?: string };
    sources?: unknown[] | null;
    syncPolicy?: { automated?: unknown } | null;
  } | null;
  status?: {
    sync?: { status?: string; revision?: string; revisions?: string[] | null };
    health?: { status?: string };
    /** Asked for only with `acceptProgressing` (a list with every app's resources is large). */
    resources?: {
      kind?: string;
      namespace?: string;
      name?: string;
      health?: { status?: string };
    }[];
    operationState?: {
      phase?: string;
      message?: string;
      /** In the list: the syncResult (see LIST_FIELDS); in a Get: the requested operation. */
      operation?: { sync?: RawRevisions | null } | null;
      syncResult?: RawRevisions | null;
    };
  };
}

interface TargetApp {
  name: string;
  namespace?: string;
  /** `Kind/namespace/name` of each resource not Healthy, when the answer carried resources. */
  unhealthy?: string[];
  syncStatus: string;
  /** `status.sync.revision`, or every `status.sync.revisions` entry for a multi-source app. */
  revisions: string[];
  multiSource: boolean;
  /**
   * false: the answer could not carry the synced revision(s) (a multi-source app in the list, or
   * a hub before v3.5 that leaves `status.sync.revision` out of it); a Get reads them.
   */
  revisionsKnown: boolean;
  /** The whole Application was read (a Get), not the list's subset. */
  complete: boolean;
  /** `spec.syncPolicy.automated` is set: Argo CD refuses a sync to another revision. */
  automated: boolean;
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

/**
 * A hub that did not answer: the check moves to the next hub, unless the call was a per-app one
 * that was only slow (`timedOut`: no answer in time, or HTTP 504 / 500 "deadline exceeded").
 */
class HubDown extends Error {
  readonly why: string;
  readonly timedOut: boolean;
  /** The HTTP status of a slow answer (504, 500); undefined when there was no answer. */
  readonly status: number | undefined;
  constructor(why: string, options?: { cause?: unknown; timedOut?: boolean; status?: number }) {
    super(why, options?.cause === undefined ? undefined : { cause: options.cause });
    this.why = why;
    this.timedOut = options?.timedOut ?? false;
    this.status = options?.status;
  }
}

/** What a per-app call that was only slow leaves as the app's note. */
function slowNote(what: string, e: HubDown): string {
  return e.status ? `${what} pending (hub answered HTTP ${e.status})` : `${what} timed out`;
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
  /** Why the cluster list could not resolve servers (refused), if it could not. */
  clustersRefused: string | undefined;
  /** Requests sent to this hub during the check. */
  calls = 0;

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
      // A rotated token: the next invocation must read the secret again, not the cached value.
      if (res.status === 401) invalidateSecretToken(this.hub.token);
      throw new ArgoAuthError(
        `${this.where()} answered HTTP ${res.status} to ${method} ${path}: the token from tokenSecretArn was rejected; it needs an Argo CD RBAC role with get (and sync) on the selected apps`,
        [argoMessage(res.text)].filter(Boolean),
      );
    }
    if (res.status >= 500 || res.status === 429) {
      const message = argoMessage(res.text);
      // A refresh that outlives argocd-server's own deadline: slow, not down.
      const slow = res.status === 504 || (res.status === 500 && /deadline exceeded/i.test(message));
      throw new HubDown(`HTTP ${res.status} to ${method} ${path}: ${message}`, {
        ...(slow ? { timedOut: true, status: res.status } : {}),
      });
    }
    return res;
  }

  /** POST /api/webhook with a GitHub push event: no API token, the event in its header. */
  push(body: unknown): Promise<HubResponse> {
    return this.send("POST", "/api/webhook", {}, body, this.timeoutMs, {
      "x-github-event": "push",
      "x-github-delivery": randomUUID(),
      "user-agent": "GitHub-Hookshot/gitops-failover",
    });
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
    /** A webhook delivery: these headers, and no API token. */
    webhookHeaders?: Record<string, string>,
  ): Promise<HubResponse> {
    const url = new URL(this.base.href.replace(/\/+$/, "") + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = webhookHeaders
      ? { ...webhookHeaders }
      : { authorization: `Bearer ${this.hub.token}`, accept: "application/json" };
    if (payload !== undefined) {
      headers["content-type"] = "application/json";
      headers["content-length"] = Buffer.byteLength(payload);
    }
    const transport = url.protocol === "https:" ? https : http;
    this.calls++;
    return new Promise<HubResponse>((resolve, reject) => {
      let settled = false;
      const settle = (action: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        action();
      };
      const tooLarge = () => {
        settle(() =>
          reject(
            new ResponseTooLarge(
              `${this.where()} answered ${method} ${path} with more than ${MAX_BODY_BYTES} bytes, far more than any Argo CD answer: check that the url is argocd-server's and that argocd.appSelector selects the platform's apps only`,
            ),
          ),
        );
        req.destroy();
      };
      const req = transport.request(url, { method, agent: this.agent, headers }, (res) => {
        if (Number(res.headers["content-length"] ?? 0) > MAX_BODY_BYTES) return tooLarge();
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_BODY_BYTES) return tooLarge();
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
   * Application names its destination by `server` alone. Argo CD lists only the clusters the
   * token may `get`, and refuses the list (403) to a token without any: both leave servers
   * unresolved, which listTargets refuses to guess about.
   */
  async clusterNames(): Promise<Map<string, string>> {
    if (this.serverNames) return this.serverNames;
    const names = new Map<string, string>();
    this.serverNames = names;
    let res: HubResponse;
    try {
      res = await this.call("GET", "/api/v1/clusters", {});
    } catch (e) {
      if (!(e instanceof ArgoAuthError)) throw e;
      this.clustersRefused = "GET /api/v1/clusters was refused (HTTP 401/403)";
      return names;
    }
    if (res.status !== 200) {
      this.clustersRefused = `GET /api/v1/clusters answered HTTP ${res.status}: ${argoMessage(res.text)}`;
    } else {
      const list = this.json<{ items?: { name?: string; server?: string }[] | null }>(
        res,
        "the cluster list",
      );
      for (const c of list.items ?? [])
        if (c.name && c.server) names.set(normalizeServer(c.server), c.name);
    }
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

/** An app from the list (`complete` false) or from a Get of the whole Application. */
function toTarget(raw: RawApplication, complete: boolean): TargetApp | undefined {
  const name = raw.metadata?.name;
  if (!name) return undefined;
  const sync = raw.status?.sync;
  const op = raw.status?.operationState;
  const multi = nonEmpty(sync?.revisions ?? []);
  const multiSource = (raw.spec?.sources ?? []).length > 0 || multi.length > 0;
  return {
    name,
    ...(raw.metadata?.namespace ? { namespace: raw.metadata.namespace } : {}),
    syncStatus: sync?.status || "Unknown",
    revisions: multiSource ? multi : nonEmpty([sync?.revision]),
    multiSource,
    revisionsKnown: complete || multi.length > 0 || (!multiSource && sync?.revision !== undefined),
    complete,
    automated: Boolean(raw.spec?.syncPolicy?.automated),
    health: raw.status?.health?.status || "Unknown",
    ...(raw.status?.resources
      ? {
          unhealthy: raw.status.resources
            .filter((r) => r.health?.status !== undefined && r.health.status !== "Healthy")
            .map((r) => `${r.kind ?? "?"}/${r.namespace ?? ""}/${r.name ?? "?"}`),
        }
      : {}),
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

/** Revisions (lower case) judged to count as the requested one. */
type Accepted = ReadonlySet<string>;

function atRevision(app: TargetApp, revision: string, accepted?: Accepted): boolean {
  return app.revisions.some((r) => sameSha(r, revision) || accepted?.has(r.toLowerCase()));
}

function operationActive(app: TargetApp): boolean {
  return app.phase === "Running" || app.phase === "Terminating";
}

/**
 * Healthy, or Progressing only because of Deployments in `floored` (`namespace/name`: an
 * ungraceful run's capacity floors below 100 %): a rollout waiting for nodes, whose Ready
 * replicas the capacity gate holds to its minimum. Any other resource not Healthy still waits.
 */
function healthOk(app: TargetApp, floored?: ReadonlySet<string>): boolean {
  if (app.health === "Healthy") return true;
  if (!floored?.size || app.health !== "Progressing" || !app.unhealthy?.length) return false;
  return app.unhealthy.every((r) => {
    const [kind, namespace, name] = r.split("/");
    return kind === "Deployment" && floored.has(`${namespace}/${name}`);
  });
}

/** `acceptProgressing` as a set (undefined when empty). */
function floorSet(req: SyncCheckRequest): ReadonlySet<string> | undefined {
  return req.acceptProgressing?.length ? new Set(req.acceptProgressing) : undefined;
}

function isDone(
  app: TargetApp,
  revision: string,
  accepted?: Accepted,
  progressing?: ReadonlySet<string>,
): boolean {
  return (
    app.syncStatus === "Synced" &&
    atRevision(app, revision, accepted) &&
    healthOk(app, progressing) &&
    !operationActive(app)
  );
}

/** The last operation targeted this revision and ended Failed/Error: Argo CD will not retry it. */
function failedAt(app: TargetApp, revision: string, accepted?: Accepted): boolean {
  return (
    (app.phase === "Failed" || app.phase === "Error") &&
    app.operationRevisions.some((r) => sameSha(r, revision) || accepted?.has(r.toLowerCase()))
  );
}

function pendingReason(
  app: TargetApp,
  revision: string,
  accepted?: Accepted,
  judged?: Map<string, RevisionJudgement>,
): string {
  const parts: string[] = [];
  if (app.syncStatus !== "Synced") {
    parts.push(
      app.revisions.length ? `${app.syncStatus} at ${short(app.revisions[0])}` : app.syncStatus,
    );
  } else if (!app.revisionsKnown) {
    parts.push(
      app.note ? "Synced" : `Synced, ${app.multiSource ? "revisions" : "revision"} not read`,
    );
  } else if (!atRevision(app, revision, accepted)) {
    const judgement = judged?.get(app.revisions[0]?.toLowerCase() ?? "");
    const why = judgement?.status === "pending" ? ` (${judgement.reason})` : "";
    parts.push(`Synced at ${short(app.revisions[0])}, not ${short(revision)}${why}`);
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

const UNRESOLVED = Symbol("unresolved destination server");

async function listTargets(client: HubClient, req: SyncCheckRequest): Promise<Listing> {
  const res = await client.call("GET", "/api/v1/applications", {
    selector: req.selector,
    appNamespace: req.appNamespace,
    fields: [
      ...LIST_FIELDS,
      ...(req.acceptProgressing?.length ? ["items.status.resources"] : []),
    ].join(","),
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
  const unresolved: string[] = [];
  for (const raw of list.items ?? []) {
    const app = toTarget(raw, false);
    if (!app) continue;
    const cluster = await destinationCluster(client, raw, wanted);
    if (cluster === UNRESOLVED) unresolved.push(`${app.name} -> ${raw.spec?.destination?.server}`);
    else if (cluster !== undefined && wanted.has(cluster)) targets.push(app);
    else otherClusters.add(cluster ?? "(unknown destination)");
  }
  if (unresolved.length) throw unresolvedError(client, unresolved);
  targets.sort((a, b) => a.name.localeCompare(b.name));
  return { targets, otherClusters };
}

/**
 * Apps whose `spec.destination.server` no registered cluster has: they may deploy to the target
 * region, so skipping them could call the failover done too early, and waiting for them only
 * ends at the step's deadline. Argo CD lists only the clusters a token may `get`, so this is
 * almost always the token's RBAC: fail now, saying so.
 */
function unresolvedError(client: HubClient, unresolved: string[]): ArgoAuthError {
  const why = client.clustersRefused ?? "the cluster list does not include their server";
  return new ArgoAuthError(
    `${client.describe()}: ${unresolved.length} selected application(s) deploy to a server URL that /api/v1/clusters does not resolve to a cluster name (${why}), so whether they run on the target region cannot be told; Argo CD lists only the clusters the token may read: give its RBAC role \`clusters, get\` on them (or name destinations by spec.destination.name, or list the server URL among the spokes' argocdCluster)`,
    unresolved.slice(0, MAX_FAILED_DETAILS).map((u) => redact(u).slice(0, MAX_MESSAGE_CHARS)),
  );
}

/**
 * The Argo CD cluster name an Application deploys to: `spec.destination.name`, or for a
 * destination given by `server` the name of the cluster registered with that URL (or the URL
 * itself when `clusters` lists it as a URL); UNRESOLVED when no readable cluster has that URL.
 */
async function destinationCluster(
  client: HubClient,
  raw: RawApplication,
  wanted: Set<string>,
): Promise<string | typeof UNRESOLVED | undefined> {
  const dest = raw.spec?.destination;
  if (dest?.name) return dest.name;
  if (!dest?.server) return undefined;
  const server = normalizeServer(dest.server);
  if (wanted.has(server) || wanted.has(dest.server)) return dest.server;
  return (await client.clusterNames()).get(server) ?? UNRESOLVED;
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
 * sync those not Synced at it that are not auto-synced (Argo CD refuses a sync to another
 * revision on those, and the refresh is all they need). A refresh that is slow is only noted:
 * Argo CD's own poll will get there. The per-app phase as a whole ends at `deadline`.
 */
async function prime(
  client: HubClient,
  req: SyncCheckRequest,
  apps: TargetApp[],
  deadline: number,
  accepted?: Accepted,
): Promise<TargetApp[]> {
  const result = [...apps];
  await inPool(
    apps.map((app, index) => ({ app, index })),
    REFRESH_CONCURRENCY,
    async ({ app, index }) => {
      let current = app;
      if (
        (req.refresh === "hard" || req.refresh === "normal") &&
        !atRevision(current, req.revision, accepted)
      ) {
        current = await readApp(client, req, current, deadline, req.refresh);
      }
      // Synced at an accepted commit on top: a sync to the retarget commit would go backwards.
      const syncedAtRevision =
        current.syncStatus === "Synced" && atRevision(current, req.revision, accepted);
      if (req.sync && !current.automated && !syncedAtRevision && !operationActive(current)) {
        // the sync requests get one more `timeoutMs` after the refreshes, as a whole
        current = await syncApp(client, req, current, deadline + req.timeoutMs);
      }
      result[index] = current;
    },
  );
  return result;
}

/**
 * A Get of the whole Application (with `refresh`, blocking until Argo CD compared it again).
 * Out of time, or slow to answer: the app keeps what the list said, with a note.
 */
async function readApp(
  client: HubClient,
  req: SyncCheckRequest,
  app: TargetApp,
  deadline: number,
  refresh?: "hard" | "normal",
): Promise<TargetApp> {
  const what = refresh ? "refresh" : app.revisionsKnown ? "read" : "revisions read";
  const budgetMs = deadline - Date.now();
  if (budgetMs <= 0) return { ...app, note: `${what} not done (out of time this poll)` };
  const path = `/api/v1/applications/${encodeURIComponent(app.name)}`;
  try {
    const res = await client.call(
      "GET",
      path,
      { ...(refresh ? { refresh } : {}), ...appQuery(app, req) },
      { timeoutMs: Math.min(req.timeoutMs, budgetMs) },
    );
    if (res.status !== 200) return { ...app, note: `${what} answered HTTP ${res.status}` };
    const full = toTarget(client.json<RawApplication>(res, `the Get of ${app.name}`), true);
    return full ? { ...full, ...(app.namespace ? { namespace: app.namespace } : {}) } : app;
  } catch (e) {
    if (e instanceof HubDown && e.timedOut) return { ...app, note: slowNote(what, e) };
    throw e;
  }
}

async function syncApp(
  client: HubClient,
  req: SyncCheckRequest,
  app: TargetApp,
  deadline: number,
): Promise<TargetApp> {
  const budgetMs = deadline - Date.now();
  if (budgetMs <= 0) return { ...app, note: "sync not sent (out of time this poll)" };
  const namespace = req.appNamespace ?? app.namespace;
  // A multi-source app would need `revisions` + `sourcePositions` for the right source, which the
  // list does not tell us: it is synced to its target revisions (the branch head) instead.
  const body = {
    name: app.name,
    ...(namespace ? { appNamespace: namespace } : {}),
    ...(app.multiSource ? {} : { revision: req.revision }),
    prune: false,
  };
  let res: HubResponse;
  try {
    res = await client.call(
      "POST",
      `/api/v1/applications/${encodeURIComponent(app.name)}/sync`,
      namespace ? { appNamespace: namespace } : {},
      { body, timeoutMs: Math.min(req.timeoutMs, budgetMs) },
    );
  } catch (e) {
    if (e instanceof HubDown && e.timedOut) return { ...app, note: slowNote("sync", e) };
    throw e;
  }
  if (res.status === 200) return { ...app, phase: "Running", operationRevisions: [req.revision] };
  const message = argoMessage(res.text);
  if (res.status === 404 || /another operation is already in progress/i.test(message)) return app;
  // Auto-sync turned on since the list was read: Argo CD's own sync will get there.
  if (/auto-sync currently set to/i.test(message))
    return { ...app, note: "sync left to auto-sync" };
  return { ...app, syncRefused: `sync refused (HTTP ${res.status}): ${message}` };
}

/**
 * What the list cannot say, read with one Get per app (bounded by `deadline`, REFRESH_CONCURRENCY
 * at a time): the synced revisions of an app that is otherwise done (multi-source, or a hub
 * before v3.5), and the message (and the operation's own revision, when the list had no
 * syncResult) of at most MAX_FAILED_DETAILS operations that ended Failed/Error at the commit.
 */
async function readWhatTheListLacks(
  client: HubClient,
  req: SyncCheckRequest,
  apps: TargetApp[],
  deadline: number,
  accepted?: Accepted,
): Promise<TargetApp[]> {
  const floored = floorSet(req);
  const needsRevisions = (a: TargetApp) =>
    !a.revisionsKnown && a.syncStatus === "Synced" && healthOk(a, floored) && !operationActive(a);
  const ended = (a: TargetApp) => a.phase === "Failed" || a.phase === "Error";
  const failures = apps
    .filter(
      (a) =>
        !a.complete &&
        ended(a) &&
        (a.operationRevisions.length === 0 || failedAt(a, req.revision, accepted)),
    )
    .slice(0, MAX_FAILED_DETAILS);
  const wanted = new Set([...apps.filter((a) => !a.complete && needsRevisions(a)), ...failures]);
  const result = [...apps];
  await inPool(
    apps.map((app, index) => ({ app, index })).filter(({ app }) => wanted.has(app)),
    REFRESH_CONCURRENCY,
    async ({ app, index }) => {
      result[index] = await readApp(client, req, app, deadline);
    },
  );
  return result;
}

const SHA = /^[0-9a-f]{40}$/i;

/**
 * The commit SHAs to judge: what apps not at `revision` are Synced at, and what failed
 * operations ran at (a multi-source app's other sources included; the judge says which are its).
 */
function revisionsToJudge(req: SyncCheckRequest, apps: TargetApp[]): string[] {
  const found = new Set<string>();
  for (const app of apps) {
    const synced =
      app.syncStatus === "Synced" && app.revisionsKnown && !atRevision(app, req.revision)
        ? app.revisions
        : [];
    const ended = app.phase === "Failed" || app.phase === "Error" ? app.operationRevisions : [];
    for (const r of [...synced, ...ended])
      if (SHA.test(r) && !sameSha(r, req.revision)) found.add(r.toLowerCase());
  }
  return [...found].sort();
}

/** `known` and the judgements of the revisions apps report that it lacks. */
async function judge(
  req: SyncCheckRequest,
  apps: TargetApp[],
  known: Map<string, RevisionJudgement> = new Map(),
): Promise<Map<string, RevisionJudgement>> {
  const revisions = revisionsToJudge(req, apps).filter((r) => !known.has(r));
  if (!req.judgeRevisions || revisions.length === 0) return known;
  const judged = await req.judgeRevisions(revisions);
  return new Map([...known, ...[...judged].map(([r, j]) => [r.toLowerCase(), j] as const)]);
}

function acceptedOf(judged: Map<string, RevisionJudgement>): Accepted {
  return new Set([...judged].filter(([, j]) => j.status === "accepted").map(([r]) => r));
}

/** The first failed judgement of a revision an app reports, with the apps that report it. */
function rejectedRevision(
  apps: TargetApp[],
  judged: Map<string, RevisionJudgement>,
): ErrorData | undefined {
  for (const [revision, j] of judged) {
    if (j.status !== "failed") continue;
    const at = apps.filter((a) =>
      [...a.revisions, ...a.operationRevisions].some((r) => sameSha(r, revision)),
    );
    if (!at.length) continue;
    const names = at.slice(0, MAX_FAILED_DETAILS).map((a) => a.name);
    const more = at.length > names.length ? ` and ${at.length - names.length} more` : "";
    return {
      ...j.error,
      details: [...(j.error.details ?? []), `Argo CD reports it for ${names.join(", ")}${more}`],
    };
  }
  return undefined;
}

function evaluate(
  hub: string,
  req: SyncCheckRequest,
  listing: Listing,
  apps: TargetApp[],
  judged: Map<string, RevisionJudgement> = new Map(),
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
  const accepted = acceptedOf(judged);
  const floored = floorSet(req);
  const ok = (a: TargetApp) => isDone(a, req.revision, accepted, floored);
  const done = apps.filter(ok);
  const failed = apps.filter(
    (a) => !ok(a) && (a.syncRefused || failedAt(a, req.revision, accepted)),
  );
  const progressing = done.filter((a) => a.health === "Progressing").map((a) => a.name);
  const pending = apps
    .filter((a) => !ok(a))
    .map((a) => ({ name: a.name, reason: pendingReason(a, req.revision, accepted, judged) }));
  const acceptedRevisions = [...accepted].filter((r) =>
    done.some((a) => a.revisions.some((v) => sameSha(v, r))),
  );
  const base = {
    hub,
    total: apps.length,
    done: done.length,
    pending,
    ...(acceptedRevisions.length ? { acceptedRevisions } : {}),
    ...(progressing.length
      ? {
          progressing: progressing.slice(0, MAX_FAILED_DETAILS),
          progressingCount: progressing.length,
        }
      : {}),
  };
  const rejected = rejectedRevision(apps, judged);
  if (rejected) return { ...base, status: "FAILED", error: rejected };
  if (failed.length) {
    const details = failed
      .slice(0, MAX_FAILED_DETAILS)
      .map((a) =>
        redact(
          `${a.name}: ${a.syncRefused ?? `operation ${a.phase}: ${a.message ?? `no message${a.note ? ` (${a.note})` : ""}`}`}`,
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
  // One time bound for every per-app Get of this poll (refreshes, then what the list lacks).
  const deadline = Date.now() + req.timeoutMs;
  let apps = listing.targets;
  // What the list already tells first, so the first poll neither refreshes nor syncs back an
  // app Synced at an accepted commit on top of the revision; then what the Gets told.
  let judged = await judge(req, apps);
  const onTop = acceptedOf(judged);
  const webhook =
    req.firstPoll &&
    req.refresh === "webhook" &&
    apps.some((a) => !atRevision(a, req.revision, onTop))
      ? await deliverPush(client, req)
      : undefined;
  // A delivery the hub did not accept (a webhook secret it checks, a proxy): refresh each app
  // instead, as `hard` would have, rather than leave the commit to Argo CD's Git poll.
  const fallback = webhook !== undefined && webhook !== "delivered";
  if (req.firstPoll && (req.refresh === "hard" || req.refresh === "normal" || fallback || req.sync))
    apps = await prime(client, fallback ? { ...req, refresh: "hard" } : req, apps, deadline, onTop);
  apps = await readWhatTheListLacks(client, req, apps, deadline);
  judged = await judge(req, apps, judged);
  const accepted = acceptedOf(judged);
  // The message of an operation that failed at an accepted commit on top of the revision.
  const failedOnTop = (a: TargetApp) =>
    failedAt(a, req.revision, accepted) && !failedAt(a, req.revision);
  if (apps.some((a) => !a.complete && failedOnTop(a)))
    apps = await readWhatTheListLacks(client, req, apps, deadline, accepted);
  return {
    ...evaluate(client.hub.name, req, listing, apps, judged),
    apiCalls: client.calls,
    ...(webhook ? { webhook: fallback ? `${webhook}; refreshed each app instead` : webhook } : {}),
  };
}

/**
 * The repository URL as a Git host's push payload names it (`repository.html_url`): no
 * credentials, no `.git`. argocd-server matches it against each app's repoURL by host and path,
 * whatever the scheme, user, port or `.git` suffix (util/webhook GetWebURLRegex).
 */
export function webUrlOf(repoUrl: string): string {
  const url = new URL(repoUrl);
  url.username = "";
  url.password = "";
  url.search = "";
  url.hash = "";
  return url.href.replace(/\/+$/, "").replace(/\.git$/, "");
}

/**
 * One Git webhook delivery to argocd-server (`POST /api/webhook`, GitHub's push shape): it
 * refreshes every Application whose source names the repository and whose targetRevision the
 * push moved (HEAD when the branch is the default one), at once instead of at the next Git poll.
 * No changed files are listed, so apps with a manifest-generate-paths annotation are refreshed
 * too. The endpoint takes no API token (a hub may check a webhook secret instead, and then
 * answers 400: noted, and the poll refreshes each app instead). Never fails the poll.
 */
async function deliverPush(client: HubClient, req: SyncCheckRequest): Promise<string> {
  if (!req.webhook) return "not delivered: no repository URL for the webhook";
  const { repoUrl, branch, previousRevision } = req.webhook;
  try {
    const res = await client.push({
      ref: `refs/heads/${branch}`,
      before: previousRevision ?? "0".repeat(40),
      after: req.revision,
      repository: { html_url: webUrlOf(repoUrl), default_branch: branch },
      commits: [],
      head_commit: { id: req.revision },
    });
    if (res.status >= 200 && res.status < 300) return "delivered";
    return `not accepted: HTTP ${res.status} ${argoMessage(res.text)}`.slice(0, MAX_MESSAGE_CHARS);
  } catch (e) {
    return `not delivered: ${e instanceof HubDown ? e.why : (e as Error).message}`.slice(
      0,
      MAX_MESSAGE_CHARS,
    );
  }
}

/**
 * One poll: are all apps matching `selector` whose destination is one of `clusters` Synced at
 * `revision`, Healthy and without a running operation? On `firstPoll` it first refreshes (and,
 * with `sync`, syncs) the target apps not at the revision yet.
 *
 * Hubs are tried in order; a hub that does not answer passes the check to the next one, and
 * when none answers it throws ArgoUnreachable (retryable) naming each hub and why. A rejected
 * token throws ArgoAuthError at once: a standby is not a cure for a wrong RBAC role. Worst case
 * per hub, `timeoutMs` each: the list, the cluster names, the per-app Gets (refreshes and what
 * the list lacks, as a whole) and, with `sync`, the sync requests (as a whole).
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
