/**
 * The operator's and the trigger's paths against a running sandbox: the CLI talks to the
 * sandbox's Step Functions API exactly as it would to AWS (`--sandbox <endpoint file>`), the
 * trigger gets the alarm EventBridge would deliver, and the drill's guards start nothing.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import { type DrillOptions, runDrill } from "../../sandbox/drill.ts";
import { type Sandbox, startSandbox } from "../../sandbox/index.ts";

const root = mkdtempSync(join(tmpdir(), "gf-operator-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** Runs the CLI in-process and returns its exit code and what it printed. */
async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const capture = (chunk: string | Uint8Array, encoding?: unknown, done?: unknown) => {
    out += String(chunk);
    const callback = typeof encoding === "function" ? encoding : done;
    if (typeof callback === "function") callback();
    return true;
  };
  const write = vi
    .spyOn(process.stdout, "write")
    .mockImplementation(capture as typeof process.stdout.write);
  const err = vi
    .spyOn(process.stderr, "write")
    .mockImplementation(capture as typeof process.stderr.write);
  try {
    return { code: await main(["node", "gitops-failover", ...args]), out };
  } finally {
    write.mockRestore();
    err.mockRestore();
  }
}

async function until<T>(what: () => Promise<T | undefined>, label: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const value = await what();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${label}`);
}

describe("operator CLI against a running sandbox", () => {
  let sandbox: Sandbox;
  let endpointFile: string;
  beforeEach(async () => {
    n += 1;
    sandbox = await startSandbox({ reportDir: join(root, `op-${n}`), waitMs: 5 });
    endpointFile = join(root, `sandbox-${n}.json`);
    writeFileSync(
      endpointFile,
      JSON.stringify({
        stateMachineArn: sandbox.stateMachineArn,
        region: "us-east-1",
        env: sandbox.env,
        reportDir: join(root, `op-${n}`),
      }),
    );
  });
  afterEach(async () => {
    await sandbox.stop();
  });

  const waitingAtApproval = (name: string) =>
    until(async () => {
      const { out } = await cli("status", name, "--sandbox", endpointFile, "--json");
      const line = out.split("\n").find((l) => l.includes('"awaitingApproval"')) ?? "{}";
      return (JSON.parse(line) as { awaitingApproval?: boolean }).awaitingApproval
        ? true
        : undefined;
    }, "the execution to wait at Approval");

  it("start --require-approval waits at Approval; approve releases it; watch follows it to SUCCEEDED", async () => {
    const started = await cli(
      "start",
      "--sandbox",
      endpointFile,
      "--target",
      "us-east-2",
      "--reason",
      "planned region move",
      "--require-approval",
      "--name",
      "approve-me",
    );
    expect(started.code).toBe(0);
    await waitingAtApproval("approve-me");
    expect((await sandbox.state()).trafficDials).toMatchObject({ "us-west-2": 100 });

    const approved = await cli("approve", "approve-me", "--sandbox", endpointFile, "--by", "jane");
    const watched = await cli("watch", "approve-me", "--sandbox", endpointFile);

    expect(approved.code).toBe(0);
    expect(watched.code).toBe(0);
    for (const step of [
      "Approval",
      "VerifySpoke",
      "CommitRetarget",
      "AwaitArgoSync",
      "ShiftTraffic",
      "Report",
    ]) {
      expect(watched.out).toContain(step);
    }
    expect(watched.out).toMatch(/SUCCEEDED/);
    expect(watched.out).not.toMatch(/local-task-token/);
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-east-2",
      trafficDials: { "us-east-2": 100 },
    });
  });

  it("reject ends the execution with ApprovalRejected and nothing changed", async () => {
    const before = await sandbox.state();
    await cli(
      "start",
      "--sandbox",
      endpointFile,
      "--target",
      "us-east-2",
      "--reason",
      "maybe not",
      "--require-approval",
      "--name",
      "reject-me",
    );
    await waitingAtApproval("reject-me");

    const rejected = await cli(
      "reject",
      "reject-me",
      "--sandbox",
      endpointFile,
      "--reason",
      "primary recovered",
    );
    const watched = await cli("watch", "reject-me", "--sandbox", endpointFile);

    expect(rejected.code).toBe(0);
    expect(watched.code).toBe(1);
    expect(watched.out).toContain("ApprovalRejected");
    expect(await sandbox.state()).toEqual(before);
    const report = JSON.parse(readFileSync(join(root, `op-${n}`, "report.json"), "utf8")) as {
      failedStep: string;
      changed: string[];
    };
    expect(report.failedStep).toBe("Approval");
    expect(report.changed).toEqual([]);
  });
});

describe("drills through the trigger (--via alarm)", () => {
  const drill = (options: Partial<DrillOptions>) => {
    n += 1;
    return runDrill({
      target: "us-east-2",
      mode: "graceful",
      dryRun: false,
      spokes: 3,
      apps: 6,
      repeat: 1,
      faults: [],
      reportDir: join(root, `alarm-${n}`),
      via: "alarm",
      ...options,
    });
  };

  it("an alarm on the active region fails over automatically (ungraceful, RPO-guarded)", async () => {
    const result = await drill({});

    expect(result.trigger.map((d) => d.decision)).toEqual(["started"]);
    expect(result.status).toBe("SUCCEEDED");
    expect(result.executions).toHaveLength(1);
    expect(result.after).toMatchObject({
      activeRegion: "us-east-2",
      auroraWriterRegion: "us-east-2",
    });
    const audit = readFileSync(join(result.reportDir, "audit.jsonl"), "utf8");
    expect(audit).toContain('"step":"Trigger"');
  });

  it("the same alarm delivered three times starts exactly one execution", async () => {
    const result = await drill({ alarmRepeats: 3 });

    expect(result.trigger.map((d) => d.decision)).toEqual([
      "started",
      "already-started",
      "already-started",
    ]);
    expect(new Set(result.trigger.map((d) => d.incident)).size).toBe(1);
    expect(result.executions).toHaveLength(1);
    expect(result.status).toBe("SUCCEEDED");
  });

  it("with the kill switch on nothing starts, and the report says why", async () => {
    const result = await drill({ killSwitch: true });

    expect(result.status).toBe("NOT_STARTED");
    expect(result.executions).toHaveLength(0);
    expect(result.after).toEqual(result.before);
    expect(readFileSync(join(result.reportDir, "report.md"), "utf8")).toMatch(/kill switch on/);
  });

  it("an alarm inside the cooldown after a failover starts nothing", async () => {
    const result = await drill({ cooldownHit: true });

    expect(result.status).toBe("NOT_STARTED");
    expect(result.trigger.map((d) => d.decision)).toEqual(["cooldown"]);
    expect(result.executions).toHaveLength(1);
    expect(readFileSync(join(result.reportDir, "report.json"), "utf8")).toMatch(/cooldown/);
  });
});
