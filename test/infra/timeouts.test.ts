/**
 * The pollers' Lambda timeouts come from the topology and from the bounds the code puts on each
 * call (functions/catalog.ts CODE_BOUNDS). These tests read those bounds back from the code, so
 * a change to a bound there without the budget here fails, and check the budget's arithmetic.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  CODE_BOUNDS,
  FUNCTIONS,
  MAX_LAMBDA_TIMEOUT_SECONDS,
  pollBudget,
  type TaskState,
  timeoutOf,
} from "../../functions/catalog.ts";
import { loadTopology, type Topology } from "../../functions/lib/config.ts";
import { DEFAULT_TOPOLOGY } from "../../infra/lib/settings.ts";

const source = (file: string) => readFileSync(file, "utf8");
const spec = (state: TaskState) => {
  const f = FUNCTIONS.find((x) => x.state === state);
  if (!f) throw new Error(state);
  return f;
};

describe("the budget's bounds are the code's", () => {
  it("one AWS SDK call: maxAttempts x (connectionTimeout + requestTimeout) in functions/lib/aws.ts", () => {
    const aws = source("functions/lib/aws.ts");
    const attempts = Number(/maxAttempts: (\d+)/.exec(aws)?.[1]);
    const connect = Number(/connectionTimeout: ([\d_]+)/.exec(aws)?.[1]?.replaceAll("_", ""));
    const request = Number(/requestTimeout: ([\d_]+)/.exec(aws)?.[1]?.replaceAll("_", ""));
    expect(CODE_BOUNDS.awsCallSeconds).toBe((attempts * (connect + request)) / 1000);
  });

  it("one DescribeGlobalClusters: the abort signal in functions/lib/aurora.ts", () => {
    const aurora = source("functions/lib/aurora.ts");
    expect(aurora).toMatch(/DescribeGlobalClustersCommand\([^)]*\),\s*bounded\(\)/);
    const ms = Number(/CALL_TIMEOUT_MS = ([\d_]+)/.exec(aurora)?.[1]?.replaceAll("_", ""));
    expect(CODE_BOUNDS.auroraCallSeconds).toBe(ms / 1000);
  });

  it("the early stop: middy's timeoutEarlyInMillis in functions/lib/middleware.ts", () => {
    const ms = Number(
      /timeoutEarlyInMillis: (\d+)/.exec(source("functions/lib/middleware.ts"))?.[1],
    );
    expect(CODE_BOUNDS.earlyTimeoutSeconds).toBe(ms / 1000);
  });

  it("the spokes, Fence's window, the gate's Pending-pod lookups and a Git commit: the code's own figures", () => {
    const steps = source("functions/lib/steps.ts");
    const capacity = source("functions/lib/capacity.ts");
    const ms = (text: string, name: string) =>
      Number(new RegExp(`${name} = ([\\d_]+)`).exec(text)?.[1]?.replaceAll("_", ""));
    expect(CODE_BOUNDS.spokeCallSeconds).toBe(ms(steps, "SPOKE_TIMEOUT_MS") / 1000);
    expect(CODE_BOUNDS.spokeCallSeconds).toBe(ms(capacity, "GATE_TIMEOUT_MS") / 1000);
    expect(CODE_BOUNDS.fenceWindowSeconds).toBe(ms(steps, "FENCE_SECONDS"));
    expect(CODE_BOUNDS.gitCommitSeconds).toBe(spec("CommitRetarget").timeoutSeconds);
    // The Pending-pod lookups of one check run at once (one spoke call's time, counted once).
    expect(capacity).toContain("await Promise.all(lookups.values());");
  });

  it("Argo CD: every call bounded by argocd.requestTimeoutSeconds, the refresh phase as a whole", () => {
    expect(source("functions/lib/steps.ts")).toContain(
      "timeoutMs: t.argocd.requestTimeoutSeconds * 1000",
    );
    // The Git reads judging commits on top: one bound for all of a poll's.
    expect(source("functions/lib/steps.ts")).toContain(
      "const until = Date.now() + t.argocd.requestTimeoutSeconds * 1000;",
    );
    expect(source("functions/lib/argocd.ts")).toMatch(
      /async function prime\([\s\S]*?const deadline = Date\.now\(\) \+ req\.timeoutMs;/,
    );
  });
});

describe("pollBudget and timeoutOf", () => {
  const example = loadTopology(DEFAULT_TOPOLOGY);
  const withArgo = (argocd: Partial<Topology["argocd"]>, hubs = example.argocd.hubs.length) => {
    const hub = example.argocd.hubs[0];
    if (!hub) throw new Error("no hub");
    return {
      ...example,
      argocd: {
        ...example.argocd,
        ...argocd,
        hubs: Array.from({ length: hubs }, (_, i) => ({ ...hub, name: `hub-${i}` })),
      },
    };
  };

  it("AwaitArgoSync grows with hubs, calls (sync adds one) and the per-call bound", () => {
    const call = CODE_BOUNDS.awsCallSeconds;
    const base = 2 * call + call + CODE_BOUNDS.earlyTimeoutSeconds;
    const seconds = (t: Topology) => pollBudget("AwaitArgoSync", t)?.seconds;
    const up = (s: number) => Math.ceil(s / 10) * 10;
    expect(seconds(example)).toBe(up(base + 2 * 3 * 20));
    expect(seconds(withArgo({ requestTimeoutSeconds: 60 }, 3))).toBe(up(base + 3 * 3 * 60));
    expect(seconds(withArgo({ requestTimeoutSeconds: 60, sync: true }, 3))).toBe(
      up(base + 3 * 4 * 60),
    );
    expect(pollBudget("AwaitArgoSync", example)?.deadlineKey).toBe("argoSyncSeconds");
  });

  it("AwaitArgoSync with a read-only Git token adds the token read and the Git reads, bounded as a whole", () => {
    const call = CODE_BOUNDS.awsCallSeconds;
    const perCall = example.argocd.requestTimeoutSeconds;
    const judging = {
      ...example,
      git: {
        ...example.git,
        readCredentialsSecretArn:
          "arn:aws:secretsmanager:us-west-2:111122223333:secret:gitops-failover/git-read-AbCdEf",
      },
    };
    const without = pollBudget("AwaitArgoSync", example);
    const withJudge = pollBudget("AwaitArgoSync", judging);
    const partsOf = (b: typeof without) => b?.parts.length;
    expect(withJudge?.seconds).toBe(
      Math.ceil(
        (2 * call +
          example.argocd.hubs.length * 3 * perCall +
          2 * call +
          perCall +
          call +
          CODE_BOUNDS.earlyTimeoutSeconds) /
          10,
      ) * 10,
    );
    expect(partsOf(withJudge)).toBe((partsOf(without) ?? 0) + 1);
  });

  it("AwaitAurora grows with the regions it may ask in turn; VerifyTraffic is one read", () => {
    expect(pollBudget("AwaitAurora", example)).toMatchObject({
      seconds: 80,
      deadlineKey: "auroraSeconds",
    });
    expect(pollBudget("VerifyTraffic", example)).toMatchObject({
      seconds: 80,
      deadlineKey: "trafficVerifySeconds",
    });
  });

  it("AwaitCapacity: the spokes' tokens, two lists per namespace with an HPA (one without), the Pending-pod lookups; within capacity.gateSeconds", () => {
    const { awsCallSeconds: call, spokeCallSeconds: spoke, earlyTimeoutSeconds } = CODE_BOUNDS;
    expect(pollBudget("AwaitCapacity", example)).toBeUndefined();
    const app = { file: "values.yaml", path: "r.{{targetRegion}}.min.a", min: 1, max: 1000 };
    const gated = {
      ...example,
      capacity: {
        targetPercent: 100,
        minimumSuccessPercent: { graceful: 100, ungraceful: 60 },
        whenSourceUnknown: "baseline" as const,
        gateSeconds: 300,
        apps: [
          { ...app, deployment: "api", namespace: "shop", hpa: "api" },
          { ...app, deployment: "web", namespace: "shop" },
          { ...app, deployment: "worker", namespace: "jobs" },
        ],
      },
    };
    // shop: Deployments + HPAs; jobs: Deployments.
    expect(pollBudget("AwaitCapacity", gated)).toMatchObject({
      seconds: Math.ceil((2 * call + 3 * spoke + spoke + call + earlyTimeoutSeconds) / 10) * 10,
      deadlineKey: "capacity.gateSeconds",
      deadlineSeconds: 300,
    });
    expect(timeoutOf(spec("AwaitCapacity"), gated)).toBe(160);
  });

  it("Fence: Aurora and traffic, the hubs' and spokes' tokens, the API servers, Argo CD's first poll, a record per old region; its window is fixed", () => {
    const { awsCallSeconds: call, spokeCallSeconds: spoke, earlyTimeoutSeconds } = CODE_BOUNDS;
    const hubs = example.argocd.hubs.length;
    const regions = Object.keys(example.regions).length;
    expect(pollBudget("Fence", example)).toMatchObject({
      seconds:
        Math.ceil(
          (Math.max(regions * CODE_BOUNDS.auroraCallSeconds, call) +
            2 * call +
            2 * call +
            spoke +
            hubs * 3 * example.argocd.requestTimeoutSeconds +
            (regions - 1) * call +
            call +
            earlyTimeoutSeconds) /
            10,
        ) * 10,
      deadlineKey: "FENCE_SECONDS",
      deadlineSeconds: CODE_BOUNDS.fenceWindowSeconds,
    });
    expect(
      pollBudget("Fence", withArgo({ requestTimeoutSeconds: 60 }, 3))?.seconds,
    ).toBeGreaterThan(pollBudget("Fence", example)?.seconds ?? 0);
  });

  it("Compensate: its longest decision (the move to the writer refused, the writer switched back), capacity included when committed; within timeouts.auroraSeconds", () => {
    const without = pollBudget("Compensate", example);
    expect(without).toMatchObject({ seconds: 490, deadlineKey: "auroraSeconds" });
    expect(without?.parts).toContain("39 s health check");
    const gated = {
      ...example,
      capacity: {
        targetPercent: 100,
        minimumSuccessPercent: { graceful: 100, ungraceful: 60 },
        whenSourceUnknown: "baseline" as const,
        gateSeconds: 120,
        apps: [
          {
            deployment: "api",
            namespace: "shop",
            file: "values.yaml",
            path: "r.{{targetRegion}}.min.api",
            min: 1,
            max: 1000,
          },
        ],
      },
    };
    // The target's capacity: spoke tokens, one Deployment list, the Pending-pod lookups.
    const capacity = 2 * CODE_BOUNDS.awsCallSeconds + 2 * CODE_BOUNDS.spokeCallSeconds;
    expect(pollBudget("Compensate", gated)?.seconds).toBe(Math.ceil((483 + capacity) / 10) * 10);
    expect(timeoutOf(spec("Compensate"), example)).toBe(490);
  });

  it("raises a poller's catalog timeout to its budget, caps it at Lambda's limit, leaves the others", () => {
    expect(timeoutOf(spec("AwaitArgoSync"), example)).toBe(240);
    expect(timeoutOf(spec("AwaitAurora"), example)).toBe(80);
    expect(timeoutOf(spec("VerifyTraffic"), example)).toBe(80);
    expect(
      timeoutOf(spec("AwaitArgoSync"), withArgo({ requestTimeoutSeconds: 60, sync: true }, 5)),
    ).toBe(MAX_LAMBDA_TIMEOUT_SECONDS);
    for (const f of FUNCTIONS) {
      if (!pollBudget(f.state, example))
        expect(timeoutOf(f, example), f.state).toBe(f.timeoutSeconds);
    }
  });
});
