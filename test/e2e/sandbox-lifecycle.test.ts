/**
 * `sandbox up` as an operator runs it, in its own process: SIGTERM stops it within seconds even
 * while an execution waits at Approval (and removes its keys and endpoint file), and a sandbox
 * killed with SIGKILL leaves keys behind only until the next sandbox starts.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSandbox } from "../../sandbox/index.ts";

const run = promisify(execFile);
// A temp dir of this file's own, for the children and for the sandbox started here: the sweep
// must be seen working on exactly the directories these sandboxes made.
const temp = mkdtempSync(join(tmpdir(), "gf-lifecycle-"));
const savedTmp = process.env.TMPDIR;
beforeAll(() => {
  process.env.TMPDIR = temp;
});
afterAll(() => {
  if (savedTmp === undefined) delete process.env.TMPDIR;
  else process.env.TMPDIR = savedTmp;
  rmSync(temp, { recursive: true, force: true });
});
const env = () => ({ ...process.env, TMPDIR: temp });

/** The sandbox working directories in the temp dir that belong to process `pid`. */
const workDirsOf = (pid: number | undefined) =>
  readdirSync(temp).filter((n) => new RegExp(`^gitops-failover-sandbox-[a-z]+-${pid}-`).test(n));

interface Up {
  child: ChildProcess;
  endpointFile: string;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Starts `gitops-failover sandbox up` in its own process and waits until it is serving. */
async function sandboxUp(name: string): Promise<Up> {
  const endpointFile = join(temp, `${name}.json`);
  const child = spawn(
    process.execPath,
    [
      "cli/bin.js",
      "sandbox",
      "up",
      "--endpoint-file",
      endpointFile,
      "--report-dir",
      join(temp, `${name}-reports`),
    ],
    { env: env(), stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (d) => {
    out += String(d);
  });
  child.stderr?.on("data", (d) => {
    out += String(d);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>(
    (resolve) => child.on("exit", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  for (let i = 0; i < 300 && !out.includes("Ctrl-C stops everything"); i++) {
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  expect(out).toContain("Ctrl-C stops everything");
  return { child, endpointFile, output: () => out, exited };
}

async function cli(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ["cli/bin.js", ...args], { env: env() });
  return stdout;
}

describe("sandbox up in its own process", () => {
  it("SIGTERM while an execution waits at Approval: stopped within seconds, keys and endpoint file removed", async () => {
    const up = await sandboxUp("term");
    const sandbox = ["--sandbox", up.endpointFile];
    await cli(
      ...["start", ...sandbox, "--target", "us-east-2", "--reason", "lifecycle test"],
      ...["--require-approval", "--name", "waits"],
    );
    let waiting = false;
    for (let i = 0; i < 100 && !waiting; i++) {
      const status = JSON.parse(await cli("status", "waits", ...sandbox, "--json"));
      waiting = status.awaitingApproval === true;
      if (!waiting) await sleep(200);
    }
    expect(waiting).toBe(true);
    expect(workDirsOf(up.child.pid)).toHaveLength(2);

    const sent = Date.now();
    up.child.kill("SIGTERM");
    const exit = await Promise.race([up.exited, sleep(10_000).then(() => null)]);
    if (!exit) up.child.kill("SIGKILL");

    expect(exit, "still running 10 s after SIGTERM").not.toBeNull();
    expect((exit?.at ?? Number.POSITIVE_INFINITY) - sent).toBeLessThan(5000);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(up.output()).toContain("sandbox stopped");
    expect(existsSync(up.endpointFile)).toBe(false);
    expect(workDirsOf(up.child.pid)).toEqual([]);
  });

  it("SIGKILL leaves its keys only until the next sandbox starts; a live sandbox's are kept", async () => {
    const killed = await sandboxUp("killed");
    const left = workDirsOf(killed.child.pid);
    expect(left.map((n) => n.replace(/-\d+-.*$/, ""))).toEqual(
      expect.arrayContaining(["gitops-failover-sandbox-ca", "gitops-failover-sandbox-git"]),
    );
    const caDir = left.find((n) => n.startsWith("gitops-failover-sandbox-ca-")) ?? "";
    expect(existsSync(join(temp, caDir, "ca", "ca.key"))).toBe(true);
    killed.child.kill("SIGKILL");
    await killed.exited;
    expect(workDirsOf(killed.child.pid)).toEqual(left);
    const alive = spawn("sleep", ["60"]);
    const liveDir = join(temp, `gitops-failover-sandbox-ca-${alive.pid}-AbCdEf`);
    mkdirSync(liveDir);

    const next = await startSandbox({ reportDir: join(temp, "next-reports") });
    try {
      expect(workDirsOf(killed.child.pid)).toEqual([]);
      expect(existsSync(liveDir)).toBe(true);
      expect(workDirsOf(process.pid)).toHaveLength(2);
    } finally {
      await next.stop();
      alive.kill("SIGKILL");
    }
    expect(workDirsOf(process.pid)).toEqual([]);
  });
});
