/**
 * kubectl (Debian `kubernetes-client`) against a spoke of the running sandbox: the first
 * commands an operator types print what they print against a real cluster — the server-side
 * Table columns of Kubernetes' printers (pkg/printers/internalversion/printers.go), RBAC answers
 * through SelfSubjectAccessReview (`kubectl auth can-i` exits 0 for yes, 1 for no:
 * https://kubernetes.io/docs/reference/kubectl/generated/kubectl_auth/kubectl_auth_can-i/), the
 * 403 wording of the RBAC authorizer, and a watch that streams changes.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PLATFORM, type Sandbox, startSandbox } from "../../sandbox/index.ts";
import type { FakeSpoke } from "../../sandbox/spoke.ts";
import { type Client, kubectl } from "./clients.ts";

let sandbox: Sandbox;
let dir: string;
let client: Client;
let spoke: FakeSpoke;
const READER_TOKEN = "namespace-reader-token-5d1c";
const READER = "system:serviceaccount:payments:reader";

/** A kubeconfig for the first spoke, as an operator would write it from `sandbox up`'s output. */
function kubeconfig(token: string): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    `clusters: [{name: spoke, cluster: {server: "${spoke.url}", certificate-authority: "${sandbox.caFile}"}}]`,
    `users: [{name: user, user: {token: "${token}"}}]`,
    "contexts: [{name: spoke, context: {cluster: spoke, user: user}}]",
    "current-context: spoke",
  ].join("\n");
}

async function kube(args: string[], config = "admin") {
  return client.run([
    "--kubeconfig",
    join(dir, `${config}.kubeconfig`),
    "--cache-dir",
    join(dir, "cache"),
    ...args,
  ]);
}

/** The table kubectl printed, split into rows of cells (columns are 3+ spaces or a single space apart). */
function rows(stdout: string): string[][] {
  return stdout
    .trimEnd()
    .split("\n")
    .map((line) => line.trim().split(/\s{2,}/));
}

beforeAll(async () => {
  client = kubectl();
  dir = await mkdtemp(join(tmpdir(), "gf-kubectl-"));
  sandbox = await startSandbox({ reportDir: join(dir, "report") });
  spoke = sandbox.spokes[0] as FakeSpoke;
  spoke.addToken(READER_TOKEN, {
    user: READER,
    binding: 'RoleBinding "payments/reader" of ClusterRole "view"',
    rules: [
      { apiGroups: ["", "apps"], resources: ["*"], verbs: ["get", "list"], namespaces: [PLATFORM] },
    ],
  });
  await writeFile(join(dir, "admin.kubeconfig"), kubeconfig(sandbox.credentials.spokeToken));
  await writeFile(join(dir, "reader.kubeconfig"), kubeconfig(READER_TOKEN));
});

afterAll(async () => {
  await sandbox?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  spoke.setReadyNodes(3);
  spoke.setCordonedNodes(0);
  spoke.setRolloutsFail(false);
});

describe("kubectl get", () => {
  it("nodes: NAME STATUS ROLES AGE VERSION, NotReady and SchedulingDisabled as the faults set them", async () => {
    // Prepare
    const before = await kube(["get", "nodes"]);
    spoke.setReadyNodes(2);
    spoke.setCordonedNodes(1);
    // Act
    const after = await kube(["get", "nodes"]);
    const wide = await kube(["get", "nodes", "-o", "wide"]);
    // Assess
    expect(before.code).toBe(0);
    const [header, ...nodes] = rows(before.stdout);
    expect(header).toEqual(["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    expect(nodes).toHaveLength(3);
    for (const node of nodes) {
      expect(node[0]).toMatch(new RegExp(`^${spoke.name}-node-\\d$`));
      expect(node.slice(1, 3)).toEqual(["Ready", "<none>"]);
      expect(node[3]).toMatch(/^\d+s$/);
      expect(node[4]).toMatch(/^v1\.31\.\d+-eks-/);
    }
    expect(rows(after.stdout).map((r) => r[1])).toEqual([
      "STATUS",
      "Ready,SchedulingDisabled",
      "Ready",
      "NotReady",
    ]);
    expect(rows(wide.stdout)[0]).toEqual([
      "NAME",
      "STATUS",
      "ROLES",
      "AGE",
      "VERSION",
      "INTERNAL-IP",
      "EXTERNAL-IP",
      "OS-IMAGE",
      "KERNEL-VERSION",
      "CONTAINER-RUNTIME",
    ]);
    expect(rows(wide.stdout)[1]?.[5]).toMatch(/^10\.\d+\.\d+\.\d+$/);
  });

  it("deploy -A: NAMESPACE NAME READY UP-TO-DATE AVAILABLE AGE with the replicas Git asks for", async () => {
    // Act
    const r = await kube(["get", "deploy", "-A"]);
    // Assess
    expect(r.code).toBe(0);
    const [header, ...deployments] = rows(r.stdout);
    expect(header).toEqual(["NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    const expected = spoke.deployments().map((d) => [d.namespace, d.name, "3/3", "3", "3"]);
    expect(deployments.map((d) => d.slice(0, 5))).toEqual(expected);
    expect(expected.length).toBeGreaterThan(0);
  });

  it("pods -A: one Running pod per replica; 0/1 on a NotReady node; CrashLoopBackOff when a rollout fails", async () => {
    // Prepare
    const replicas = spoke.deployments().reduce((n, d) => n + d.replicas, 0);
    const healthy = await kube(["get", "pods", "-A"]);
    // Act
    spoke.setReadyNodes(0);
    const nodesDown = await kube(["get", "pods", "-n", PLATFORM]);
    spoke.setReadyNodes(3);
    spoke.setRolloutsFail(true);
    const created = await kube([
      "create",
      "deployment",
      "crashy",
      "--image=registry.sandbox.local/crashy:1.0.0",
      "--replicas=2",
      "-n",
      "default",
    ]);
    const crashing = await kube(["get", "pods", "-n", "default", "-l", "app=crashy"]);
    const events = await kube(["get", "events", "-n", "default"]);
    // Assess
    expect(healthy.code).toBe(0);
    const [header, ...pods] = rows(healthy.stdout);
    expect(header).toEqual(["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    expect(pods).toHaveLength(replicas);
    expect(pods.every((p) => p[2] === "1/1" && p[3] === "Running" && p[4] === "0")).toBe(true);
    const down = rows(nodesDown.stdout).slice(1);
    expect(down).toHaveLength(pods.filter((p) => p[0] === PLATFORM).length);
    expect(down.every((p) => p[1] === "0/1" && p[2] === "Running")).toBe(true);
    expect(created).toMatchObject({ code: 0 });
    expect(created.stdout).toContain("deployment.apps/crashy created");
    const crashRows = rows(crashing.stdout).slice(1);
    expect(crashRows).toHaveLength(2);
    for (const p of crashRows) {
      expect(p[0]).toMatch(/^crashy-[0-9a-f]{10}-[a-z0-9]{5}$/);
      expect(p.slice(1, 4)).toEqual(["0/1", "CrashLoopBackOff", "5"]);
    }
    expect(events.stdout).toMatch(
      /Warning\s+BackOff\s+pod\/crashy-[0-9a-f]{10}-[a-z0-9]{5}\s+Back-off restarting failed container crashy in pod crashy-/,
    );
  });

  it("events -A: what the sandbox did, as the deployment controller, kubelet and node controller report it", async () => {
    // Prepare
    spoke.setReadyNodes(2);
    // Act
    const r = await kube(["get", "events", "-A"]);
    // Assess
    expect(r.code).toBe(0);
    const [header, ...events] = rows(r.stdout);
    expect(header).toEqual(["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    const [first] = spoke.deployments();
    expect(events).toContainEqual([
      PLATFORM,
      expect.stringMatching(/^\d+s$/),
      "Normal",
      "ScalingReplicaSet",
      `deployment/${first?.name}`,
      expect.stringMatching(
        new RegExp(`^Scaled up replica set ${first?.name}-[0-9a-f]{10} from 0 to 3$`),
      ),
    ]);
    expect(events).toContainEqual([
      "default",
      expect.stringMatching(/^\d+s( \(x\d+ over \d+s\))?$/), // a repeat is counted, not listed again
      "Normal",
      "NodeNotReady",
      `node/${spoke.name}-node-3`,
      `Node ${spoke.name}-node-3 status is now: NodeNotReady`,
    ]);
  });

  it("-w streams a change: the watched Deployment's new READY shows up without a new request", async () => {
    // Prepare
    const deployment = { name: "watched", namespace: "default" };
    await kube([
      "create",
      "deployment",
      "watched",
      "--image=registry.sandbox.local/watched:1.0.0",
      "-n",
      "default",
    ]);
    const watcher = spawn(client.path, [
      "--kubeconfig",
      join(dir, "admin.kubeconfig"),
      "--cache-dir",
      join(dir, "cache"),
      "get",
      "deploy",
      deployment.name,
      "-n",
      deployment.namespace,
      "-w",
    ]);
    let out = "";
    const seen = (text: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no "${text}" in: ${out}`)), 15_000);
        const check = () => {
          if (out.includes(text)) {
            clearTimeout(timer);
            resolve();
          }
        };
        watcher.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          check();
        });
        check();
      });
    try {
      await seen(`${deployment.name} `);
      // Act
      await kube([
        "patch",
        "deployment",
        deployment.name,
        "-n",
        deployment.namespace,
        "-p",
        '{"spec":{"replicas":4}}',
      ]);
      await seen("4/4");
    } finally {
      watcher.kill();
    }
    // Assess
    const lines = rows(out);
    expect(lines[0]).toEqual(["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    expect(lines[1]?.slice(0, 4)).toEqual([deployment.name, "1/1", "1", "1"]);
    expect(lines.map((l) => l.slice(0, 4))).toContainEqual([deployment.name, "4/4", "4", "4"]);
  });
});

describe("kubectl auth can-i and RBAC", () => {
  it("answers yes (exit 0) for the sandbox token and no (exit 1) for a namespace reader", async () => {
    // Act
    const admin = await kube(["auth", "can-i", "list", "nodes"]);
    const reader = await kube(["auth", "can-i", "list", "nodes"], "reader");
    const readerPods = await kube(["auth", "can-i", "list", "pods", "-n", PLATFORM], "reader");
    const readerPatch = await kube(
      ["auth", "can-i", "patch", "deployments", "-n", PLATFORM],
      "reader",
    );
    // Assess
    expect(admin).toMatchObject({ code: 0 });
    expect(admin.stdout.trim()).toBe("yes");
    expect(reader).toMatchObject({ code: 1 });
    expect(reader.stdout.trim()).toBe("no");
    expect(readerPods).toMatchObject({ code: 0 });
    expect(readerPatch).toMatchObject({ code: 1 });
  });

  it("refuses what the token may not do with the RBAC authorizer's 403 message", async () => {
    // Act
    const nodes = await kube(["get", "nodes"], "reader");
    const pods = await kube(["get", "pods", "-n", PLATFORM], "reader");
    // Assess
    expect(nodes.code).toBe(1);
    expect(nodes.stderr).toContain(
      `Error from server (Forbidden): nodes is forbidden: User "${READER}" cannot list resource "nodes" in API group "" at the cluster scope`,
    );
    expect(pods.code).toBe(0);
    expect(rows(pods.stdout)[0]).toEqual(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
  });
});
