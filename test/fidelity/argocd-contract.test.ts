/**
 * Contract: every Argo CD emulator response the project's own client reads is valid against
 * argocd-server's published API (test/fixtures/argocd-swagger.json, Argo CD v3.5.1): the
 * schema of that path, method and status (200, or `default` — runtimeError — for an error).
 * Every object schema is closed (additionalProperties: false), so a field the emulator serves
 * that the real server's types do not have fails. The calls are the ones the real client makes:
 * checkSync runs against the sandbox hub, and each HTTP exchange is recorded as it reads it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type ArgoHubConnection, checkSync } from "../../functions/lib/argocd.ts";
import { PLATFORM, type Sandbox, startSandbox } from "../../sandbox/index.ts";
import { openApi } from "./openapi.ts";

/** argocd-server v3.5.1 assets/swagger.json, as in ../shared/reference/ (see test/fixtures/README.md). */
const SWAGGER = "test/fixtures/argocd-swagger.json";

/** The swagger path template of a request (`/api/v1/applications/{name}`) that has its method. */
function template(method: string, path: string): string | undefined {
  const parts = path.split("/");
  return Object.keys(swagger.paths).find((t) => {
    const tParts = t.split("/");
    return (
      swagger.paths[t]?.[method.toLowerCase()] !== undefined &&
      tParts.length === parts.length &&
      tParts.every((p, i) => p.startsWith("{") || p === parts[i])
    );
  });
}

interface Exchange {
  method: string;
  path: string;
  status: number;
  body: string;
}

let sandbox: Sandbox;
let dir: string;
const { doc: swagger, check: checkSchema } = openApi(SWAGGER);

/** Validates one exchange against the swagger response schema of its path, method and status. */
function problems(x: Exchange): string[] {
  const path = template(x.method, x.path);
  if (!path) return [`${x.method} ${x.path}: not a path of the Argo CD API`];
  const op = swagger.paths[path]?.[x.method.toLowerCase()];
  const response = op?.responses[String(x.status)] ?? op?.responses.default;
  const ref = response?.schema?.$ref;
  if (!ref) return [`${x.method} ${path} ${x.status}: no response schema`];
  let body: unknown;
  try {
    body = JSON.parse(x.body);
  } catch {
    return [`${x.method} ${path} ${x.status}: the body is not JSON: ${x.body.slice(0, 100)}`];
  }
  return checkSchema(ref, body).map((p) => `${x.method} ${path} ${x.status}: ${p}`);
}

/** Runs `act` recording every HTTPS exchange with the hub, as the client receives it. */
async function recorded(act: () => Promise<unknown>): Promise<Exchange[]> {
  const exchanges: Exchange[] = [];
  const original = https.request;
  const spy = vi.spyOn(https, "request").mockImplementation(((...args: unknown[]) => {
    const [url, options, callback] = args as [
      URL | string,
      { method?: string },
      (res: IncomingMessage) => void,
    ];
    return original(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      // Only the hub's: the emulator's own reads of the spokes run in this process too.
      const hubs = Object.values(sandbox.argo.urls).map((u) => new URL(u).host);
      res.on(
        "end",
        () =>
          hubs.includes(new URL(String(url)).host) &&
          exchanges.push({
            method: options.method ?? "GET",
            path: new URL(String(url)).pathname,
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
      );
      callback(res);
    });
  }) as typeof https.request);
  try {
    await act();
  } finally {
    spy.mockRestore();
  }
  return exchanges;
}

function hub(token: string): ArgoHubConnection {
  const [name, url] = Object.entries(sandbox.argo.urls)[0] ?? ["", ""];
  return { name, url, token, caData: sandbox.ca.caPem };
}

let revision = "";
const check = (token: string, sync: boolean) =>
  checkSync({
    hubs: [hub(token)],
    selector: sandbox.topology.argocd.appSelector,
    clusters: sandbox.spokes.filter((s) => s.region === "us-east-2").map((s) => s.name),
    revision,
    refresh: "hard",
    sync,
    firstPoll: true,
    timeoutMs: 10_000,
  });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gf-argocd-contract-"));
  sandbox = await startSandbox({ reportDir: join(dir, "report") });
  revision = (await sandbox.state()).gitHead;
});

afterAll(async () => {
  await sandbox?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("Argo CD emulator against argocd-swagger.json", () => {
  it("closes the schemas: a field argocd-server does not serve is a failure", () => {
    // A self-check of the validator: an Application with one invented field must not pass.
    const bad = problems({
      method: "GET",
      path: "/api/v1/applications/x",
      status: 200,
      body: JSON.stringify({
        metadata: { name: "x" },
        status: { sync: { status: "Synced", inventedField: 1 } },
      }),
    });
    expect(bad).toEqual([
      'GET /api/v1/applications/{name} 200: #/definitions/v1alpha1Application: /status/sync must NOT have additional properties "inventedField"',
    ]);
  });

  it("every answer AwaitArgoSync reads (the list with fields, each app's refresh) matches its schema", async () => {
    // Prepare: a commit the apps are not synced to yet, so the first poll refreshes each app.
    revision = await sandbox.git.commitDirect({ "NOTES.md": "contract test\n" }, "contract test");
    sandbox.argo.setSyncStalled(true);
    // Act
    const exchanges = await recorded(() => check(sandbox.credentials.argocdToken, true));
    sandbox.argo.setSyncStalled(false);
    // Assess
    const seen = exchanges.map((x) => `${x.method} ${template(x.method, x.path)} ${x.status}`);
    expect(new Set(seen)).toEqual(
      new Set(["GET /api/v1/applications 200", "GET /api/v1/applications/{name} 200"]),
    );
    expect(seen.length).toBeGreaterThan(2);
    expect(exchanges.flatMap(problems)).toEqual([]);
  });

  it("error bodies match runtimeError: a refused token (401)", async () => {
    // Act
    const exchanges = await recorded(() => check("not-the-token", false).catch(() => undefined));
    // Assess
    expect(exchanges.map((x) => x.status)).toContain(401);
    expect(exchanges.flatMap(problems)).toEqual([]);
  });

  it("the session login `sandbox up` prints, and a missing application (404), match their schemas", async () => {
    // Act
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetchJson("POST", path, JSON.stringify(body), headers);
    const session = await post("/api/v1/session", sandbox.credentials.argocdAdmin);
    const missing = await fetchJson("GET", `/api/v1/applications/${PLATFORM}-nope`, undefined, {
      Authorization: `Bearer ${sandbox.credentials.argocdToken}`,
    });
    // Assess
    expect(session.status).toBe(200);
    expect(missing.status).toBe(404);
    expect([...problems(session), ...problems(missing)]).toEqual([]);
  });
});

function fetchJson(
  method: string,
  path: string,
  body: string | undefined,
  headers: Record<string, string>,
): Promise<Exchange> {
  const base = hub("").url;
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, base),
      { method, ca: sandbox.ca.caPem, headers: { "Content-Type": "application/json", ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            method,
            path,
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}
