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
  type SyncCheckRequest,
} from "../../functions/lib/argocd.ts";
import { ArgoAuthError, ArgoUnreachable, ConfigError } from "../../functions/lib/errors.ts";
import { createCa } from "../../sandbox/ca.ts";

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
  revisions?: string[];
  health?: string;
  phase?: string;
  message?: string;
  opRevision?: string;
}

function app(a: AppSpec): unknown {
  return {
    metadata: { name: a.name, namespace: "argocd" },
    spec: { destination: a.server ? { server: a.server } : { name: a.cluster ?? "spoke-east-2" } },
    status: {
      sync: {
        status: a.sync ?? "Synced",
        ...(a.revisions ? { revisions: a.revisions } : { revision: a.revision ?? SHA }),
      },
      health: { status: a.health ?? "Healthy" },
      ...(a.phase
        ? {
            operationState: {
              phase: a.phase,
              ...(a.message ? { message: a.message } : {}),
              operation: { sync: { revision: a.opRevision ?? SHA } },
            },
          }
        : {}),
    },
  };
}

/** A hub serving `apps` on the list, and `refreshed` (or the same) on a GET with refresh. */
function argo(apps: AppSpec[], refreshed: AppSpec[] = apps): Handler {
  return (req, res) => {
    if (req.method === "GET" && req.path === "/api/v1/applications") {
      return json(res, 200, { metadata: {}, items: apps.map(app) });
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
    });
    expect(h.requests).toHaveLength(1);
    const [list] = h.requests;
    expect(list?.method).toBe("GET");
    expect(list?.path).toBe("/api/v1/applications");
    expect(list?.query.get("selector")).toBe("app.kubernetes.io/part-of=shop");
    expect(list?.query.get("appNamespace")).toBe("argocd");
    const fields = list?.query.get("fields")?.split(",") ?? [];
    expect(fields).toEqual(
      expect.arrayContaining([
        "items.metadata.name",
        "items.spec.destination",
        "items.status.sync.status",
        "items.status.sync.revision",
        "items.status.sync.revisions",
        "items.status.health.status",
        "items.status.operationState.phase",
      ]),
    );
    expect(fields.every((f) => f.startsWith("items."))).toBe(true);
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
    expect(result).toMatchObject({ status: "SUCCEEDED", total: 1, done: 1 });
    expect(h.requests.map((r) => r.path)).toEqual(["/api/v1/applications", "/api/v1/clusters"]);
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
    expect(result).toMatchObject({ status: "IN_PROGRESS", total: 2, done: 1 });
    expect(result.pending.map((p) => p.name)).toEqual(["east-other"]);
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
