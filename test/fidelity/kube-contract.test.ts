/**
 * Contract: the fake spoke's answers against the Kubernetes OpenAPI definitions of their kinds
 * (test/fixtures/kubernetes-openapi-subset.json, see test/fixtures/README.md), closed, so a field
 * kube-apiserver's types do not have fails: lists and objects of every served kind, the Table
 * kubectl asks for, watch events, SelfSubjectAccessReview and Status error bodies — with the
 * faults on, so NotReady nodes and crash-looping pods are checked too.
 */

import { mkdtemp, rm } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PLATFORM, type Sandbox, startSandbox } from "../../sandbox/index.ts";
import type { FakeSpoke } from "../../sandbox/spoke.ts";
import { openApi } from "./openapi.ts";

const { check } = openApi("test/fixtures/kubernetes-openapi-subset.json");
const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/** The definition of a served kind (`apiVersion` + `kind`). */
function definition(apiVersion: string, kind: string): string {
  const meta = "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.";
  if (kind === "Status" || kind === "Table" || kind === "APIResourceList") return `${meta}${kind}`;
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const groupName = group === "authorization.k8s.io" ? "authorization" : group;
  return `#/definitions/io.k8s.api.${groupName}.${version}.${kind}`;
}

let sandbox: Sandbox;
let dir: string;
let spoke: FakeSpoke;

function get(
  path: string,
  options: { method?: string; accept?: string; body?: unknown; token?: string } = {},
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body);
    const req = request(
      new URL(path, spoke.url),
      {
        method: options.method ?? "GET",
        ca: sandbox.ca.caPem,
        headers: {
          Authorization: `Bearer ${options.token ?? sandbox.credentials.spokeToken}`,
          Accept: options.accept ?? "application/json",
          ...(body ? { "Content-Type": "application/json" } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** What in an answer breaks its kind's definition (list items are checked as their kind too). */
function problems(path: string, text: string): string[] {
  const body = JSON.parse(text) as { apiVersion: string; kind: string };
  return check(definition(body.apiVersion, body.kind), body).map((p) => `${path}: ${p}`);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gf-kube-contract-"));
  sandbox = await startSandbox({ reportDir: join(dir, "report") });
  spoke = sandbox.spokes[0] as FakeSpoke;
  spoke.setReadyNodes(2);
  spoke.setCordonedNodes(1);
  spoke.setRolloutsFail(true);
  const deployment = await get(`/apis/apps/v1/namespaces/${PLATFORM}/deployments`);
  const [first] = (JSON.parse(deployment.text) as { items: Record<string, unknown>[] }).items;
  await get(`/apis/apps/v1/namespaces/default/deployments`, {
    method: "POST",
    body: {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "crashy" },
      spec: { ...(first?.spec as object), replicas: 2 },
    },
  });
  spoke.setExternalSecretReady(PLATFORM, "db-credentials", false);
});

afterAll(async () => {
  await sandbox?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("fake spoke against the Kubernetes OpenAPI definitions", () => {
  it("closes the schemas: a field kube-apiserver does not serve is a failure", () => {
    const bad = check(definition("v1", "Node"), {
      apiVersion: "v1",
      kind: "Node",
      metadata: { name: "n" },
      status: { ready: true },
    });
    expect(bad).toEqual([
      '#/definitions/io.k8s.api.core.v1.Node: /status must NOT have additional properties "ready"',
    ]);
  });

  it.each([
    "/api/v1",
    "/apis/apps/v1",
    "/api/v1/nodes",
    "/api/v1/namespaces",
    `/api/v1/namespaces/${PLATFORM}`,
    "/api/v1/pods",
    "/api/v1/events",
    "/apis/apps/v1/deployments",
    "/apis/apps/v1/namespaces/default/deployments/crashy",
  ])("GET %s (and its Table) matches its kind", async (path) => {
    // Act
    const json = await get(path);
    const table = await get(path, { accept: TABLE });
    // Assess
    expect(json.status).toBe(200);
    expect(problems(path, json.text)).toEqual([]);
    if (!["/api/v1", "/apis/apps/v1"].includes(path)) {
      expect(JSON.parse(table.text).kind).toBe("Table");
      expect(problems(`${path} (Table)`, table.text)).toEqual([]);
    }
  });

  it("each item of a list, typed as its kind, matches (Pods crash-looping, Nodes NotReady and cordoned)", async () => {
    for (const [path, apiVersion, kind] of [
      ["/api/v1/nodes", "v1", "Node"],
      ["/api/v1/pods", "v1", "Pod"],
      ["/api/v1/events", "v1", "Event"],
      ["/apis/apps/v1/deployments", "apps/v1", "Deployment"],
    ] as const) {
      const items = (JSON.parse((await get(path)).text) as { items: object[] }).items;
      expect(items.length, path).toBeGreaterThan(0);
      const found = items.flatMap((item) =>
        check(definition(apiVersion, kind), { apiVersion, kind, ...item }),
      );
      expect(found, path).toEqual([]);
    }
  });

  it("SelfSubjectAccessReview and the Status of 401, 403, 404 and 422 match", async () => {
    const review = await get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      method: "POST",
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: { resourceAttributes: { verb: "list", resource: "nodes" } },
      },
    });
    spoke.addToken("contract-reader", { user: "reader", binding: "none", rules: [] });
    const answers = [
      review,
      await get("/api/v1/nodes", { token: "wrong" }),
      await get("/api/v1/nodes", { token: "contract-reader" }),
      await get("/api/v1/namespaces/nope"),
      await get("/api/v1/namespaces", {
        method: "POST",
        body: { apiVersion: "v1", kind: "Namespace", metadata: { name: "Bad_Name" } },
      }),
    ];
    expect(answers.map((a) => a.status)).toEqual([201, 401, 403, 404, 422]);
    expect(answers.flatMap((a, i) => problems(`answer ${i}`, a.text))).toEqual([]);
  });

  it("watch events are WatchEvents whose objects match their kind", async () => {
    const watched = await get(
      "/apis/apps/v1/namespaces/default/deployments?watch=true&timeoutSeconds=1",
    );
    const events = watched.text
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { object: { apiVersion: string; kind: string } });
    expect(events.length).toBeGreaterThan(0);
    const found = events.flatMap((e) => [
      ...check("#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent", e),
      ...check(definition(e.object.apiVersion, e.object.kind), e.object),
    ]);
    expect(found).toEqual([]);
  });
});
