/**
 * The README's commands exactly as a newcomer types them: through npm, which must put the
 * project's Node 22 and CLI on the PATH. The drill itself is tested in drill.test.ts; this
 * guards the wiring between package.json and the CLI.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "gf-npm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("npm scripts from the README", () => {
  it("npm run drill -- --json prints only JSON on stdout, runs a whole failover and writes the report", async () => {
    const reportDir = join(dir, "report");
    // As typed in the README, without --silent: the project's .npmrc keeps npm's banner out.
    const { stdout } = await run("npm", [
      "run",
      "drill",
      "--",
      "--json",
      "--report-dir",
      reportDir,
    ]);
    const result = JSON.parse(stdout) as { status: string; after: { activeRegion: string } };
    expect(result.status).toBe("SUCCEEDED");
    expect(result.after.activeRegion).toBe("us-east-2");
    const report = JSON.parse(readFileSync(join(reportDir, "report.json"), "utf8")) as {
      status: string;
    };
    expect(report.status).toBe("SUCCEEDED");
  });

  it("a reader that closes the pipe early (drill | head -1) leaves no stack trace, and the drill still finishes", async () => {
    const reportDir = join(dir, "report-head");
    const child = spawn("npm", ["run", "drill", "--", "--report-dir", reportDir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    // Like `head -1`: read the first chunk, then close our end of the pipe.
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    expect(stderr).not.toMatch(/EPIPE|Unhandled/);
    expect(code).toBe(0);
    const report = JSON.parse(readFileSync(join(reportDir, "report.json"), "utf8")) as {
      status: string;
    };
    expect(report.status).toBe("SUCCEEDED");
  });
});
