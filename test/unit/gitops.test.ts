import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import {
  ConcurrentFailover,
  ConfigError,
  GitAuthError,
  GitEditError,
  GitPushConflict,
  GitUnreachable,
} from "../../functions/lib/errors.ts";
import {
  commitRetarget,
  type GitAuth,
  type GitRepo,
  type RenderedEdit,
  readValues,
} from "../../functions/lib/gitops.ts";
import { getSecret } from "../../functions/lib/secrets.ts";
import { type GitServer, startGitServer } from "../../sandbox/git.ts";
import { rotatingSecret } from "./rotating-secret.ts";

const run = promisify(execFile);
const USERNAME = "gitops-bot";
const PASSWORD = "pw-7f3a9c1e5b2d8f40";

const VALUES = `# Platform values: managed by GitOps, edited by gitops-failover.
global:
  # The region that serves traffic.
  activeRegion: us-west-2   # flipped on failover
  standbyRegion: 'us-east-2'
  regions:
  - us-west-2
  - us-east-2
  flow: { a: 1, b: [x, y] }

regions:
  us-west-2:
    replicas:    3
    enabled: true
  us-east-2:
    replicas: 0
    enabled: false # passive
`;

/** VALUES with exactly the four target values changed, every other byte as it was. */
const VALUES_ON_EAST = VALUES.replace("activeRegion: us-west-2 ", "activeRegion: us-east-2 ")
  .replace("standbyRegion: 'us-east-2'", "standbyRegion: 'us-west-2'")
  .replace("    enabled: true\n", "    enabled: false\n")
  .replace("replicas: 0\n    enabled: false # passive", "replicas: 3\n    enabled: true # passive");

const TO_EAST: RenderedEdit[] = [
  { file: "values.yaml", path: "global.activeRegion", value: "us-east-2" },
  { file: "values.yaml", path: "global.standbyRegion", value: "us-west-2" },
  { file: "values.yaml", path: "regions.us-west-2.enabled", value: false },
  { file: "values.yaml", path: "regions.us-east-2.enabled", value: true },
  { file: "values.yaml", path: "regions.us-east-2.replicas", value: 3 },
];

const MESSAGE = {
  subject: "failover(shop): make us-east-2 active",
  body: "Source region: us-west-2. Mode: graceful.",
  trailers: {
    "Failover-Execution": "arn:aws:states:us-east-1:000000000000:execution:failover:drill-1",
    "Failover-Reason": "us-west-2 health checks failing",
    "Requested-By": "oncall@example.com",
  },
};

const EXPECTED_MESSAGE = [
  "failover(shop): make us-east-2 active",
  "",
  "Source region: us-west-2. Mode: graceful.",
  "",
  "Failover-Execution: arn:aws:states:us-east-1:000000000000:execution:failover:drill-1",
  "Failover-Reason: us-west-2 health checks failing",
  "Requested-By: oncall@example.com",
].join("\n");

const AUTH: GitAuth = { username: USERNAME, token: PASSWORD };

/** Another execution (another orchestrator region) failing over to eu-west-1. */
const THEIRS = "arn:aws:states:us-east-2:000000000000:execution:failover:auto-us-west-2-1";
const THEIR_MESSAGE = [
  "failover(shop): make eu-west-1 active",
  "",
  "Source region: us-west-2. Mode: ungraceful.",
  "",
  `Failover-Execution: ${THEIRS}`,
  "Failover-Target: eu-west-1",
].join("\n");
const VALUES_ON_EU = VALUES.replace("activeRegion: us-west-2 ", "activeRegion: eu-west-1 ");

let server: GitServer;
let repo: GitRepo;

function files(): Record<string, string> {
  return {
    "values.yaml": VALUES,
    "apps/shop/values.yaml": "image: shop:1.2.3\n",
    "broken.yaml": "global:\n  activeRegion: [us-west-2\n",
    "windows.yaml":
      "\uFEFF# Saved on Windows.\r\nglobal:\r\n  activeRegion: us-west-2 # flipped\r\n  replicas:    3\r\n",
  };
}

async function thrown(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof Error) return e;
    throw e;
  }
  throw new Error("expected a rejection");
}

beforeEach(async () => {
  server = await startGitServer({ username: USERNAME, password: PASSWORD, files: files() });
  repo = {
    url: server.url,
    branch: "main",
    author: { name: "gitops-failover", email: "gitops-failover@noreply.local" },
  };
});

afterEach(async () => {
  await server.stop();
});

describe("readValues", () => {
  it("reads the values at the branch head, absent keys as undefined", async () => {
    // Prepare
    const edits: RenderedEdit[] = [
      ...TO_EAST,
      { file: "values.yaml", path: "regions.eu-west-1.enabled", value: true },
      { file: "values.yaml", path: "global.activeRegion.name", value: "x" },
      { file: "values.yaml", path: "global.regions", value: "x" },
    ];

    // Act
    const result = await readValues(repo, AUTH, edits);

    // Assess
    expect(result.head).toBe(await server.head());
    expect(result.values).toEqual([
      { file: "values.yaml", path: "global.activeRegion", value: "us-west-2" },
      { file: "values.yaml", path: "global.standbyRegion", value: "us-east-2" },
      { file: "values.yaml", path: "regions.us-west-2.enabled", value: true },
      { file: "values.yaml", path: "regions.us-east-2.enabled", value: false },
      { file: "values.yaml", path: "regions.us-east-2.replicas", value: 0 },
      { file: "values.yaml", path: "regions.eu-west-1.enabled", value: undefined },
      { file: "values.yaml", path: "global.activeRegion.name", value: undefined },
      { file: "values.yaml", path: "global.regions", value: ["us-west-2", "us-east-2"] },
    ]);
  });

  it("with lookback, finds the newest failover commit under other commits, within the bound", async () => {
    // Prepare
    await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 1 });
    const theirs = await server.commitDirect({ "values.yaml": VALUES_ON_EU }, THEIR_MESSAGE);
    await server.commitDirect({ "NOTES.md": "unrelated\n" }, "Unrelated change");

    // Act
    const deep = await readValues(repo, AUTH, TO_EAST, { lookback: 20 });
    const shallow = await readValues(repo, AUTH, TO_EAST, { lookback: 1 });
    const none = await readValues(repo, AUTH, TO_EAST);

    // Assess
    expect(deep.lastFailover).toEqual({
      sha: theirs,
      execution: THEIRS,
      target: "eu-west-1",
      committedAt: expect.any(String),
    });
    expect(Date.now() - Date.parse(deep.lastFailover?.committedAt ?? "")).toBeLessThan(60_000);
    expect(shallow.lastFailover).toBeUndefined();
    expect(none).not.toHaveProperty("lastFailover");
  });

  it("refuses an invalid YAML file with its name and line", async () => {
    // Act
    const error = await thrown(
      readValues(repo, AUTH, [{ file: "broken.yaml", path: "global.activeRegion", value: "x" }]),
    );

    // Assess
    expect(error).toBeInstanceOf(GitEditError);
    expect(error.message).toMatch(/^broken\.yaml:\d+:\d+ is not valid YAML/);
  });
});

describe("commitRetarget", () => {
  it("commits the edits with trailers, changing only the target values", async () => {
    // Prepare
    const before = await server.head();

    // Act
    const result = await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 });

    // Assess
    const log = await server.log();
    expect(result).toEqual({
      skipped: false,
      sha: await server.head(),
      previousSha: before,
      attempts: 1,
      changes: [
        { file: "values.yaml", path: "global.activeRegion", from: "us-west-2", to: "us-east-2" },
        { file: "values.yaml", path: "global.standbyRegion", from: "us-east-2", to: "us-west-2" },
        { file: "values.yaml", path: "regions.us-west-2.enabled", from: true, to: false },
        { file: "values.yaml", path: "regions.us-east-2.enabled", from: false, to: true },
        { file: "values.yaml", path: "regions.us-east-2.replicas", from: 0, to: 3 },
      ],
    });
    expect(log.map((c) => c.sha)).toEqual([result.sha, before]);
    expect(log[0]?.message).toBe(EXPECTED_MESSAGE);
    expect(log[0]?.author).toBe("gitops-failover <gitops-failover@noreply.local>");
    expect(await server.readFile("values.yaml")).toBe(VALUES_ON_EAST);
    expect(await server.readFile("apps/shop/values.yaml")).toBe("image: shop:1.2.3\n");
  });

  it("edits a file deep in a repository of 2,000 files and keeps its siblings", async () => {
    // Prepare
    const many: Record<string, string> = {};
    for (let i = 0; i < 2000; i++)
      many[`apps/app-${i}/values.yaml`] = `app: app-${i}\nregion: us-west-2\n`;
    const large = await startGitServer({ username: USERNAME, password: PASSWORD, files: many });
    try {
      const edit = { file: "apps/app-1234/values.yaml", path: "region", value: "us-east-2" };

      // Act
      const result = await commitRetarget({ ...repo, url: large.url }, AUTH, [edit], MESSAGE, {
        maxAttempts: 1,
      });

      // Assess
      expect(result.sha).toBe(await large.head());
      expect(await large.readFile("apps/app-1234/values.yaml")).toBe(
        "app: app-1234\nregion: us-east-2\n",
      );
      expect(await large.readFile("apps/app-1235/values.yaml")).toBe(
        "app: app-1235\nregion: us-west-2\n",
      );
      expect(await large.readFile("apps/app-0/values.yaml")).toBe(
        "app: app-0\nregion: us-west-2\n",
      );
    } finally {
      await large.stop();
    }
  });

  it("creates a missing leaf key, keeping the comments", async () => {
    // Prepare
    const edit = { file: "values.yaml", path: "regions.us-east-2.weight", value: 100 };

    // Act
    const result = await commitRetarget(repo, AUTH, [edit], MESSAGE, { maxAttempts: 1 });

    // Assess
    const text = await server.readFile("values.yaml");
    expect(result.changes).toEqual([
      { file: edit.file, path: edit.path, from: undefined, to: 100 },
    ]);
    expect(parse(text).regions["us-east-2"]).toEqual({ replicas: 0, enabled: false, weight: 100 });
    expect(text).toContain("# The region that serves traffic.");
    expect(text).toContain("# flipped on failover");
  });

  it("applies the edits of one file spelled two ways together, as one file", async () => {
    // Prepare
    const edits: RenderedEdit[] = [
      { file: "values.yaml", path: "global.activeRegion", value: "us-east-2" },
      { file: "./values.yaml", path: "global.standbyRegion", value: "us-west-2" },
      { file: ".//values.yaml", path: "global.activeRegion", value: "us-east-2" },
    ];

    // Act
    const result = await commitRetarget(repo, AUTH, edits, MESSAGE, { maxAttempts: 1 });

    // Assess
    const values = parse(await server.readFile("values.yaml"));
    expect(values.global.activeRegion).toBe("us-east-2");
    expect(values.global.standbyRegion).toBe("us-west-2");
    expect(result.changes).toEqual([
      { file: "values.yaml", path: "global.activeRegion", from: "us-west-2", to: "us-east-2" },
      { file: "values.yaml", path: "global.standbyRegion", from: "us-east-2", to: "us-west-2" },
    ]);
  });

  it("keeps a CRLF file's line breaks and byte-order mark when it adds a key", async () => {
    // Prepare
    const edits: RenderedEdit[] = [
      { file: "windows.yaml", path: "global.activeRegion", value: "us-east-2" },
      { file: "windows.yaml", path: "global.weight", value: 100 },
    ];

    // Act
    await commitRetarget(repo, AUTH, edits, MESSAGE, { maxAttempts: 1 });

    // Assess
    const text = await server.readFile("windows.yaml");
    expect(text.startsWith("\uFEFF# Saved on Windows.\r\n")).toBe(true);
    expect(text.replaceAll("\r\n", "")).not.toContain("\n");
    expect(text).toContain("  activeRegion: us-east-2 # flipped\r\n");
    expect(text.endsWith("  weight: 100\r\n")).toBe(true);
    expect(parse(text.slice(1)).global).toEqual({
      activeRegion: "us-east-2",
      replicas: 3,
      weight: 100,
    });
  });

  it("sweeps clone folders that earlier invocations left behind, and only those", async () => {
    // Prepare
    const gone = await new Promise<number>((resolve, reject) => {
      const child = execFile(process.execPath, ["-e", ""], (e) => (e ? reject(e) : undefined));
      child.on("exit", () => resolve(child.pid ?? 0));
    });
    const other = process.ppid;
    const folder = (name: string) => join(tmpdir(), name);
    const leftovers = {
      deadProcess: folder(`gitops-failover-clone-${gone}-0a1b2c`),
      thisProcess: folder(`gitops-failover-clone-${process.pid}-0a1b2c`),
      oldOfLiveProcess: folder(`gitops-failover-clone-${other}-0d0d0d`),
    };
    const kept = {
      freshOfLiveProcess: folder(`gitops-failover-clone-${other}-0e0e0e`),
      notAClone: folder("gitops-failover-clone-notes"),
    };
    const anHourAgo = (Date.now() - 3_600_000) / 1000;
    for (const dir of [...Object.values(leftovers), ...Object.values(kept)]) {
      await mkdir(join(dir, ".git"), { recursive: true });
      await writeFile(join(dir, ".git", "packed"), "x".repeat(1024));
    }
    await utimes(leftovers.oldOfLiveProcess, anHourAgo, anHourAgo);

    try {
      // Act
      await readValues(repo, AUTH, TO_EAST);

      // Assess
      for (const dir of Object.values(leftovers)) expect(existsSync(dir), dir).toBe(false);
      for (const dir of Object.values(kept)) expect(existsSync(dir), dir).toBe(true);
    } finally {
      for (const dir of [...Object.values(leftovers), ...Object.values(kept)])
        await rm(dir, { recursive: true, force: true });
    }
  });

  it("does nothing when every value is already at its target", async () => {
    // Prepare
    await server.commitDirect({ "values.yaml": VALUES_ON_EAST }, "someone already failed over");
    const head = await server.head();

    // Act
    const result = await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 });

    // Assess
    expect(result).toMatchObject({ skipped: true, sha: head, previousSha: head, attempts: 0 });
    expect(result.changes.every((c) => c.from === c.to)).toBe(true);
    expect(await server.head()).toBe(head);
    expect(server.stats().pushes).toBe(0);
  });

  it("re-applies the edits on the new head when the push is not a fast-forward", async () => {
    // Prepare
    const before = await server.head();
    server.injectConflictOnNextPush();

    // Act
    const result = await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 });

    // Assess
    const log = await server.log();
    expect(result.attempts).toBe(2);
    expect(result.skipped).toBe(false);
    expect(log.map((c) => c.sha)).toEqual([result.sha, result.previousSha, before]);
    expect(log[1]?.message).toBe("Concurrent change by another committer");
    expect(await server.readFile("NOTES.md")).toContain("another committer");
    expect(await server.readFile("values.yaml")).toBe(VALUES_ON_EAST);
  });

  it("ends skipped when the concurrent change already made the edits", async () => {
    // Prepare
    server.injectConflictOnNextPush({ "values.yaml": VALUES_ON_EAST });

    // Act
    const result = await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 });

    // Assess
    const log = await server.log();
    expect(result).toMatchObject({
      skipped: true,
      attempts: 1,
      sha: log[0]?.sha,
      previousSha: log[0]?.sha,
    });
    expect(log.map((c) => c.message)).toEqual([
      "Concurrent change by another committer",
      "Initial commit",
    ]);
  });

  it("stops with ConcurrentFailover when another execution's failover lands before the push", async () => {
    // Prepare
    server.injectConflictOnNextPush({ "values.yaml": VALUES_ON_EU }, THEIR_MESSAGE);

    // Act
    const error = await thrown(commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 }));

    // Assess
    expect(error).toBeInstanceOf(ConcurrentFailover);
    expect(error.message).toContain(`execution ${THEIRS} committed a failover to eu-west-1`);
    expect(error.message).toContain("nothing was pushed by this execution");
    expect((await server.log()).map((c) => c.message)).toEqual([THEIR_MESSAGE, "Initial commit"]);
    expect(await server.readFile("values.yaml")).toBe(VALUES_ON_EU);
    expect(server.stats().pushes).toBe(1);
  });

  it("builds on its own execution's commit that landed first (a retried invocation)", async () => {
    // Prepare
    server.injectConflictOnNextPush({ "values.yaml": VALUES_ON_EAST }, EXPECTED_MESSAGE);

    // Act
    const result = await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 });

    // Assess
    const log = await server.log();
    expect(result).toMatchObject({ skipped: true, attempts: 1, sha: log[0]?.sha });
    expect(log.map((c) => c.message)).toEqual([EXPECTED_MESSAGE, "Initial commit"]);
  });

  it("stops with ConcurrentFailover when another execution failed over since the plan", async () => {
    // Prepare
    const plannedHead = await server.head();
    await server.commitDirect({ "values.yaml": VALUES_ON_EU }, THEIR_MESSAGE);
    await server.commitDirect({ "NOTES.md": "unrelated\n" }, "Unrelated change");
    const head = await server.head();

    // Act
    const error = await thrown(
      commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3, plannedHead }),
    );

    // Assess
    expect(error).toBeInstanceOf(ConcurrentFailover);
    expect(error.message).toContain(`execution ${THEIRS} committed a failover to eu-west-1`);
    expect(await server.head()).toBe(head);
    expect(server.stats().pushes).toBe(0);
  });

  it("commits on top of other committers' changes made since the plan", async () => {
    // Prepare
    const plannedHead = await server.head();
    const other = await server.commitDirect({ "NOTES.md": "unrelated\n" }, "Unrelated change");

    // Act
    const result = await commitRetarget(repo, AUTH, TO_EAST, MESSAGE, {
      maxAttempts: 3,
      plannedHead,
    });

    // Assess
    expect(result).toMatchObject({ skipped: false, attempts: 1, previousSha: other });
    expect(await server.readFile("values.yaml")).toBe(VALUES_ON_EAST);
  });

  it("gives up with GitPushConflict after maxAttempts pushes", async () => {
    // Prepare
    server.injectConflictOnNextPush();

    // Act
    const error = await thrown(commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 1 }));

    // Assess
    expect(error).toBeInstanceOf(GitPushConflict);
    expect(error.message).toContain("1 push attempt");
    expect((await server.log()).map((c) => c.message)).toEqual([
      "Concurrent change by another committer",
      "Initial commit",
    ]);
  });

  it("adds exactly one commit when two executions retarget at the same time", async () => {
    // Act
    const results = await Promise.all([
      commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 }),
      commitRetarget(repo, AUTH, TO_EAST, MESSAGE, { maxAttempts: 3 }),
    ]);

    // Assess
    const log = await server.log();
    expect(log.filter((c) => c.message === EXPECTED_MESSAGE)).toHaveLength(1);
    expect(results.map((r) => r.sha)).toEqual([log[0]?.sha, log[0]?.sha]);
    expect(results.filter((r) => r.skipped)).toHaveLength(1);
    expect(await server.readFile("values.yaml")).toBe(VALUES_ON_EAST);
  });
});

describe("commitRetarget failures", () => {
  it("reports rejected credentials as GitAuthError without the secret", async () => {
    // Prepare
    const wrong = { username: USERNAME, token: "wrong-token-4b1d9e7a" };

    // Act
    const error = await thrown(commitRetarget(repo, wrong, TO_EAST, MESSAGE, { maxAttempts: 1 }));

    // Assess
    expect(error).toBeInstanceOf(GitAuthError);
    expect(error.message).toContain(`${server.url} rejected the credentials (HTTP 401)`);
    expect(error.message).toContain("git.credentialsSecretArn");
    expect(error.message).not.toContain(wrong.token);
    expect(error.message).not.toContain(PASSWORD);
    expect(server.stats().rejectedAuth).toBeGreaterThan(0);
  });

  it("reports rotated credentials as GitAuthError", async () => {
    // Prepare
    server.setPassword("pw-rotated-0c5e2a91");

    // Act
    const error = await thrown(readValues(repo, AUTH, TO_EAST));

    // Assess
    expect(error).toBeInstanceOf(GitAuthError);
    expect(error.message).not.toContain(PASSWORD);
  });

  it("drops a rotated token from the secret cache, so the next attempt reads the new one", async () => {
    // Prepare
    const arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:gitops-failover/git-AbCdEf";
    const rotated = "pw-rotated-5d1e7b3a";
    const secret = rotatingSecret(arn, JSON.stringify({ username: USERNAME, token: PASSWORD }));
    try {
      await getSecret(arn);
      server.setPassword(rotated);
      secret.rotate(JSON.stringify({ username: USERNAME, token: rotated }));

      // Act
      const error = await thrown(readValues(repo, await getSecret(arn), TO_EAST));
      const retried = await readValues(repo, await getSecret(arn), TO_EAST);

      // Assess
      expect(error).toBeInstanceOf(GitAuthError);
      expect(retried.head).toBe(await server.head());
      expect(secret.reads()).toBe(2);
    } finally {
      secret.restore();
    }
  });

  it("reports a server that does not answer as GitUnreachable", async () => {
    // Prepare
    const gone = await startGitServer({ username: USERNAME, password: PASSWORD, files: files() });
    await gone.stop();

    // Act
    const error = await thrown(
      commitRetarget({ ...repo, url: gone.url }, AUTH, TO_EAST, MESSAGE, { maxAttempts: 1 }),
    );

    // Assess
    expect(error).toBeInstanceOf(GitUnreachable);
    expect(error.message).toContain(gone.url);
    expect(error.message).toContain("ECONNREFUSED");
  });

  it("reports a failing server (HTTP 503) as GitUnreachable with its text", async () => {
    // Prepare
    const failing = createServer((req, res) => {
      req.resume();
      res.writeHead(503, { "Content-Type": "text/plain" });
      res.end("down for maintenance\n");
    });
    await new Promise<void>((resolve) => failing.listen(0, "127.0.0.1", resolve));
    const { port } = failing.address() as AddressInfo;

    try {
      // Act
      const error = await thrown(
        readValues({ ...repo, url: `http://127.0.0.1:${port}/platform.git` }, AUTH, TO_EAST),
      );

      // Assess
      expect(error).toBeInstanceOf(GitUnreachable);
      expect(error.message).toContain("answered HTTP 503 while cloning: down for maintenance");
    } finally {
      failing.closeAllConnections();
      await new Promise((resolve) => failing.close(resolve));
    }
  });

  it("reports an unknown repository as ConfigError", async () => {
    // Act
    const error = await thrown(
      readValues({ ...repo, url: server.url.replace("platform.git", "other.git") }, AUTH, TO_EAST),
    );

    // Assess
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toContain("HTTP 404");
  });

  it.each([
    ["the file itself", "linked.yaml", "linked.yaml"],
    ["a directory on its path", "envs/values.yaml", "envs"],
  ])(
    "refuses a retarget file that is a symlink (%s) with GitEditError, pushing nothing",
    async (_what, file, link) => {
      // Prepare: links committed with the git CLI (mode 120000), as a user's repository has them.
      const work = join(tmpdir(), `gf-symlink-${process.pid}-${Date.now()}`);
      const git = (...args: string[]) => run("git", ["-C", work, ...args]);
      await run("git", ["clone", "-q", server.repoDir, work]);
      try {
        await symlink("values.yaml", join(work, "linked.yaml"));
        await symlink(".", join(work, "envs"));
        await git("add", "linked.yaml", "envs");
        await git("-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "x");
        await git("push", "-q", "origin", "HEAD:main");
      } finally {
        await rm(work, { recursive: true, force: true });
      }
      const before = await server.head();
      const pushes = server.stats().pushes;

      // Act
      const error = await thrown(
        commitRetarget(
          repo,
          AUTH,
          [{ file, path: "global.activeRegion", value: "us-east-2" }],
          MESSAGE,
          {
            maxAttempts: 1,
          },
        ),
      );

      // Assess
      expect(error).toBeInstanceOf(GitEditError);
      expect(error.message).toContain(
        `${file}: ${link} is a symbolic link on main (commit ${before.slice(0, 12)})`,
      );
      expect(error.message).toContain("nothing was pushed");
      expect(await server.head()).toBe(before);
      expect(server.stats().pushes).toBe(pushes);
      expect(await server.readFile("values.yaml")).toBe(VALUES);
    },
  );

  it("reports a missing branch as GitEditError", async () => {
    // Act
    const error = await thrown(
      commitRetarget({ ...repo, branch: "release" }, AUTH, TO_EAST, MESSAGE, { maxAttempts: 1 }),
    );

    // Assess
    expect(error).toBeInstanceOf(GitEditError);
    expect(error.message).toContain("branch release does not exist");
  });

  it.each([
    {
      edit: { file: "missing.yaml", path: "global.activeRegion", value: "us-east-2" },
      says: "missing.yaml does not exist on main",
    },
    {
      edit: { file: "values.yaml", path: "global.activeRegion.name", value: "us-east-2" },
      says: 'values.yaml: cannot set global.activeRegion.name: global.activeRegion is the string "us-west-2", not a map',
    },
    {
      edit: { file: "values.yaml", path: "global.failover.target", value: "us-east-2" },
      says: "values.yaml: cannot set global.failover.target: global.failover is missing, not a map",
    },
    {
      edit: { file: "values.yaml", path: "global.regions", value: "us-east-2" },
      says: "values.yaml: global.regions is a list; an edit may only replace a single value",
    },
    {
      edit: { file: "broken.yaml", path: "global.activeRegion", value: "us-east-2" },
      says: "broken.yaml:3:1 is not valid YAML",
    },
  ])("refuses $edit.file $edit.path with GitEditError", async ({ edit, says }) => {
    // Act
    const error = await thrown(commitRetarget(repo, AUTH, [edit], MESSAGE, { maxAttempts: 1 }));

    // Assess
    expect(error).toBeInstanceOf(GitEditError);
    expect(error.message).toContain(says);
    expect(await server.log()).toHaveLength(1);
  });
});
