/**
 * The runbook report and `audit verify` on a failed drill: the report names the failed step and
 * what had changed before it, and the chain in audit.jsonl breaks on a single changed byte.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import { type DrillResult, runDrill } from "../../sandbox/drill.ts";

const root = mkdtempSync(join(tmpdir(), "gf-report-"));
let result: DrillResult;

beforeAll(async () => {
  result = await runDrill({
    target: "us-east-2",
    mode: "graceful",
    dryRun: false,
    spokes: 3,
    apps: 6,
    repeat: 1,
    faults: ["argocd-sync-timeout"],
    reportDir: join(root, "failed"),
  });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function verify(dir: string): Promise<{ code: number; out: string }> {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    return { code: await main(["node", "gitops-failover", "audit", "verify", dir]), out };
  } finally {
    spy.mockRestore();
  }
}

describe("failure report (drill --fault argocd-sync-timeout)", () => {
  it("names the failed step and error, what had changed, and the manual steps", () => {
    const md = readFileSync(join(result.reportDir, "report.md"), "utf8");
    const json = JSON.parse(readFileSync(join(result.reportDir, "report.json"), "utf8")) as {
      status: string;
      failedStep: string;
      changed: string[];
      manualSteps: string[];
    };

    expect(result.status).toBe("FAILED");
    expect(json).toMatchObject({ status: "FAILED", failedStep: "AwaitArgoSync" });
    expect(json.changed).toContain("Git: active region us-west-2 -> us-east-2");
    expect(json.changed.some((c) => c.startsWith("Traffic"))).toBe(false);
    expect(json.manualSteps.join("\n")).toMatch(
      /Traffic was not moved: users are still served by us-west-2/,
    );
    expect(json.manualSteps.join("\n")).toMatch(/git revert/);
    expect(md).toContain("Outcome: **FAILED** at AwaitArgoSync: ArgoSyncTimeout");
    expect(md).toContain("```mermaid\ngantt");
    expect(md).toMatch(/AwaitArgoSync \(FAILED\) :crit, active/);
  });

  it("audit verify: exit 0 on the chain as written, exit 1 naming the event after one byte changes", async () => {
    const intact = await verify(result.reportDir);
    const tampered = join(root, "tampered");
    cpSync(result.reportDir, tampered, { recursive: true });
    const lines = readFileSync(join(tampered, "audit.jsonl"), "utf8").split("\n");
    lines[2] = (lines[2] ?? "").replace('"actor":"drill"', '"actor":"drilL"');
    writeFileSync(join(tampered, "audit.jsonl"), lines.join("\n"));

    const broken = await verify(tampered);

    expect(intact.code).toBe(0);
    expect(intact.out).toMatch(/audit trail intact: \d+ events/);
    expect(broken.code).toBe(1);
    expect(broken.out).toContain("audit trail BROKEN at event 3");
  });
});
