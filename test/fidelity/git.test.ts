/**
 * git itself against the sandbox's Git server (smart HTTP through `git http-backend`, basic
 * auth): clone, push, a refused credential (git exits 128: "Authentication failed") and a
 * non-fast-forward push (git exits 1, "[rejected] ... (fetch first)"), as against a real host.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type GitServer, startGitServer } from "../../sandbox/git.ts";
import { type Client, git } from "./clients.ts";

const USER = "failover";
const PASSWORD = "fidelity-git-password-3b9e";
let server: GitServer;
let dir: string;
let client: Client;

/** git with no system or global configuration and no prompt for credentials. */
const run = (args: string[], cwd = dir) =>
  client.run(["-C", cwd, ...args], {
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    GIT_TERMINAL_PROMPT: "0",
    GIT_AUTHOR_NAME: "fidelity",
    GIT_AUTHOR_EMAIL: "fidelity@sandbox.local",
    GIT_COMMITTER_NAME: "fidelity",
    GIT_COMMITTER_EMAIL: "fidelity@sandbox.local",
  });

const withCredentials = (password: string) =>
  server.url.replace(/^http:\/\//, `http://${USER}:${password}@`);

beforeAll(async () => {
  client = git();
  dir = await mkdtemp(join(tmpdir(), "gf-git-"));
  server = await startGitServer({
    username: USER,
    password: PASSWORD,
    files: { "values.yaml": "global:\n  activeRegion: us-west-2\n" },
  });
});

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("git against the sandbox Git server", () => {
  it("clones and pushes with the credentials sandbox up prints", async () => {
    // Act
    const cloned = await run(["clone", withCredentials(PASSWORD), "a"]);
    await writeFile(join(dir, "a", "values.yaml"), "global:\n  activeRegion: us-east-2\n");
    await run(["commit", "-qam", "retarget us-east-2"], join(dir, "a"));
    const pushed = await run(["push", "origin", "HEAD:main"], join(dir, "a"));
    const head = await run(["rev-parse", "HEAD"], join(dir, "a"));
    // Assess
    expect(cloned.code, cloned.stderr).toBe(0);
    expect(await readFile(join(dir, "a", "values.yaml"), "utf8")).toContain("us-east-2");
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(await server.head()).toBe(head.stdout.trim());
    expect(await server.readFile("values.yaml")).toContain("activeRegion: us-east-2");
  });

  it("refuses a wrong password: git exits 128 with Authentication failed", async () => {
    // Act
    const r = await run(["clone", withCredentials("wrong-password"), "b"]);
    // Assess
    expect(r.code).toBe(128);
    expect(r.stderr).toContain("Authentication failed");
  });

  it("rejects a push that is not a fast-forward: exit 1, [rejected] (fetch first)", async () => {
    // Prepare
    await run(["clone", "-q", withCredentials(PASSWORD), "c"]);
    await run(["clone", "-q", withCredentials(PASSWORD), "d"]);
    await writeFile(join(dir, "c", "a.txt"), "c\n");
    await run(["add", "a.txt"], join(dir, "c"));
    await run(["commit", "-qm", "c"], join(dir, "c"));
    await run(["push", "-q", "origin", "HEAD:main"], join(dir, "c"));
    await writeFile(join(dir, "d", "b.txt"), "d\n");
    await run(["add", "b.txt"], join(dir, "d"));
    await run(["commit", "-qm", "d"], join(dir, "d"));
    // Act
    const r = await run(["push", "origin", "HEAD:main"], join(dir, "d"));
    // Assess
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/! \[rejected\]\s+HEAD -> main \(fetch first\)/);
  });
});
