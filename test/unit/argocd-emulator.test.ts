/**
 * End to end with the real pieces: the Git server seeded with the sandbox GitOps layout, three
 * fake spokes (one per region), the Argo CD emulator reading that repository, and the
 * orchestrator's Argo CD client polling it over HTTPS. The retarget is a real commit pushed with
 * isomorphic-git; what the spokes run afterwards is the proof.
 */
import fs from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import git from "isomorphic-git";
import gitHttp from "isomorphic-git/http/node";
import { afterEach, describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import { type ArgoHubConnection, checkSync, type SyncCheck } from "../../functions/lib/argocd.ts";
import { type ArgoEmulator, startArgoCd } from "../../sandbox/argocd.ts";
import { createCa } from "../../sandbox/ca.ts";
import { type GitServer, startGitServer } from "../../sandbox/git.ts";
import {
  APPLICATIONSETS_DIR,
  componentNames,
  gitopsLayout,
  VALUES_FILE,
} from "../../sandbox/gitops-layout.ts";
import { type FakeSpoke, startSpoke } from "../../sandbox/spoke.ts";

const API_TOKEN = "argocd-api-token-0123456789abcdef";
const GIT_USER = { username: "sandbox", password: "git-password-0123" };
const REGIONS = [
  { region: "us-east-1", clusters: ["spoke-use1"] },
  { region: "us-east-2", clusters: ["spoke-use2"] },
  { region: "us-west-2", clusters: ["spoke-usw2"] },
];
const SELECTOR = "app.kubernetes.io/part-of=shop";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Platform {
  argo: ArgoEmulator;
  gitServer: GitServer;
  spokes: Map<string, FakeSpoke>;
  caPem: string;
  hubs: ArgoHubConnection[];
  /** Pushes a commit that edits YAML files with isomorphic-git; returns its SHA. */
  push(
    edit: (files: {
      read(path: string): Promise<string>;
      write(path: string, text: string): Promise<void>;
    }) => Promise<void>,
  ): Promise<string>;
}

async function startPlatform(
  components = 3,
  regions = REGIONS,
  pollIntervalMs = 100,
  timing?: { syncMs: number; gitPollMs: number; gitPollJitterMs: number },
  webhookSecret?: string,
): Promise<Platform> {
  const dir = await mkdtemp(join(tmpdir(), "argocd-e2e-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const gitServer = await startGitServer({
    ...GIT_USER,
    files: gitopsLayout({
      platform: "shop",
      regions,
      activeRegion: "us-east-1",
      components,
      replicas: { active: 2, passive: 0 },
    }),
  });
  cleanups.push(() => gitServer.stop());
  const ca = await createCa(join(dir, "ca"));
  const started = await Promise.all(
    regions.flatMap((r) =>
      r.clusters.map((name) =>
        startSpoke({ name, region: r.region, token: `token-${name}-0123456789`, ca }),
      ),
    ),
  );
  const spokes = new Map<string, FakeSpoke>(started.map((s) => [s.name, s]));
  cleanups.push(() => Promise.all(started.map((s) => s.stop())));
  const argo = await startArgoCd({
    gitRepoDir: gitServer.repoDir,
    branch: "main",
    clusters: [...spokes.values()].map((s) => ({
      name: s.name,
      server: s.url,
      labels: { environment: "production", region: s.region },
      token: `token-${s.name}-0123456789`,
      caPem: ca.caPem,
    })),
    apiToken: API_TOKEN,
    admin: { username: "admin", password: "admin-password" },
    tls: await ca.issue("argocd"),
    pollIntervalMs,
    ...(timing ? { timing } : {}),
    ...(webhookSecret ? { webhookSecret } : {}),
  });
  cleanups.push(() => argo.stop());
  const hubs = Object.entries(argo.urls).map(([name, url]) => ({
    name,
    url,
    token: API_TOKEN,
    caData: ca.caPem,
  }));
  const clone = join(dir, "clone");
  const onAuth = () => GIT_USER;
  await git.clone({
    fs,
    http: gitHttp,
    dir: clone,
    url: gitServer.url,
    ref: "main",
    singleBranch: true,
    depth: 1,
    onAuth,
  });
  return {
    argo,
    gitServer,
    spokes,
    caPem: ca.caPem,
    hubs,
    async push(edit) {
      const touched: string[] = [];
      await edit({
        read: (path) => readFile(join(clone, path), "utf8"),
        async write(path, text) {
          await writeFile(join(clone, path), text);
          touched.push(path);
        },
      });
      for (const filepath of touched) await git.add({ fs, dir: clone, filepath });
      const sha = await git.commit({
        fs,
        dir: clone,
        message: "failover(shop): make us-east-2 active",
        author: { name: "test", email: "test@example.com" },
      });
      await git.push({ fs, http: gitHttp, dir: clone, remote: "origin", ref: "main", onAuth });
      return sha;
    },
  };
}

async function retarget(p: Platform, region: string): Promise<string> {
  return p.push(async (files) => {
    const doc = parseDocument(await files.read(VALUES_FILE));
    doc.setIn(["global", "activeRegion"], region);
    await files.write(VALUES_FILE, doc.toString());
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What `read` returns once it is `want`, or after 2 s (argocd-server refreshes after it answered). */
async function settled<T>(read: () => T, want: T): Promise<T> {
  for (let i = 0; i < 100 && read() !== want; i++) await pause(20);
  return read();
}

/** Polls like the state machine does (first poll refreshes) until `stop` says so or `max` polls. */
async function pollSync(
  hubs: ArgoHubConnection[],
  revision: string,
  stop: (r: SyncCheck) => boolean,
  options: {
    max?: number;
    sync?: boolean;
    clusters?: string[];
    refresh?: "hard" | "normal" | "none";
  } = {},
): Promise<SyncCheck[]> {
  const results: SyncCheck[] = [];
  for (let i = 0; i < (options.max ?? 200); i++) {
    const result = await checkSync({
      hubs,
      selector: SELECTOR,
      clusters: options.clusters ?? ["spoke-use2"],
      revision,
      refresh: options.refresh ?? "hard",
      sync: options.sync ?? false,
      firstPoll: i === 0,
      timeoutMs: 5_000,
    });
    results.push(result);
    if (stop(result)) break;
    await pause(50);
  }
  return results;
}

function replicasByRegion(p: Platform): Record<string, number[]> {
  return Object.fromEntries(
    [...p.spokes.values()].map((s) => [
      s.region,
      s
        .deployments()
        .filter((d) => d.namespace === "shop")
        .map((d) => d.replicas),
    ]),
  );
}

interface AppFields {
  metadata: { name: string };
  status: { sync: { revision?: string }; operationState?: { startedAt?: string } };
}

/** A GET on hub-primary with the emulator's CA: the parsed body and its size. */
async function apiGet(
  p: Platform,
  path: string,
  token?: string,
): Promise<{ status: number; body: Record<string, unknown>; bytes: number }> {
  const url = new URL(path, p.argo.urls["hub-primary"]);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { ca: p.caPem, headers: token ? { authorization: `Bearer ${token}` } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const raw = Buffer.concat(chunks);
          resolve({
            status: res.statusCode ?? 0,
            body: JSON.parse(raw.toString("utf8")),
            bytes: raw.length,
          });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("Argo CD emulator with the real Git server and spokes", () => {
  it("starts Synced and Healthy everywhere, active replicas only in the active region", async () => {
    // Prepare
    const p = await startPlatform();

    // Act
    const apps = p.argo.applications();

    // Assess
    expect(apps).toHaveLength(9);
    expect(apps.every((a) => a.syncStatus === "Synced" && a.health === "Healthy")).toBe(true);
    expect(replicasByRegion(p)).toEqual({
      "us-east-1": [2, 2, 2],
      "us-east-2": [0, 0, 0],
      "us-west-2": [0, 0, 0],
    });
    const deployment = p.spokes
      .get("spoke-use2")
      ?.deployments()
      .find((d) => d.name === "api");
    expect(deployment?.labels["app.kubernetes.io/instance"]).toBe("spoke-use2-api");
    expect(deployment?.annotations["argocd.argoproj.io/tracking-id"]).toBe(
      "spoke-use2-api:apps/Deployment:shop/api",
    );
  });

  it("a retarget commit ends Synced at its SHA and Healthy on the target, scaled up there and fenced in the old region", async () => {
    // Prepare
    const p = await startPlatform();
    const sha = await retarget(p, "us-east-2");

    // Act
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS");
    await p.argo.reconcileNow(); // the old region is fenced by its own automated sync

    // Assess
    const last = polls.at(-1);
    expect(last).toEqual({
      status: "SUCCEEDED",
      hub: "hub-primary",
      total: 3,
      done: 3,
      pending: [],
      // the list, plus on the first poll one refresh per target app
      apiCalls: polls.length === 1 ? 4 : 1,
    });
    expect(replicasByRegion(p)).toEqual({
      "us-east-1": [0, 0, 0],
      "us-east-2": [2, 2, 2],
      "us-west-2": [0, 0, 0],
    });
    const target = p.argo.applications().filter((a) => a.cluster === "spoke-use2");
    expect(
      target.every(
        (a) => a.revision === sha && a.syncStatus === "Synced" && a.health === "Healthy",
      ),
    ).toBe(true);
  });

  it("an explicit sync waits while the controller is stalled and completes once it recovers", async () => {
    // Prepare
    const p = await startPlatform();
    p.argo.setSyncStalled(true);
    const sha = await p.push(async (files) => {
      // manual sync: Argo CD takes an explicit sync to a revision only without auto-sync
      for (const c of componentNames(3)) {
        const path = `${APPLICATIONSETS_DIR}/${c}.yaml`;
        const doc = parseDocument(await files.read(path));
        doc.deleteIn(["spec", "template", "spec", "syncPolicy", "automated"]);
        await files.write(path, doc.toString());
      }
      const values = parseDocument(await files.read(VALUES_FILE));
      values.setIn(["global", "activeRegion"], "us-east-2");
      await files.write(VALUES_FILE, values.toString());
    });

    // Act
    const stalled = await pollSync(p.hubs, sha, () => false, { max: 5, sync: true });
    p.argo.setSyncStalled(false);
    const recovered = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS");

    // Assess
    expect(stalled.map((r) => r.status)).toEqual(Array(5).fill("IN_PROGRESS"));
    expect(stalled.at(-1)?.pending).toEqual(
      componentNames(3)
        .map((c) => ({
          name: `spoke-use2-${c}`,
          reason: `OutOfSync at ${sha.slice(0, 7)}, operation Running`,
        }))
        .sort((a, b) => a.name.localeCompare(b.name)),
    );
    expect(recovered.at(-1)).toMatchObject({ status: "SUCCEEDED", done: 3 });
  });

  it("stays IN_PROGRESS while the controller is stalled, with the old region still active", async () => {
    // Prepare
    const p = await startPlatform();
    p.argo.setSyncStalled(true);
    const sha = await retarget(p, "us-east-2");

    // Act
    const polls = await pollSync(p.hubs, sha, () => false, { max: 5 });
    await p.argo.reconcileNow();

    // Assess
    expect(polls.map((r) => r.status)).toEqual(Array(5).fill("IN_PROGRESS"));
    expect(polls.at(-1)?.pending.map((x) => x.reason)).toEqual(
      Array(3).fill(`OutOfSync at ${sha.slice(0, 7)}`),
    );
    expect(replicasByRegion(p)).toEqual({
      "us-east-1": [2, 2, 2],
      "us-east-2": [0, 0, 0],
      "us-west-2": [0, 0, 0],
    });
  });

  it("answers from hub-standby when hub-primary is down", async () => {
    // Prepare
    const p = await startPlatform();
    p.argo.setHubReachable("hub-primary", false);
    const sha = await retarget(p, "us-east-2");

    // Act
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS");

    // Assess
    expect(polls.at(-1)).toMatchObject({ status: "SUCCEEDED", hub: "hub-standby", done: 3 });
    expect(polls.every((r) => r.hub === "hub-standby")).toBe(true);
    const requests = p.argo.requests();
    expect(requests["hub-primary"]?.served).toBe(0);
    expect(requests["hub-primary"]?.refused).toBeGreaterThan(0);
    expect(requests["hub-standby"]?.served).toBeGreaterThanOrEqual(polls.length);
  });

  it("reports FAILED, naming the app, when the spoke refuses what the commit renders", async () => {
    // Prepare
    const p = await startPlatform();
    const sha = await p.push(async (files) => {
      const path = "apps/api/deployment.yaml";
      const doc = parseDocument(await files.read(path));
      doc.setIn(
        ["spec", "selector", "matchLabels", "app.kubernetes.io/name"],
        "not-the-template-label",
      );
      await files.write(path, doc.toString());
      const values = parseDocument(await files.read(VALUES_FILE));
      values.setIn(["global", "activeRegion"], "us-east-2");
      await files.write(VALUES_FILE, values.toString());
    });

    // Act
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS");

    // Assess
    const last = polls.at(-1);
    expect(last?.status).toBe("FAILED");
    expect(last?.error?.name).toBe("ArgoSyncFailed");
    expect(last?.error?.details?.[0]).toMatch(
      /^spoke-use2-api: operation Failed: one or more objects failed to apply.*selector/,
    );
  });
});

describe("Argo CD emulator API", () => {
  it("refuses requests without a valid token, in Argo CD's error shape", async () => {
    // Prepare
    const p = await startPlatform(1);

    // Act
    const none = await apiGet(p, "/api/v1/applications");
    const wrong = await apiGet(p, "/api/v1/applications", "not-the-token");

    // Assess
    expect(none).toMatchObject({
      status: 401,
      body: { error: "no session information", code: 16, message: "no session information" },
    });
    expect(wrong.status).toBe(401);
  });

  it("filters the list by selector and keeps only the requested fields", async () => {
    // Prepare
    const p = await startPlatform(2);

    // Act
    const res = await apiGet(
      p,
      "/api/v1/applications?selector=app.kubernetes.io/component%3Dapi,region%20in%20(us-east-2)&fields=items.metadata.name,items.status.sync.status",
      API_TOKEN,
    );

    // Assess
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      metadata: { resourceVersion: expect.any(String) },
      items: [{ metadata: { name: "spoke-use2-api" }, status: { sync: { status: "Synced" } } }],
    });
  });

  it("returns only argocd-server's allow-listed list fields, as v3.5.1 does", async () => {
    // Prepare
    const p = await startPlatform(1);
    const list = (fields: string) =>
      apiGet(p, `/api/v1/applications?selector=region%3Dus-east-1&fields=${fields}`, API_TOKEN);

    // Act
    const subPaths = await list(
      "items.metadata.name,items.status.health.status,items.spec.destination.name,items.status.sync.revisions,items.status.operationState.message,items.status.operationState.syncResult.revision",
    );
    const allowed = await list(
      "items.metadata.name,items.spec,items.status.health,items.status.sync.revision,items.status.operationState.phase,items.status.operationState.operation.sync",
    );
    const both = await list("items.spec,items.spec.destination");
    const none = await apiGet(
      p,
      "/api/v1/applications?selector=region%3Dnowhere&fields=items.metadata.name",
      API_TOKEN,
    );
    const get = await apiGet(
      p,
      "/api/v1/applications/spoke-use1-api?fields=items.metadata.name",
      API_TOKEN,
    );

    // Assess
    // a sub-path of an allowed path is not in the allow-list: nothing comes back for it
    expect(subPaths.body.items).toEqual([{ metadata: { name: "spoke-use1-api" } }]);
    const [app] = allowed.body.items as Record<string, Record<string, unknown>>[];
    expect(app?.spec).toMatchObject({
      destination: { name: "spoke-use1" },
      syncPolicy: { automated: { prune: true } },
    });
    expect(app?.status).toMatchObject({
      health: { status: "Healthy" },
      sync: { revision: expect.stringMatching(/^[0-9a-f]{40}$/) },
    });
    // operation.sync answers with the syncResult (the revision synced), as argocd-server does
    expect(app?.status?.operationState).toEqual({
      phase: "Succeeded",
      operation: { sync: { revision: expect.stringMatching(/^[0-9a-f]{40}$/) } },
    });
    expect(both).toMatchObject({
      status: 500,
      body: { message: "field spec.destination is not a map" },
    });
    expect(none.body).toEqual({ metadata: { resourceVersion: expect.any(String) }, items: null });
    // Get does not filter by fields
    expect(Object.keys(get.body).sort()).toEqual(["metadata", "spec", "status"]);
  });

  it("refuses a sync to a revision on an auto-synced app, and the client leaves those apps to auto-sync", async () => {
    // Prepare
    const p = await startPlatform(1);
    const sha = await retarget(p, "us-east-2");
    const sync = await new Promise<{ status: number; body: Record<string, unknown> }>(
      (resolve, reject) => {
        const req = https.request(
          new URL("/api/v1/applications/spoke-use2-api/sync", p.argo.urls["hub-primary"]),
          { method: "POST", ca: p.caPem, headers: { authorization: `Bearer ${API_TOKEN}` } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
              }),
            );
          },
        );
        req.on("error", reject);
        req.end(JSON.stringify({ revision: sha, prune: false }));
      },
    );

    // Act
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS", { sync: true });
    const app = await apiGet(p, "/api/v1/applications/spoke-use2-api", API_TOKEN);

    // Assess
    expect(sync).toMatchObject({
      status: 400,
      body: { code: 9, message: `Cannot sync to ${sha}: auto-sync currently set to HEAD` },
    });
    expect(polls.at(-1)).toMatchObject({ status: "SUCCEEDED", done: 1 });
    const state = (app.body.status as { operationState: Record<string, unknown> }).operationState;
    expect(state.operation).toMatchObject({
      sync: { revision: sha },
      initiatedBy: { automated: true },
    });
  });

  it("logs in with the admin password and serves userinfo, ApplicationSets, clusters and 404s", async () => {
    // Prepare
    const p = await startPlatform(1);
    const login = await new Promise<{ token: string }>((resolve, reject) => {
      const req = https.request(
        new URL("/api/v1/session", p.argo.urls["hub-standby"]),
        { method: "POST", ca: p.caPem, headers: { "content-type": "application/json" } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
        },
      );
      req.on("error", reject);
      req.end(JSON.stringify({ username: "admin", password: "admin-password" }));
    });

    // Act
    const userinfo = await apiGet(p, "/api/v1/session/userinfo", login.token);
    const appSet = await apiGet(p, "/api/v1/applicationsets/api", login.token);
    const appSets = await apiGet(
      p,
      "/api/v1/applicationsets?fields=items.metadata.name",
      login.token,
    );
    const clusters = await apiGet(p, "/api/v1/clusters", login.token);
    const missing = await apiGet(p, "/api/v1/applications/nope", login.token);

    // Assess
    expect(userinfo.body).toMatchObject({ loggedIn: true, username: "admin" });
    expect(appSet.body).toMatchObject({
      kind: "ApplicationSet",
      spec: { syncPolicy: { preserveResourcesOnDeletion: true } },
    });
    // the ApplicationSet list does not filter by fields (only the application list does)
    const sets = appSets.body.items as { metadata: { name: string } }[];
    expect(sets.map((a) => a.metadata.name)).toEqual(["api"]);
    const items = clusters.body.items as { name: string; labels: Record<string, string> }[];
    expect(items.map((c) => c.name)).toEqual(["spoke-use1", "spoke-use2", "spoke-usw2"]);
    expect(JSON.stringify(clusters.body)).not.toContain("token-spoke");
    expect(missing).toMatchObject({
      status: 404,
      body: {
        error: 'applications.argoproj.io "nope" not found',
        code: 5,
        message: 'applications.argoproj.io "nope" not found',
      },
    });
  });
});

describe("Argo CD emulator at scale", () => {
  it("serves 2,000 Applications (50 spokes x 40 components) in one small list, and a retarget re-applies only what changed", async () => {
    // Prepare
    const regions = ["us-east-1", "us-east-2", "us-west-2"].map((region, r) => ({
      region,
      clusters: Array.from({ length: r === 2 ? 16 : 17 }, (_, i) => `${region}-c${i}`),
    }));
    const p = await startPlatform(40, regions, 200);
    const target = regions[1]?.clusters ?? [];
    const bystanders = `/api/v1/applications?selector=region%3Dus-west-2&fields=${[
      "items.metadata.name",
      "items.status.sync.revision",
      "items.status.operationState.startedAt",
    ].join(",")}`;
    const before = (await apiGet(p, bystanders, API_TOKEN)).body.items as AppFields[];
    const fields = [
      "items.metadata.name",
      "items.metadata.namespace",
      "items.spec",
      "items.status.sync.status",
      "items.status.sync.revision",
      "items.status.health",
      "items.status.operationState.phase",
      "items.status.operationState.operation.sync",
    ].join(",");

    // Act
    const full = await apiGet(
      p,
      "/api/v1/applications?selector=app.kubernetes.io/part-of%3Dshop",
      API_TOKEN,
    );
    const small = await apiGet(
      p,
      `/api/v1/applications?selector=app.kubernetes.io/part-of%3Dshop&fields=${fields}`,
      API_TOKEN,
    );
    const values = await p.gitServer.readFile(VALUES_FILE);
    const sha = await p.gitServer.commitDirect(
      {
        [VALUES_FILE]: values
          .replace("us-east-1:\n    active: true", "us-east-1:\n    active: false")
          .replace("us-east-2:\n    active: false", "us-east-2:\n    active: true"),
      },
      "failover(shop): make us-east-2 active",
    );
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS", {
      clusters: target,
    });
    await p.argo.reconcileNow();

    // Assess
    expect(p.argo.applications()).toHaveLength(2000);
    const items = small.body.items as Record<string, unknown>[];
    expect(items).toHaveLength(2000);
    expect(Object.keys(items[0] ?? {}).sort()).toEqual(["metadata", "spec", "status"]);
    // the whole spec is in it (its sub-paths are not allowed before v3.5): under 1 KiB per app
    expect(small.bytes * 2).toBeLessThan(full.bytes);
    expect(small.bytes / 2000).toBeLessThan(1024);
    expect(polls.at(-1)).toMatchObject({ status: "SUCCEEDED", total: 680, done: 680 });
    const replicas = (region: string) =>
      [...p.spokes.values()]
        .filter((s) => s.region === region)
        .flatMap((s) => s.deployments().map((d) => d.replicas));
    expect(new Set(replicas("us-east-1"))).toEqual(new Set([0]));
    expect(new Set(replicas("us-east-2"))).toEqual(new Set([2]));
    // Unchanged apps are compared at the new commit by content and not synced again: no new
    // operation on the us-west-2 apps, which are Synced at the new SHA all the same.
    const after = (await apiGet(p, bystanders, API_TOKEN)).body.items as AppFields[];
    expect(after).toHaveLength(640);
    expect(after.map((a) => a.status.operationState?.startedAt)).toEqual(
      before.map((a) => a.status.operationState?.startedAt),
    );
    expect(new Set(after.map((a) => a.status.sync.revision))).toEqual(new Set([sha]));
  });
});

/** A POST to hub-primary's /api/webhook, with no API token, as a Git host delivers it. */
async function deliver(
  p: Platform,
  headers: Record<string, string>,
  body: unknown,
  method = "POST",
): Promise<{ status: number; text: string }> {
  const url = new URL("/api/webhook", p.argo.urls["hub-primary"]);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { method, ca: p.caPem, headers: { "content-type": "application/json", ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.on("error", reject);
    req.end(method === "POST" ? JSON.stringify(body) : undefined);
  });
}

describe("Argo CD emulator time model and Git webhook", () => {
  it("an app sees a commit only at its Git poll tick or once a matching push webhook refreshed it, then syncs after syncMs", async () => {
    // A Git poll an hour away: without the webhook nothing would compare with the commit here.
    const p = await startPlatform(3, REGIONS, 20, {
      syncMs: 150,
      gitPollMs: 3_600_000,
      gitPollJitterMs: 0,
    });
    const sha = await retarget(p, "us-east-2");
    const push = (htmlUrl: string, ref = "refs/heads/main") => ({
      ref,
      after: sha,
      repository: { html_url: htmlUrl, default_branch: "main" },
      commits: [],
    });

    expect(await deliver(p, {}, push("https://git.sandbox.local/shop/gitops"))).toMatchObject({
      status: 400,
      text: "Unknown webhook event\n",
    });
    expect((await deliver(p, { "x-github-event": "push" }, undefined, "GET")).status).toBe(405);
    expect(
      await deliver(
        p,
        { "x-github-event": "issues" },
        push("https://git.sandbox.local/shop/gitops"),
      ),
    ).toMatchObject({
      status: 400,
      text: "Webhook processing failed: event not defined to be parsed\n",
    });
    expect((await deliver(p, { "x-github-event": "ping" }, { zen: "hi" })).status).toBe(200);
    // Another repository, another branch: accepted, nothing refreshed.
    await deliver(p, { "x-github-event": "push" }, push("https://git.sandbox.local/shop/other"));
    await deliver(
      p,
      { "x-github-event": "push" },
      push("https://git.sandbox.local/shop/gitops", "refs/heads/feature"),
    );
    await p.argo.reconcileNow();
    await pause(200);
    const before = p.argo.applications();
    expect(before.every((a) => a.revision !== sha)).toBe(true);
    expect(p.argo.webhooks().map((w) => w.refreshed)).toEqual([0, 0]);

    // The web URL of the repository the apps name (no .git): every app of the repo refreshed.
    const accepted = await deliver(
      p,
      { "x-github-event": "push" },
      push("https://git.sandbox.local/shop/gitops"),
    );
    expect(accepted).toEqual({ status: 200, text: "" });
    expect(await settled(() => p.argo.webhooks()[2]?.refreshed, before.length)).toBe(before.length);
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS", {
      max: 100,
      refresh: "none",
    });
    expect(polls.at(-1)?.status).toBe("SUCCEEDED");
    const events = p.argo
      .syncEvents()
      .filter((e) => e.revision === sha && e.cluster === "spoke-use2");
    expect(events).toHaveLength(3);
    for (const e of events) expect((e.syncedAt ?? 0) - e.detectedAt).toBeGreaterThanOrEqual(150);
  });
});

describe("AwaitArgoSync's refresh: webhook", () => {
  it("the first poll makes 2 calls (list, one push webhook with no API token) and every target app compares with the commit; later polls 1", async () => {
    const p = await startPlatform(3, REGIONS, 20, {
      syncMs: 100,
      gitPollMs: 3_600_000,
      gitPollJitterMs: 0,
    });
    const sha = await retarget(p, "us-east-2");
    const check = (firstPoll: boolean, repoUrl: string) =>
      checkSync({
        hubs: p.hubs,
        selector: SELECTOR,
        clusters: ["spoke-use2"],
        revision: sha,
        refresh: "webhook",
        webhook: { repoUrl, branch: "main" },
        sync: false,
        firstPoll,
        timeoutMs: 5_000,
      });
    // A URL naming another repository: delivered, nothing refreshed, the apps stay behind.
    const wrong = await check(true, "https://git.sandbox.local/shop/other.git");
    expect(wrong).toMatchObject({ status: "IN_PROGRESS", apiCalls: 2, webhook: "delivered" });
    await pause(200);
    expect(p.argo.webhooks().map((w) => w.refreshed)).toEqual([0]);

    // The clone URL with credentials and .git: sent as the web URL, it matches the apps' repoURL.
    const first = await check(true, "https://user:secret@git.sandbox.local/shop/gitops.git");
    expect(first).toMatchObject({ apiCalls: 2, webhook: "delivered" });
    const all = p.argo.applications().length;
    expect(await settled(() => p.argo.webhooks()[1]?.refreshed, all)).toBe(all);
    expect(p.argo.webhooks().every((w) => !w.authorization)).toBe(true);
    let last = first;
    for (let i = 0; i < 100 && last.status === "IN_PROGRESS"; i++) {
      await pause(30);
      last = await check(false, "https://git.sandbox.local/shop/gitops");
      expect(last.apiCalls).toBe(1);
    }
    expect(last).toMatchObject({ status: "SUCCEEDED", done: 3 });
  });
});

describe("AwaitArgoSync's refresh: webhook, on a hub that checks a webhook secret", () => {
  it("the unsigned delivery is refused (400) and the first poll refreshes each app instead", async () => {
    const p = await startPlatform(
      3,
      REGIONS,
      20,
      { syncMs: 50, gitPollMs: 3_600_000, gitPollJitterMs: 0 },
      "webhook-secret-0123",
    );
    const sha = await retarget(p, "us-east-2");
    const first = await checkSync({
      hubs: p.hubs,
      selector: SELECTOR,
      clusters: ["spoke-use2"],
      revision: sha,
      refresh: "webhook",
      webhook: { repoUrl: "https://git.sandbox.local/shop/gitops", branch: "main" },
      sync: false,
      firstPoll: true,
      timeoutMs: 5_000,
    });
    expect(first.webhook).toBe(
      "not accepted: HTTP 400 Webhook processing failed: HMAC verification failed; refreshed each app instead",
    );
    // list, webhook, then one refresh per target app not at the commit
    expect(first.apiCalls).toBe(2 + 3);
    expect(p.argo.webhooks()).toEqual([]);
    const polls = await pollSync(p.hubs, sha, (r) => r.status !== "IN_PROGRESS", {
      refresh: "none",
    });
    expect(polls.at(-1)?.status).toBe("SUCCEEDED");
  });
});
