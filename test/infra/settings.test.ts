/**
 * What a synth reads before building anything: the topology through the functions' own schema
 * and the context values. A problem stops `cdk synth` with one line per problem and exit code
 * 1 — tested through the real entry point, the way the CDK CLI runs it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { Topology } from "../../functions/lib/config.ts";
import { REPO_ROOT } from "../../infra/lib/sdk-access.ts";
import {
  DEFAULT_TOPOLOGY,
  loadSettings,
  pollTimingProblems,
  SettingsError,
} from "../../infra/lib/settings.ts";

const BAD_TOPOLOGY = `apiVersion: gitops-failover/v1
platform: Payments
git:
  url: https://user:secret@git.example.com/platform.git
  credentialsSecretArn: arn:aws:secretsmanager:us-west-2:111122223333:secret:git-AbCdEf
  retarget:
    - file: values.yaml
      path: global.activeRegion
      value: "{{targetRegion}}"
`;

function file(name: string, text: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "gf-settings-")), name);
  writeFileSync(path, text);
  return path;
}

function settingsError(context: Record<string, unknown>): SettingsError {
  try {
    loadSettings((key) => context[key]);
  } catch (e) {
    if (e instanceof SettingsError) return e;
    throw e;
  }
  throw new Error("loadSettings accepted it");
}

describe("loadSettings", () => {
  it("defaults to the example topology, the two most preferred regions, the topology's health checks (created ones probe /healthz)", () => {
    const s = loadSettings(() => undefined);
    expect(s.topologyPath).toBe(DEFAULT_TOPOLOGY);
    expect(s.topology.platform).toBe("payments");
    expect(s.orchestratorRegions).toEqual(["us-west-2", "us-east-2"]);
    expect(s.healthChecks).toBe("topology");
    expect(s.healthCheckPath).toBe("/healthz");
  });

  it("takes the report bucket's Object Lock from -c reportRetentionDays and -c reportLockMode (default governance, 365 days)", () => {
    const context: Record<string, string> = {
      reportRetentionDays: "2555",
      reportLockMode: "compliance",
    };
    expect(loadSettings(() => undefined).reportLock).toEqual({
      retentionDays: 365,
      mode: "governance",
    });
    expect(loadSettings((k) => context[k]).reportLock).toEqual({
      retentionDays: 2555,
      mode: "compliance",
    });
    expect(
      settingsError({ reportRetentionDays: "0", reportLockMode: "legal-hold" }).problems,
    ).toEqual([
      "-c reportRetentionDays: must be at least 1 day",
      expect.stringMatching(/^-c reportLockMode: .*"governance".*"compliance"/),
    ]);
  });

  it("takes orchestrator regions as a comma list (-c) or an array (cdk.json)", () => {
    expect(
      loadSettings((k) => (k === "orchestratorRegions" ? "us-east-1, eu-west-1" : undefined))
        .orchestratorRegions,
    ).toEqual(["us-east-1", "eu-west-1"]);
    expect(
      loadSettings((k) => (k === "orchestratorRegions" ? ["ap-south-1"] : undefined))
        .orchestratorRegions,
    ).toEqual(["ap-south-1"]);
  });

  it("reports every problem of a bad topology, one line each, with the schema's words", () => {
    const path = file("bad.yaml", BAD_TOPOLOGY);
    const e = settingsError({ topology: path });
    expect(e.message.split("\n")[0]).toBe(`topology ${path} is invalid:`);
    expect(e.problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^platform: must be a DNS-1123 name/),
        expect.stringMatching(/^git\.url: must not embed credentials/),
        expect.stringMatching(/^argocd: /),
        expect.stringMatching(/^regions: /),
      ]),
    );
    expect(e.message.split("\n").slice(1)).toEqual(e.problems.map((p) => `  - ${p}`));
  });

  it("reports an unreadable or unparsable topology in one line", () => {
    expect(settingsError({ topology: "config/missing.yaml" }).message).toBe(
      "config/missing.yaml: cannot read the file (does it exist?)",
    );
    expect(settingsError({ topology: file("broken.yaml", "a: [1,\n") }).message).toMatch(
      /broken\.yaml:\d+:\d+: /,
    );
  });

  it("reports bad context values as -c lines", () => {
    const e = settingsError({
      orchestratorRegions: "us-west-2,https://evil.example.com",
      healthCheckPath: "healthz",
    });
    expect(e.problems).toEqual([
      expect.stringMatching(/^-c orchestratorRegions\.1: must be an AWS region name/),
      expect.stringMatching(/^-c healthCheckPath: must be an absolute URL path/),
    ]);
    expect(settingsError({ orchestratorRegions: "us-west-2,us-west-2" }).problems).toEqual([
      "-c orchestratorRegions: must not repeat a region",
    ]);
  });

  it("refuses a platform name too long to name the trigger function", () => {
    const example = readFileSync(DEFAULT_TOPOLOGY, "utf8");
    const path = file(
      "long.yaml",
      example.replace(/^platform: payments$/m, `platform: ${"p".repeat(30)}`),
    );
    expect(settingsError({ topology: path }).problems).toEqual([
      `platform: "${"p".repeat(30)}" is too long to name AWS resources (at most 24 characters)`,
    ]);
  });
});

describe("poll timing", () => {
  /** The example topology with `change` applied, written to a file. */
  function variant(change: (t: Topology) => void): string {
    const doc = parse(readFileSync(DEFAULT_TOPOLOGY, "utf8")) as Topology;
    change(doc);
    return file("variant.json", JSON.stringify(doc));
  }

  it("accepts the example: every poller's worst case fits in its step's deadline", () => {
    expect(pollTimingProblems(loadSettings(() => undefined).topology)).toEqual([]);
  });

  it("refuses a step deadline shorter than one worst-case poll, saying what the poll adds up to and what to change", () => {
    const path = variant((t) => {
      t.argocd.requestTimeoutSeconds = 60;
      t.timeouts = {
        ...t.timeouts,
        argoSyncSeconds: 300,
        auroraSeconds: 60,
        trafficVerifySeconds: 60,
      };
    });
    expect(settingsError({ topology: path }).problems).toEqual([
      "timeouts.argoSyncSeconds: 300 s is shorter than one worst-case AwaitArgoSync poll (480 s = 78 s hub tokens (replica, then primary region) + 2 hub(s) x 3 calls x 60 s argocd.requestTimeoutSeconds + 39 s audit event + 2 s early stop); raise it to at least 480 or lower argocd.requestTimeoutSeconds (or the hubs)",
      "timeouts.auroraSeconds: 60 s is shorter than one worst-case AwaitAurora poll (80 s = 3 region(s) x 10 s DescribeGlobalClusters + 39 s audit event + 2 s early stop); raise it to at least 80",
      "timeouts.trafficVerifySeconds: 60 s is shorter than one worst-case VerifyTraffic poll (80 s = 39 s global-accelerator health read + 39 s audit event + 2 s early stop); raise it to at least 80",
      // Compensate's window is timeouts.auroraSeconds too (its poll budget, functions/catalog.ts).
      expect.stringMatching(
        /^timeouts\.auroraSeconds: 60 s is shorter than one worst-case Compensate poll \(690 s = .*2 hub\(s\) x 2 calls x 60 s.*\); raise it to at least 690$/,
      ),
    ]);
  });

  it("refuses Argo CD settings whose worst-case poll cannot fit in one Lambda invocation", () => {
    const path = variant((t) => {
      const hub = t.argocd.hubs[0];
      if (!hub) throw new Error("no hub");
      t.argocd.hubs = ["a", "b", "c", "d"].map((n) => ({ ...hub, name: `hub-${n}` }));
      t.argocd.requestTimeoutSeconds = 60;
      t.argocd.sync = true;
    });
    expect(settingsError({ topology: path }).problems).toEqual([
      expect.stringMatching(
        /^argocd: one AwaitArgoSync poll can take 1080 s = .*4 hub\(s\) x 4 calls x 60 s.*, over Lambda's 900 s limit/,
      ),
      // Fence and Compensate ask the same hubs (their poll budgets, functions/catalog.ts).
      expect.stringMatching(
        /^argocd: one Fence poll can take 1050 s = .*4 hub\(s\) x 3 calls x 60 s.*, over Lambda's 900 s limit/,
      ),
      expect.stringMatching(
        /^argocd: one Compensate poll can take 930 s = .*4 hub\(s\) x 2 calls x 60 s.*, over Lambda's 900 s limit/,
      ),
    ]);
  });
});

describe("cdk synth with a bad topology", () => {
  it("exits 1 with one line per problem and no stack trace", () => {
    const path = file("bad.yaml", BAD_TOPOLOGY);
    let stderr = "";
    let status: number | null = 0;
    try {
      execFileSync(process.execPath, ["--import", "tsx", "infra/bin/app.ts"], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          CDK_CONTEXT_JSON: JSON.stringify({ topology: path }),
          CDK_OUTDIR: mkdtempSync(join(tmpdir(), "gf-out-")),
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (e) {
      const err = e as { status: number | null; stderr: Buffer };
      status = err.status;
      stderr = err.stderr.toString();
    }
    expect(status).toBe(1);
    const lines = stderr.trim().split("\n");
    expect(lines[0]).toBe(`gitops-failover: cannot synth: topology ${path} is invalid:`);
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines.slice(1)) expect(line).toMatch(/^ {2}- [a-z.]+(\.\d+)?[a-zA-Z.]*: /);
    expect(stderr).not.toMatch(/^\s+at /m);
  });
});
