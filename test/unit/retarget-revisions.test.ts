/**
 * judgeRevisions against a real Git server (git http-backend): which revisions Argo CD may report
 * instead of the retarget commit, read from Git at that revision through isomorphic-git.
 */
import { execFile, execFileSync } from "node:child_process";
import { rm } from "node:fs/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RevisionJudgement } from "../../functions/lib/argocd.ts";
import {
  commitRetarget,
  type GitAuth,
  type GitRepo,
  judgeRevisions,
  type RenderedEdit,
  type RetargetLineage,
  revisionRepoDir,
} from "../../functions/lib/gitops.ts";
import { type GitServer, startGitServer } from "../../sandbox/git.ts";

const run = promisify(execFile);
const AUTH: GitAuth = { username: "gitops-bot", token: "pw-2c9e41d7a0b3f865" };
/** What AwaitArgoSync judges with (git.readCredentialsSecretArn): it may fetch, never push. */
const READER: GitAuth = { username: "gitops-read", token: "pw-read-5b0e7c2a9d14" };
const reader = { username: READER.username ?? "", password: READER.token };

const values = (east: boolean, west: boolean) =>
  `# Which regions serve.\nregions:\n  us-west-2:\n    active: ${west}\n  us-east-2:\n    active: ${east} # failover flips this\n`;

/** The two-phase retarget edits for us-east-2 (the demote of us-west-2 comes later). */
const EDITS: RenderedEdit[] = [
  { file: "values.yaml", path: "regions.us-east-2.active", value: true },
];

/** `count` image bumps on top of `parent` on main, in one git fast-import; returns the new head. */
function pile(repoDir: string, parent: string, count: number): string {
  const data = (text: string) => `data ${Buffer.byteLength(text)}\n${text}\n`;
  let stream = "";
  for (let i = 1; i <= count; i++) {
    stream += `commit refs/heads/main\ncommitter ci <ci@example.com> ${1_700_000_000 + i} +0000\n`;
    stream += data(`bump ${i}`);
    if (i === 1) stream += `from ${parent}\n`;
    stream += `M 100644 inline apps/api.yaml\n${data(`image: api:1.0.${i}\n`)}\n`;
  }
  const git = (args: string[], input?: string) =>
    execFileSync("git", ["--git-dir", repoDir, ...args], { input })
      .toString()
      .trim();
  git(["fast-import", "--quiet"], stream);
  return git(["rev-parse", "refs/heads/main"]);
}

let server: GitServer;
let repo: GitRepo;
/** seed -> retarget -> image bump (ok) -> demote of the source (ok) -> undo -> docs (on the undo). */
const sha: Record<"seed" | "other" | "retarget" | "bump" | "demote" | "undo" | "docs", string> = {
  seed: "",
  other: "",
  retarget: "",
  bump: "",
  demote: "",
  undo: "",
  docs: "",
};
let lineage: RetargetLineage;

beforeAll(async () => {
  server = await startGitServer({
    username: AUTH.username ?? "",
    password: AUTH.token,
    reader,
    files: { "values.yaml": values(false, true), "apps/api.yaml": "image: api:1.0.0\n" },
  });
  repo = { url: server.url, branch: "main", author: { name: "t", email: "t@example.com" } };
  urls.push(server.url);
  sha.seed = await server.head();
  sha.other = await server.commitDirect({ "NOTES.md": "before the failover\n" }, "docs: notes");
  sha.retarget = await server.commitDirect(
    { "values.yaml": values(true, true) },
    "failover(shop): make us-east-2 active",
  );
  sha.bump = await server.commitDirect(
    { "apps/api.yaml": "image: api:1.0.1\n" },
    "build: api 1.0.1",
  );
  sha.demote = await server.commitDirect(
    { "values.yaml": values(true, false) },
    "failover(shop): make us-west-2 passive",
  );
  sha.undo = await server.commitDirect(
    { "values.yaml": values(false, true) },
    "chore: sync values from staging",
  );
  sha.docs = await server.commitDirect({ "NOTES.md": "after\n" }, "docs: after");
  lineage = { sha: sha.retarget, target: "us-east-2", edits: EDITS, ancestors: [sha.other] };
});

/** Every Git server's URL: the judge keeps a repository in /tmp for each. */
const urls: string[] = [];

afterAll(async () => {
  await server.stop();
  for (const url of urls)
    await rm(revisionRepoDir({ url, branch: "main" }), { recursive: true, force: true });
});

describe("judgeRevisions", () => {
  it("accepts descendants that keep the target active, two-phase demote included", async () => {
    // Act
    const judged = await judgeRevisions(repo, READER, lineage, [
      sha.bump,
      sha.demote.toUpperCase(),
    ]);

    // Assess
    expect(Object.fromEntries(judged)).toEqual({
      [sha.bump]: { status: "accepted" },
      [sha.demote]: { status: "accepted" },
    });
  });

  it("fails a descendant that undoes the retarget, naming the commit that did it, not the newest", async () => {
    // Act
    const judged = await judgeRevisions(repo, READER, lineage, [sha.docs, sha.undo]);

    // Assess
    for (const at of [sha.docs, sha.undo]) {
      const verdict = judged.get(at) as Extract<RevisionJudgement, { status: "failed" }>;
      expect(verdict.status).toBe("failed");
      expect(verdict.error.name).toBe("RetargetUndone");
      expect(verdict.error.message).toContain(
        `commit ${sha.undo.slice(0, 12)} ("chore: sync values from staging" by sandbox <sandbox@localhost>) on top of the retarget commit ${sha.retarget.slice(0, 12)} undoes it: at ${at.slice(0, 12)}`,
      );
      expect(verdict.error.message).toContain(
        "values.yaml regions.us-east-2.active is false, not true, so Git no longer makes us-east-2 active",
      );
    }
  });

  it("keeps older commits and commits not on the branch pending, with the reason", async () => {
    // Act
    const judged = await judgeRevisions(repo, READER, lineage, [
      sha.seed,
      sha.other,
      "0123456789abcdef0123456789abcdef01234567",
    ]);

    // Assess
    expect(Object.fromEntries(judged)).toEqual({
      [sha.seed]: {
        status: "pending",
        reason: `${sha.seed.slice(0, 7)} is older than the retarget commit ${sha.retarget.slice(0, 7)}`,
      },
      [sha.other]: {
        status: "pending",
        reason: `${sha.other.slice(0, 7)} is older than the retarget commit ${sha.retarget.slice(0, 7)}`,
      },
      "0123456789abcdef0123456789abcdef01234567": {
        status: "pending",
        reason: "0123456789ab is not among the newest 7 commits of main",
      },
    });
  });

  it("answers a revision judged before from its cache, without Git (a rotated token is not even noticed)", async () => {
    // Prepare
    await judgeRevisions(repo, READER, lineage, [sha.bump]);

    // Act
    const judged = await judgeRevisions(repo, { ...READER, token: "wrong" }, lineage, [sha.bump]);

    // Assess
    expect(judged.get(sha.bump)).toEqual({ status: "accepted" });
    // a revision never judged needs Git, which refuses the token: that one fails (the token
    // will not heal before the deadline), the verdict reached before stands
    const unknown = "0123456789abcdef0123456789abcdef01234567";
    const refused = await judgeRevisions(repo, { ...READER, token: "wrong" }, lineage, [
      sha.bump,
      unknown,
    ]);
    expect(refused.get(sha.bump)).toEqual({ status: "accepted" });
    expect(refused.get(unknown)).toMatchObject({
      status: "failed",
      error: { name: "GitAuthError" },
    });
  });

  it("leaves a new revision pending while Git does not answer, keeping the verdicts reached before", async () => {
    // Prepare: a verdict reached while Git answered, then the same repository unreachable
    await judgeRevisions(repo, READER, lineage, [sha.bump]);
    const gone = await startGitServer({
      username: AUTH.username ?? "",
      password: AUTH.token,
      files: { "values.yaml": values(false, true) },
    });
    await gone.stop();
    const unknown = "fedcba9876543210fedcba9876543210fedcba98";

    // Act: the cache is per repository URL, so ask the stopped server about a new revision
    const judged = await judgeRevisions({ ...repo, url: gone.url }, READER, lineage, [unknown]);
    const cached = await judgeRevisions(repo, { ...READER, token: "wrong" }, lineage, [sha.bump]);

    // Assess
    expect(judged.get(unknown)).toMatchObject({
      status: "pending",
      reason: expect.stringMatching(/^Git could not be read to judge it: /),
    });
    expect(cached.get(sha.bump)).toEqual({ status: "accepted" });
  });

  it("fails a commit on top that leaves the values file unreadable (not YAML): the retarget is gone", async () => {
    // Prepare
    const broken = await startGitServer({
      username: AUTH.username ?? "",
      password: AUTH.token,
      files: { "values.yaml": values(false, true) },
    });
    urls.push(broken.url);
    const brokenRepo = { ...repo, url: broken.url };
    const retarget = await broken.commitDirect({ "values.yaml": values(true, true) }, "retarget");
    const garbled = await broken.commitDirect(
      { "values.yaml": "regions: [unclosed\n" },
      "chore: bad merge",
    );

    // Act
    const judged = await judgeRevisions(
      brokenRepo,
      AUTH,
      { sha: retarget, target: "us-east-2", edits: EDITS, ancestors: [] },
      [garbled],
    );
    await broken.stop();

    // Assess
    expect(judged.get(garbled)).toMatchObject({
      status: "failed",
      error: {
        name: "RetargetUndone",
        message: expect.stringContaining(
          "which Argo CD deploys, values.yaml:2:1 is not valid YAML: ",
        ),
      },
    });
  });

  it("fetches deeper once when the retarget commit is buried under more than 20 commits, and no deeper than 100", async () => {
    // Prepare
    const busy = await startGitServer({
      username: AUTH.username ?? "",
      password: AUTH.token,
      files: { "values.yaml": values(false, true) },
    });
    urls.push(busy.url);
    try {
      const parent = await busy.head();
      const retarget = await busy.commitDirect({ "values.yaml": values(true, true) }, "retarget");
      const head = pile(busy.repoDir, retarget, 21);
      const busyLineage = { ...lineage, sha: retarget, ancestors: [parent] };

      // Act
      const judged = await judgeRevisions({ ...repo, url: busy.url }, AUTH, busyLineage, [head]);
      const buried = pile(busy.repoDir, head, 80);
      const tooDeep = await judgeRevisions({ ...repo, url: busy.url }, AUTH, busyLineage, [buried]);

      // Assess
      expect(judged.get(head)).toEqual({ status: "accepted" });
      expect(tooDeep.get(buried)).toMatchObject({
        status: "failed",
        error: {
          name: "RetargetCommitLost",
          message: expect.stringContaining("among the newest 100 commits"),
        },
      });
    } finally {
      await busy.stop();
    }
  });

  it("fails with RetargetCommitLost once a force-push dropped the retarget commit", async () => {
    // Prepare: a second repository whose branch is reset under the retarget and pushed on
    const other = await startGitServer({
      username: AUTH.username ?? "",
      password: AUTH.token,
      files: { "values.yaml": values(false, true) },
    });
    urls.push(other.url);
    try {
      const parent = await other.head();
      const retarget = await other.commitDirect({ "values.yaml": values(true, true) }, "retarget");
      await run("git", ["--git-dir", other.repoDir, "update-ref", "refs/heads/main", parent]);
      const rewritten = await other.commitDirect({ "NOTES.md": "rewritten\n" }, "rewrite");
      const otherRepo = { ...repo, url: other.url };

      // Act
      const judged = await judgeRevisions(
        otherRepo,
        AUTH,
        { ...lineage, sha: retarget, ancestors: [parent] },
        [rewritten],
      );

      // Assess
      const verdict = judged.get(rewritten) as Extract<RevisionJudgement, { status: "failed" }>;
      expect(verdict.error.name).toBe("RetargetCommitLost");
      expect(verdict.error.message).toContain(
        `main no longer contains the retarget commit ${retarget.slice(0, 12)} among the newest 2 commits from its head ${rewritten.slice(0, 12)}, while Argo CD reports ${rewritten.slice(0, 12)}`,
      );
    } finally {
      await other.stop();
    }
  });

  it("refuses to demote the source once a commit on top made the target passive again, committing nothing", async () => {
    // Prepare: the branch head (docs, on top of undo) has us-east-2 passive again
    const head = await server.head();

    // Act
    const attempt = commitRetarget(
      repo,
      AUTH,
      [{ file: "values.yaml", path: "regions.us-west-2.active", value: false }],
      { subject: "failover(shop): make us-west-2 passive", body: "", trailers: {} },
      {
        maxAttempts: 1,
        plannedHead: sha.retarget,
        requires: { region: "us-east-2", edits: EDITS },
      },
    );

    // Assess
    await expect(attempt).rejects.toMatchObject({
      name: "RetargetUndone",
      message: expect.stringContaining(
        `at the head of main (${head.slice(0, 12)}) values.yaml regions.us-east-2.active is false, not true: a commit pushed since the retarget made us-east-2 passive again; nothing was committed`,
      ),
    });
    expect(await server.head()).toBe(head);
  });

  it("judges with read-only credentials, which the server refuses to push with", async () => {
    // Prepare
    const head = await server.head();

    // Act
    const judged = await judgeRevisions(repo, READER, lineage, [sha.demote]);
    const push = commitRetarget(
      repo,
      READER,
      [{ file: "values.yaml", path: "regions.us-east-2.active", value: true }],
      { subject: "x", body: "", trailers: {} },
      { maxAttempts: 1 },
    );

    // Assess
    expect(judged.get(sha.demote)).toEqual({ status: "accepted" });
    await expect(push).rejects.toMatchObject({ name: "GitAuthError" });
    expect(await server.head()).toBe(head);
  });
});
