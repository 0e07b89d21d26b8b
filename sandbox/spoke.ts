/**
 * A strict HTTPS fake of a spoke's kube-apiserver, one per spoke, for the sandbox and the tests.
 * It serves the subset the orchestrator and the Argo CD emulator use — health, discovery, nodes,
          groups: [
            group("apps"),
            {
              name: "autoscaling",
              versions: [
                { groupVersion: "autoscaling/v2", version: "v2" },
                { groupVersion: "autoscaling/v1", version: "v1" },
              ],
              preferredVersion: { groupVersion: "autoscaling/v2", version: "v2" },
            },
            group("authorization.k8s.io"),
            group("external-secrets.io"),
            ...(options.velero ? [group("velero.io")] : []),
          ],
 *
 * Deliberate simplifications: no dryRun, no protobuf/YAML bodies (415 / 400 say so), `limit` is
 * ignored (allowed by the API), watch bookmarks are never sent (allowed: they are a hint), a
 * watch from a resourceVersion older than the watch's start replays nothing (no "410 Gone"),
 * strategic merge patches are applied as JSON merge patches (lists are replaced, not merged by
 * key) and JSON patches are refused with 415.
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer } from "node:https";
import type { Socket } from "node:net";
import type { Ca } from "./ca.ts";
import { INCLUDE_OBJECT, table, wantsTable } from "./kube-table.ts";

/** An RBAC PolicyRule (rbac.authorization.k8s.io/v1), optionally bound only in some namespaces. */
export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  /** Namespaces of the RoleBindings granting it; omitted: a ClusterRoleBinding (everywhere). */
  namespaces?: string[];
}

/** What a bearer token authenticates as, and what it is allowed. */
export interface TokenGrant {
  /** The user name (a service account: `system:serviceaccount:<namespace>:<name>`). */
  user: string;
  /** The binding named in SelfSubjectAccessReview's `reason` when a rule allows. */
  binding: string;
  rules: PolicyRule[];
}

/** What the sandbox's spoke token may do when no rules are given: everything (cluster-admin). */
export const CLUSTER_ADMIN: TokenGrant = {
  user: "system:serviceaccount:kube-system:gitops-failover",
  binding: 'ClusterRoleBinding "gitops-failover" of ClusterRole "cluster-admin"',
  rules: [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }],
};

/** A fake spoke: its name and region, the token it requires, its CA, what it holds at start. */
export interface FakeSpokeOptions {
  name: string;
  region: string;
  /** The bearer token every request must carry. */
  token: string;
  /** What `token` is allowed (default {@link CLUSTER_ADMIN}). */
  grant?: TokenGrant;
  ca: Ca;
  /** Node count, all Ready at start (default 3). */
  nodes?: number;
  /** Namespaces besides default, kube-system, kube-public and kube-node-lease. */
  namespaces?: string[];
  /** ExternalSecrets present at start, all Ready (their namespaces are created). */
  externalSecrets?: { namespace: string; name: string }[];
  /** The Sealed Secrets controller Deployment, present and available at start. */
  sealedSecrets?: { namespace: string; deployment: string };
  /** Serve velero.io/v1 Backups (a hub cluster running Velero); the namespace is created. */
  velero?: { namespace: string };
  /** Pods each node can run (the kubelet's maxPods, default 110): pods beyond stay Pending. */
  maxPodsPerNode?: number;
}

/**
 * A Velero Backup as the Velero server leaves it (https://velero.io/docs/v1.10/api-types/backup/):
 * what it included and its status phase and timestamps.
 */
export interface FakeVeleroBackup {
  name: string;
  /** `spec.includedNamespaces` (unset: every namespace). */
  includedNamespaces?: string[];
  /** `spec.excludedNamespaces`. */
  excludedNamespaces?: string[];
  /** `status.phase`: Completed, PartiallyFailed, Failed, InProgress, ... */
  phase: string;
  startedAt: string;
  /** `status.completionTimestamp`, for a backup that ended. */
  completedAt?: string;
}

/** A Deployment on a fake spoke, as the sandbox reads it (spec and status replicas). */
export interface FakeDeployment {
  namespace: string;
  name: string;
  replicas: number;
  readyReplicas: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** A running fake Kubernetes API server (one per spoke) and its fault switches. */
export interface FakeSpoke {
  name: string;
  region: string;
  /** `https://127.0.0.1:<port>` */
  url: string;
  /** The CA that issued the server certificate: what clients must trust. */
  caPem: string;
  /** false: new connections are dropped before the TLS handshake and open ones destroyed (fault spoke-unreachable). */
  setReachable(reachable: boolean): void;
  /** The first `n` nodes are Ready, the others NotReady (fault spoke-nodes-not-ready). */
  setReadyNodes(n: number): void;
  /** The first `n` nodes are cordoned (`spec.unschedulable: true`, as `kubectl cordon` sets it). */
  setCordonedNodes(n: number): void;
  /** true: rollouts from now on never become ready; false: failed rollouts complete. */
  setRolloutsFail(fail: boolean): void;
  /** Sets an existing ExternalSecret's Ready condition (a secret store outage). */
  setExternalSecretReady(namespace: string, name: string, ready: boolean): void;
  /** One Deployment's pods stop (or start again) being ready: what Argo CD reports as Degraded. */
  setDeploymentAvailable(namespace: string, name: string, available: boolean): void;
  /** Pods the spoke's nodes can run in all (default nodes x maxPodsPerNode): the rest stay Pending. */
  setPodCapacity(pods: number): void;
  /**
   * The replicas an HPA's metrics ask for (its load), clamped by the HPA to min/max; undefined:
   * no load beyond its target's own replicas.
   */
  setHpaDemand(namespace: string, name: string, replicas: number | undefined): void;
  /** Replaces every Velero Backup with these, as the Velero server would have left them. */
  setVeleroBackups(backups: FakeVeleroBackup[]): void;
  deployments(): FakeDeployment[];
  /** Accepts another bearer token with its own permissions (a narrower service account). */
  addToken(token: string, grant: TokenGrant): void;
  /** Requests received so far, rejected ones included. */
  requests(): number;
  stop(): Promise<void>;
}

type Json = Record<string, unknown>;

interface Meta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion: string;
  generation?: number;
  creationTimestamp: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  spec?: Json;
  status?: Json;
  [field: string]: unknown;
}

/** One namespaced resource type held in memory, keyed by `namespace/name`. */
interface Resource {
  group: string;
  apiVersion: string;
  kind: string;
  plural: string;
  /** Custom resources list their items with apiVersion/kind; built-in types do not. */
  itemsTyped: boolean;
  store: Map<string, KubeObject>;
  validate(obj: KubeObject): string[];
  /** Called after a create or a change: sets status (and generation-driven fields). */
  reconcile(obj: KubeObject, previous: KubeObject | undefined): void;
}

const MAX_BODY_BYTES = 3 * 1024 * 1024;
/** The kubelet version the nodes report (an EKS 1.31 node). */
const KUBE_VERSION = "v1.31.4-eks-aeac579";
/** The characters of generated name suffixes (apimachinery's rand.String alphabet). */
const POD_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789";
const TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io";
/** Query parameters of a watch that do not select what is listed. */
const WATCH_PARAMS = [
  "watch",
  "resourceVersion",
  "resourceVersionMatch",
  "timeoutSeconds",
  "allowWatchBookmarks",
  "sendInitialEvents",
];
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SYSTEM_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"];
const MERGE_PATCH_TYPES = new Set([
  "application/merge-patch+json",
  "application/strategic-merge-patch+json",
]);

/** An error answered as a kube `Status` body. */
class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Json,
  ) {
    super(message);
  }
}

const notFound = (plural: string, group: string, name: string) =>
  new StatusError(
    404,
    "NotFound",
    `${plural}${group ? `.${group}` : ""} "${name}" not found`,
    group ? { name, group, kind: plural } : { name, kind: plural },
  );
const noRoute = () =>
  new StatusError(404, "NotFound", "the server could not find the requested resource", {});
const badRequest = (message: string) => new StatusError(400, "BadRequest", message);

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isStringMap(v: unknown): v is Record<string, string> {
  return isObject(v) && Object.values(v).every((x) => typeof x === "string");
}

/** JSON with sorted keys: compares specs regardless of key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (isObject(v)) {
    const keys = Object.keys(v).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Json = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

type Requirement = (values: Record<string, string>) => boolean;

/** A label's name part, or a label value (apimachinery's qualified name and label value). */
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a label key (`[prefix/]name`), as kube-apiserver words it; undefined when it is. */
function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const [prefix, name] = slash < 0 ? [undefined, key] : [key.slice(0, slash), key.slice(slash + 1)];
  if (prefix !== undefined && !(prefix.length <= 253 && LABEL_PREFIX.test(prefix)))
    return `Invalid value: "${key}": prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`;
  if (!LABEL_NAME.test(name))
    return `Invalid value: "${key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (63 characters at most)`;
  return undefined;
}

/** Why `value` is not a label value; undefined when it is (the empty value is one). */
function labelValueProblem(value: string): string | undefined {
  return value === "" || LABEL_NAME.test(value)
    ? undefined
    : `Invalid value: "${value}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (63 characters at most)`;
}

/**
 * Refuses a label selector requirement kube-apiserver refuses (apimachinery labels.Parse): a key
 * or value that is not a label's, an `in`/`notin` with no values.
 */
function checkLabelRequirement(part: string, key: string, values: string[], set: boolean): void {
  const problem =
    labelKeyProblem(key) ??
    (set && values.length === 0
      ? "for 'in', 'notin' operators, values set can't be empty"
      : values.map(labelValueProblem).find((p) => p !== undefined));
  if (problem)
    throw badRequest(`unable to parse requirement: label selector "${part}": ${problem}`);
}

/** Parses a label (or field) selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`. */
function parseSelector(selector: string, what: string): Requirement[] {
  if (!selector.trim()) return [];
  const labels = what === "label selector";
  return selector.split(/,(?![^(]*\))/).map((raw) => {
    const part = raw.trim();
    const set = /^([A-Za-z0-9_./-]+)\s+(in|notin)\s+\(([^)]*)\)$/.exec(part);
    if (set?.[1] && set[3] !== undefined) {
      const [key, op] = [set[1], set[2]];
      const listed = set[3].trim() ? set[3].split(",").map((o) => o.trim()) : [];
      if (labels) checkLabelRequirement(part, key, listed, true);
      const options = new Set(listed);
      return op === "in"
        ? (v) => v[key] !== undefined && options.has(v[key])
        : (v) => v[key] === undefined || !options.has(v[key]);
    }
    const cmp = /^([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_./-]*)$/.exec(part);
    if (cmp?.[1] && cmp[3] !== undefined) {
      const [key, op, want] = [cmp[1], cmp[2], cmp[3]];
      if (labels) checkLabelRequirement(part, key, [want], false);
      return op === "!=" ? (v) => v[key] !== want : (v) => v[key] === want;
    }
    const exists = /^(!?)([A-Za-z0-9_./-]+)$/.exec(part);
    if (exists?.[2]) {
      const key = exists[2];
      if (labels) checkLabelRequirement(part, key, [], false);
      return exists[1] ? (v) => v[key] === undefined : (v) => v[key] !== undefined;
    }
    throw badRequest(`unable to parse requirement: ${what} "${part}"`);
  });
}

function selects(requirements: Requirement[], values: Record<string, string>): boolean {
  return requirements.every((r) => r(values));
}

/** A stable UUID-shaped identifier derived from a name. */
function uuidOf(name: string): string {
  const h = createHash("sha256").update(name).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** The attributes kube-apiserver authorizes a resource request by (undefined: a non-resource URL). */
interface RequestAttributes {
  verb: string;
  group: string;
  resource: string;
  namespace?: string;
  name?: string;
}

function requestAttributes(method: string, url: URL): RequestAttributes | undefined {
  const parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  let rest: string[];
  let group: string;
  if (parts[0] === "api" && parts[1] === "v1") [group, rest] = ["", parts.slice(2)];
  else if (parts[0] === "apis" && parts.length > 3)
    [group, rest] = [parts[1] ?? "", parts.slice(3)];
  else return undefined;
  if (rest.length === 0) return undefined;
  const namespaced = rest[0] === "namespaces" && rest.length >= 3;
  const [namespace, resource, name] = namespaced
    ? [rest[1], rest[2], rest[3]]
    : [undefined, rest[0], rest[1]];
  const watching = ["true", "1"].includes(url.searchParams.get("watch") ?? "");
  const verb =
    {
      GET: name ? "get" : watching ? "watch" : "list",
      POST: "create",
      PUT: "update",
      PATCH: "patch",
      DELETE: name ? "delete" : "deletecollection",
    }[method] ?? method.toLowerCase();
  return { verb, group, resource: resource ?? "", namespace, name };
}

/** The rule of `grant` that allows `attrs`, if any (RBAC: any matching rule allows). */
function allowingRule(grant: TokenGrant, attrs: RequestAttributes): PolicyRule | undefined {
  const has = (list: string[], value: string) => list.includes("*") || list.includes(value);
  return grant.rules.find(
    (r) =>
      has(r.verbs, attrs.verb) &&
      has(r.apiGroups, attrs.group) &&
      has(r.resources, attrs.resource) &&
      (r.namespaces === undefined ||
        (attrs.namespace !== undefined && r.namespaces.includes(attrs.namespace))),
  );
}

/** kube-apiserver's 403 for a request RBAC does not allow. */
function forbidden(grant: TokenGrant, a: RequestAttributes): StatusError {
  const what = `${a.resource}${a.group ? `.${a.group}` : ""}${a.name ? ` "${a.name}"` : ""}`;
  const scope = a.namespace ? `in the namespace "${a.namespace}"` : "at the cluster scope";
  return new StatusError(
    403,
    "Forbidden",
    `${what} is forbidden: User "${grant.user}" cannot ${a.verb} resource "${a.resource}" in API group "${a.group}" ${scope}`,
    {
      ...(a.name ? { name: a.name } : {}),
      ...(a.group ? { group: a.group } : {}),
      kind: a.resource,
    },
  );
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer (.+)$/.exec(header ?? "");
  if (!match?.[1]) return false;
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(match[1]), digest(token));
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on("end", () => {
      if (size > MAX_BODY_BYTES) {
        reject(new StatusError(413, "RequestEntityTooLarge", "request entity too large"));
      } else resolve(Buffer.concat(chunks));
    });
    req.on("error", reject);
  });
}

function mediaType(req: IncomingMessage): string {
  return (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

async function jsonBody(req: IncomingMessage): Promise<Json> {
  const body = await readBody(req);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString("utf8"));
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObject(parsed)) throw badRequest("the request body must be a JSON object");
  return parsed;
}

/** autoscaling/v2 validation (kubernetes pkg/apis/autoscaling/validation) of what the sandbox uses. */
function hpaProblems(obj: KubeObject): string[] {
  const spec = obj.spec;
  if (!isObject(spec)) return ["spec: Required value"];
  const problems: string[] = [];
  const ref = spec.scaleTargetRef;
  if (!isObject(ref)) problems.push("spec.scaleTargetRef: Required value");
  else {
    if (typeof ref.kind !== "string" || !ref.kind)
      problems.push("spec.scaleTargetRef.kind: Required value");
    if (typeof ref.name !== "string" || !ref.name)
      problems.push("spec.scaleTargetRef.name: Required value");
  }
  const min = spec.minReplicas ?? 1;
  const max = spec.maxReplicas;
  if (!(Number.isInteger(min) && (min as number) >= 1))
    problems.push(
      `spec.minReplicas: Invalid value: ${JSON.stringify(min)}: must be greater than or equal to 1`,
    );
  if (!(Number.isInteger(max) && (max as number) >= 1))
    problems.push(
      `spec.maxReplicas: Invalid value: ${JSON.stringify(max)}: must be greater than 0`,
    );
  else if (Number.isInteger(min) && (max as number) < (min as number))
    problems.push(
      `spec.maxReplicas: Invalid value: ${max}: must be greater than or equal to \`minReplicas\``,
    );
  return problems;
}

function deploymentProblems(obj: KubeObject): string[] {
  const problems: string[] = [];
  const spec = obj.spec;
  if (!isObject(spec)) return ["spec: Required value"];
  const replicas = spec.replicas;
  if (replicas !== undefined && !(Number.isInteger(replicas) && (replicas as number) >= 0)) {
    problems.push(
      `spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be an integer >= 0`,
    );
  }
  const selector = spec.selector;
  const template = spec.template;
  const templateLabels =
    isObject(template) && isObject(template.metadata) ? template.metadata.labels : undefined;
  if (!isObject(selector)) problems.push("spec.selector: Required value");
  else problems.push(...labelSelectorProblems(selector, "spec.selector"));
  if (!isStringMap(templateLabels) || Object.keys(templateLabels).length === 0) {
    problems.push("spec.template.metadata.labels: Required value");
  } else if (
    isObject(selector) &&
    !problems.length &&
    !labelSelectorMatches(selector, templateLabels)
  ) {
    problems.push(
      "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
    );
  }
  return problems;
}

const SELECTOR_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist"];

/**
 * metav1 LabelSelector validation (apimachinery ValidateLabelSelector) and the Deployment's own
 * rule: an empty selector (neither matchLabels nor matchExpressions) is invalid for a Deployment.
 */
function labelSelectorProblems(selector: Json, at: string): string[] {
  const problems: string[] = [];
  const { matchLabels, matchExpressions } = selector;
  if (matchLabels !== undefined && !isStringMap(matchLabels))
    problems.push(`${at}.matchLabels: Invalid value: must be a map of strings`);
  if (matchExpressions !== undefined && !Array.isArray(matchExpressions))
    problems.push(`${at}.matchExpressions: Invalid value: must be a list`);
  const expressions = Array.isArray(matchExpressions) ? matchExpressions : [];
  for (const [i, e] of expressions.entries()) {
    const where = `${at}.matchExpressions[${i}]`;
    if (!isObject(e) || typeof e.key !== "string" || !e.key) {
      problems.push(`${where}.key: Required value`);
      continue;
    }
    const values = Array.isArray(e.values) ? e.values : [];
    if (!SELECTOR_OPERATORS.includes(String(e.operator)))
      problems.push(
        `${where}.operator: Invalid value: ${JSON.stringify(e.operator)}: not a valid selector operator`,
      );
    else if ((e.operator === "In" || e.operator === "NotIn") && !values.length)
      problems.push(
        `${where}.values: Required value: must be specified when \`operator\` is 'In' or 'NotIn'`,
      );
    else if ((e.operator === "Exists" || e.operator === "DoesNotExist") && values.length)
      problems.push(
        `${where}.values: Forbidden: may not be specified when \`operator\` is 'Exists' or 'DoesNotExist'`,
      );
  }
  const labels = isStringMap(matchLabels) ? Object.keys(matchLabels).length : 0;
  if (!problems.length && labels + expressions.length === 0)
    problems.push(`${at}: Invalid value: {}: empty selector is invalid for deployment`);
  return problems;
}

/** Whether a (valid) LabelSelector selects `labels`: matchLabels and matchExpressions, ANDed. */
function labelSelectorMatches(selector: Json, labels: Record<string, string>): boolean {
  const matchLabels = isStringMap(selector.matchLabels) ? selector.matchLabels : {};
  if (Object.entries(matchLabels).some(([k, v]) => labels[k] !== v)) return false;
  const expressions = (
    Array.isArray(selector.matchExpressions) ? selector.matchExpressions : []
  ) as Json[];
  return expressions.every((e) => {
    const value = labels[String(e.key)];
    const values = (Array.isArray(e.values) ? e.values : []).map(String);
    if (e.operator === "In") return value !== undefined && values.includes(value);
    if (e.operator === "NotIn") return value === undefined || !values.includes(value);
    if (e.operator === "Exists") return value !== undefined;
    return value === undefined;
  });
}

/** Starts a fake spoke API server on 127.0.0.1 with an ephemeral port. */
export async function startSpoke(options: FakeSpokeOptions): Promise<FakeSpoke> {
  if (!DNS_SUBDOMAIN.test(options.name)) {
    throw new Error(`spoke name "${options.name}" must be a DNS-1123 name`);
  }
  const totalNodes = options.nodes ?? 3;
  if (!Number.isInteger(totalNodes) || totalNodes < 0) {
    throw new Error(`nodes must be an integer >= 0, got ${totalNodes}`);
  }
  const { certPem, keyPem } = await options.ca.issue(options.name);
  const startedAt = new Date().toISOString();

  let reachable = true;
  let readyNodes = totalNodes;
  let cordonedNodes = 0;
  let rolloutsFail = false;
  let podCapacity = totalNodes * (options.maxPodsPerNode ?? 110);
  /** `namespace/name` of an HPA -> the replicas its metrics ask for. */
  const hpaDemand = new Map<string, number>();
  let requestCount = 0;
  let revision = 1000;
  const nextVersion = () => String(++revision);
  const tokens = new Map<string, TokenGrant>([[options.token, options.grant ?? CLUSTER_ADMIN]]);
  /** Per node: the resourceVersion of its last change (readiness, cordon). */
  const nodeVersions = Array.from({ length: totalNodes }, () => String(revision));
  /** When each ReplicaSet (by name) was created: its Pods' age. */
  const replicaSetCreated = new Map<string, string>();
  const events = new Map<string, KubeObject>();
  /** Open watches: each recomputes its list and sends the differences after any change. */
  const watchers = new Set<() => void>();
  const changed = () => {
    for (const notify of watchers) notify();
  };

  const namespaces = new Map<string, KubeObject>();

  function addNamespace(name: string): KubeObject {
    const existing = namespaces.get(name);
    if (existing) return existing;
    const ns: KubeObject = {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: {
        name,
        uid: randomUUID(),
        resourceVersion: nextVersion(),
        creationTimestamp: new Date().toISOString(),
        labels: { "kubernetes.io/metadata.name": name },
      },
      spec: { finalizers: ["kubernetes"] },
      status: { phase: "Active" },
    };
    namespaces.set(name, ns);
    return ns;
  }

  /** `namespace/name` of Deployments whose pods are not ready whatever their spec. */
  const unavailable = new Set<string>();

  /** The HPAs by the Deployment they scale (`namespace/name` of their scaleTargetRef). */
  function hpaIndex(): Map<string, KubeObject> {
    const index = new Map<string, KubeObject>();
    for (const h of hpas.store.values()) {
      const ref = (h.spec?.scaleTargetRef ?? {}) as Json;
      if (ref.kind === "Deployment") index.set(`${h.metadata.namespace}/${String(ref.name)}`, h);
    }
    return index;
  }

  /**
   * The replicas an HPA wants: its load (or its target's own replicas) within min/max. A target
   * scaled to 0 disables autoscaling (ScalingDisabled), as kube-controller-manager does.
   */
  function hpaDesired(h: KubeObject, specReplicas: number): number {
    if (specReplicas === 0) return 0;
    const min = typeof h.spec?.minReplicas === "number" ? h.spec.minReplicas : 1;
    const max = typeof h.spec?.maxReplicas === "number" ? h.spec.maxReplicas : min;
    const want = hpaDemand.get(`${h.metadata.namespace}/${h.metadata.name}`) ?? specReplicas;
    return Math.min(max, Math.max(min, want));
  }

  /** The replicas a Deployment runs: its HPA's desired figure when one scales it, else its spec. */
  function effectiveReplicas(d: KubeObject, index = hpaIndex()): number {
    const spec = desiredReplicas(d);
    const h = index.get(`${d.metadata.namespace}/${d.metadata.name}`);
    return h ? hpaDesired(h, spec) : spec;
  }

  /**
   * Pods the scheduler could place per Deployment within the nodes' capacity, Deployments in
   * `namespace/name` order (deterministic, whatever order Argo CD applied them in).
   */
  function allotments(): Map<KubeObject, number> {
    let left = podCapacity;
    const index = hpaIndex();
    const out = new Map<KubeObject, number>();
    const ordered = [...deployments.store.entries()].sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    );
    for (const [, d] of ordered) {
      const n = Math.min(effectiveReplicas(d, index), Math.max(0, left));
      left -= n;
      out.set(d, n);
    }
    return out;
  }

  function deploymentStatus(obj: KubeObject, placement = allotments()): Json {
    const replicas = effectiveReplicas(obj);
    const placed = placement.get(obj) ?? Math.min(replicas, podCapacity);
    const now = new Date().toISOString();
    const failing =
      (rolloutsFail || unavailable.has(`${obj.metadata.namespace}/${obj.metadata.name}`)) &&
      replicas > 0;
    const ready = failing ? 0 : placed;
    const condition = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      lastUpdateTime: now,
      lastTransitionTime: now,
      reason,
      message,
    });
    const rs = replicaSetName(obj);
    // Like kube-apiserver, zero counts are omitted from the JSON.
    const count = (n: number) => (n > 0 ? n : undefined);
    return {
      observedGeneration: obj.metadata.generation,
      replicas: count(replicas),
      updatedReplicas: count(replicas),
      readyReplicas: count(ready),
      availableReplicas: count(ready),
      unavailableReplicas: count(replicas - ready),
      conditions: failing
        ? [
            condition(
              "Available",
              "False",
              "MinimumReplicasUnavailable",
              "Deployment does not have minimum availability.",
            ),
            condition(
              "Progressing",
              "False",
              "ProgressDeadlineExceeded",
              `ReplicaSet "${rs}" has timed out progressing.`,
            ),
          ]
        : [
            // The default RollingUpdate strategy's maxUnavailable: 25% (rounded down).
            ready >= replicas - Math.floor(replicas / 4)
              ? condition(
                  "Available",
                  "True",
                  "MinimumReplicasAvailable",
                  "Deployment has minimum availability.",
                )
              : condition(
                  "Available",
                  "False",
                  "MinimumReplicasUnavailable",
                  "Deployment does not have minimum availability.",
                ),
            ready < replicas
              ? condition(
                  "Progressing",
                  "True",
                  "ReplicaSetUpdated",
                  `ReplicaSet "${rs}" is progressing.`,
                )
              : condition(
                  "Progressing",
                  "True",
                  "NewReplicaSetAvailable",
                  `ReplicaSet "${rs}" has successfully progressed.`,
                ),
          ],
    };
  }

  /** What the HPA controller reports: current replicas of its target and what it wants. */
  function hpaStatus(h: KubeObject): Json {
    const ref = (h.spec?.scaleTargetRef ?? {}) as Json;
    const target = deployments.store.get(`${h.metadata.namespace}/${String(ref.name)}`);
    const now = new Date().toISOString();
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      lastTransitionTime: now,
      reason,
      message,
    });
    if (!target || ref.kind !== "Deployment")
      return {
        currentReplicas: 0,
        desiredReplicas: 0,
        conditions: [
          cond(
            "AbleToScale",
            "False",
            "FailedGetScale",
            `the HPA controller was unable to get the target's current scale: deployments/scale.apps "${String(ref.name)}" not found`,
          ),
        ],
      };
    const spec = desiredReplicas(target);
    const current = typeof target.status?.replicas === "number" ? target.status.replicas : 0;
    if (spec === 0)
      return {
        currentReplicas: 0,
        desiredReplicas: 0,
        conditions: [
          cond(
            "AbleToScale",
            "True",
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
          ),
          cond(
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
          ),
        ],
      };
    return {
      currentReplicas: current,
      desiredReplicas: hpaDesired(h, spec),
      currentMetrics: [],
      conditions: [
        cond("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size"),
        cond(
          "ScalingActive",
          "True",
          "ValidMetricFound",
          "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)",
        ),
      ],
    };
  }

  /** Counts a status is compared by (its timestamps change on every computation). */
  const counts = (status: Json | undefined) =>
    JSON.stringify([
      status?.replicas,
      status?.readyReplicas,
      status?.currentReplicas,
      status?.desiredReplicas,
      (status?.conditions as Json[] | undefined)?.map((c) => [c.type, c.status, c.reason]),
    ]);

  /**
   * What the controllers do after any change: the HPAs scale their Deployments, the scheduler
   * places pods within the nodes' capacity, and statuses follow; changed objects get a new
   * resourceVersion.
   */
  function rebalance(): void {
    const placement = allotments();
    for (const d of deployments.store.values()) {
      const next = deploymentStatus(d, placement);
      if (counts(next) === counts(d.status)) continue;
      d.status = next;
      d.metadata.resourceVersion = nextVersion();
    }
    for (const h of hpas.store.values()) {
      const next = hpaStatus(h);
      if (counts(next) === counts(h.status)) continue;
      h.status = next;
      h.metadata.resourceVersion = nextVersion();
    }
  }

  function externalSecretStatus(ready: boolean): Json {
    const now = new Date().toISOString();
    return {
      refreshTime: now,
      conditions: [
        ready
          ? {
              type: "Ready",
              status: "True",
              reason: "SecretSynced",
              message: "secret synced",
              lastTransitionTime: now,
            }
          : {
              type: "Ready",
              status: "False",
              reason: "SecretSyncedError",
              message: "could not get secret data from provider",
              lastTransitionTime: now,
            },
      ],
    };
  }

  const deployments: Resource = {
    group: "apps",
    apiVersion: "apps/v1",
    kind: "Deployment",
    plural: "deployments",
    itemsTyped: false,
    store: new Map(),
    validate: deploymentProblems,
    reconcile(obj, previous) {
      if (!previous || canonical(previous.spec) !== canonical(obj.spec)) {
        obj.metadata.generation = (previous?.metadata.generation ?? 0) + 1;
        obj.status = deploymentStatus(obj);
        recordRollout(obj, previous);
      } else {
        obj.metadata.generation = previous.metadata.generation;
        obj.status = previous.status;
      }
    },
  };

  const hpas: Resource = {
    group: "autoscaling",
    apiVersion: "autoscaling/v2",
    kind: "HorizontalPodAutoscaler",
    plural: "horizontalpodautoscalers",
    itemsTyped: false,
    store: new Map(),
    validate: hpaProblems,
    reconcile(obj, previous) {
      obj.status =
        previous && canonical(previous.spec) === canonical(obj.spec)
          ? previous.status
          : hpaStatus(obj);
    },
  };

  const externalSecrets: Resource = {
    group: "external-secrets.io",
    apiVersion: "external-secrets.io/v1",
    kind: "ExternalSecret",
    plural: "externalsecrets",
    itemsTyped: true,
    store: new Map(),
    validate: (obj) => (isObject(obj.spec) ? [] : ["spec: Required value"]),
    reconcile(obj, previous) {
      obj.metadata.generation =
        (previous?.metadata.generation ?? 0) +
        (previous && canonical(previous.spec) === canonical(obj.spec) ? 0 : 1);
      obj.status = previous?.status ?? externalSecretStatus(true);
    },
  };

  const veleroBackups: Resource = {
    group: "velero.io",
    apiVersion: "velero.io/v1",
    kind: "Backup",
    plural: "backups",
    itemsTyped: true,
    store: new Map(),
    validate: (obj) => (isObject(obj.spec) ? [] : ["spec: Required value"]),
    reconcile(obj, previous) {
      // The Velero server owns status: a new Backup is New until it picks it up.
      obj.status = previous?.status ?? { phase: "New" };
    },
  };

  const resources = new Map<string, Resource>([
    ["apps/deployments", deployments],
    ["autoscaling/horizontalpodautoscalers", hpas],
    ["external-secrets.io/externalsecrets", externalSecrets],
    ...(options.velero ? [["velero.io/backups", veleroBackups] as const] : []),
  ]);

  /** Checks the body's identity against the URL and the type, and fills server-owned metadata. */
  function admit(res: Resource, body: Json, namespace: string, urlName?: string): KubeObject {
    if (body.apiVersion !== res.apiVersion || body.kind !== res.kind) {
      throw badRequest(
        `the API version and kind in the data (${String(body.apiVersion)}, ${String(body.kind)}) do not match the expected ${res.apiVersion}, ${res.kind}`,
      );
    }
    const meta = isObject(body.metadata) ? body.metadata : {};
    const name = meta.name;
    if (meta.namespace !== undefined && meta.namespace !== namespace) {
      throw badRequest(
        "the namespace of the provided object does not match the namespace sent on the request",
      );
    }
    if (urlName !== undefined && name !== urlName) {
      throw badRequest(
        `the name of the object (${String(name)}) does not match the name on the URL (${urlName})`,
      );
    }
    const problems: string[] = [];
    if (typeof name !== "string" || !name)
      problems.push("metadata.name: Required value: name is required");
    else if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
      problems.push(
        `metadata.name: Invalid value: "${name}": must be a lowercase RFC 1123 subdomain`,
      );
    }
    for (const field of ["labels", "annotations"] as const) {
      if (meta[field] !== undefined && !isStringMap(meta[field])) {
        problems.push(`metadata.${field}: Invalid value: must be a map of strings`);
      }
    }
    const obj = { ...body, metadata: { ...meta, namespace } } as KubeObject;
    problems.push(...res.validate(obj));
    if (problems.length) {
      throw new StatusError(
        422,
        "Invalid",
        `${res.kind}.${res.group} "${String(name)}" is invalid: ${problems.join(", ")}`,
        {
          name,
          group: res.group,
          kind: res.kind,
          causes: problems.map((message) => ({ message })),
        },
      );
    }
    return obj;
  }

  function create(res: Resource, namespace: string, body: Json): KubeObject {
    if (!namespaces.has(namespace)) throw notFound("namespaces", "", namespace);
    const obj = admit(res, body, namespace);
    const key = `${namespace}/${obj.metadata.name}`;
    if (res.store.has(key)) {
      throw new StatusError(
        409,
        "AlreadyExists",
        `${res.plural}.${res.group} "${obj.metadata.name}" already exists`,
        {
          name: obj.metadata.name,
          group: res.group,
          kind: res.plural,
        },
      );
    }
    obj.metadata = {
      ...obj.metadata,
      uid: randomUUID(),
      resourceVersion: nextVersion(),
      creationTimestamp: new Date().toISOString(),
    };
    delete obj.status;
    res.reconcile(obj, undefined);
    res.store.set(key, obj);
    return obj;
  }

  function replace(res: Resource, namespace: string, name: string, body: Json): KubeObject {
    const key = `${namespace}/${name}`;
    const previous = res.store.get(key);
    if (!previous) throw notFound(res.plural, res.group, name);
    const obj = admit(res, body, namespace, name);
    const sent = obj.metadata.resourceVersion;
    if (sent !== undefined && sent !== previous.metadata.resourceVersion) {
      throw new StatusError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${res.plural}.${res.group} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name, group: res.group, kind: res.plural },
      );
    }
    obj.metadata = {
      ...obj.metadata,
      uid: previous.metadata.uid,
      creationTimestamp: previous.metadata.creationTimestamp,
      resourceVersion: previous.metadata.resourceVersion,
    };
    res.reconcile(obj, previous);
    if (canonical(obj) === canonical(previous)) return previous;
    obj.metadata.resourceVersion = nextVersion();
    res.store.set(key, obj);
    return obj;
  }

  function output(obj: KubeObject): KubeObject {
    const { apiVersion, kind, metadata, ...rest } = obj;
    return { apiVersion, kind, metadata, ...rest };
  }

  /** What a list needs of a type: its objects and, for field selectors, its selectable fields. */
  type Listable = Pick<Resource, "store" | "itemsTyped" | "apiVersion" | "kind"> & {
    fields?: (obj: KubeObject) => Record<string, string>;
  };

  function list(res: Listable, namespace: string | undefined, url: URL): Json {
    const labels = parseSelector(url.searchParams.get("labelSelector") ?? "", "label selector");
    const fields = parseSelector(url.searchParams.get("fieldSelector") ?? "", "field selector");
    const matching = [...res.store.entries()].filter(([key, obj]) => {
      if (namespace !== undefined && !key.startsWith(`${namespace}/`)) return false;
      const fieldValues = {
        "metadata.name": obj.metadata.name,
        "metadata.namespace": obj.metadata.namespace ?? "",
        ...res.fields?.(obj),
      };
      return selects(labels, obj.metadata.labels ?? {}) && selects(fields, fieldValues);
    });
    // Sorted by key like etcd's range reads; built-in types list their items untyped.
    const items = matching
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, obj]) => {
        if (res.itemsTyped) return output(obj);
        const { apiVersion: _v, kind: _k, ...item } = obj;
        return item;
      });
    return {
      apiVersion: res.apiVersion,
      kind: `${res.kind}List`,
      metadata: { resourceVersion: String(revision) },
      items,
    };
  }

  const nodeName = (i: number) => `${options.name}-node-${i + 1}`;

  function nodes(): KubeObject[] {
    return Array.from({ length: totalNodes }, (_, i) => {
      const ready = i < readyNodes;
      const name = nodeName(i);
      const condition = (type: string, status: string, reason: string, message: string) => ({
        type,
        status,
        lastHeartbeatTime: startedAt,
        lastTransitionTime: startedAt,
        reason,
        message,
      });
      const pressure = (type: string, reason: string, message: string) =>
        ready
          ? condition(type, "False", reason, message)
          : condition(type, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.");
      return {
        apiVersion: "v1",
        kind: "Node",
        metadata: {
          name,
          uid: uuidOf(name),
          resourceVersion: nodeVersions[i] ?? String(revision),
          creationTimestamp: startedAt,
          labels: {
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "topology.kubernetes.io/region": options.region,
            "topology.kubernetes.io/zone": `${options.region}${"abc"[i % 3]}`,
          },
        },
        spec:
          i < cordonedNodes
            ? {
                unschedulable: true,
                taints: [
                  {
                    key: "node.kubernetes.io/unschedulable",
                    effect: "NoSchedule",
                    timeAdded: startedAt,
                  },
                ],
              }
            : {},
        status: {
          conditions: [
            pressure(
              "MemoryPressure",
              "KubeletHasSufficientMemory",
              "kubelet has sufficient memory available",
            ),
            pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            pressure(
              "PIDPressure",
              "KubeletHasSufficientPID",
              "kubelet has sufficient PID available",
            ),
            ready
              ? condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
              : condition(
                  "Ready",
                  "Unknown",
                  "NodeStatusUnknown",
                  "Kubelet stopped posting node status.",
                ),
          ],
          addresses: [
            { type: "InternalIP", address: nodeIp(i) },
            { type: "Hostname", address: name },
          ],
          nodeInfo: {
            machineID: uuidOf(`${name}/machine`).replace(/-/g, ""),
            systemUUID: uuidOf(`${name}/system`),
            bootID: uuidOf(`${name}/boot`),
            kernelVersion: "6.1.119",
            osImage: "Bottlerocket OS 1.29.0 (aws-k8s-1.31)",
            containerRuntimeVersion: "containerd://1.7.24+bottlerocket",
            kubeletVersion: KUBE_VERSION,
            kubeProxyVersion: KUBE_VERSION,
            operatingSystem: "linux",
            architecture: "amd64",
          },
        },
      };
    });
  }

  /** A node's private address: 10.<spoke>.<zone>.<n>, stable per node. */
  function nodeIp(i: number): string {
    const spokeByte = createHash("sha256").update(options.name).digest()[0] ?? 0;
    return `10.${spokeByte}.${i % 3}.${10 + i}`;
  }

  function replicaSetName(obj: KubeObject): string {
    const template = obj.spec?.template;
    return `${obj.metadata.name}-${createHash("sha256").update(canonical(template)).digest("hex").slice(0, 10)}`;
  }

  /**
   * Records an Event as the component that would emit it; a repeat of the same reason and
   * message about the same object counts up, as the event recorder's aggregation does.
   */
  function recordEvent(
    involved: { kind: string; apiVersion: string; name: string; namespace?: string; uid: string },
    type: "Normal" | "Warning",
    reason: string,
    message: string,
    source: { component: string; host?: string },
  ): void {
    const namespace = involved.namespace ?? "default";
    const now = new Date().toISOString();
    const existing = [...events.values()].find(
      (e) =>
        (e.involvedObject as Json).uid === involved.uid &&
        e.reason === reason &&
        e.message === message,
    );
    if (existing) {
      existing.count = (existing.count as number) + 1;
      existing.lastTimestamp = now;
      existing.metadata.resourceVersion = nextVersion();
      return;
    }
    const name = `${involved.name}.${createHash("sha256").update(`${involved.uid}/${reason}/${message}/${now}/${events.size}`).digest("hex").slice(0, 16)}`;
    events.set(`${namespace}/${name}`, {
      apiVersion: "v1",
      kind: "Event",
      metadata: {
        name,
        namespace,
        uid: randomUUID(),
        resourceVersion: nextVersion(),
        creationTimestamp: now,
      },
      involvedObject: {
        kind: involved.kind,
        namespace: involved.namespace,
        name: involved.name,
        uid: involved.uid,
        apiVersion: involved.apiVersion,
      },
      reason,
      message,
      source,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      type,
      eventTime: null,
      reportingComponent: source.component,
      reportingInstance: source.host ?? "",
    });
  }

  const nodeRef = (i: number) => ({
    kind: "Node",
    apiVersion: "v1",
    name: nodeName(i),
    uid: nodeName(i),
  });

  /** Node events for nodes whose readiness or schedulability changed (as node-controller and kubelet post them). */
  function nodeChanges(before: { ready: number; cordoned: number }): void {
    for (let i = 0; i < totalNodes; i++) {
      const wasReady = i < before.ready;
      const isReady = i < readyNodes;
      const wasCordoned = i < before.cordoned;
      const isCordoned = i < cordonedNodes;
      if (wasReady === isReady && wasCordoned === isCordoned) continue;
      nodeVersions[i] = nextVersion();
      if (wasReady && !isReady) {
        recordEvent(
          nodeRef(i),
          "Normal",
          "NodeNotReady",
          `Node ${nodeName(i)} status is now: NodeNotReady`,
          {
            component: "node-controller",
          },
        );
      }
      if (!wasReady && isReady) {
        recordEvent(
          nodeRef(i),
          "Normal",
          "NodeReady",
          `Node ${nodeName(i)} status is now: NodeReady`,
          {
            component: "kubelet",
            host: nodeName(i),
          },
        );
      }
      if (wasCordoned !== isCordoned) {
        const state = isCordoned ? "NodeNotSchedulable" : "NodeSchedulable";
        recordEvent(nodeRef(i), "Normal", state, `Node ${nodeName(i)} status is now: ${state}`, {
          component: "kubelet",
          host: nodeName(i),
        });
      }
    }
    changed();
  }

  const deploymentRef = (obj: KubeObject) => ({
    kind: "Deployment",
    apiVersion: "apps/v1",
    name: obj.metadata.name,
    namespace: obj.metadata.namespace,
    uid: obj.metadata.uid,
  });
  const desiredReplicas = (obj: KubeObject | undefined) =>
    typeof obj?.spec?.replicas === "number" ? obj.spec.replicas : 1;

  /** The deployment-controller's ScalingReplicaSet events for a new or changed Deployment. */
  function recordRollout(obj: KubeObject, previous: KubeObject | undefined): void {
    const rs = replicaSetName(obj);
    const to = desiredReplicas(obj);
    const scaled = (name: string, from: number, target: number) =>
      recordEvent(
        deploymentRef(obj),
        "Normal",
        "ScalingReplicaSet",
        `Scaled ${target > from ? "up" : "down"} replica set ${name} from ${from} to ${target}`,
        { component: "deployment-controller" },
      );
    if (!replicaSetCreated.has(rs)) replicaSetCreated.set(rs, new Date().toISOString());
    const oldRs = previous ? replicaSetName(previous) : undefined;
    const from = previous ? desiredReplicas(previous) : 0;
    if (oldRs === rs) {
      if (from !== to) scaled(rs, from, to);
    } else {
      if (to > 0) scaled(rs, 0, to);
      if (oldRs && from > 0) scaled(oldRs, from, 0);
    }
    if (rolloutsFail && to > 0) {
      const [first] = podsOf(obj);
      if (first) {
        const container = String((first.spec?.containers as Json[] | undefined)?.[0]?.name ?? "");
        recordEvent(
          {
            kind: "Pod",
            apiVersion: "v1",
            name: first.metadata.name,
            namespace: first.metadata.namespace,
            uid: first.metadata.uid,
          },
          "Warning",
          "BackOff",
          `Back-off restarting failed container ${container} in pod ${first.metadata.name}_${first.metadata.namespace}(${first.metadata.uid})`,
          { component: "kubelet", host: String(first.spec?.nodeName ?? "") },
        );
      }
    }
  }

  /**
   * The Pods a Deployment's current ReplicaSet runs: `spec.replicas` of them, spread over the
   * nodes; Ready while the rollout is available and their node is Ready (the node lifecycle
   * controller marks Pods of a NotReady node not Ready), CrashLoopBackOff while rollouts fail.
   */
  function podsOf(d: KubeObject): KubeObject[] {
    const rs = replicaSetName(d);
    const hash = rs.slice(d.metadata.name.length + 1);
    const template = (d.spec?.template ?? {}) as Json;
    const templateMeta = (template.metadata ?? {}) as Json;
    const templateSpec = (template.spec ?? {}) as Json;
    const containers = (
      Array.isArray(templateSpec.containers) ? templateSpec.containers : []
    ) as Json[];
    const available = typeof d.status?.readyReplicas === "number" ? d.status.readyReplicas : 0;
    const failing = rolloutsFail && available === 0;
    const created = replicaSetCreated.get(rs) ?? d.metadata.creationTimestamp;
    const offset = createHash("sha256").update(d.metadata.uid).digest()[0] ?? 0;
    const placed = allotments().get(d) ?? 0;
    return Array.from({ length: effectiveReplicas(d) }, (_, i) => {
      const digest = createHash("sha256").update(`${rs}/${i}`).digest();
      const suffix = [...digest.subarray(0, 5)]
        .map((b) => POD_SUFFIX_ALPHABET[b % POD_SUFFIX_ALPHABET.length])
        .join("");
      const name = `${rs}-${suffix}`;
      const node = totalNodes && i < placed ? (offset + i) % totalNodes : -1;
      const ready = i < available && node >= 0 && node < readyNodes;
      const condition = (type: string, status: boolean) => ({
        type,
        status: status ? "True" : "False",
        lastProbeTime: null,
        lastTransitionTime: created,
      });
      const podIp = `10.${digest[5] ?? 0}.${digest[6] ?? 0}.${digest[7] ?? 0}`;
      return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name,
          generateName: `${rs}-`,
          namespace: d.metadata.namespace,
          uid: uuidOf(name),
          resourceVersion: String(
            Math.max(Number(d.metadata.resourceVersion), Number(nodeVersions[node] ?? 0)),
          ),
          creationTimestamp: created,
          labels: {
            ...((templateMeta.labels ?? {}) as Record<string, string>),
            "pod-template-hash": hash,
          },
          ownerReferences: [
            {
              apiVersion: "apps/v1",
              kind: "ReplicaSet",
              name: rs,
              uid: uuidOf(rs),
              controller: true,
              blockOwnerDeletion: true,
            },
          ],
        },
        spec: {
          ...templateSpec,
          containers,
          restartPolicy: templateSpec.restartPolicy ?? "Always",
          ...(node >= 0 ? { nodeName: nodeName(node) } : {}),
        },
        status:
          node < 0
            ? {
                phase: "Pending",
                conditions: [
                  {
                    ...condition("PodScheduled", false),
                    reason: "Unschedulable",
                    message: totalNodes
                      ? `0/${totalNodes} nodes are available: ${totalNodes} Too many pods. preemption: 0/${totalNodes} nodes are available: ${totalNodes} No preemption victims found for incoming pod.`
                      : "no nodes available to schedule pods",
                  },
                ],
                qosClass: "BestEffort",
              }
            : {
                phase: "Running",
                conditions: [
                  condition("PodReadyToStartContainers", true),
                  condition("Initialized", true),
                  condition("Ready", ready),
                  condition("ContainersReady", ready),
                  condition("PodScheduled", true),
                ],
                hostIP: nodeIp(node),
                hostIPs: [{ ip: nodeIp(node) }],
                podIP: podIp,
                podIPs: [{ ip: podIp }],
                startTime: created,
                containerStatuses: containers.map((c) => ({
                  name: String(c.name ?? ""),
                  image: String(c.image ?? ""),
                  imageID: "",
                  ready,
                  started: !failing,
                  restartCount: failing ? 5 : 0,
                  state: failing
                    ? {
                        waiting: {
                          reason: "CrashLoopBackOff",
                          message: `back-off 2m40s restarting failed container=${String(c.name ?? "")} pod=${name}_${d.metadata.namespace}(${uuidOf(name)})`,
                        },
                      }
                    : { running: { startedAt: created } },
                  ...(failing
                    ? {
                        lastState: {
                          terminated: {
                            exitCode: 1,
                            reason: "Error",
                            startedAt: created,
                            finishedAt: created,
                          },
                        },
                      }
                    : {}),
                })),
                qosClass: "BestEffort",
              },
      };
    });
  }

  /** Every Pod on the spoke (derived from the Deployments), keyed like the stores. */
  function pods(): Map<string, KubeObject> {
    const out = new Map<string, KubeObject>();
    for (const d of [...deployments.store.values()]) {
      for (const pod of podsOf(d)) out.set(`${pod.metadata.namespace}/${pod.metadata.name}`, pod);
    }
    return out;
  }

  function discovery(path: string): Json | undefined {
    /** [plural, singular, Kind, namespaced, verbs, shortNames] as kube-apiserver lists them. */
    type Row = [string, string, string, boolean, string[], string[]];
    const resourceList = (groupVersion: string, items: Row[]) => ({
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion,
      resources: items.map(([name, singularName, kind, namespaced, verbs, shortNames]) => ({
        name,
        singularName,
        namespaced,
        kind,
        verbs,
        ...(shortNames.length ? { shortNames } : {}),
      })),
    });
    const group = (name: string) => ({
      name,
      versions: [{ groupVersion: `${name}/v1`, version: "v1" }],
      preferredVersion: { groupVersion: `${name}/v1`, version: "v1" },
    });
    switch (path) {
      case "/api":
        return {
          kind: "APIVersions",
          versions: ["v1"],
          serverAddressByClientCIDRs: [
            { clientCIDR: "0.0.0.0/0", serverAddress: new URL(url).host },
          ],
        };
      case "/apis":
        return {
          kind: "APIGroupList",
          apiVersion: "v1",
          groups: [
            group("apps"),
            group("authorization.k8s.io"),
            group("external-secrets.io"),
            ...(options.velero ? [group("velero.io")] : []),
          ],
        };
      case "/api/v1":
        return resourceList("v1", [
          ["events", "event", "Event", true, ["get", "list", "watch"], ["ev"]],
          [
            "namespaces",
            "namespace",
            "Namespace",
            false,
            ["create", "get", "list", "watch"],
            ["ns"],
          ],
          ["nodes", "node", "Node", false, ["get", "list", "watch"], ["no"]],
          ["pods", "pod", "Pod", true, ["get", "list", "watch"], ["po"]],
        ]);
      case "/apis/apps/v1":
        return resourceList("apps/v1", [
          [
            "deployments",
            "deployment",
            "Deployment",
            true,
            ["create", "delete", "get", "list", "patch", "update", "watch"],
            ["deploy"],
          ],
        ]);
      case "/apis/autoscaling/v2":
        return resourceList("autoscaling/v2", [
          [
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            "HorizontalPodAutoscaler",
            true,
            ["create", "delete", "get", "list", "patch", "update", "watch"],
            ["hpa"],
          ],
        ]);
      case "/apis/authorization.k8s.io/v1":
        return resourceList("authorization.k8s.io/v1", [
          [
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            "SelfSubjectAccessReview",
            false,
            ["create"],
            [],
          ],
        ]);
      case "/apis/external-secrets.io/v1":
        return resourceList("external-secrets.io/v1", [
          [
            "externalsecrets",
            "externalsecret",
            "ExternalSecret",
            true,
            ["create", "get", "list", "update", "watch"],
            ["es"],
          ],
        ]);
      case "/apis/velero.io/v1":
        return options.velero
          ? resourceList("velero.io/v1", [
              ["backups", "backup", "Backup", true, ["create", "get", "list", "update"], []],
            ])
          : undefined;
      default:
        return undefined;
    }
  }

  type Reply = { code: number; body: Json | string; contentType?: string };

  /** `/api/v1[/namespaces/<ns>]/{pods,events}[/<name>]`: the derived, read-only types. */
  function derivedRequest(
    parts: string[],
  ): { plural: string; namespace?: string; name?: string } | undefined {
    if (parts[0] !== "api" || parts[1] !== "v1") return undefined;
    const rest = parts.slice(2);
    const namespaced = rest[0] === "namespaces" && rest.length >= 3;
    const [namespace, plural, name, extra] = namespaced
      ? [rest[1], rest[2], rest[3], rest[4]]
      : [undefined, rest[0], undefined, rest[1]];
    if (plural !== "pods" && plural !== "events") return undefined;
    if (extra !== undefined) throw noRoute();
    return { plural, namespace, name };
  }

  function podList(): Listable {
    return {
      store: pods(),
      itemsTyped: false,
      apiVersion: "v1",
      kind: "Pod",
      fields: (p) => ({
        "spec.nodeName": String(p.spec?.nodeName ?? ""),
        "status.phase": String(p.status?.phase ?? ""),
      }),
    };
  }

  function eventList(): Listable {
    return {
      store: events,
      itemsTyped: false,
      apiVersion: "v1",
      kind: "Event",
      fields: (e) => {
        const involved = (e.involvedObject ?? {}) as Record<string, string>;
        return {
          ...Object.fromEntries(
            ["kind", "namespace", "name", "uid", "apiVersion"].map((k) => [
              `involvedObject.${k}`,
              involved[k] ?? "",
            ]),
          ),
          reason: String(e.reason ?? ""),
          type: String(e.type ?? ""),
          "source.component": String((e.source as Json | undefined)?.component ?? ""),
        };
      },
    };
  }

  /** A SelfSubjectAccessReview, answered from the caller's own RBAC rules. */
  function accessReview(body: Json, grant: TokenGrant): Json {
    if (body.apiVersion !== "authorization.k8s.io/v1" || body.kind !== "SelfSubjectAccessReview") {
      throw badRequest(
        `the API version and kind in the data (${String(body.apiVersion)}, ${String(body.kind)}) do not match the expected authorization.k8s.io/v1, SelfSubjectAccessReview`,
      );
    }
    const spec = isObject(body.spec) ? body.spec : {};
    const resource = isObject(spec.resourceAttributes) ? spec.resourceAttributes : undefined;
    const nonResource = isObject(spec.nonResourceAttributes)
      ? spec.nonResourceAttributes
      : undefined;
    if (!resource === !nonResource) {
      throw new StatusError(
        422,
        "Invalid",
        `SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified`,
        { group: "authorization.k8s.io", kind: "SelfSubjectAccessReview" },
      );
    }
    // Non-resource URLs (discovery, health, version) are open to every authenticated user.
    const rule = resource
      ? allowingRule(grant, {
          verb: String(resource.verb ?? ""),
          group: String(resource.group ?? ""),
          resource: String(resource.resource ?? ""),
          ...(typeof resource.namespace === "string" && resource.namespace
            ? { namespace: resource.namespace }
            : {}),
        })
      : undefined;
    const allowed = resource ? rule !== undefined : true;
    return {
      kind: "SelfSubjectAccessReview",
      apiVersion: "authorization.k8s.io/v1",
      metadata: { creationTimestamp: null },
      spec,
      status: {
        allowed,
        ...(allowed
          ? {
              reason: resource
                ? `RBAC: allowed by ${grant.binding} to User "${grant.user}"`
                : 'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated"',
            }
          : {}),
      },
    };
  }

  /** Renders a 200 GET answer as a meta.k8s.io/v1 Table when the client asked for one. */
  function asTable(req: IncomingMessage, url: URL, reply: Reply): Reply {
    const body = reply.body;
    if (req.method !== "GET" || reply.code !== 200 || typeof body === "string") return reply;
    if (!wantsTable(req.headers.accept)) return reply;
    const include = url.searchParams.get("includeObject") ?? "Metadata";
    const isList =
      typeof body.kind === "string" && body.kind.endsWith("List") && Array.isArray(body.items);
    const kind = String(isList ? String(body.kind).slice(0, -4) : body.kind);
    const objects = isList ? typedItems(body) : [body];
    const rv = String(((body.metadata ?? {}) as Json).resourceVersion ?? revision);
    const rendered = table(kind, objects, rv, include);
    return rendered ? { code: 200, body: rendered, contentType: TABLE_CONTENT_TYPE } : reply;
  }

  /** A list's items with the apiVersion and kind that built-in lists leave out of each item. */
  function typedItems(body: Json): Json[] {
    const kind = String(body.kind).slice(0, -4);
    return (body.items as Json[]).map((item) => ({ apiVersion: body.apiVersion, kind, ...item }));
  }

  /**
   * `watch=true` on a list: a chunked stream of `{type, object}` lines. Without a
   * resourceVersion (or with "0") the current items come first as ADDED; after that every
   * change to what the list selects is sent as ADDED, MODIFIED or DELETED (as Table rows when
   * the client asked for a Table), until `timeoutSeconds` or the client goes away.
   */
  async function watch(
    req: IncomingMessage,
    response: ServerResponse,
    url: URL,
    grant: TokenGrant,
  ) {
    const listUrl = new URL(url);
    for (const param of WATCH_PARAMS) listUrl.searchParams.delete(param);
    const snapshot = async () => {
      const { body } = await route(req, listUrl, grant);
      if (typeof body === "string" || !Array.isArray(body.items)) {
        throw badRequest(
          "watch needs a collection: watch a list with fieldSelector=metadata.name=<name>",
        );
      }
      const items = typedItems(body).map((o) => {
        const m = o.metadata as Meta;
        return [`${m.namespace ?? ""}/${m.name}`, o] as const;
      });
      return { kind: String(body.kind).slice(0, -4), items: new Map(items) };
    };
    const first = await snapshot();
    let known = first.items;
    const objectKind = first.kind;
    const tableWanted = wantsTable(req.headers.accept);
    const include = url.searchParams.get("includeObject") ?? "Metadata";
    response.writeHead(200, {
      "Content-Type": tableWanted ? TABLE_CONTENT_TYPE : "application/json",
      "Cache-Control": "no-cache, private",
      "X-Content-Type-Options": "nosniff",
    });
    let columnsSent = false;
    const emit = (type: string, obj: Json) => {
      const rv = String((obj.metadata as Meta).resourceVersion);
      const object = tableWanted
        ? table(objectKind, [obj], rv, include, { columns: !columnsSent })
        : obj;
      columnsSent = true;
      response.write(`${JSON.stringify({ type, object })}\n`);
    };
    const from = url.searchParams.get("resourceVersion");
    if (!from || from === "0") for (const obj of known.values()) emit("ADDED", obj);
    let chain = Promise.resolve();
    const notify = () => {
      chain = chain.then(async () => {
        const now = (await snapshot().catch(() => undefined))?.items;
        if (!now || response.writableEnded) return;
        for (const [key, obj] of now) {
          const before = known.get(key);
          if (!before) emit("ADDED", obj);
          else if (canonical(before) !== canonical(obj)) emit("MODIFIED", obj);
        }
        for (const [key, obj] of known) if (!now.has(key)) emit("DELETED", obj);
        known = now;
      });
    };
    watchers.add(notify);
    const timeout = Number(url.searchParams.get("timeoutSeconds") ?? "1800");
    const timer = setTimeout(() => response.end(), Math.max(1, timeout) * 1000);
    timer.unref();
    response.on("close", () => {
      watchers.delete(notify);
      clearTimeout(timer);
    });
  }
  const methodNotAllowed = () =>
    new StatusError(
      405,
      "MethodNotAllowed",
      "the server does not allow this method on the requested resource",
      {},
    );

  /** Routes one authenticated request; throws StatusError for every refusal. */
  async function route(req: IncomingMessage, url: URL, grant: TokenGrant): Promise<Reply> {
    const method = req.method ?? "GET";
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/$/, "") : url.pathname;
    const only = (...allowed: string[]) => {
      if (!allowed.includes(method)) throw methodNotAllowed();
    };
    if (url.searchParams.has("dryRun"))
      throw badRequest("dryRun is not supported by the sandbox fake spoke");

    if (path === "/readyz" || path === "/livez" || path === "/healthz") {
      only("GET");
      return { code: 200, body: "ok" };
    }
    if (path === "/version") {
      only("GET");
      return {
        code: 200,
        body: {
          major: "1",
          minor: "31",
          gitVersion: KUBE_VERSION,
          gitTreeState: "clean",
          goVersion: "go1.22.5",
          compiler: "gc",
          platform: "linux/amd64",
        },
      };
    }
    const doc = discovery(path);
    if (doc) {
      only("GET");
      return { code: 200, body: doc };
    }

    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const derived = derivedRequest(parts);
    if (derived) {
      only("GET");
      const res = derived.plural === "pods" ? podList() : eventList();
      if (derived.name === undefined) return { code: 200, body: list(res, derived.namespace, url) };
      const obj = res.store.get(`${derived.namespace}/${derived.name}`);
      if (!obj) throw notFound(derived.plural, "", derived.name);
      return { code: 200, body: obj };
    }
    if (path === "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews") {
      only("POST");
      requireJson(req);
      return { code: 201, body: accessReview(await jsonBody(req), grant) };
    }
    if (parts[0] === "api" && parts[1] === "v1") {
      const [, , collection, name, ...rest] = parts;
      if (rest.length) throw noRoute();
      if (collection === "nodes") {
        only("GET");
        const all = nodes();
        if (name === undefined) {
          const items = all.map(({ apiVersion: _v, kind: _k, ...n }) => n);
          return {
            code: 200,
            body: {
              apiVersion: "v1",
              kind: "NodeList",
              metadata: { resourceVersion: String(revision) },
              items,
            },
          };
        }
        const node = all.find((n) => n.metadata.name === name);
        if (!node) throw notFound("nodes", "", name);
        return { code: 200, body: node };
      }
      if (collection === "namespaces") {
        if (name === undefined) {
          only("GET", "POST");
          if (method === "GET") {
            const labels = parseSelector(
              url.searchParams.get("labelSelector") ?? "",
              "label selector",
            );
            const items = [...namespaces.values()]
              .filter((n) => selects(labels, n.metadata.labels ?? {}))
              .map(({ apiVersion: _v, kind: _k, ...n }) => n);
            return {
              code: 200,
              body: {
                apiVersion: "v1",
                kind: "NamespaceList",
                metadata: { resourceVersion: String(revision) },
                items,
              },
            };
          }
          requireJson(req);
          const body = await jsonBody(req);
          const nsName = isObject(body.metadata) ? body.metadata.name : undefined;
          if (body.apiVersion !== "v1" || body.kind !== "Namespace") {
            throw badRequest(
              "the API version and kind in the data do not match the expected v1, Namespace",
            );
          }
          if (typeof nsName !== "string" || nsName.length > 63 || !DNS_LABEL.test(nsName)) {
            throw new StatusError(
              422,
              "Invalid",
              `Namespace "${String(nsName)}" is invalid: metadata.name: Invalid value: must be a lowercase RFC 1123 label`,
              {
                name: nsName,
                kind: "Namespace",
              },
            );
          }
          if (namespaces.has(nsName)) {
            throw new StatusError(409, "AlreadyExists", `namespaces "${nsName}" already exists`, {
              name: nsName,
              kind: "namespaces",
            });
          }
          return { code: 201, body: addNamespace(nsName) };
        }
        only("GET");
        const ns = namespaces.get(name);
        if (!ns) throw notFound("namespaces", "", name);
        return { code: 200, body: ns };
      }
      throw noRoute();
    }

    if (parts[0] !== "apis" || parts[1] === undefined) throw noRoute();
    const group = parts[1];
    const namespaced = parts[3] === "namespaces";
    const namespace = namespaced ? parts[4] : undefined;
    const plural = namespaced ? parts[5] : parts[3];
    const name = namespaced ? parts[6] : undefined;
    const res = resources.get(`${group}/${plural}`);
    if (
      !res ||
      res.apiVersion !== `${group}/${parts[2]}` ||
      parts.length > (namespaced ? 7 : 4) ||
      (namespaced && namespace === undefined)
    )
      throw noRoute();

    if (namespace === undefined) {
      only("GET");
      return { code: 200, body: list(res, undefined, url) };
    }
    if (name === undefined) {
      only("GET", "POST");
      if (method === "GET") return { code: 200, body: list(res, namespace, url) };
      requireJson(req);
      return { code: 201, body: output(create(res, namespace, await jsonBody(req))) };
    }
    const verbs = res === deployments ? ["GET", "PUT", "PATCH", "DELETE"] : ["GET", "PUT"];
    only(...verbs);
    const key = `${namespace}/${name}`;
    if (method === "GET") {
      const obj = res.store.get(key);
      if (!obj) throw notFound(res.plural, res.group, name);
      return { code: 200, body: output(obj) };
    }
    if (method === "PUT") {
      requireJson(req);
      return { code: 200, body: output(replace(res, namespace, name, await jsonBody(req))) };
    }
    if (method === "PATCH") {
      const type = mediaType(req);
      if (!MERGE_PATCH_TYPES.has(type)) {
        throw new StatusError(
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format - accepted media types include: ${[...MERGE_PATCH_TYPES].join(", ")}`,
        );
      }
      const patch = await jsonBody(req);
      const current = res.store.get(key);
      if (!current) throw notFound(res.plural, res.group, name);
      const patched = mergePatch(current, patch) as Json;
      return { code: 200, body: output(replace(res, namespace, name, patched)) };
    }
    const obj = res.store.get(key);
    if (!obj) throw notFound(res.plural, res.group, name);
    res.store.delete(key);
    return {
      code: 200,
      body: {
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Success",
        details: { name, group: res.group, kind: res.plural, uid: obj.metadata.uid },
      },
    };
  }

  function requireJson(req: IncomingMessage): void {
    const type = mediaType(req);
    if (type !== "application/json") {
      throw new StatusError(
        415,
        "UnsupportedMediaType",
        `the body of the request was in an unknown format (${type || "no Content-Type"}) - accepted media types include: application/json`,
      );
    }
  }

  function send(response: ServerResponse, reply: Reply): void {
    const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body);
    response.writeHead(reply.code, {
      "Content-Type":
        reply.contentType ??
        (typeof reply.body === "string" ? "text/plain; charset=utf-8" : "application/json"),
      "Content-Length": Buffer.byteLength(text),
      "X-Content-Type-Options": "nosniff",
      "Cache-Control": "no-cache, private",
    });
    response.end(text);
  }

  async function handle(req: IncomingMessage, response: ServerResponse): Promise<void> {
    requestCount++;
    try {
      const grant = [...tokens].find(([token]) =>
        tokenMatches(req.headers.authorization, token),
      )?.[1];
      if (!grant) throw new StatusError(401, "Unauthorized", "Unauthorized");
      const target = new URL(req.url ?? "/", url);
      const include = target.searchParams.get("includeObject");
      if (include !== null && !INCLUDE_OBJECT.has(include)) {
        throw badRequest(`Invalid value: "${include}": must be 'Metadata', 'Object', or 'None'`);
      }
      const attrs = requestAttributes(req.method ?? "GET", target);
      const review = attrs?.resource === "selfsubjectaccessreviews" && attrs.verb === "create";
      if (attrs && !review && !allowingRule(grant, attrs)) throw forbidden(grant, attrs);
      if (attrs?.verb === "watch") {
        await watch(req, response, target, grant);
        return;
      }
      send(response, asTable(req, target, await route(req, target, grant)));
      if (req.method !== "GET") {
        rebalance();
        changed();
      }
    } catch (e) {
      const error =
        e instanceof StatusError
          ? e
          : new StatusError(
              500,
              "InternalError",
              `Internal error occurred: ${(e as Error).message}`,
            );
      req.resume();
      send(response, {
        code: error.code,
        body: {
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message: error.message,
          reason: error.reason,
          ...(error.details ? { details: error.details } : {}),
          code: error.code,
        },
      });
    }
  }

  const server = createServer({ cert: certPem, key: keyPem }, (req, response) => {
    void handle(req, response);
  });
  // Raw TCP sockets, so that "unreachable" also cuts connections mid-handshake. They are
  // destroy()ed, never resetAndDestroy()ed: resetting the TCP handle under a TLS socket leaves a
  // handle that never closes, and Node then spins at process exit.
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    if (!reachable) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("the fake spoke has no TCP address");
  const url = `https://127.0.0.1:${address.port}`;

  for (const ns of [...SYSTEM_NAMESPACES, ...(options.namespaces ?? [])]) addNamespace(ns);
  for (const es of options.externalSecrets ?? []) {
    addNamespace(es.namespace);
    create(externalSecrets, es.namespace, {
      apiVersion: "external-secrets.io/v1",
      kind: "ExternalSecret",
      metadata: { name: es.name },
      spec: {
        refreshInterval: "1h",
        secretStoreRef: { kind: "ClusterSecretStore", name: "aws-secrets-manager" },
      },
    });
  }
  if (options.velero) addNamespace(options.velero.namespace);
  if (options.sealedSecrets) {
    const { namespace, deployment } = options.sealedSecrets;
    const labels = { "app.kubernetes.io/name": "sealed-secrets" };
    addNamespace(namespace);
    create(deployments, namespace, {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: deployment, labels },
      spec: {
        replicas: 1,
        selector: { matchLabels: labels },
        template: {
          metadata: { labels },
          spec: { containers: [{ name: "controller", image: "sealed-secrets-controller" }] },
        },
      },
    });
  }

  return {
    name: options.name,
    region: options.region,
    url,
    caPem: options.ca.caPem,
    setReachable(value) {
      reachable = value;
      if (!value) {
        for (const socket of sockets) socket.destroy();
        sockets.clear();
      }
    },
    setReadyNodes(n) {
      if (!Number.isInteger(n) || n < 0 || n > totalNodes) {
        throw new RangeError(`ready nodes must be an integer from 0 to ${totalNodes}, got ${n}`);
      }
      const before = { ready: readyNodes, cordoned: cordonedNodes };
      readyNodes = n;
      nodeChanges(before);
    },
    setCordonedNodes(n) {
      if (!Number.isInteger(n) || n < 0 || n > totalNodes) {
        throw new RangeError(`cordoned nodes must be an integer from 0 to ${totalNodes}, got ${n}`);
      }
      const before = { ready: readyNodes, cordoned: cordonedNodes };
      cordonedNodes = n;
      nodeChanges(before);
    },
    setRolloutsFail(fail) {
      rolloutsFail = fail;
      if (fail) return;
      for (const obj of deployments.store.values()) {
        const progressing = (obj.status?.conditions as Json[] | undefined)?.find(
          (c) => c.type === "Progressing",
        );
        if (progressing?.reason === "ProgressDeadlineExceeded") {
          obj.status = deploymentStatus(obj);
          obj.metadata.resourceVersion = nextVersion();
        }
      }
      changed();
    },
    setExternalSecretReady(namespace, name, ready) {
      const obj = externalSecrets.store.get(`${namespace}/${name}`);
      if (!obj)
        throw new Error(`ExternalSecret ${namespace}/${name} does not exist on ${options.name}`);
      obj.status = externalSecretStatus(ready);
      obj.metadata.resourceVersion = nextVersion();
      if (!ready) {
        recordEvent(
          {
            kind: "ExternalSecret",
            apiVersion: "external-secrets.io/v1",
            name,
            namespace,
            uid: obj.metadata.uid,
          },
          "Warning",
          "UpdateFailed",
          "could not get secret data from provider",
          { component: "external-secrets" },
        );
      }
      changed();
    },
    addToken(token, grant) {
      tokens.set(token, grant);
    },
    setDeploymentAvailable(namespace, name, available) {
      const key = `${namespace}/${name}`;
      const obj = deployments.store.get(key);
      if (!obj) throw new Error(`Deployment ${key} does not exist on ${options.name}`);
      if (available) unavailable.delete(key);
      else unavailable.add(key);
      obj.status = deploymentStatus(obj);
      obj.metadata.resourceVersion = nextVersion();
    },
    setVeleroBackups(backups) {
      const namespace = options.velero?.namespace;
      if (!namespace) throw new Error(`${options.name} does not run Velero`);
      veleroBackups.store.clear();
      for (const b of backups) {
        const obj = create(veleroBackups, namespace, {
          apiVersion: "velero.io/v1",
          kind: "Backup",
          metadata: { name: b.name, labels: { "velero.io/storage-location": "default" } },
          spec: {
            ...(b.includedNamespaces ? { includedNamespaces: b.includedNamespaces } : {}),
            ...(b.excludedNamespaces ? { excludedNamespaces: b.excludedNamespaces } : {}),
            storageLocation: "default",
            ttl: "720h0m0s",
          },
        });
        obj.status = {
          phase: b.phase,
          startTimestamp: b.startedAt,
          ...(b.completedAt ? { completionTimestamp: b.completedAt } : {}),
          version: 1,
        };
      }
    },
    setPodCapacity(pods) {
      if (!Number.isInteger(pods) || pods < 0)
        throw new RangeError(`pod capacity must be an integer >= 0, got ${pods}`);
      podCapacity = pods;
      rebalance();
      changed();
    },
    setHpaDemand(namespace, name, replicas) {
      const key = `${namespace}/${name}`;
      if (!hpas.store.has(key))
        throw new Error(`HorizontalPodAutoscaler ${key} does not exist on ${options.name}`);
      if (replicas === undefined) hpaDemand.delete(key);
      else hpaDemand.set(key, replicas);
      rebalance();
      changed();
    },
    deployments() {
      return [...deployments.store.values()].map((d) => ({
        namespace: d.metadata.namespace ?? "",
        name: d.metadata.name,
        replicas: effectiveReplicas(d),
        readyReplicas: typeof d.status?.readyReplicas === "number" ? d.status.readyReplicas : 0,
        labels: { ...(d.metadata.labels ?? {}) },
        annotations: { ...(d.metadata.annotations ?? {}) },
      }));
    },
    requests: () => requestCount,
    stop() {
      reachable = false;
      return new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
        sockets.clear();
      });
    },
  };
}
