/**
 * The bundle CDK deploys, built for real through the same construct (local esbuild, no Docker):
 * ESM with the createRequire banner, minified, the AWS SDK inside, the topology compiled in —
 * and it runs: the Plan handler reads that topology with no TOPOLOGY variable set.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { App, Stack } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import ts from "typescript";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTopology } from "../../functions/lib/config.ts";
import {
  BUNDLE_OPTIONS,
  functionBundling,
  MAX_COMPILED_TOPOLOGY_BYTES,
} from "../../infra/lib/bundling.ts";
import { FailoverFunction } from "../../infra/lib/failover-function.ts";
import { REPO_ROOT } from "../../infra/lib/sdk-access.ts";
import { DEFAULT_TOPOLOGY } from "../../infra/lib/settings.ts";

const topology = loadTopology(DEFAULT_TOPOLOGY);
let bundle: string;
let bundlePath: string;

beforeAll(() => {
  const outdir = mkdtempSync(join(tmpdir(), "gf-bundle-"));
  const app = new App({ outdir });
  const stack = new Stack(app, "Bundle", { env: { region: "us-west-2" } });
  const arn = "arn:aws:dynamodb:us-west-2:111122223333:table/audit";
  new FailoverFunction(stack, "Plan", {
    step: "Plan",
    entry: "functions/plan/handler.ts",
    timeoutSeconds: 60,
    memoryMb: 512,
    environment: {},
    access: { name: "Plan", actions: [], calls: [], bundleBytes: 0 },
    secrets: [],
    targets: {
      stack,
      topology,
      tableArn: arn,
      keyArn: arn,
      signingKeyArn: arn,
      bucketArn: arn,
      topicArn: arn,
      stateMachineName: "sm",
      killSwitchParameterArn: arn,
      orchestratorRegions: ["us-west-2"],
    },
    bundling: functionBundling(JSON.stringify(topology)),
  });
  app.synth();
  const fn = Template.fromStack(stack).findResources("AWS::Lambda::Function");
  const code = Object.values(fn)[0]?.Properties?.Code as { S3Key: string } | undefined;
  const key = String(code?.S3Key);
  bundlePath = join(outdir, `asset.${key.replace(/\.zip$/, "")}`, "index.mjs");
  bundle = readFileSync(bundlePath, "utf8");
});

/** bench/bundle.ts's BUNDLE_OPTIONS literal (types stripped), read without running the bench. */
function benchOptions(): unknown {
  const path = join(REPO_ROOT, "bench/bundle.ts");
  const source = ts.createSourceFile(
    path,
    readFileSync(path, "utf8"),
    ts.ScriptTarget.Latest,
    true,
  );
  let literal: string | undefined;
  source.forEachChild((node) => {
    if (!ts.isVariableStatement(node)) return;
    for (const d of node.declarationList.declarations) {
      if (ts.isIdentifier(d.name) && d.name.text === "BUNDLE_OPTIONS" && d.initializer) {
        const init = ts.isAsExpression(d.initializer) ? d.initializer.expression : d.initializer;
        literal = init.getText(source);
      }
    }
  });
  if (!literal) throw new Error("bench/bundle.ts has no BUNDLE_OPTIONS");
  return new Function(`return ${ts.transpile(`(${literal})`)}`)();
}

describe("bundling", () => {
  it("uses the same esbuild options as bench/bundle.ts", () => {
    expect(BUNDLE_OPTIONS).toEqual(benchOptions());
  });

  it("produces one minified ESM file that starts with the createRequire banner", () => {
    expect(existsSync(bundlePath)).toBe(true);
    expect(bundle.startsWith(BUNDLE_OPTIONS.banner.js)).toBe(true);
    expect(bundle).toMatch(/export\s*\{[^}]*\bas handler\b|export\s*\{\s*\w+ as handler/);
    expect(bundle.length / bundle.split("\n").length, "average line length").toBeGreaterThan(1000);
    expect(bundle).toContain("GlobalAccelerator");
  });

  it("compiles the topology in instead of reading a TOPOLOGY variable", () => {
    expect(bundle).not.toContain("process.env.TOPOLOGY");
    expect(bundle).toContain(topology.git.credentialsSecretArn);
  });

  it("runs: Plan validates its input against the compiled-in topology with no TOPOLOGY set", () => {
    const script = `
      const { handler } = await import(${JSON.stringify(bundlePath)});
      const context = { functionName: "plan", awsRequestId: "r", getRemainingTimeInMillis: () => 60000 };
      try {
        await handler({ input: { targetRegion: "ap-south-1", reason: "drill" }, execution: { id: "x", name: "x", startTime: "2025-01-01T00:00:00Z" } }, context);
        console.log("no error");
      } catch (e) { console.log(e.name + ": " + e.message); }`;
    const env = {
      PATH: process.env.PATH ?? "",
      AWS_REGION: "us-west-2",
      POWERTOOLS_LOG_LEVEL: "SILENT",
    };
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script], { env })
      .toString()
      .trim()
      .split("\n");
    expect(out.at(-1)).toMatch(
      /^InputValidationError: .*targetRegion: "ap-south-1" is not in the topology \(known: us-west-2, us-east-2, eu-west-1\)/,
    );
  });

  it("refuses a topology too large to pass to esbuild", () => {
    expect(() => functionBundling("x".repeat(MAX_COMPILED_TOPOLOGY_BYTES))).toThrow(
      /at most 102400 can be compiled/,
    );
  });
});
