/**
 * Capacity parity's pure parts and its commit: the topology keys, the floor arithmetic, and the
 * floors written by the retarget commit into a real Git repository (served by git http-backend),
 * with the commit message listing each app's old and new figure.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  type CapacityPlan,
  capacityEdits,
  capacityLine,
  floorOf,
  type LabelSelector,
  labelSelectorOf,
  limitFloor,
  maxReplicasNote,
  pendingPods,
} from "../../functions/lib/capacity.ts";
import { type CapacityConfig, parseTopology } from "../../functions/lib/config.ts";
import { ConfigError } from "../../functions/lib/errors.ts";
import { floorRestore, floorRestoreLine } from "../../functions/lib/failback.ts";
import { commitRetarget, type GitRepo } from "../../functions/lib/gitops.ts";
import { clusterClient } from "../../functions/lib/spoke.ts";
import { createCa } from "../../sandbox/ca.ts";
import { type GitServer, startGitServer } from "../../sandbox/git.ts";
import { startSpoke } from "../../sandbox/spoke.ts";

const run = promisify(execFile);
const example = () =>
  parse(readFileSync("config/topology.example.yaml", "utf8")) as Record<string, unknown>;

const APP = {
  deployment: "api",
  namespace: "shop",
  hpa: "api",
  file: "envs/production/values.yaml",
  path: "regions.{{targetRegion}}.minReplicas.api",
};

function detailsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.details;
    throw e;
  }
  return [];
}

describe("capacity topology keys", () => {
  it("fills the defaults: 100 %, gate at 100 % graceful and 60 % ungraceful, baseline when unknown", () => {
    const t = parseTopology({ ...example(), capacity: { apps: [APP] } });
    expect(t.capacity).toEqual({
      targetPercent: 100,
      minimumSuccessPercent: { graceful: 100, ungraceful: 60 },
      whenSourceUnknown: "baseline",
      gateSeconds: 120,
      apps: [{ ...APP, min: 1, max: 1000 }],
    });
  });

  it("refuses a floor path without {{targetRegion}}, min above max, and an unknown switch", () => {
    const bad = {
      ...example(),
      capacity: {
        whenSourceUnknown: "guess",
        apps: [{ ...APP, path: "minReplicas.api", min: 5, max: 2 }],
      },
    };
    expect(detailsOf(() => parseTopology(bad))).toEqual([
      expect.stringMatching(/^capacity\.whenSourceUnknown: /),
      "capacity.apps.0.path: must name the target region with {{targetRegion}} (the floor is per region)",
      "capacity.apps.0.min: min must not be above max",
    ]);
  });

  it("counts the gate's deadline in the execution's time budget", () => {
    const t = example();
    const timeouts = { argoSyncSeconds: 3600, auroraSeconds: 600, approvalSeconds: 2400 };
    expect(detailsOf(() => parseTopology({ ...t, timeouts }))).toEqual([]);
    const problems = detailsOf(() =>
      parseTopology({ ...t, timeouts, capacity: { gateSeconds: 600, apps: [APP] } }),
    );
    expect(problems).toEqual([
      expect.stringMatching(/^timeouts: .*capacity gate.*over the execution's 7200s limit/),
    ]);
  });
});

describe("floorOf", () => {
  const c = { targetPercent: 100 } as CapacityConfig;
  const app = { ...APP, min: 2, max: 12 };
  it("is ceil(percent x observed / target spokes), within min and max", () => {
    expect(floorOf(app, c, 9, 1)).toBe(9);
    expect(floorOf(app, c, 9, 2)).toBe(5);
    expect(floorOf({ ...app, targetPercent: 150 }, c, 7, 1)).toBe(11);
    expect(floorOf({ ...app, targetPercent: 50 }, c, 3, 1)).toBe(2);
    expect(floorOf(app, c, 0, 1)).toBe(2);
    expect(floorOf(app, c, 40, 1)).toBe(12);
  });
});

describe("the HPA's maxReplicas in Git bounds the floor (an HPA with minReplicas above it is invalid)", () => {
  const app = {
    ...APP,
    min: 1,
    max: 1000,
    maxReplicasPath: "regions.{{targetRegion}}.maxReplicas.api",
  };
  const at = "regions.us-east-2.maxReplicas.api";

  it("caps it at maxReplicas by default, and says so with what was wanted", () => {
    const capped = limitFloor(app, 45, 30, "us-east-2");
    expect(capped).toEqual({ committed: 30, wanted: 45, maxReplicas: { path: at, value: 30 } });
    const floor = { app: "shop/api", observed: 45, file: APP.file, path: "p", ...capped };
    expect(maxReplicasNote(floor)).toBe(
      ` (CAPPED at the HPA's maxReplicas 30 at ${at}; 45 wanted)`,
    );
    expect(capacityEdits({ ...PLAN, apps: [floor] })).toEqual([
      { file: APP.file, path: "p", value: 30 },
    ]);
    // At or below maxReplicas: untouched, nothing to say.
    expect(limitFloor(app, 30, 30, "us-east-2")).toEqual({
      committed: 30,
      maxReplicas: { path: at, value: 30 },
    });
    expect(limitFloor({ ...APP, min: 1, max: 1000 }, 45, undefined, "us-east-2")).toEqual({
      committed: 45,
    });
  });

  it("with aboveMaxReplicas: raise, raises maxReplicas to the floor in the same commit", () => {
    const raised = limitFloor({ ...app, aboveMaxReplicas: "raise" }, 45, 30, "us-east-2");
    expect(raised).toEqual({ committed: 45, maxReplicas: { path: at, value: 30, raisedTo: 45 } });
    const floor = { app: "shop/api", observed: 45, file: APP.file, path: "p", ...raised };
    expect(capacityEdits({ ...PLAN, apps: [floor] })).toEqual([
      { file: APP.file, path: "p", value: 45 },
      { file: APP.file, path: at, value: 45 },
    ]);
    expect(maxReplicasNote(floor)).toBe(` (HPA maxReplicas raised 30 -> 45 at ${at})`);
  });

  it("says loudly when maxReplicas is not a number in Git, and commits the floor unchecked", () => {
    const unknown = limitFloor(app, 45, "thirty", "us-east-2");
    expect(unknown).toEqual({ committed: 45, maxReplicas: { path: at, value: null } });
    expect(maxReplicasNote({ app: "a", observed: 45, file: "f", path: "p", ...unknown })).toBe(
      ` (HPA maxReplicas not found at ${at} in Git: the floor is not checked against it)`,
    );
  });

  it("refuses aboveMaxReplicas without maxReplicasPath, and a maxReplicasPath without {{targetRegion}}", () => {
    const bad = {
      ...example(),
      capacity: {
        apps: [
          { ...APP, aboveMaxReplicas: "raise" },
          { ...APP, maxReplicasPath: "maxReplicas.api" },
        ],
      },
    };
    expect(detailsOf(() => parseTopology(bad))).toEqual([
      "capacity.apps.0.aboveMaxReplicas: aboveMaxReplicas needs maxReplicasPath (where the region's HPA maxReplicas is set)",
      "capacity.apps.1.maxReplicasPath: must name the target region with {{targetRegion}} (maxReplicas is per region)",
    ]);
  });
});

describe("a failback restores the floors the failover it undoes raised in the region it leaves", () => {
  const t = parseTopology({
    ...example(),
    capacity: {
      apps: [APP, { ...APP, deployment: "web", path: "regions.{{targetRegion}}.minReplicas.web" }],
    },
  });
  const v = (path: string, value: unknown) => ({ file: APP.file, path, value });
  const api = "regions.us-east-2.minReplicas.api";
  const web = "regions.us-east-2.minReplicas.web";
  const undone = {
    execution: "arn:aws:states:us-east-1:111122223333:execution:f:failover-1",
    commit: "b19da73ed6b93f34c9deceee27089a1cc50962ac",
    parent: "87f3f7b4bb676ec1765c283cbb5b0567d5d15425",
    at: [v(api, 9), v(web, 6)],
    before: [v(api, 1), v(web, 2)],
  };

  it("back to the value before that failover, unless someone changed it since (kept, with why)", () => {
    const restore = floorRestore(t, "us-east-2", undone, [v(api, 9), v(web, 4)]);
    expect(restore).toEqual({
      region: "us-east-2",
      commit: undone.commit,
      edits: [{ file: APP.file, path: api, from: 9, to: 1 }],
      kept: [`${web}: 4 in Git, changed since the failover committed 6: left as it is`],
    });
    expect(floorRestoreLine(restore as NonNullable<typeof restore>)).toBe(
      `restore us-east-2's capacity values to their Git baseline from before b19da73ed6b9: ${api} 9 -> 1; kept ${web}: 4 in Git, changed since the failover committed 6: left as it is`,
    );
  });

  it("says what the operator does when the baseline is unknown or was unset; nothing when untouched", () => {
    const old = floorRestore(t, "us-east-2", { ...undone, parent: null, before: [] }, undone.at);
    expect(old?.edits).toEqual([]);
    expect(old?.kept[0]).toBe(
      `${api}: the failover's commit b19da73ed6b9 is older than the history read, so its baseline is unknown; set it by hand`,
    );
    const unset = floorRestore(t, "us-east-2", { ...undone, before: [v(web, 2)] }, undone.at);
    expect(unset?.kept).toEqual([
      `${api}: unset before the failover (b19da73ed6b9) committed 9: remove it by hand if it is not wanted`,
    ]);
    expect(floorRestore(t, "us-east-2", { ...undone, at: undone.before }, undone.before)).toBe(
      undefined,
    );
    expect(floorRestore(t, "us-east-2", undefined, undone.at)).toBe(undefined);
  });
});

const PLAN: CapacityPlan = {
  source: "live",
  sourceRegion: "us-west-2",
  minimumSuccessPercent: 100,
  apps: [],
};

const VALUES = `# Production values.
regions:
  us-west-2:
    active: true
    # Capacity parity's floor.
    minReplicas:
      api: 1 # committed by failovers
      web: 1
  us-east-2:
    active: false
    minReplicas:
      api: 1 # committed by failovers
      web: 1
`;

describe("the retarget commit writes the floors", () => {
  let server: GitServer;
  let repo: GitRepo;
  const auth = { username: "bot", token: "pw-capacity-1" };
  beforeAll(async () => {
    server = await startGitServer({
      username: auth.username,
      password: auth.token,
      files: { "envs/production/values.yaml": VALUES },
    });
    repo = { url: server.url, branch: "main", author: { name: "bot", email: "bot@x.local" } };
  });
  afterAll(() => server.stop());

  it("in the activating commit, comments kept, the message listing old and new per app", async () => {
    const plan: CapacityPlan = {
      source: "stored",
      sourceRegion: "us-west-2",
      observedAt: "2026-12-06T01:00:00.000Z",
      ageSeconds: 600,
      liveError: "spoke unreachable",
      minimumSuccessPercent: 100,
      apps: [
        {
          app: "shop/api",
          observed: 9,
          committed: 9,
          file: APP.file,
          path: "regions.us-east-2.minReplicas.api",
        },
        {
          app: "shop/web",
          observed: null,
          committed: null,
          file: APP.file,
          path: "regions.us-east-2.minReplicas.web",
        },
      ],
    };
    const edits = [
      { file: APP.file, path: "regions.us-east-2.active", value: true },
      ...capacityEdits(plan),
    ];
    expect(edits).toHaveLength(2);

    const result = await commitRetarget(
      repo,
      auth,
      edits,
      {
        subject: "failover(shop): make us-east-2 active",
        body: (changes) =>
          changes.map((c) => `${c.path}: ${String(c.from)} -> ${String(c.to)}`).join("\n"),
        trailers: { "Failover-Execution": "arn:aws:states:us-east-1:000000000000:execution:f:x" },
      },
      { maxAttempts: 2 },
    );

    expect(result.skipped).toBe(false);
    const text = await server.readFile(APP.file);
    expect(text).toBe(
      VALUES.replace("active: false", "active: true").replace(
        "  us-east-2:\n    active: true\n    minReplicas:\n      api: 1 #",
        "  us-east-2:\n    active: true\n    minReplicas:\n      api: 9 #",
      ),
    );
    const { stdout } = await run("git", ["-C", server.repoDir, "log", "-1", "--format=%B"]);
    expect(stdout).toContain(
      "regions.us-east-2.active: false -> true\nregions.us-east-2.minReplicas.api: 1 -> 9\n",
    );
    expect(capacityLine(plan)).toBe(
      "capacity stored 24-hour maximum of us-west-2 (live read failed: spoke unreachable), 10 min old: shop/api observed 9 -> floor 9, shop/web observed ? -> floor unchanged; gate at 100% Ready",
    );
  });
});

describe("Pending pods are found by the Deployment's own selector", () => {
  it("renders matchLabels and matchExpressions as kube-apiserver's labelSelector", () => {
    expect(
      labelSelectorOf({
        matchLabels: { app: "checkout" },
        matchExpressions: [
          { key: "track", operator: "In", values: ["stable", "canary"] },
          { key: "legacy", operator: "DoesNotExist" },
          { key: "example.com/team", operator: "Exists" },
          { key: "tier", operator: "NotIn", values: ["batch"] },
        ],
      }),
    ).toBe("app=checkout,track in (canary,stable),!legacy,example.com/team,tier notin (batch)");
    // Nothing to select by: never a list of every Pod of the namespace.
    expect(labelSelectorOf({})).toBeUndefined();
    expect(labelSelectorOf(undefined)).toBeUndefined();
    expect(labelSelectorOf({ matchExpressions: [{ key: "a", operator: "Gt" }] })).toBeUndefined();
  });

  it("counts the Pending pods of that Deployment only, on a spoke whose chart labels pods its own way", async () => {
    const dir = await mkdtemp(join(tmpdir(), "capacity-pending-"));
    const token = "capacity-reader-token-1";
    const spoke = await startSpoke({
      name: "spoke-use2-1",
      region: "us-east-2",
      token,
      ca: await createCa(join(dir, "ca")),
      namespaces: ["shop"],
    });
    try {
      const client = clusterClient(
        { name: spoke.name, apiServer: spoke.url, caData: spoke.caPem, token },
        5_000,
      );
      // No app.kubernetes.io/name on the pods: the chart selects by app and track.
      const deployment = (name: string, replicas: number, track: string) => ({
        apiVersion: "apps/v1",
        kind: "Deployment",
        metadata: { name, labels: { "app.kubernetes.io/name": "checkout" } },
        spec: {
          replicas,
          selector: {
            matchLabels: { app: "checkout" },
            matchExpressions: [{ key: "track", operator: "In", values: [track] }],
          },
          template: {
            metadata: { labels: { app: "checkout", track } },
            spec: { containers: [{ name: "app", image: "checkout:1" }] },
          },
        },
      });
      await client.apps.createNamespacedDeployment({
        namespace: "shop",
        body: deployment("checkout", 5, "stable"),
      });
      await client.apps.createNamespacedDeployment({
        namespace: "shop",
        body: deployment("checkout-canary", 3, "canary"),
      });
      // Room for 4 pods: `checkout` (first by name) gets 4 of its 5, the canary none of its 3.
      spoke.setPodCapacity(4);
      const read = await client.apps.readNamespacedDeployment({
        namespace: "shop",
        name: "checkout",
      });
      const selector = labelSelectorOf(read.spec?.selector as LabelSelector);
      expect(selector).toBe("app=checkout,track in (stable)");
      expect(await pendingPods(client, "shop", selector)).toBe(1);
      const canary = await client.apps.readNamespacedDeployment({
        namespace: "shop",
        name: "checkout-canary",
      });
      expect(
        await pendingPods(client, "shop", labelSelectorOf(canary.spec?.selector as LabelSelector)),
      ).toBe(3);
      // What the label app.kubernetes.io/name=checkout used to find: none of them.
      expect(await pendingPods(client, "shop", "app.kubernetes.io/name=checkout")).toBe(0);

      // The spoke is as strict as kube-apiserver about selectors.
      await expect(
        client.core.listNamespacedPod({ namespace: "shop", labelSelector: "track in ()" }),
      ).rejects.toThrow(/values set can't be empty/);
      await expect(
        client.core.listNamespacedPod({ namespace: "shop", labelSelector: "app=-checkout" }),
      ).rejects.toThrow(/a valid label must be an empty string/);
      const empty = deployment("empty", 1, "stable");
      empty.spec.selector = {} as typeof empty.spec.selector;
      await expect(
        client.apps.createNamespacedDeployment({ namespace: "shop", body: empty }),
      ).rejects.toThrow(/empty selector is invalid for deployment/);
      const unmatched = deployment("unmatched", 1, "stable");
      unmatched.spec.template.metadata.labels.track = "canary";
      await expect(
        client.apps.createNamespacedDeployment({ namespace: "shop", body: unmatched }),
      ).rejects.toThrow(/`selector` does not match template `labels`/);
    } finally {
      await spoke.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
