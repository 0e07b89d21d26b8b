/**
 * VerifySpoke's domain: asks a target spoke's API server, with the read-only token from Secrets
 * Manager, whether it can take the platform — API server ready, enough nodes Ready and not
 * cordoned, namespaces present, secret operators working — before anything is changed. TLS is
 * always verified against the cluster CA from the topology; nothing here can turn verification
 * off. A token the server refuses is dropped from the secret cache, so a rotated one is read
 * again on the next attempt.
 */
import {
  ApiException,
  AppsV1Api,
  type Configuration,
  CoreV1Api,
  CustomObjectsApi,
  createConfiguration,
  HttpMethod,
  KubeConfig,
  RequestContext,
  ResponseContext,
  ServerConfiguration,
} from "@kubernetes/client-node";
import type { Spoke } from "./config.ts";
import {
  ConfigError,
  describe,
  type FailoverError,
  ResponseTooLarge,
  SpokeAuthError,
  SpokeNotReady,
  SpokeUnreachable,
  UnexpectedError,
} from "./errors.ts";
import { invalidateSecretToken } from "./secrets.ts";

export interface SpokeConnection {
  name: string;
  apiServer: string;
  /** PEM of the cluster CA. */
  caData: string;
  token: string;
}

export interface SpokeExpectations {
  minReadyNodes: number;
  namespaces: string[];
  externalSecrets?: { namespaces: string[] };
  sealedSecrets?: { namespace: string; deployment: string };
}

/** What the topology expects of a spoke: VerifySpoke and readiness ask the same. */
export function expectationsOf(s: Spoke): SpokeExpectations {
  return {
    minReadyNodes: s.minReadyNodes,
    namespaces: s.namespaces,
    ...(s.secretOperators.externalSecrets
      ? { externalSecrets: s.secretOperators.externalSecrets }
      : {}),
    ...(s.secretOperators.sealedSecrets ? { sealedSecrets: s.secretOperators.sealedSecrets } : {}),
  };
}

export interface SpokeCheck {
  check: string;
  ok: boolean;
  detail: string;
}

export interface SpokeReport {
  spoke: string;
  /** Nodes that can take pods: Ready and not cordoned (`spec.unschedulable`). */
  readyNodes: number;
  checks: SpokeCheck[];
}

const USER_AGENT = "gitops-failover/verify-spoke";
/** A node list of 5,000 nodes is a few tens of MiB; anything larger is not a spoke's answer. */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const READ_ONLY_ROLE =
  "read-only ClusterRole (get /readyz; list nodes; get namespaces; get deployments.apps; list externalsecrets.external-secrets.io)";
/** How many names a detail lists before "and N more": details go into errors and the audit trail. */
const MAX_NAMES = 10;
const MAX_TEXT = 200;
const TLS_CODE = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|ERR_SSL/;

type Answer<T> = { value: T } | { status: number; message: string };

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

/** What a cluster client names in its messages: the kind of cluster and the RBAC its token needs. */
export interface ClusterRole {
  /** `spoke`, or `hub cluster` for a hub's own API server (its Velero backups). */
  kind: string;
  /** The read-only role the token's ServiceAccount needs, as the fix names it. */
  role: string;
}

const SPOKE_ROLE: ClusterRole = { kind: "spoke", role: READ_ONLY_ROLE };

/**
 * The clients for one cluster (a spoke, or a hub cluster) and the mapping of their failures to
 * named errors: the same TLS, token and error rules wherever the orchestrator reads a cluster.
 */
export class SpokeClient {
  readonly core: CoreV1Api;
  readonly apps: AppsV1Api;
  readonly custom: CustomObjectsApi;
  private readonly kc = new KubeConfig();
  private readonly config: Configuration;
  private readonly server: string;

  constructor(
    private readonly conn: SpokeConnection,
    private readonly timeoutMs: number,
    private readonly as: ClusterRole = SPOKE_ROLE,
  ) {
    this.server = conn.apiServer.replace(/\/+$/, "");
    this.kc.loadFromOptions({
      clusters: [
        {
          name: conn.name,
          server: this.server,
          caData: Buffer.from(conn.caData, "utf8").toString("base64"),
          skipTLSVerify: false,
        },
      ],
      users: [{ name: "gitops-failover", token: conn.token }],
      contexts: [{ name: conn.name, cluster: conn.name, user: "gitops-failover" }],
      currentContext: conn.name,
    });
    this.config = createConfiguration({
      baseServer: new ServerConfiguration(this.server, {}),
      authMethods: { default: this.kc },
      promiseMiddleware: [
        {
          pre: async (ctx) => this.bound(ctx),
          post: async (response) => this.capped(response),
        },
      ],
    });
    this.core = new CoreV1Api(this.config);
    this.apps = new AppsV1Api(this.config);
    this.custom = new CustomObjectsApi(this.config);
  }

  /** Every request carries its own deadline, so no check can outlive `timeoutMs`. */
  private bound(ctx: RequestContext): RequestContext {
    ctx.setSignal(AbortSignal.timeout(this.timeoutMs));
    ctx.setHeaderParam("User-Agent", USER_AGENT);
    return ctx;
  }

  /** GET of a non-resource path (such as /readyz) through the same TLS and auth setup. */
  async getText(path: string): Promise<{ status: number; text: string }> {
    const ctx = new RequestContext(`${this.server}${path}`, HttpMethod.GET);
    await this.kc.applySecurityAuthentication(ctx);
    const response = this.capped(await this.config.httpApi.send(this.bound(ctx)).toPromise());
    return { status: response.httpStatusCode, text: await response.body.text() };
  }

  /**
   * The response with its body read up to MAX_RESPONSE_BYTES: past that (declared or streamed)
   * reading it throws ResponseTooLarge instead of filling the function's memory.
   */
  private capped(response: ResponseContext): ResponseContext {
    const tooLarge = () =>
      new ResponseTooLarge(
        `spoke ${this.conn.name} (${this.server}) answered with more than ${MAX_RESPONSE_BYTES} bytes, far more than any answer of the Kubernetes API to these checks: check that apiServer is the cluster's API server`,
      );
    const stream = response.body.stream();
    const read = async (): Promise<Buffer> => {
      if (Number(response.headers["content-length"] ?? 0) > MAX_RESPONSE_BYTES) {
        await stream?.cancel();
        throw tooLarge();
      }
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of stream ?? []) {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) throw tooLarge();
        chunks.push(chunk);
      }
      return Buffer.concat(chunks);
    };
    return new ResponseContext(response.httpStatusCode, response.headers, {
      text: async () => (await read()).toString("utf8"),
      binary: read,
      stream: () => null,
    });
  }

  /**
   * Runs one API call. Transport failures, timeouts and 429/5xx become SpokeUnreachable,
   * 401/403 SpokeAuthError; any other HTTP status is returned for the check to judge.
   */
  async call<T>(what: string, fn: () => Promise<T>): Promise<Answer<T>> {
    try {
      return { value: await fn() };
    } catch (e) {
      if (e instanceof ResponseTooLarge) throw e;
      if (e instanceof ApiException) {
        const status = e.code;
        const message = this.scrub(statusMessage(e.body));
        if (status === 401 || status === 403 || status === 429 || status >= 500) {
          throw this.httpFailure(what, status, message, e);
        }
        return { status, message };
      }
      throw this.transportFailure(what, e);
    }
  }

  private httpFailure(
    what: string,
    status: number,
    message: string,
    cause: unknown,
  ): FailoverError {
    const where = this.where();
    const said = message ? `: ${message}` : "";
    if (status === 401) {
      return new SpokeAuthError(
        `${where} rejected the token from tokenSecretArn as invalid or expired (HTTP 401 on ${what}); it needs the ${this.as.role}: store a valid token of a ServiceAccount bound to it in the secret`,
        [],
        { cause },
      );
    }
    if (status === 403) {
      return new SpokeAuthError(
        `${where} rejected the token from tokenSecretArn for ${what} (HTTP 403${said}); it needs the ${this.as.role}: bind the token's ServiceAccount to it`,
        [],
        { cause },
      );
    }
    return new SpokeUnreachable(
      `${where} answered HTTP ${status} to ${what}${said}; the API server is overloaded or unhealthy, retry later`,
      [],
      { cause },
    );
  }

  private where(): string {
    return `${this.as.kind} ${this.conn.name} (${this.server})`;
  }

  private transportFailure(what: string, e: unknown): FailoverError {
    const where = this.where();
    const name = e instanceof Error ? e.name : "";
    if (name === "TimeoutError" || name === "AbortError") {
      return new SpokeUnreachable(
        `${where} did not answer ${what} within ${this.timeoutMs} ms; the API server or the network path to it is down`,
        [],
        { cause: e },
      );
    }
    const code = errorCode(e);
    if (code && TLS_CODE.test(code)) {
      return new SpokeUnreachable(
        `${where}: TLS verification failed on ${what} (${code}); the server certificate is not issued by the caData CA in the topology or does not name the apiServer host: fix caData or apiServer`,
        [],
        { cause: e },
      );
    }
    if (code || (e instanceof TypeError && e.message === "fetch failed")) {
      return new SpokeUnreachable(
        `${where}: ${what} failed to connect (${code ?? "network error"}); check that the API server endpoint is reachable from the orchestrator (VPC routing, security groups, endpoint access)`,
        [],
        { cause: e },
      );
    }
    return new UnexpectedError(`${where}: ${what} failed: ${this.scrub(describe(e))}`, [], {
      cause: e,
    });
  }

  /** Server-provided text, bounded and without the token (which a server could echo back). */
  scrub(text: string): string {
    const token = this.conn.token;
    const clean = (token ? text.split(token).join("[REDACTED]") : text).replace(/\s+/g, " ").trim();
    return clean.length > MAX_TEXT ? `${clean.slice(0, MAX_TEXT)}…` : clean;
  }
}

function statusMessage(body: unknown): string {
  if (typeof body !== "string") return "";
  try {
    const parsed = JSON.parse(body) as { message?: unknown };
    return typeof parsed.message === "string" ? parsed.message : body;
  } catch {
    return body;
  }
}

function errorCode(e: unknown): string | undefined {
  for (let cur = e, depth = 0; cur instanceof Error && depth < 5; cur = cur.cause, depth++) {
    const code = (cur as NodeJS.ErrnoException).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

function listNames(names: string[]): string {
  const shown = names.slice(0, MAX_NAMES).join(", ");
  return names.length > MAX_NAMES ? `${shown} and ${names.length - MAX_NAMES} more` : shown;
}

function readyCondition(conditions: Condition[] | undefined): Condition | undefined {
  return conditions?.find((c) => c.type === "Ready");
}

async function readyzCheck(client: SpokeClient): Promise<SpokeCheck> {
  const answer = await client.call("GET /readyz", async () => {
    const response = await client.getText("/readyz");
    if ([401, 403, 429].includes(response.status)) {
      throw new ApiException(response.status, "readyz", response.text, {});
    }
    return response;
  });
  const response =
    "value" in answer ? answer.value : { status: answer.status, text: answer.message };
  if (response.status === 200 && response.text.trim() === "ok") {
    return { check: "readyz", ok: true, detail: "/readyz answered ok" };
  }
  const failed = response.text
    .split("\n")
    .filter((line) => line.startsWith("[-]"))
    .map((line) => line.slice(3));
  const said = failed.length ? `failing: ${listNames(failed)}` : client.scrub(response.text);
  return {
    check: "readyz",
    ok: false,
    detail: `/readyz answered HTTP ${response.status}: ${said}`,
  };
}

async function nodesCheck(
  client: SpokeClient,
  minReadyNodes: number,
): Promise<{ check: SpokeCheck; readyNodes: number }> {
  const answer = await client.call("GET /api/v1/nodes", () => client.core.listNode());
  if (!("value" in answer)) {
    return {
      readyNodes: 0,
      check: {
        check: "nodes",
        ok: false,
        detail: `listing nodes answered HTTP ${answer.status}: ${answer.message}`,
      },
    };
  }
  const nodes = answer.value.items;
  const notReady = nodes
    .filter((n) => readyCondition(n.status?.conditions)?.status !== "True")
    .map((n) => n.metadata?.name ?? "?");
  // A cordoned node (kubectl cordon/drain) is Ready but takes no new pods: it does not count.
  const cordoned = nodes
    .filter((n) => readyCondition(n.status?.conditions)?.status === "True" && n.spec?.unschedulable)
    .map((n) => n.metadata?.name ?? "?");
  const readyNodes = nodes.length - notReady.length - cordoned.length;
  const ok = readyNodes >= minReadyNodes;
  const detail =
    `${readyNodes} of ${nodes.length} nodes Ready and schedulable (need at least ${minReadyNodes})` +
    (notReady.length ? `; not Ready: ${listNames(notReady)}` : "") +
    (cordoned.length ? `; cordoned: ${listNames(cordoned)}` : "");
  return { readyNodes, check: { check: "nodes", ok, detail } };
}

async function namespaceCheck(client: SpokeClient, namespace: string): Promise<SpokeCheck> {
  const check = `namespace/${namespace}`;
  const answer = await client.call(`GET /api/v1/namespaces/${namespace}`, () =>
    client.core.readNamespace({ name: namespace }),
  );
  if (!("value" in answer)) {
    const detail =
      answer.status === 404
        ? `namespace ${namespace} not found (the topology expects it on this spoke)`
        : `reading namespace ${namespace} answered HTTP ${answer.status}: ${answer.message}`;
    return { check, ok: false, detail };
  }
  const phase = answer.value.status?.phase ?? "Active";
  return phase === "Active"
    ? { check, ok: true, detail: `namespace ${namespace} is Active` }
    : { check, ok: false, detail: `namespace ${namespace} is ${phase}` };
}

async function externalSecretsCheck(client: SpokeClient, namespace: string): Promise<SpokeCheck> {
  const check = `external-secrets/${namespace}`;
  const answer = await client.call(
    `GET /apis/external-secrets.io/v1/namespaces/${namespace}/externalsecrets`,
    () =>
      client.custom.listNamespacedCustomObject({
        group: "external-secrets.io",
        version: "v1",
        namespace,
        plural: "externalsecrets",
      }) as Promise<{
        items?: { metadata?: { name?: string }; status?: { conditions?: Condition[] } }[];
      }>,
  );
  if (!("value" in answer)) {
    const detail =
      answer.status === 404
        ? "external-secrets.io/v1 ExternalSecret is not served (HTTP 404): install the External Secrets Operator (a release serving v1) or remove secretOperators.externalSecrets from the topology"
        : `listing ExternalSecrets in ${namespace} answered HTTP ${answer.status}: ${answer.message}`;
    return { check, ok: false, detail };
  }
  const items = answer.value.items ?? [];
  const notReady = items.flatMap((item) => {
    const ready = readyCondition(item.status?.conditions);
    if (ready?.status === "True") return [];
    const why = ready
      ? `${ready.reason ?? ready.status}: ${ready.message ?? ""}`
      : "no Ready condition";
    return [`${item.metadata?.name ?? "?"} (${client.scrub(why)})`];
  });
  if (notReady.length) {
    return {
      check,
      ok: false,
      detail: `${notReady.length} of ${items.length} ExternalSecrets in ${namespace} not Ready: ${listNames(notReady)}`,
    };
  }
  return { check, ok: true, detail: `${items.length} ExternalSecrets in ${namespace} Ready` };
}

async function sealedSecretsCheck(
  client: SpokeClient,
  target: { namespace: string; deployment: string },
): Promise<SpokeCheck> {
  const check = "sealed-secrets";
  const id = `${target.namespace}/${target.deployment}`;
  const answer = await client.call(
    `GET /apis/apps/v1/namespaces/${target.namespace}/deployments/${target.deployment}`,
    () =>
      client.apps.readNamespacedDeployment({
        name: target.deployment,
        namespace: target.namespace,
      }),
  );
  if (!("value" in answer)) {
    const detail =
      answer.status === 404
        ? `Sealed Secrets controller Deployment ${id} not found: install the controller or fix secretOperators.sealedSecrets in the topology`
        : `reading Deployment ${id} answered HTTP ${answer.status}: ${answer.message}`;
    return { check, ok: false, detail };
  }
  const available = answer.value.status?.availableReplicas ?? 0;
  const wanted = answer.value.spec?.replicas ?? 1;
  return {
    check,
    ok: available >= 1,
    detail: `Sealed Secrets controller Deployment ${id}: ${available} of ${wanted} replicas available`,
  };
}

/**
 * A client for a cluster's API server, refused unless TLS is verified: an https:// URL, and
 * certificate checks not switched off for the process.
 */
export function clusterClient(
  conn: SpokeConnection,
  timeoutMs: number,
  as: ClusterRole = SPOKE_ROLE,
): SpokeClient {
  if (!conn.apiServer.startsWith("https://")) {
    throw new ConfigError(
      `${as.kind} ${conn.name}: apiServer ${conn.apiServer} is not an https:// URL; clusters are only reached over verified TLS`,
    );
  }
  if (process.env.NODE_TLS_REJECT_UNAUTHORIZED === "0") {
    throw new ConfigError(
      `${as.kind} ${conn.name}: NODE_TLS_REJECT_UNAUTHORIZED=0 disables TLS verification in this process; unset it`,
    );
  }
  return new SpokeClient(conn, timeoutMs, as);
}

/**
 * Inspects a target spoke before the failover commits to it. Every check runs concurrently and
 * each request is bounded by `timeoutMs`, so an unreachable region costs one timeout, not one per
 * check. Failed checks are reported (ok: false), not thrown: the report shows everything that is
 * wrong at once. Throws SpokeUnreachable (retryable) when the API server cannot be reached or
 * verified over TLS, and SpokeAuthError when it refuses the token.
 */
export async function inspectSpoke(
  conn: SpokeConnection,
  expect: SpokeExpectations,
  options: { timeoutMs: number },
): Promise<SpokeReport> {
  const client = clusterClient(conn, options.timeoutMs);
  const readyz = readyzCheck(client);
  const nodes = nodesCheck(client, expect.minReadyNodes);
  const others: Promise<SpokeCheck>[] = [
    ...expect.namespaces.map((ns) => namespaceCheck(client, ns)),
    ...(expect.externalSecrets?.namespaces ?? []).map((ns) => externalSecretsCheck(client, ns)),
    ...(expect.sealedSecrets ? [sealedSecretsCheck(client, expect.sealedSecrets)] : []),
  ];
  const settled = await Promise.allSettled([readyz, nodes, ...others]);
  const errors = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
  const first =
    errors.find((e) => e instanceof SpokeAuthError) ??
    errors.find((e) => e instanceof SpokeUnreachable) ??
    errors[0];
  // A rotated token: the next read of the secret must not return the refused one from cache.
  if (first instanceof SpokeAuthError) invalidateSecretToken(conn.token);
  if (first !== undefined) throw first;
  const { check: nodeCheck, readyNodes } = await nodes;
  return {
    spoke: conn.name,
    readyNodes,
    checks: [await readyz, nodeCheck, ...(await Promise.all(others))],
  };
}

/** Turns a report into the step's verdict: SpokeNotReady listing every failed check, or nothing. */
export function assertSpokeReady(report: SpokeReport): void {
  const failed = report.checks.filter((c) => !c.ok);
  if (failed.length) {
    throw new SpokeNotReady(
      `spoke ${report.spoke} is not ready to take the platform (${failed.length} of ${report.checks.length} checks failed); fix the spoke or choose another target region`,
      failed.map((c) => `${c.check}: ${c.detail}`),
    );
  }
}
