/**
 * The Argo CD client against small real HTTP(S) servers written here (not the emulator), to pin
 * the edge cases: what is asked, how often, what counts as done, and how hubs fail over.
 */
import { mkdtemp, rm } from "node:fs/promises";
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  type ArgoHubConnection,
  checkSync,
  type RevisionJudgement,
  type SyncCheckRequest,
} from "../../functions/lib/argocd.ts";
import {
  ArgoAuthError,
  ArgoUnreachable,
  ConfigError,
  ResponseTooLarge,
} from "../../functions/lib/errors.ts";
import { getSecret } from "../../functions/lib/secrets.ts";
import { filterApplicationList } from "../../sandbox/argocd.ts";
import { createCa } from "../../sandbox/ca.ts";
import { answerTooLarge } from "./huge-answer.ts";
import { rotatingSecret } from "./rotating-secret.ts";

const SHA = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
const OLD = "1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5";
const TOKEN = "argo-token-s3cr3t-value-0123456789";

interface Recorded {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: unknown;
}

type Handler = (req: Recorded, res: ServerResponse) => void;

interface FakeHub {
  url: string;
  requests: Recorded[];
  close(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

async function startHub(
  handler: Handler,
  tls?: { certPem: string; keyPem: string },
): Promise<FakeHub> {
  const requests: Recorded[] = [];
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    void readBody(req).then((body) => {
      const url = new URL(req.url ?? "/", "http://hub");
      const recorded = {
        method: req.method ?? "",
        path: url.pathname,
        query: url.searchParams,
        authorization: req.headers.authorization,
        body,
      };
      requests.push(recorded);
      handler(recorded, res);
    });
  };
  const server = tls
    ? https.createServer({ cert: tls.certPem, key: tls.keyPem }, listener)
    : http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  cleanups.push(close);
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${port}`, requests, close };
}

/** A port nothing listens on: connections are refused. */
async function closedPort(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

interface AppSpec {
  name: string;
  cluster?: string;
  server?: string;
  sync?: string;
  revision?: string;
  /** A multi-source app synced at these revisions (one per source). */
  revisions?: string[];
  health?: string;
  phase?: string;
  message?: string;
  opRevision?: string;
  /** The operation has no syncResult yet (it failed before syncing). */
  noSyncResult?: boolean;
  automated?: boolean;
  /** `status.resources`: each managed resource's kind, namespace, name and health. */
  resources?: { kind: string; namespace: string; name: string; health: string }[];
}

/** A whole Application as a Get answers it. */
function app(a: AppSpec): Record<string, unknown> {
  const source = (path: string) => ({
    repoURL: "https://git.example/shop.git",
    path,
    targetRevision: "HEAD",
  });
  return {
    metadata: {
      name: a.name,
      namespace: "argocd",
      labels: { "app.kubernetes.io/part-of": "shop" },
    },
    spec: {
      project: "default",
      destination: a.server ? { server: a.server } : { name: a.cluster ?? "spoke-east-2" },
      ...(a.revisions
        ? { sources: a.revisions.map((_, i) => source(`s${i}`)) }
        : { source: source("app") }),
      ...(a.automated ? { syncPolicy: { automated: { prune: true, selfHeal: true } } } : {}),
    },
    status: {
      sync: {
        status: a.sync ?? "Synced",
        ...(a.revisions
          ? { revision: "", revisions: a.revisions }
          : { revision: a.revision ?? SHA }),
      },
      health: { status: a.health ?? "Healthy" },
      ...(a.resources
        ? {
            resources: a.resources.map(({ health, ...r }) => ({
              group: r.kind === "Deployment" ? "apps" : "",
              version: "v1",
              ...r,
              status: "Synced",
              health: { status: health },
            })),
          }
        : {}),
      ...(a.phase
        ? {
            operationState: {
              phase: a.phase,
              ...(a.message ? { message: a.message } : {}),
              operation: { sync: { revision: a.opRevision ?? SHA } },
              ...(a.noSyncResult ? {} : { syncResult: { revision: a.opRevision ?? SHA } }),
              startedAt: "2026-01-01T00:00:00Z",
            },
          }
        : {}),
    },
  };
}

/** The list as argocd-server answers it: `fields` through its allow-list (as the emulator). */
function listAnswer(res: ServerResponse, apps: AppSpec[], fields: string | null): void {
  try {
    json(
      res,
      200,
      filterApplicationList({ metadata: { resourceVersion: "7" }, items: apps.map(app) }, fields),
    );
  } catch (e) {
    json(res, 500, { error: String(e), code: 13, message: String(e) });
  }
}

/** A hub serving `apps` on the list, and `refreshed` (or the same) on a Get. */
function argo(apps: AppSpec[], refreshed: AppSpec[] = apps): Handler {
  return (req, res) => {
    if (req.method === "GET" && req.path === "/api/v1/applications") {
      return listAnswer(res, apps, req.query.get("fields"));
    }
    const single = req.path.match(/^\/api\/v1\/applications\/([^/]+)(\/sync)?$/);
    const found = refreshed.find((a) => a.name === single?.[1]);
    if (single && found) return json(res, 200, app(found));
    return json(res, 404, { error: "not found", code: 5, message: "not found" });
  };
}

function hub(name: string, url: string, extra: Partial<ArgoHubConnection> = {}): ArgoHubConnection {
  return { name, url, token: TOKEN, ...extra };
}

function request(
  hubs: ArgoHubConnection[],
  extra: Partial<SyncCheckRequest> = {},
): SyncCheckRequest {
  return {
    hubs,
    selector: "app.kubernetes.io/part-of=shop",
    clusters: ["spoke-east-2"],
    revision: SHA,
    refresh: "hard",
    sync: false,
    firstPoll: false,
    timeoutMs: 5_000,
    ...extra,
  };
}

describe("checkSync: what it asks", () => {
  it("lists once per later poll with the selector, appNamespace and only the fields it reads", async () => {
    // Prepare
    const h = await startHub(
      argo([{ name: "east-api" }, { name: "west-api", cluster: "spoke-west-2" }]),
    );

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { appNamespace: "argocd" }),
    );

    // Assess
    expect(result).toEqual({
      status: "SUCCEEDED",
      hub: "hub-primary",
      total: 1,
      done: 1,
      pending: [],
      apiCalls: 1,
    });
    expect(h.requests).toHaveLength(1);
    const [list] = h.requests;
    expect(list?.method).toBe("GET");
    expect(list?.path).toBe("/api/v1/applications");
    expect(list?.query.get("selector")).toBe("app.kubernetes.io/part-of=shop");
    expect(list?.query.get("appNamespace")).toBe("argocd");
    const fields = list?.query.get("fields")?.split(",") ?? [];
    // argocd-server's allow-list since v2.6 (plus status.sync.revision, from v3.5.0): anything
    // else, a sub-path like items.status.health.status included, is silently dropped.
    const allowed = [
      "metadata.name",
      "metadata.namespace",
      "metadata.annotations",
      "metadata.labels",
      "metadata.creationTimestamp",
      "metadata.deletionTimestamp",
      "spec",
      "status.sync.status",
      "status.sync.revision",
      "status.health",
      "status.summary",
      "status.operationState.startedAt",
      "status.operationState.finishedAt",
      "status.resources",
      "operation.sync",
      "status.operationState.phase",
      "status.operationState.operation.sync",
    ].map((f) => `items.${f}`);
    expect(fields.filter((f) => !allowed.includes(f))).toEqual([]);
    expect(fields).toEqual(
      expect.arrayContaining([
        "items.metadata.name",
        "items.spec",
        "items.status.sync.status",
        "items.status.sync.revision",
        "items.status.health",
        "items.status.operationState.phase",
        "items.status.operationState.operation.sync",
      ]),
    );
    expect(list?.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it("makes exactly one call per poll whatever the app count", async () => {
    // Prepare
    const apps = Array.from({ length: 300 }, (_, i) => ({
      name: `app-${i}`,
      sync: i % 2 ? "OutOfSync" : "Synced",
      revision: i % 2 ? OLD : SHA,
    }));
    const h = await startHub(argo(apps));

    // Act
    const first = await checkSync(request([hub("hub-primary", h.url)]));
    const second = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(h.requests).toHaveLength(2);
    expect(first.status).toBe("IN_PROGRESS");
    expect(second).toMatchObject({ total: 300, done: 150 });
    expect(second.pending).toHaveLength(150);
  });

  it("on the first poll refreshes and syncs only the target apps not at the commit", async () => {
    // Prepare
    const apps: AppSpec[] = [
      { name: "east-api", sync: "OutOfSync", revision: OLD },
      { name: "east-web" },
      { name: "west-api", cluster: "spoke-west-2", sync: "OutOfSync", revision: OLD },
    ];
    const h = await startHub(argo(apps, [{ name: "east-api", sync: "OutOfSync", revision: SHA }]));

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { firstPoll: true, sync: true }),
    );

    // Assess
    const calls = h.requests.map((r) => `${r.method} ${r.path}`);
    expect(calls).toEqual([
      "GET /api/v1/applications",
      "GET /api/v1/applications/east-api",
      "POST /api/v1/applications/east-api/sync",
    ]);
    expect(h.requests[1]?.query.get("refresh")).toBe("hard");
    expect(h.requests[1]?.query.get("appNamespace")).toBe("argocd");
    expect(h.requests[2]?.body).toEqual({
      name: "east-api",
      appNamespace: "argocd",
      revision: SHA,
      prune: false,
    });
    expect(result.status).toBe("IN_PROGRESS");
    expect(result.pending).toEqual([
      { name: "east-api", reason: "OutOfSync at 9f8e7d6, operation Running" },
    ]);
  });

  it("resolves destinations given by server URL through the cluster list", async () => {
    // Prepare
    const server = "https://10.0.0.1:6443";
    const base = argo([{ name: "east-api", server }]);
    const h = await startHub((req, res) => {
      if (req.path === "/api/v1/clusters") {
        return json(res, 200, { items: [{ name: "spoke-east-2", server: `${server}/` }] });
      }
      return base(req, res);
    });

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "SUCCEEDED", total: 1, done: 1, apiCalls: 2 });
    expect(h.requests.map((r) => r.path)).toEqual(["/api/v1/applications", "/api/v1/clusters"]);
  });

  it("does not send a revision sync to auto-synced apps, and takes Argo CD's auto-sync refusal as pending", async () => {
    // Prepare
    const apps: AppSpec[] = [
      { name: "east-auto", sync: "OutOfSync", revision: OLD, automated: true },
      { name: "east-manual", sync: "OutOfSync", revision: OLD },
    ];
    const base = argo(apps);
    const h = await startHub((req, res) => {
      if (req.method === "POST") {
        // auto-sync was turned on after the list was read
        const message = `Cannot sync to ${SHA}: auto-sync currently set to HEAD`;
        return json(res, 400, { error: message, code: 9, message });
      }
      return base(req, res);
    });

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { firstPoll: true, sync: true }),
    );

    // Assess
    const posts = h.requests.filter((r) => r.method === "POST").map((r) => r.path);
    expect(posts).toEqual(["/api/v1/applications/east-manual/sync"]);
    expect(result.status).toBe("IN_PROGRESS");
    expect(result.pending).toEqual([
      { name: "east-auto", reason: "OutOfSync at 1a2b3c4" },
      { name: "east-manual", reason: "OutOfSync at 1a2b3c4, sync left to auto-sync" },
    ]);
  });

  it("takes a refresh answered 504 or 500 deadline exceeded as pending on that hub, not as the hub down", async () => {
    // Prepare
    const apps: AppSpec[] = [
      { name: "east-api", sync: "OutOfSync", revision: OLD },
      { name: "east-web", sync: "OutOfSync", revision: OLD },
    ];
    const base = argo(apps);
    const primary = await startHub((req, res) => {
      if (req.path === "/api/v1/applications/east-api") {
        return json(res, 504, { error: "timeout", code: 4, message: "context deadline exceeded" });
      }
      if (req.path === "/api/v1/applications/east-web") {
        const message = "rpc error: code = DeadlineExceeded desc = context deadline exceeded";
        return json(res, 500, { error: message, code: 13, message });
      }
      return base(req, res);
    });
    const standby = await startHub(argo([{ name: "east-api" }, { name: "east-web" }]));

    // Act
    const result = await checkSync(
      request([hub("hub-primary", primary.url), hub("hub-standby", standby.url)], {
        firstPoll: true,
      }),
    );

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", hub: "hub-primary", apiCalls: 3 });
    expect(result.pending).toEqual([
      { name: "east-api", reason: "OutOfSync at 1a2b3c4, refresh pending (hub answered HTTP 504)" },
      { name: "east-web", reason: "OutOfSync at 1a2b3c4, refresh pending (hub answered HTTP 500)" },
    ]);
    expect(standby.requests).toHaveLength(0);
  });

  it("fails fast when a destination server is not among the clusters the token can read", async () => {
    // Prepare
    const server = "https://10.0.0.1:6443";
    const base = argo([{ name: "east-api" }, { name: "east-db", server }]);
    const empty = await startHub((req, res) =>
      req.path === "/api/v1/clusters" ? json(res, 200, { items: [] }) : base(req, res),
    );
    const refused = await startHub((req, res) =>
      req.path === "/api/v1/clusters"
        ? json(res, 403, { error: "permission denied", code: 7, message: "permission denied" })
        : base(req, res),
    );

    // Act
    const errors = await Promise.all(
      [empty, refused].map((h) =>
        checkSync(request([hub("hub-primary", h.url)])).catch((e: unknown) => e),
      ),
    );

    // Assess
    for (const error of errors) {
      expect(error).toBeInstanceOf(ArgoAuthError);
      expect((error as ArgoAuthError).message).toContain("`clusters, get`");
      expect((error as ArgoAuthError).details).toEqual([`east-db -> ${server}`]);
    }
    expect((errors[1] as ArgoAuthError).message).toContain("refused (HTTP 401/403)");
  });
});

describe("checkSync: what counts as done", () => {
  it("does not count an app Synced at an older SHA", async () => {
    // Prepare
    const h = await startHub(argo([{ name: "east-api", revision: OLD }, { name: "east-web" }]));

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", total: 2, done: 1 });
    expect(result.pending).toEqual([
      { name: "east-api", reason: "Synced at 1a2b3c4, not 9f8e7d6" },
    ]);
  });

  it("accepts the commit among a multi-source app's revisions", async () => {
    // Prepare
    const h = await startHub(
      argo([
        { name: "east-multi", revisions: ["v1.2.3", SHA] },
        { name: "east-other", revisions: ["v1.2.3", OLD] },
      ]),
    );

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", total: 2, done: 1, apiCalls: 3 });
    expect(result.pending).toEqual([
      { name: "east-other", reason: "Synced at v1.2.3, not 9f8e7d6" },
    ]);
    // the list never carries status.sync.revisions: one Get per multi-source app that looks done
    expect(h.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /api/v1/applications",
      "GET /api/v1/applications/east-multi",
      "GET /api/v1/applications/east-other",
    ]);
    expect(h.requests[1]?.query.get("refresh")).toBeNull();
  });

  it("reads multi-source revisions only for apps that otherwise look done, within timeoutMs", async () => {
    // Prepare
    const apps: AppSpec[] = [
      { name: "east-multi", revisions: ["v1.2.3", SHA] },
      { name: "east-out", revisions: ["v1.2.3", OLD], sync: "OutOfSync" },
      { name: "east-slow", revisions: ["v1.2.3", SHA] },
    ];
    const base = argo(apps);
    const h = await startHub((req, res) => {
      if (req.path.endsWith("/east-slow")) return; // never answers
      return base(req, res);
    });

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)], { timeoutMs: 500 }));

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", hub: "hub-primary", total: 3, done: 1 });
    expect(result.pending).toEqual([
      { name: "east-out", reason: "OutOfSync" },
      { name: "east-slow", reason: "Synced, revisions read timed out" },
    ]);
    expect(h.requests.map((r) => r.path).filter((p) => p.includes("east-out"))).toEqual([]);
  });

  it("reads the revision with a Get when the hub (before v3.5) leaves status.sync.revision out of the list", async () => {
    // Prepare
    const apps: AppSpec[] = [{ name: "east-api" }, { name: "east-web", revision: OLD }];
    const base = argo(apps);
    const h = await startHub((req, res) => {
      if (req.path !== "/api/v1/applications") return base(req, res);
      const list = filterApplicationList(
        { metadata: {}, items: apps.map(app) },
        req.query.get("fields"),
      ) as { items: { status: { sync: Record<string, unknown> } }[] };
      for (const item of list.items) delete item.status.sync.revision;
      return json(res, 200, list);
    });

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", total: 2, done: 1, apiCalls: 3 });
    expect(result.pending).toEqual([
      { name: "east-web", reason: "Synced at 1a2b3c4, not 9f8e7d6" },
    ]);
  });

  it("does not count an app whose operation is still Running, nor one not Healthy", async () => {
    // Prepare
    const h = await startHub(
      argo([
        { name: "east-api", phase: "Running" },
        { name: "east-db", health: "Degraded" },
        { name: "east-web", health: "Progressing" },
      ]),
    );

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", total: 3, done: 0 });
    expect(result.pending).toEqual([
      { name: "east-api", reason: "operation Running" },
      { name: "east-db", reason: "Degraded" },
      { name: "east-web", reason: "Progressing" },
    ]);
  });

  it("with acceptProgressing (an ungraceful run's capacity floors) counts an app Progressing only because of a floored Deployment as done, never another resource or Degraded", async () => {
    // Prepare
    const deployment = (name: string, health: string) => ({
      kind: "Deployment",
      namespace: "shop",
      name,
      health,
    });
    const h = await startHub(
      argo([
        { name: "east-api" },
        { name: "east-db", health: "Degraded" },
        {
          name: "east-web",
          health: "Progressing",
          resources: [deployment("web", "Progressing"), deployment("api", "Healthy")],
        },
        {
          name: "east-edge",
          health: "Progressing",
          resources: [
            deployment("web", "Progressing"),
            { kind: "Service", namespace: "shop", name: "edge", health: "Progressing" },
          ],
        },
        {
          name: "east-jobs",
          health: "Progressing",
          resources: [deployment("jobs", "Progressing")],
        },
      ]),
    );

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { acceptProgressing: ["shop/web"] }),
    );

    // Assess
    expect(result).toMatchObject({
      status: "IN_PROGRESS",
      total: 5,
      done: 2,
      progressing: ["east-web"],
      progressingCount: 1,
    });
    expect(result.pending.map((p) => p.name)).toEqual(["east-db", "east-edge", "east-jobs"]);
    expect(h.requests[0]?.query.get("fields")).toContain("items.status.resources");
  });

  it("fails when an operation at the commit ended Failed, naming the app with Argo's message redacted", async () => {
    // Prepare
    const h = await startHub(
      argo([
        {
          name: "east-api",
          sync: "OutOfSync",
          phase: "Failed",
          message: `apply failed: token=${TOKEN}`,
        },
        { name: "east-web" },
      ]),
    );

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error?.name).toBe("ArgoSyncFailed");
    expect(result.error?.message).toContain("1 of 2 application(s)");
    expect(result.error?.details?.[0]).toMatch(/^east-api: operation Failed: apply failed/);
    expect(JSON.stringify(result)).not.toContain(TOKEN);
    // the list has no operation message: one Get of the failed app reads it
    expect(h.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /api/v1/applications",
      "GET /api/v1/applications/east-api",
    ]);
  });

  it("ties a failed operation without a syncResult to the commit through a Get, and only then fails", async () => {
    // Prepare
    const h = await startHub(
      argo([
        {
          name: "east-api",
          sync: "OutOfSync",
          revision: OLD,
          phase: "Error",
          noSyncResult: true,
          message: "ComparisonError: bad values",
        },
        {
          name: "east-web",
          sync: "OutOfSync",
          revision: OLD,
          phase: "Error",
          noSyncResult: true,
          opRevision: OLD,
        },
      ]),
    );

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error?.details).toEqual([
      "east-api: operation Error: ComparisonError: bad values",
    ]);
    expect(result.pending.map((p) => p.reason)).toEqual([
      "OutOfSync at 1a2b3c4, last operation Error",
      "OutOfSync at 1a2b3c4, last operation Error",
    ]);
    expect(result.apiCalls).toBe(3);
  });

  it("keeps waiting when the failed operation was at an older revision", async () => {
    // Prepare
    const h = await startHub(
      argo([
        { name: "east-api", sync: "OutOfSync", revision: OLD, phase: "Failed", opRevision: OLD },
      ]),
    );

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result.status).toBe("IN_PROGRESS");
    expect(result.pending).toEqual([
      { name: "east-api", reason: "OutOfSync at 1a2b3c4, last operation Failed" },
    ]);
  });

  it("fails when no app matches the selector on the target clusters, saying where it looked", async () => {
    // Prepare
    const h = await startHub(argo([{ name: "west-api", cluster: "spoke-west-2" }]));

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "FAILED", total: 0, done: 0 });
    expect(result.error?.name).toBe("ArgoSyncFailed");
    expect(result.error?.message).toContain('selector "app.kubernetes.io/part-of=shop"');
    expect(result.error?.message).toContain("spoke-east-2");
    expect(result.error?.message).toContain("argocd.appSelector");
    expect(result.error?.details).toEqual([
      "the selector matched applications on other clusters only: spoke-west-2",
    ]);
  });
});

describe("checkSync: hubs", () => {
  it("uses the standby when the primary refuses connections", async () => {
    // Prepare
    const standby = await startHub(argo([{ name: "east-api" }]));
    const hubs = [hub("hub-primary", await closedPort()), hub("hub-standby", standby.url)];

    // Act
    const result = await checkSync(request(hubs));

    // Assess
    expect(result).toMatchObject({ status: "SUCCEEDED", hub: "hub-standby", done: 1 });
  });

  it("uses the standby when the primary answers 5xx", async () => {
    // Prepare
    const primary = await startHub((_req, res) =>
      json(res, 503, { error: "unavailable", code: 14 }),
    );
    const standby = await startHub(argo([{ name: "east-api" }]));

    // Act
    const result = await checkSync(
      request([hub("hub-primary", primary.url), hub("hub-standby", standby.url)]),
    );

    // Assess
    expect(result.hub).toBe("hub-standby");
  });

  it("bounds a hub that never answers by timeoutMs and moves on", async () => {
    // Prepare
    const silent = await startHub(() => undefined);
    const standby = await startHub(argo([{ name: "east-api" }]));

    // Act
    const result = await checkSync(
      request([hub("hub-primary", silent.url), hub("hub-standby", standby.url)], {
        timeoutMs: 1_000,
      }),
    );

    // Assess
    expect(result).toMatchObject({ status: "SUCCEEDED", hub: "hub-standby" });
    expect(silent.requests).toHaveLength(1);
  });

  it.each([
    ["streams past the cap", false],
    ["declares a Content-Length past the cap", true],
  ])("throws ResponseTooLarge, not retried, when a hub %s (64 MiB)", async (_what, declared) => {
    // Prepare
    const huge = await startHub((_req, res) => answerTooLarge(res, declared));

    // Act
    const error = await checkSync(request([hub("hub-primary", huge.url)])).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(ResponseTooLarge);
    expect(error).toMatchObject({
      name: "ResponseTooLarge",
      retryable: false,
      message: expect.stringContaining(
        `Argo CD hub hub-primary (${huge.url}) answered GET /api/v1/applications with more than 67108864 bytes`,
      ),
    });
  });

  it("throws ArgoUnreachable naming every hub and why when none answers", async () => {
    // Prepare
    const silent = await startHub(() => undefined);
    const hubs = [hub("hub-primary", await closedPort()), hub("hub-standby", silent.url)];

    // Act
    const error = await checkSync(request(hubs, { timeoutMs: 1_000 })).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(ArgoUnreachable);
    const e = error as ArgoUnreachable;
    expect(e.name).toBe("ArgoUnreachable");
    expect(e.retryable).toBe(true);
    expect(e.details).toHaveLength(2);
    expect(e.details[0]).toMatch(/hub-primary .*connection refused/);
    expect(e.details[1]).toMatch(
      /hub-standby .*no answer to GET \/api\/v1\/applications within 1000 ms/,
    );
  });

  it("throws ArgoAuthError on 401 without the token in the message, and does not try the standby", async () => {
    // Prepare
    const primary = await startHub((_req, res) =>
      json(res, 401, { error: "invalid session", code: 16, message: `invalid session: ${TOKEN}` }),
    );
    const standby = await startHub(argo([{ name: "east-api" }]));

    // Act
    const error = await checkSync(
      request([hub("hub-primary", primary.url), hub("hub-standby", standby.url)]),
    ).catch((e: unknown) => e);

    // Assess
    expect(error).toBeInstanceOf(ArgoAuthError);
    const e = error as ArgoAuthError;
    expect(e.message).toContain("token from tokenSecretArn was rejected");
    expect(e.message).toContain("RBAC");
    expect(JSON.stringify({ message: e.message, details: e.details })).not.toContain(TOKEN);
    expect(standby.requests).toHaveLength(0);
  });

  it("drops a token the hub rejects from the secret cache, so the next poll reads the rotated one", async () => {
    // Prepare
    const arn =
      "arn:aws:secretsmanager:us-east-1:111122223333:secret:gitops-failover/argocd-AbCdEf";
    const secret = rotatingSecret(arn, TOKEN);
    try {
      const h = await startHub((_req, res) => json(res, 401, { error: "invalid session" }));
      const hubWith = async () => ({
        ...hub("hub-primary", h.url),
        token: (await getSecret(arn)).token,
      });
      await getSecret(arn);
      secret.rotate("argo-token-rotated-9876543210");

      // Act
      const error = await checkSync(request([await hubWith()])).catch((e: unknown) => e);
      const next = await hubWith();

      // Assess
      expect(error).toBeInstanceOf(ArgoAuthError);
      expect(next.token).toBe("argo-token-rotated-9876543210");
      expect(secret.reads()).toBe(2);
    } finally {
      secret.restore();
    }
  });

  it("throws ConfigError when the hub refuses the selector", async () => {
    // Prepare
    const h = await startHub((_req, res) =>
      json(res, 400, { error: "bad selector", code: 3, message: "unable to parse requirement" }),
    );

    // Act
    const error = await checkSync(request([hub("hub-primary", h.url)], { selector: "a b" })).catch(
      (e: unknown) => e,
    );

    // Assess
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain('argocd.appSelector "a b"');
  });

  it("verifies a private hub certificate against caData, and fails over when it does not verify", async () => {
    // Prepare
    const dir = await mkdtemp(join(tmpdir(), "argocd-test-ca-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const ca = await createCa(join(dir, "ca"));
    const tlsHub = await startHub(argo([{ name: "east-api" }]), await ca.issue("hub-primary"));

    // Act
    const trusted = await checkSync(
      request([hub("hub-primary", tlsHub.url, { caData: ca.caPem })]),
    );
    const untrusted = await checkSync(request([hub("hub-primary", tlsHub.url)])).catch(
      (e: unknown) => e,
    );

    // Assess
    expect(trusted).toMatchObject({ status: "SUCCEEDED", hub: "hub-primary" });
    expect(untrusted).toBeInstanceOf(ArgoUnreachable);
    expect((untrusted as ArgoUnreachable).details[0]).toMatch(/TLS failure .*caData/);
  });
});

describe("checkSync: commits on top of the revision", () => {
  const ON_TOP = "5e4d3c2b1a0987654321fedcba9876543210abcd";
  const UNDO = "0123456789abcdef0123456789abcdef01234567";

  /** A judge as AwaitArgoSync passes it: here a fixed verdict per revision, recording each call. */
  function judge(verdicts: Record<string, RevisionJudgement>) {
    const asked: string[][] = [];
    const judgeRevisions = async (revisions: string[]) => {
      asked.push(revisions);
      return new Map(
        revisions.flatMap((r): [string, RevisionJudgement][] => {
          const v = verdicts[r];
          return v ? [[r, v]] : [];
        }),
      );
    };
    return { asked, judgeRevisions };
  }

  it("counts apps Synced at an accepted descendant as done, asking only about revisions not the commit", async () => {
    // Prepare
    const h = await startHub(
      argo([
        { name: "east-api", revision: ON_TOP },
        { name: "east-multi", revisions: ["v1.2.3", ON_TOP.toUpperCase()] },
        { name: "east-web" },
      ]),
    );
    const j = judge({ [ON_TOP]: { status: "accepted" } });

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { judgeRevisions: j.judgeRevisions }),
    );

    // Assess
    expect(result).toMatchObject({
      status: "SUCCEEDED",
      total: 3,
      done: 3,
      acceptedRevisions: [ON_TOP],
    });
    expect(j.asked).toEqual([[ON_TOP]]);
  });

  it("on the first poll neither refreshes nor syncs back an app Synced at an accepted descendant", async () => {
    // Prepare
    const apps: AppSpec[] = [
      { name: "east-api", revision: ON_TOP },
      { name: "east-web", sync: "OutOfSync", revision: OLD },
    ];
    const h = await startHub(argo(apps, [{ name: "east-web", revision: ON_TOP }]));
    const j = judge({
      [ON_TOP]: { status: "accepted" },
      [OLD]: { status: "pending", reason: "older" },
    });

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], {
        firstPoll: true,
        sync: true,
        judgeRevisions: j.judgeRevisions,
      }),
    );

    // Assess: only the app behind is refreshed (and, Synced on top once refreshed, not synced)
    expect(h.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /api/v1/applications",
      "GET /api/v1/applications/east-web",
    ]);
    expect(result).toMatchObject({ status: "SUCCEEDED", done: 2, acceptedRevisions: [ON_TOP] });
    expect(j.asked).toEqual([[ON_TOP]]);
  });

  it("without a judge, a descendant is only another revision", async () => {
    // Prepare
    const h = await startHub(argo([{ name: "east-api", revision: ON_TOP }]));

    // Act
    const result = await checkSync(request([hub("hub-primary", h.url)]));

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", done: 0 });
    expect(result.acceptedRevisions).toBeUndefined();
  });

  it("keeps an app at a revision judged pending waiting, saying why", async () => {
    // Prepare
    const h = await startHub(argo([{ name: "east-api", revision: OLD }, { name: "east-web" }]));
    const j = judge({ [OLD]: { status: "pending", reason: "1a2b3c4 is older than the retarget" } });

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { judgeRevisions: j.judgeRevisions }),
    );

    // Assess
    expect(result).toMatchObject({ status: "IN_PROGRESS", done: 1 });
    expect(result.pending).toEqual([
      {
        name: "east-api",
        reason: "Synced at 1a2b3c4, not 9f8e7d6 (1a2b3c4 is older than the retarget)",
      },
    ]);
  });

  it("fails with the judge's error when an app reports a revision judged failed, naming the apps", async () => {
    // Prepare
    const h = await startHub(
      argo([
        { name: "east-api", revision: UNDO },
        { name: "east-web", revision: UNDO, sync: "OutOfSync", health: "Progressing" },
        { name: "east-worker" },
      ]),
    );
    const error = { name: "RetargetUndone", message: "commit 0123456789ab undoes it" };
    const j = judge({ [UNDO]: { status: "failed", error } });

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { judgeRevisions: j.judgeRevisions }),
    );

    // Assess: the OutOfSync app is not asked about, but it reports the revision too
    expect(result).toMatchObject({ status: "FAILED", total: 3, done: 1 });
    expect(result.error).toEqual({
      ...error,
      details: ["Argo CD reports it for east-api, east-web"],
    });
  });

  it("fails like at the commit when an operation at an accepted descendant ended Failed", async () => {
    // Prepare
    const h = await startHub(
      argo([
        {
          name: "east-api",
          sync: "OutOfSync",
          revision: OLD,
          phase: "Failed",
          message: "ImagePullBackOff",
          opRevision: ON_TOP,
        },
      ]),
    );
    const j = judge({ [ON_TOP]: { status: "accepted" } });

    // Act
    const result = await checkSync(
      request([hub("hub-primary", h.url)], { judgeRevisions: j.judgeRevisions }),
    );

    // Assess
    expect(result.status).toBe("FAILED");
    expect(result.error?.name).toBe("ArgoSyncFailed");
    expect(result.error?.details).toEqual(["east-api: operation Failed: ImagePullBackOff"]);
    expect(j.asked).toEqual([[ON_TOP]]);
  });
});
