import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpsServer, request } from "node:https";
import { type AddressInfo, createServer as createTcpServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  ResponseTooLarge,
  SpokeAuthError,
  SpokeNotReady,
  SpokeUnreachable,
} from "../../functions/lib/errors.ts";
import { getSecret } from "../../functions/lib/secrets.ts";
import {
  assertSpokeReady,
  inspectSpoke,
  type SpokeExpectations,
  type SpokeReport,
} from "../../functions/lib/spoke.ts";
import { type Ca, createCa } from "../../sandbox/ca.ts";
import { type FakeSpoke, type FakeSpokeOptions, startSpoke } from "../../sandbox/spoke.ts";
import { answerTooLarge } from "./huge-answer.ts";
import { rotatingSecret } from "./rotating-secret.ts";

const TOKEN = "spoke-reader-token-7f3a9c2e";
const TIMEOUT = { timeoutMs: 5_000 };
const SEALED = { namespace: "kube-system", deployment: "sealed-secrets-controller" };

let dir: string;
let ca: Ca;
let otherCa: Ca;
const running: FakeSpoke[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "spoke-test-"));
  [ca, otherCa] = await Promise.all([createCa(join(dir, "ca")), createCa(join(dir, "other-ca"))]);
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function spoke(overrides: Partial<FakeSpokeOptions> = {}): Promise<FakeSpoke> {
  const s = await startSpoke({
    name: "spoke-use2",
    region: "us-east-2",
    token: TOKEN,
    ca,
    namespaces: ["payments"],
    externalSecrets: [
      { namespace: "payments", name: "db-credentials" },
      { namespace: "payments", name: "stripe-key" },
    ],
    sealedSecrets: SEALED,
    ...overrides,
  });
  running.push(s);
  return s;
}

const EXPECT: SpokeExpectations = {
  minReadyNodes: 2,
  namespaces: ["payments"],
  externalSecrets: { namespaces: ["payments"] },
  sealedSecrets: SEALED,
};

function connection(s: FakeSpoke, overrides: { token?: string; caData?: string } = {}) {
  return { name: s.name, apiServer: s.url, caData: s.caPem, token: TOKEN, ...overrides };
}

function failure(report: SpokeReport): SpokeNotReady {
  try {
    assertSpokeReady(report);
  } catch (e) {
    if (e instanceof SpokeNotReady) return e;
    throw e;
  }
  throw new Error("assertSpokeReady accepted a report with failed checks");
}

interface Reply {
  status: number;
  contentType: string;
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are asserted field by field
  body: any;
}

/** One HTTPS request to the fake, trusting only its CA, on a fresh connection. */
function kube(
  s: FakeSpoke,
  method: string,
  path: string,
  options: { token?: string | null; body?: unknown; contentType?: string } = {},
): Promise<Reply> {
  const token = options.token === undefined ? TOKEN : options.token;
  const payload =
    options.body === undefined
      ? undefined
      : typeof options.body === "string"
        ? options.body
        : JSON.stringify(options.body);
  const headers: Record<string, string> = { accept: "application/json" };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (payload !== undefined) headers["content-type"] = options.contentType ?? "application/json";
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, s.url),
      { method, headers, ca: s.caPem, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const contentType = res.headers["content-type"] ?? "";
          resolve({
            status: res.statusCode ?? 0,
            contentType,
            body: contentType.startsWith("application/json") ? JSON.parse(text) : text,
          });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

function deployment(name: string, labels: Record<string, string>, replicas = 2) {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: "app", image: "app:1" }] },
      },
    },
  };
}

describe("inspectSpoke", () => {
  it("passes every check on a ready spoke, one request per check", async () => {
    const s = await spoke();

    const report = await inspectSpoke(connection(s), EXPECT, TIMEOUT);

    expect(report.spoke).toBe("spoke-use2");
    expect(report.readyNodes).toBe(3);
    expect(report.checks.map((c) => [c.check, c.ok])).toEqual([
      ["readyz", true],
      ["nodes", true],
      ["namespace/payments", true],
      ["external-secrets/payments", true],
      ["sealed-secrets", true],
    ]);
    expect(() => assertSpokeReady(report)).not.toThrow();
    expect(s.requests()).toBe(5);
  });

  it("fails the nodes check when too few nodes are Ready, naming them", async () => {
    const s = await spoke();
    s.setReadyNodes(1);

    const report = await inspectSpoke(connection(s), EXPECT, TIMEOUT);

    expect(report.readyNodes).toBe(1);
    const error = failure(report);
    expect(error.message).toMatch(/^spoke spoke-use2 is not ready .*1 of 5 checks failed/);
    expect(error.details).toEqual([
      "nodes: 1 of 3 nodes Ready and schedulable (need at least 2); not Ready: spoke-use2-node-2, spoke-use2-node-3",
    ]);
  });

  it("does not count cordoned nodes: Ready but taking no new pods", async () => {
    const s = await spoke();
    s.setCordonedNodes(2);

    const report = await inspectSpoke(connection(s), EXPECT, TIMEOUT);

    expect(report.readyNodes).toBe(1);
    expect(failure(report).details).toEqual([
      "nodes: 1 of 3 nodes Ready and schedulable (need at least 2); cordoned: spoke-use2-node-1, spoke-use2-node-2",
    ]);
  });

  it("names not Ready and cordoned nodes apart, each node once", async () => {
    const s = await spoke({ nodes: 4 });
    s.setCordonedNodes(3);
    s.setReadyNodes(2);

    const report = await inspectSpoke(connection(s), { ...EXPECT, minReadyNodes: 1 }, TIMEOUT);

    expect(report.readyNodes).toBe(0);
    expect(failure(report).details).toEqual([
      "nodes: 0 of 4 nodes Ready and schedulable (need at least 1); not Ready: spoke-use2-node-3, spoke-use2-node-4; cordoned: spoke-use2-node-1, spoke-use2-node-2",
    ]);
  });

  it("fails a check per missing namespace", async () => {
    const s = await spoke();

    const report = await inspectSpoke(
      connection(s),
      { ...EXPECT, namespaces: ["payments", "orders", "ledger"] },
      TIMEOUT,
    );

    expect(failure(report).details).toEqual([
      "namespace/orders: namespace orders not found (the topology expects it on this spoke)",
      "namespace/ledger: namespace ledger not found (the topology expects it on this spoke)",
    ]);
  });

  it("names the ExternalSecrets that are not Ready, and only those", async () => {
    const s = await spoke();
    s.setExternalSecretReady("payments", "stripe-key", false);

    const report = await inspectSpoke(connection(s), EXPECT, TIMEOUT);

    const [detail, ...more] = failure(report).details;
    expect(more).toEqual([]);
    expect(detail).toContain(
      "external-secrets/payments: 1 of 2 ExternalSecrets in payments not Ready",
    );
    expect(detail).toContain(
      "stripe-key (SecretSyncedError: could not get secret data from provider)",
    );
    expect(detail).not.toContain("db-credentials");
  });

  it("fails when the Sealed Secrets controller is absent", async () => {
    const s = await spoke({ sealedSecrets: undefined });

    const report = await inspectSpoke(connection(s), EXPECT, TIMEOUT);

    expect(failure(report).details).toEqual([
      "sealed-secrets: Sealed Secrets controller Deployment kube-system/sealed-secrets-controller not found: install the controller or fix secretOperators.sealedSecrets in the topology",
    ]);
  });

  it("fails when the Sealed Secrets controller has no available replica", async () => {
    const s = await spoke();
    s.setRolloutsFail(true);
    const patched = await kube(
      s,
      "PATCH",
      "/apis/apps/v1/namespaces/kube-system/deployments/sealed-secrets-controller",
      {
        body: { spec: { replicas: 2 } },
        contentType: "application/merge-patch+json",
      },
    );
    expect(patched.status).toBe(200);

    const report = await inspectSpoke(connection(s), EXPECT, TIMEOUT);

    expect(failure(report).details).toEqual([
      "sealed-secrets: Sealed Secrets controller Deployment kube-system/sealed-secrets-controller: 0 of 2 replicas available",
    ]);
  });

  it("throws SpokeAuthError for a rejected token, without the token anywhere", async () => {
    const s = await spoke();
    const wrong = "wrong-token-d41d8cd98f00b204";

    const error = await inspectSpoke(connection(s, { token: wrong }), EXPECT, TIMEOUT).catch(
      (e) => e,
    );

    expect(error).toBeInstanceOf(SpokeAuthError);
    expect(error.retryable).toBe(false);
    expect(error.message).toContain(
      `spoke spoke-use2 (${s.url}) rejected the token from tokenSecretArn`,
    );
    expect(error.message).toContain("it needs the read-only ClusterRole");
    const everything = JSON.stringify({
      data: error.toData(),
      message: error.message,
      stack: error.stack,
    });
    expect(everything).not.toContain(wrong);
    expect(everything).not.toContain(TOKEN);
  });

  it("drops a refused token from the secret cache, so the next attempt reads the rotated one", async () => {
    const s = await spoke();
    const arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:spokes/use2-AbCdEf";
    const secret = rotatingSecret(arn, "spoke-reader-token-before-rotation");
    try {
      await getSecret(arn);
      secret.rotate(TOKEN);

      const refused = inspectSpoke(
        connection(s, { token: (await getSecret(arn)).token }),
        EXPECT,
        TIMEOUT,
      );
      await expect(refused).rejects.toBeInstanceOf(SpokeAuthError);
      const report = await inspectSpoke(
        connection(s, { token: (await getSecret(arn)).token }),
        EXPECT,
        TIMEOUT,
      );

      expect(() => assertSpokeReady(report)).not.toThrow();
      expect(secret.reads()).toBe(2);
    } finally {
      secret.restore();
    }
  });

  it("throws SpokeUnreachable when the API server refuses connections", async () => {
    const s = await spoke();
    s.setReachable(false);

    const error = await inspectSpoke(connection(s), EXPECT, TIMEOUT).catch((e) => e);

    expect(error).toBeInstanceOf(SpokeUnreachable);
    expect(error.retryable).toBe(true);
    expect(error.message).toContain(`spoke spoke-use2 (${s.url})`);
    expect(error.message).toContain("failed to connect");
  });

  it("throws SpokeUnreachable when the server certificate comes from another CA", async () => {
    const s = await spoke();

    const error = await inspectSpoke(
      connection(s, { caData: otherCa.caPem }),
      EXPECT,
      TIMEOUT,
    ).catch((e) => e);

    expect(error).toBeInstanceOf(SpokeUnreachable);
    expect(error.message).toContain("TLS verification failed");
    expect(s.requests()).toBe(0);
  });

  it("throws SpokeUnreachable when the API server never answers within timeoutMs", async () => {
    const sockets = new Set<Socket>();
    const silent = createTcpServer((socket) => {
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const port = (silent.address() as { port: number }).port;
    const apiServer = `https://127.0.0.1:${port}`;

    try {
      const error = await inspectSpoke(
        { name: "spoke-silent", apiServer, caData: ca.caPem, token: TOKEN },
        EXPECT,
        { timeoutMs: 200 },
      ).catch((e) => e);

      expect(error).toBeInstanceOf(SpokeUnreachable);
      expect(error.message).toContain(`spoke spoke-silent (${apiServer}) did not answer`);
      expect(error.message).toContain("within 200 ms");
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it.each([
    ["/readyz streams", "/readyz", false],
    ["the node list declares", "/api/v1/nodes", true],
  ])("throws ResponseTooLarge when %s more than 64 MiB", async (_what, hugePath, declared) => {
    const tls = await ca.issue("huge-spoke");
    const server = createHttpsServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
      if (req.url?.split("?")[0] === hugePath) return answerTooLarge(res, declared);
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const apiServer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

    try {
      const error = await inspectSpoke(
        { name: "spoke-huge", apiServer, caData: ca.caPem, token: TOKEN },
        EXPECT,
        TIMEOUT,
      ).catch((e) => e);

      expect(error).toBeInstanceOf(ResponseTooLarge);
      expect(error.message).toContain(
        `spoke spoke-huge (${apiServer}) answered with more than 67108864 bytes`,
      );
      expect(error.message).not.toContain(TOKEN);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("refuses an apiServer that is not https", async () => {
    const error = await inspectSpoke(
      { name: "spoke-plain", apiServer: "http://127.0.0.1:1", caData: ca.caPem, token: TOKEN },
      EXPECT,
      TIMEOUT,
    ).catch((e) => e);

    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain("is not an https:// URL");
  });

  it("refuses to run with TLS verification disabled process-wide", async () => {
    const s = await spoke();
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";

    const error = await inspectSpoke(connection(s, { caData: otherCa.caPem }), EXPECT, TIMEOUT)
      .catch((e) => e)
      .finally(() => {
        delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      });

    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain("NODE_TLS_REJECT_UNAUTHORIZED=0");
    expect(s.requests()).toBe(0);
  });
});

describe("fake spoke", () => {
  it("answers 401 Status without a token and with a wrong one", async () => {
    const s = await spoke();

    const none = await kube(s, "GET", "/api/v1/nodes", { token: null });
    const wrong = await kube(s, "GET", "/readyz", { token: "not-the-token" });

    for (const reply of [none, wrong]) {
      expect(reply.status).toBe(401);
      expect(reply.body).toEqual({
        kind: "Status",
        apiVersion: "v1",
        metadata: {},
        status: "Failure",
        message: "Unauthorized",
        reason: "Unauthorized",
        code: 401,
      });
    }
  });

  it("answers 415 to a text/plain PATCH and applies a merge patch", async () => {
    const s = await spoke();
    const path = "/apis/apps/v1/namespaces/payments/deployments/web";
    const created = await kube(s, "POST", "/apis/apps/v1/namespaces/payments/deployments", {
      body: deployment("web", { app: "web" }),
    });

    const plain = await kube(s, "PATCH", path, {
      body: '{"spec":{"replicas":5}}',
      contentType: "text/plain",
    });
    const merged = await kube(s, "PATCH", path, {
      body: { spec: { replicas: 5 } },
      contentType: "application/merge-patch+json",
    });

    expect(created.status).toBe(201);
    expect(created.body.metadata.generation).toBe(1);
    expect(plain.status).toBe(415);
    expect(plain.body).toMatchObject({ kind: "Status", reason: "UnsupportedMediaType", code: 415 });
    expect(merged.status).toBe(200);
    expect(merged.body.metadata.generation).toBe(2);
    expect(Number(merged.body.metadata.resourceVersion)).toBeGreaterThan(
      Number(created.body.metadata.resourceVersion),
    );
    expect(merged.body.status).toMatchObject({
      observedGeneration: 2,
      replicas: 5,
      readyReplicas: 5,
      availableReplicas: 5,
    });
    expect(s.deployments().find((d) => d.name === "web")).toMatchObject({
      replicas: 5,
      readyReplicas: 5,
    });
  });

  it("answers 404 Status for unknown paths and absent objects, 405 for wrong methods", async () => {
    const s = await spoke();

    const unknown = await kube(s, "GET", "/apis/batch/v1/jobs");
    const absent = await kube(s, "GET", "/apis/apps/v1/namespaces/payments/deployments/nope");
    const method = await kube(s, "DELETE", "/api/v1/nodes");

    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      reason: "NotFound",
      code: 404,
    });
    expect(absent.status).toBe(404);
    expect(absent.body).toMatchObject({
      kind: "Status",
      message: 'deployments.apps "nope" not found',
      reason: "NotFound",
      details: { name: "nope", group: "apps", kind: "deployments" },
      code: 404,
    });
    expect(method.status).toBe(405);
    expect(method.body).toMatchObject({ kind: "Status", reason: "MethodNotAllowed", code: 405 });
  });

  it("answers 409 AlreadyExists to a second create and Conflict to a stale replace", async () => {
    const s = await spoke();
    const collection = "/apis/apps/v1/namespaces/payments/deployments";
    const first = await kube(s, "POST", collection, { body: deployment("api", { app: "api" }) });
    await kube(s, "PATCH", `${collection}/api`, {
      body: { metadata: { labels: { tier: "back" } } },
      contentType: "application/merge-patch+json",
    });

    const again = await kube(s, "POST", collection, { body: deployment("api", { app: "api" }) });
    const stale = await kube(s, "PUT", `${collection}/api`, { body: first.body });

    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({
      reason: "AlreadyExists",
      message: 'deployments.apps "api" already exists',
    });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ reason: "Conflict", code: 409 });
  });

  it("lists Deployments by label selector, namespaced and cluster-wide", async () => {
    const s = await spoke({ namespaces: ["payments", "orders"] });
    const create = (ns: string, name: string, labels: Record<string, string>) =>
      kube(s, "POST", `/apis/apps/v1/namespaces/${ns}/deployments`, {
        body: deployment(name, labels),
      });
    await create("payments", "web", { team: "pay", tier: "front" });
    await create("payments", "worker", { team: "pay", tier: "back" });
    await create("orders", "web", { team: "orders", tier: "front" });

    const selector = encodeURIComponent("team=pay,tier=front");
    const namespaced = await kube(
      s,
      "GET",
      `/apis/apps/v1/namespaces/payments/deployments?labelSelector=${selector}`,
    );
    const front = await kube(
      s,
      "GET",
      `/apis/apps/v1/deployments?labelSelector=${encodeURIComponent("tier=front")}`,
    );

    expect(namespaced.body.kind).toBe("DeploymentList");
    expect(
      namespaced.body.items.map((d: { metadata: { name: string } }) => d.metadata.name),
    ).toEqual(["web"]);
    expect(
      front.body.items.map(
        (d: { metadata: { namespace: string; name: string } }) =>
          `${d.metadata.namespace}/${d.metadata.name}`,
      ),
    ).toEqual(["orders/web", "payments/web"]);
  });

  it("refuses objects in a namespace that does not exist, like kube-apiserver", async () => {
    const s = await spoke();

    const reply = await kube(s, "POST", "/apis/apps/v1/namespaces/ghost/deployments", {
      body: deployment("web", { app: "web" }),
    });

    expect(reply.status).toBe(404);
    expect(reply.body).toMatchObject({
      reason: "NotFound",
      message: 'namespaces "ghost" not found',
    });
  });

  it("reports failing rollouts as ProgressDeadlineExceeded until the fault is cleared", async () => {
    const s = await spoke();
    s.setRolloutsFail(true);

    const created = await kube(s, "POST", "/apis/apps/v1/namespaces/payments/deployments", {
      body: deployment("web", { app: "web" }, 3),
    });
    const failing = s.deployments().find((d) => d.name === "web");
    s.setRolloutsFail(false);
    const healed = await kube(s, "GET", "/apis/apps/v1/namespaces/payments/deployments/web");

    expect(created.body.status.readyReplicas).toBeUndefined();
    expect(created.body.status.conditions).toContainEqual(
      expect.objectContaining({
        type: "Progressing",
        status: "False",
        reason: "ProgressDeadlineExceeded",
      }),
    );
    expect(failing).toMatchObject({ replicas: 3, readyReplicas: 0 });
    expect(healed.body.status).toMatchObject({ readyReplicas: 3, availableReplicas: 3 });
  });

  it("serves again after being made reachable again", async () => {
    const s = await spoke();
    s.setReachable(false);
    const cut = await kube(s, "GET", "/readyz").catch((e: NodeJS.ErrnoException) => e);

    s.setReachable(true);
    const back = await kube(s, "GET", "/readyz");

    expect(cut).toBeInstanceOf(Error);
    expect(back).toMatchObject({ status: 200, body: "ok" });
  });

  it("lists short names and singular names in discovery, as kube-apiserver does", async () => {
    const s = await spoke();

    const core = await kube(s, "GET", "/api/v1");
    const apps = await kube(s, "GET", "/apis/apps/v1");
    const es = await kube(s, "GET", "/apis/external-secrets.io/v1");

    const names = (reply: { body: { resources: Record<string, unknown>[] } }) =>
      reply.body.resources.map((r) => [r.name, r.singularName, r.shortNames]);
    expect(names(core)).toEqual([
      ["events", "event", ["ev"]],
      ["namespaces", "namespace", ["ns"]],
      ["nodes", "node", ["no"]],
      ["pods", "pod", ["po"]],
    ]);
    expect(names(apps)).toEqual([["deployments", "deployment", ["deploy"]]]);
    expect(names(es)).toEqual([["externalsecrets", "externalsecret", ["es"]]]);
  });
});
