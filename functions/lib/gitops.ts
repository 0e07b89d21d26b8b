/**
 * Git from Lambda (no git binary): a shallow clone into a fresh directory under /tmp, YAML
 * edits that change only the edited values' bytes, one commit with trailers, and a push that
 * is the failover's compare-and-swap: when someone else moved the branch first, the edits
 * are re-applied on the new head (or found already there) and pushed again, a bounded number
 * of times. Each call starts from a fresh clone so no state from an earlier invocation (or an
 * earlier, failed push) can leak into a commit.
 *
 * Git is global while each orchestrator region has its own lock table, so the branch history is
 * also what orders failovers across regions: a failover commit carries its execution's ARN in a
 * `Failover-Execution:` trailer, Plan reads the newest one to hold back an automatic failover
 * inside the cooldown, and a failover commit by another execution that lands after this one
 * planned stops it with ConcurrentFailover. Both look back at most FAILOVER_LOOKBACK_COMMITS.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { mkdir, readdir, rm, stat, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import {
  addRemote,
  clone,
  fetch,
  type HttpClient,
  init as initRepo,
  log,
  push,
  type ReadCommitResult,
  readBlob,
  readCommit,
  readTree,
  resolveRef,
  writeBlob,
  writeCommit,
  writeRef,
  writeTree,
} from "isomorphic-git";
import http from "isomorphic-git/http/node";
import {
  Document,
  isMap,
  isScalar,
  isSeq,
  type Pair,
  parseDocument,
  Scalar,
  type YAMLMap,
} from "yaml";
import type { RevisionJudgement } from "./argocd.ts";
import type { RetargetEdit } from "./config.ts";
import {
  ConcurrentFailover,
  ConfigError,
  describe,
  type FailoverError,
  GitAuthError,
  GitEditError,
  GitPushConflict,
  GitUnreachable,
  isFailoverError,
  RetargetCommitLost,
  RetargetUndone,
  UnexpectedError,
} from "./errors.ts";
import { redact, registerSecret } from "./redact.ts";
import { processAlive, scratchDirs } from "./scratch-dirs.ts";
import { invalidateSecretToken } from "./secrets.ts";

export interface GitRepo {
  url: string;
  branch: string;
  author: { name: string; email: string };
}

/** Basic auth: `username` (default `x-access-token`) with the token as the password. */
export interface GitAuth {
  token: string;
  username?: string;
}

/** An edit already rendered for a region (`{{targetRegion}}` substituted). */
export type RenderedEdit = RetargetEdit;

export interface ValueChange {
  file: string;
  path: string;
  from: unknown;
  to: unknown;
}

export interface RetargetResult {
  /** True when every edit was already at its value: no commit, no push. */
  skipped: boolean;
  /** The commit that carries the edits (ours, or the branch head when skipped). */
  sha: string;
  /** The branch head our commit was made on (equal to `sha` when skipped). */
  previousSha: string;
  /** Pushes tried. */
  attempts: number;
  changes: ValueChange[];
}

export interface CommitMessage {
  subject: string;
  /** The body, or a function of the changes the commit makes (their old and new values). */
  body: string | ((changes: ValueChange[]) => string);
  trailers: Record<string, string>;
}

/** A commit the orchestrator made: its message has a `Failover-Execution:` trailer. */
export interface FailoverCommit {
  sha: string;
  /** The execution's ARN (`Failover-Execution:`). */
  execution: string;
  /** The region it made active (`Failover-Target:`), when the commit names it. */
  target?: string;
  /** Committer time, ISO 8601. */
  committedAt: string;
}

/**
 * How many commits (from the branch head) are searched for failover commits: Plan's cooldown
 * and the concurrent-failover check fetch at most this much history. A failover commit buried
 * under more commits than this is not seen (on a branch that busy, the cooldown is moot).
 */
export const FAILOVER_LOOKBACK_COMMITS = 20;

/** Per HTTP request (discovery, pack download, push): an unresponsive server must fail the step, not hang it. */
const HTTP_TIMEOUT_MS = 30_000;

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "ABORT_ERR",
]);

const boundedHttp: HttpClient = {
  request: (request) =>
    http.request({ ...request, signal: request.signal ?? AbortSignal.timeout(HTTP_TIMEOUT_MS) }),
};

interface Clone {
  dir: string;
  repo: GitRepo;
  /** The URL as it may be printed: never with credentials. */
  where: string;
  headers: Record<string, string>;
  cache: object;
  /** The HTTP client, when not boundedHttp (the revision judge's ends at its deadline). */
  http?: HttpClient;
}

/**
 * Reads the values the edits would set, at the branch head, so Plan can tell which region is
 * active and whether the commit is still needed. An absent key reads as `undefined`. With
 * `lookback`, also the newest failover commit among that many commits from the head.
 */
export async function readValues(
  repo: GitRepo,
  auth: GitAuth,
  edits: RenderedEdit[],
  options: { lookback?: number; undone?: RenderedEdit[] } = {},
): Promise<{
  head: string;
  values: { file: string; path: string; value: unknown }[];
  lastFailover?: FailoverCommit;
  undone?: UndoneValues;
}> {
  const lookback = options.lookback ?? 0;
  return withClone(repo, auth, lookback, async (c) => {
    const head = await remoteHead(c);
    const values = await valuesAt(c, head, edits);
    const [lastFailover] = lookback ? await failoverCommits(c, head, lookback) : [];
    const undone =
      options.undone?.length && lastFailover
        ? await undoneValues(c, head, lookback, lastFailover.execution, options.undone)
        : undefined;
    return {
      head,
      values,
      ...(lastFailover ? { lastFailover } : {}),
      ...(undone ? { undone } : {}),
    };
  });
}

/** The values of `edits` at `commit` (an absent key reads as `undefined`). */
async function valuesAt(
  c: Clone,
  commit: string,
  edits: RenderedEdit[],
): Promise<{ file: string; path: string; value: unknown }[]> {
  const docs = new Map<string, Document.Parsed>();
  const values: { file: string; path: string; value: unknown }[] = [];
  for (const edit of edits) {
    const file = repoPath(edit.file);
    let doc = docs.get(file);
    if (!doc) {
      doc = parseYaml(await readText(c, commit, file), file);
      docs.set(file, doc);
    }
    const found = locate(doc, edit.path);
    const value = found.kind === "found" ? plainValue(found.pair.value, doc) : undefined;
    values.push({ file: edit.file, path: edit.path, value });
  }
  return values;
}

/**
 * Values around the newest failover (a failback undoes it): at its first commit (the one that
 * activated its target) and just before it (the Git baseline it changed).
 */
export interface UndoneValues {
  /** The failover's execution (its `Failover-Execution:` trailer). */
  execution: string;
  /** The failover's first commit. */
  commit: string;
  /** Its parent, or null when it is beyond the history fetched (then `before` is empty). */
  parent: string | null;
  at: { file: string; path: string; value: unknown }[];
  before: { file: string; path: string; value: unknown }[];
}

/** The values of `edits` at the first commit of `execution` and at its parent, within `lookback`. */
async function undoneValues(
  c: Clone,
  head: string,
  lookback: number,
  execution: string,
  edits: RenderedEdit[],
): Promise<UndoneValues | undefined> {
  let entries: ReadCommitResult[];
  try {
    entries = await log({ fs, dir: c.dir, ref: head, depth: lookback, cache: c.cache });
  } catch (e) {
    throw gitError(e, c, `reading the history of ${c.repo.branch}`);
  }
  const first = entries.findLast(
    (e) => trailersOf(e.commit.message)["Failover-Execution"] === execution,
  );
  if (!first) return undefined;
  const parent = first.commit.parent[0];
  const known = !!parent && entries.some((e) => e.oid === parent);
  try {
    const at = await valuesAt(c, first.oid, edits);
    if (!parent || !known) return { execution, commit: first.oid, parent: null, at, before: [] };
    return { execution, commit: first.oid, parent, at, before: await valuesAt(c, parent, edits) };
  } catch (e) {
    // A values file absent there (added or moved since): nothing to restore from; the failback
    // itself goes on (its own edits are read at the head, where a missing file does stop it).
    if (e instanceof GitEditError) return undefined;
    throw e;
  }
}

/**
 * Commits the edits to the branch and pushes, retrying on a concurrent change (fetch, re-apply
 * on the new head, push) up to `maxAttempts` pushes. Idempotent: when the branch already has
 * every value it returns `skipped: true` without committing, so re-runs and a second
 * concurrent execution never add a duplicate commit.
 *
 * Commits that landed since `plannedHead` (the head Plan read; else the clone's head) and after
 * each rejected push are checked first: a failover commit of another execution (its
 * `Failover-Execution:` trailer differs from `message`'s) stops it with ConcurrentFailover; one
 * of this execution's own (a retried invocation whose push did land) is simply built upon.
 *
 * `requires`: edits that must already hold on the commit built upon (the target's retarget
 * values, for the commit that makes the old region passive): a commit pushed on top that undid
 * them stops it with RetargetUndone, nothing committed.
 */
export async function commitRetarget(
  repo: GitRepo,
  auth: GitAuth,
  edits: RenderedEdit[],
  message: CommitMessage,
  options: {
    maxAttempts: number;
    plannedHead?: string;
    requires?: { region: string; edits: RenderedEdit[] };
  },
): Promise<RetargetResult> {
  const unique = uniqueEdits(edits);
  const own = message.trailers["Failover-Execution"];
  return withClone(repo, auth, 1, async (c) => {
    let base = await remoteHead(c);
    // The clone holds only its head: fetch the commits since the plan to look at them.
    if (options.plannedHead && options.plannedHead !== base) base = await refresh(c);
    let checked = options.plannedHead ?? base;
    let attempts = 0;
    let rejection: unknown;
    for (;;) {
      await refuseConcurrentFailover(c, base, checked, own);
      checked = base;
      if (options.requires) await assertStillActive(c, base, options.requires);
      const { tree, changes } = await applyEdits(c, base, unique);
      if (!tree) return { skipped: true, sha: base, previousSha: base, attempts, changes };
      if (attempts >= options.maxAttempts) {
        throw new GitPushConflict(
          `${c.where}: ${repo.branch} moved under every one of ${attempts} push attempt(s); another writer keeps committing`,
          ["the step is retried; if it persists, pause the other automation writing to the branch"],
          { cause: rejection },
        );
      }
      attempts++;
      const sha = await commitTree(c, tree, base, commitText(message, changes));
      const outcome = await pushCommit(c, sha, base);
      if (!outcome) return { skipped: false, sha, previousSha: base, attempts, changes };
      base = outcome.head;
      rejection = outcome.rejection;
    }
  });
}

/** The retarget commit whose descendants Argo CD may report instead of it (see judgeRevisions). */
export interface RetargetLineage {
  /** The retarget commit. */
  sha: string;
  /** The region it makes active. */
  target: string;
  /** The topology's retarget edits for `target`: what "still makes the target active" means. */
  edits: RenderedEdit[];
  /** What the edits say, for errors, when not that `target` is active (`makes us-west-2 passive`). */
  claim?: string;
  /** Commits known to be older than it (its parent, the head Plan read): judged without Git. */
  ancestors: string[];
}

/**
 * How many commits from the branch head the revision judge fetches and reads: first
 * FAILOVER_LOOKBACK_COMMITS, and this many only when the retarget commit is not among those.
 */
export const REVISION_LOOKBACK_COMMITS = 100;

/**
 * Definitive verdicts (a commit's content and ancestry never change), per repository, retarget
 * commit and edits: a warm function judges each revision Argo CD reports once.
 */
const verdicts = new Map<string, RevisionJudgement>();
const MAX_VERDICTS = 1_000;

/**
 * Judges revisions Argo CD reports for target apps instead of the retarget commit. Argo CD
 * follows the branch head, so when an image updater or a CI job pushes on top of the retarget
 * commit, apps are Synced at that newer commit and never at the retarget commit itself:
 *  - a descendant whose retarget edits (read at that revision) all still hold: accepted;
 *  - a descendant where they do not: failed with RetargetUndone, naming the commit that undid it;
 *  - the branch no longer holds the retarget commit (force-pushed away): RetargetCommitLost;
 *  - an older commit, or one not on the branch's recent history (another repository's, for a
 *    multi-source app): pending, with the reason.
 * Git work is bounded: one shallow fetch into a repository kept in /tmp across warm invocations
 * (incremental after the first), deepened once to REVISION_LOOKBACK_COMMITS only when the
 * retarget commit is not within the first FAILOVER_LOOKBACK_COMMITS; known ancestors and cached
 * verdicts need no Git at all.
 */
export async function judgeRevisions(
  repo: GitRepo,
  auth: GitAuth,
  lineage: RetargetLineage,
  revisions: string[],
  options: { timeoutMs?: number } = {},
): Promise<Map<string, RevisionJudgement>> {
  const result = new Map<string, RevisionJudgement>();
  const scope = `${repo.url}\0${repo.branch}\0${lineage.sha}\0${JSON.stringify(lineage.edits)}\0`;
  const older = new Set(lineage.ancestors.map((a) => a.toLowerCase()));
  const todo: string[] = [];
  for (const given of revisions) {
    const revision = given.toLowerCase();
    const known = older.has(revision)
      ? behind(revision, lineage.sha)
      : verdicts.get(scope + revision);
    if (known) result.set(revision, known);
    else todo.push(revision);
  }
  if (!todo.length) return result;
  const deadline = Date.now() + (options.timeoutMs ?? 2 * HTTP_TIMEOUT_MS);
  try {
    await withRevisionRepo(repo, auth, deadline, async (c) => {
      let head = await fetchBranch(c, FAILOVER_LOOKBACK_COMMITS, false);
      let history = await commitGraph(c, head);
      if (!history.has(lineage.sha)) {
        head = await fetchBranch(c, REVISION_LOOKBACK_COMMITS - FAILOVER_LOOKBACK_COMMITS, true);
        history = await commitGraph(c, head);
      }
      for (const revision of todo) {
        const verdict = await judgeOne(c, lineage, history, head, revision);
        result.set(revision, verdict.judgement);
        if (verdict.final) {
          if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
          verdicts.set(scope + revision, verdict.judgement);
        }
      }
    });
  } catch (e) {
    // The verdicts already reached stand. A refused token will not heal before the deadline:
    // it fails now; anything else (Git slow or down) leaves the new revisions pending.
    const judgement: RevisionJudgement =
      e instanceof GitAuthError
        ? { status: "failed", error: e.toData() }
        : { status: "pending", reason: `Git could not be read to judge it: ${describe(e)}` };
    for (const revision of todo) if (!result.has(revision)) result.set(revision, judgement);
  }
  return result;
}

function behind(revision: string, retarget: string): RevisionJudgement {
  return {
    status: "pending",
    reason: `${revision.slice(0, 7)} is older than the retarget commit ${retarget.slice(0, 7)}`,
  };
}

/** The commits read from the branch head, newest first, with their parents. */
type CommitGraph = Map<string, ReadCommitResult>;

async function commitGraph(c: Clone, head: string): Promise<CommitGraph> {
  try {
    const entries = await log({
      fs,
      dir: c.dir,
      ref: head,
      depth: REVISION_LOOKBACK_COMMITS,
      cache: c.cache,
    });
    return new Map(entries.map((e) => [e.oid, e]));
  } catch (e) {
    throw gitError(e, c, `reading the history of ${c.repo.branch}`);
  }
}

/** Does `oid` have `ancestor` among its ancestors, within the commits read? */
function descends(graph: CommitGraph, oid: string, ancestor: string): boolean {
  const queue = [...(graph.get(oid)?.commit.parent ?? [])];
  const seen = new Set<string>();
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    if (next === ancestor) return true;
    if (seen.has(next)) continue;
    seen.add(next);
    queue.push(...(graph.get(next)?.commit.parent ?? []));
  }
  return false;
}

async function judgeOne(
  c: Clone,
  lineage: RetargetLineage,
  graph: CommitGraph,
  head: string,
  revision: string,
): Promise<{ judgement: RevisionJudgement; final: boolean }> {
  const short = (sha: string) => sha.slice(0, 12);
  const branch = c.repo.branch;
  if (!graph.has(lineage.sha)) {
    const error = new RetargetCommitLost(
      `${c.where}: ${branch} no longer contains the retarget commit ${short(lineage.sha)} among the newest ${graph.size} commits from its head ${short(head)}, while Argo CD reports ${short(revision)}: a force-push dropped it (or more than ${REVISION_LOOKBACK_COMMITS} commits landed on top)`,
      [
        `check ${branch}'s history on the Git host (its audit log or reflog), put the retarget back or re-run the failover, and stop whatever rewrote the branch`,
      ],
    );
    return { judgement: { status: "failed", error: error.toData() }, final: false };
  }
  if (!graph.has(revision)) {
    const reason = `${short(revision)} is not among the newest ${graph.size} commits of ${branch}`;
    return { judgement: { status: "pending", reason }, final: false };
  }
  if (!descends(graph, revision, lineage.sha))
    return { judgement: behind(revision, lineage.sha), final: true };
  const broken = await brokenEdits(c, revision, lineage.edits);
  if (!broken.length) return { judgement: { status: "accepted" }, final: true };
  // The oldest commit of the unbroken run ending at `revision` (first parents back to the
  // retarget commit) is the one that undid it.
  let culprit = revision;
  for (;;) {
    const parent = graph.get(culprit)?.commit.parent[0];
    if (!parent || parent === lineage.sha || !descends(graph, parent, lineage.sha)) break;
    if (!(await brokenEdits(c, parent, lineage.edits)).length) break;
    culprit = parent;
  }
  const commit = graph.get(culprit)?.commit;
  const subject = (commit?.message.split("\n")[0] ?? "").slice(0, 120);
  const by = commit ? ` by ${commit.author.name} <${commit.author.email}>` : "";
  const error = new RetargetUndone(
    `commit ${short(culprit)} ("${subject}"${by}) on top of the retarget commit ${short(lineage.sha)} undoes it: at ${short(revision)}, which Argo CD deploys, ${broken.join(", ")}, so Git no longer ${lineage.claim ?? `makes ${lineage.target} active`}`,
    [
      `revert ${short(culprit)} (or ${lineage.claim ? `restore what the failover's commit did: it ${lineage.claim}` : `make ${lineage.target} active again`}) and re-run the failover; whatever pushed it must leave the retarget values alone during a failover`,
    ],
  );
  return { judgement: { status: "failed", error: error.toData() }, final: true };
}

/** The edits that do not hold at `commit`, each as `file path is X, not Y`. */
async function brokenEdits(c: Clone, commit: string, edits: RenderedEdit[]): Promise<string[]> {
  const docs = new Map<string, Document.Parsed>();
  const unreadable = new Set<string>();
  const broken: string[] = [];
  for (const edit of uniqueEdits(edits)) {
    if (unreadable.has(edit.file)) continue;
    let doc = docs.get(edit.file);
    if (!doc) {
      try {
        doc = parseYaml(await readText(c, commit, edit.file), edit.file);
      } catch (e) {
        // Deleted, replaced by a directory or a symlink, or no longer YAML: the retarget is gone.
        if (!(e instanceof GitEditError)) throw e;
        const advice = e.details.length ? `: ${e.details.join("; ")}` : "";
        broken.push(e.message.slice(0, e.message.length - advice.length));
        unreadable.add(edit.file);
        continue;
      }
      docs.set(edit.file, doc);
    }
    const found = locate(doc, edit.path);
    const value = found.kind === "found" ? plainValue(found.pair.value, doc) : undefined;
    if (value !== edit.value)
      broken.push(
        `${edit.file} ${edit.path} is ${value === undefined ? "absent" : JSON.stringify(value)}, not ${JSON.stringify(edit.value)}`,
      );
  }
  return broken;
}

/** Revision repositories are `<tmpdir>/gitops-failover-revisions-<hash of url and branch>`. */
const REVISIONS_PREFIX = "gitops-failover-revisions-";
/** Where judgeRevisions keeps `repo`'s branch in /tmp (a sandbox removes it when it stops). */
export function revisionRepoDir(repo: Pick<GitRepo, "url" | "branch">): string {
  const id = createHash("sha256").update(`${repo.url}\0${repo.branch}`).digest("hex").slice(0, 16);
  return join(tmpdir(), `${REVISIONS_PREFIX}${id}`);
}

/** One judge at a time per repository in this process (the directory is shared). */
const revisionQueues = new Map<string, Promise<unknown>>();

/** A working copy of `repo` in `dir`, with `auth` as Basic credentials registered as secrets. */
function cloneIn(dir: string, repo: GitRepo, auth: GitAuth): Clone {
  registerSecret(auth.token);
  const credentials = Buffer.from(`${auth.username ?? "x-access-token"}:${auth.token}`).toString(
    "base64",
  );
  registerSecret(credentials);
  return {
    dir,
    repo,
    where: printableUrl(repo.url),
    headers: { Authorization: `Basic ${credentials}` },
    cache: {},
  };
}

/**
 * Runs `work` in the repository this process keeps for `repo` in /tmp (created on first use).
 * Any failure removes it, so a half-written fetch never poisons the next invocation.
 */
async function withRevisionRepo<T>(
  repo: GitRepo,
  auth: GitAuth,
  deadline: number,
  work: (c: Clone) => Promise<T>,
): Promise<T> {
  const dir = revisionRepoDir(repo);
  const c: Clone = {
    ...cloneIn(dir, repo, auth),
    http: {
      request: (request) =>
        http.request({
          ...request,
          signal: AbortSignal.timeout(
            Math.max(1, Math.min(HTTP_TIMEOUT_MS, deadline - Date.now())),
          ),
        }),
    },
  };
  const run = (revisionQueues.get(dir) ?? Promise.resolve()).then(async () => {
    try {
      await sweepStaleRevisionRepos(dir);
      if (!fs.existsSync(join(dir, ".git"))) {
        await mkdir(dir, { recursive: true });
        await initRepo({ fs, dir });
      }
      await addRemote({ fs, dir, remote: "origin", url: repo.url, force: true });
      // Marks it in use, for the sweep of other processes and later invocations.
      const now = new Date();
      await utimes(dir, now, now);
      return await work(c);
    } catch (e) {
      // A refused token fetched nothing: the repository kept so far is still good.
      if (e instanceof GitAuthError) invalidateSecretToken(auth.token);
      else await rm(dir, { recursive: true, force: true });
      throw e;
    }
  });
  revisionQueues.set(
    dir,
    run.catch(() => undefined),
  );
  return run;
}

/** RetargetUndone when `required.edits` (what makes `required.region` active) do not hold at `base`. */
async function assertStillActive(
  c: Clone,
  base: string,
  required: { region: string; edits: RenderedEdit[] },
): Promise<void> {
  const broken = await brokenEdits(c, base, required.edits);
  if (!broken.length) return;
  throw new RetargetUndone(
    `${c.where}: at the head of ${c.repo.branch} (${base.slice(0, 12)}) ${broken.join(", ")}: a commit pushed since the retarget made ${required.region} passive again; nothing was committed`,
    [
      `find it with \`git log -p ${base.slice(0, 12)} -- ${[...new Set(required.edits.map((e) => e.file))].join(" ")}\`, make ${required.region} active again (or revert it), then re-run`,
    ],
  );
}

/**
 * Removes the revision repositories of other repositories (or branches) unused for
 * STALE_CLONE_MS: a function keeps one per topology, but a host running many sandboxes would
 * otherwise collect one per Git server. Best effort.
 */
async function sweepStaleRevisionRepos(keep: string, now = Date.now()): Promise<void> {
  let names: string[];
  try {
    names = await readdir(tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    const dir = join(tmpdir(), name);
    if (!name.startsWith(REVISIONS_PREFIX) || dir === keep || revisionQueues.has(dir)) continue;
    try {
      if (now - (await stat(dir)).mtimeMs > STALE_CLONE_MS)
        await rm(dir, { recursive: true, force: true });
    } catch {
      // Gone already, or not ours to remove: leave it.
    }
  }
}

/** Fetches the branch `depth` commits deep (or that much deeper, `relative`); returns its head. */
async function fetchBranch(c: Clone, depth: number, relative: boolean): Promise<string> {
  try {
    await fetch({
      fs,
      http: c.http ?? boundedHttp,
      dir: c.dir,
      remote: "origin",
      ref: c.repo.branch,
      singleBranch: true,
      depth,
      relative,
      tags: false,
      headers: { ...c.headers },
      cache: c.cache,
    });
  } catch (e) {
    throw gitError(e, c, "fetching");
  }
  return remoteHead(c);
}

/** Clone directories are `<tmpdir>/gitops-failover-clone-<pid>-<random>`. */
const CLONE_PREFIX = "gitops-failover-clone-";
const CLONE_NAME = /^gitops-failover-clone-(\d+)-[0-9a-f]+$/;
/**
 * A clone of another live process is swept only once it is older than this: the longest a
 * Lambda invocation can run, so no invocation anywhere can still be using it.
 */
const STALE_CLONE_MS = 15 * 60 * 1000;
/** The clones this process is working in right now (concurrent calls in one process). */
const activeClones = new Set<string>();

/**
 * Clones the branch `depth` commits deep (at least 1) into a fresh directory, runs `work`, removes
 * it. First sweeps the clones earlier invocations left behind (see sweepStaleClones).
 */
async function withClone<T>(
  repo: GitRepo,
  auth: GitAuth,
  depth: number,
  work: (c: Clone) => Promise<T>,
): Promise<T> {
  // Named and marked in use before it exists, so a concurrent sweep in this process never takes it.
  const dir = join(tmpdir(), `${CLONE_PREFIX}${process.pid}-${randomBytes(6).toString("hex")}`);
  activeClones.add(dir);
  const c = cloneIn(dir, repo, auth);
  try {
    await sweepStaleClones();
    await mkdir(dir, { recursive: true });
    try {
      await clone({
        fs,
        http: boundedHttp,
        dir,
        url: repo.url,
        ref: repo.branch,
        singleBranch: true,
        depth: Math.max(1, depth),
        noCheckout: true,
        noTags: true,
        headers: { ...c.headers },
        cache: c.cache,
      });
    } catch (e) {
      throw gitError(e, c, "cloning");
    }
    return await work(c);
  } catch (e) {
    // A rotated token: the next read of the secret must not return the rejected one from cache.
    if (e instanceof GitAuthError) invalidateSecretToken(auth.token);
    throw e;
  } finally {
    activeClones.delete(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Removes clone directories left in /tmp by invocations that never reached their cleanup (a
 * Lambda timeout or crash): Lambda keeps /tmp (512 MB by default) across invocations of a warm
 * environment. A clone is stale when no call of this process is using it and its process is
 * this one (an earlier invocation), is gone, or has held it longer than STALE_CLONE_MS.
 * Best effort: a failure to sweep never fails the clone.
 */
async function sweepStaleClones(now = Date.now()): Promise<string[]> {
  const swept: string[] = [];
  for (const { dir, pid } of await scratchDirs(CLONE_NAME)) {
    if (activeClones.has(dir)) continue;
    try {
      const stale =
        pid === process.pid ||
        !processAlive(pid) ||
        now - (await stat(dir)).mtimeMs > STALE_CLONE_MS;
      if (!stale || activeClones.has(dir)) continue;
      await rm(dir, { recursive: true, force: true });
      swept.push(dir);
    } catch {
      // Gone already (another process swept it) or not ours to remove: leave it.
    }
  }
  return swept;
}

async function remoteHead(c: Clone): Promise<string> {
  try {
    return await resolveRef({ fs, dir: c.dir, ref: `refs/remotes/origin/${c.repo.branch}` });
  } catch (e) {
    throw missingBranch(c, e);
  }
}

/** Fetches the branch again, deep enough to look back at what landed; returns its new head. */
async function refresh(c: Clone): Promise<string> {
  try {
    await fetch({
      fs,
      http: boundedHttp,
      dir: c.dir,
      remote: "origin",
      ref: c.repo.branch,
      singleBranch: true,
      depth: FAILOVER_LOOKBACK_COMMITS,
      tags: false,
      headers: { ...c.headers },
      cache: c.cache,
    });
  } catch (e) {
    throw gitError(e, c, "fetching");
  }
  return remoteHead(c);
}

/** The failover commits among the newest `limit` commits from `head` (above `stop`), newest first. */
async function failoverCommits(
  c: Clone,
  head: string,
  limit: number,
  stop?: string,
): Promise<FailoverCommit[]> {
  let entries: ReadCommitResult[];
  try {
    entries = await log({ fs, dir: c.dir, ref: head, depth: limit, cache: c.cache });
  } catch (e) {
    throw gitError(e, c, `reading the history of ${c.repo.branch}`);
  }
  const stopAt = entries.findIndex((e) => e.oid === stop);
  return (stopAt < 0 ? entries : entries.slice(0, stopAt)).flatMap((e) => {
    const trailers = trailersOf(e.commit.message);
    const execution = trailers["Failover-Execution"];
    if (!execution) return [];
    const target = trailers["Failover-Target"];
    const committedAt = new Date(e.commit.committer.timestamp * 1000).toISOString();
    return [{ sha: e.oid, execution, ...(target ? { target } : {}), committedAt }];
  });
}

/** `Key: value` lines of a message's last paragraph (never its only one: that is the subject). */
function trailersOf(message: string): Record<string, string> {
  const paragraphs = message.trim().split(/\n[ \t]*\n/);
  const last = paragraphs.length > 1 ? (paragraphs.at(-1) ?? "") : "";
  const trailers: Record<string, string> = {};
  for (const line of last.split("\n")) {
    const match = /^([A-Za-z0-9][A-Za-z0-9-]*):[ \t]*(\S.*)$/.exec(line.trim());
    if (match?.[1] && match[2]) trailers[match[1]] = match[2].trim();
  }
  return trailers;
}

/** Stops when a failover commit of another execution landed between `since` and `head`. */
async function refuseConcurrentFailover(
  c: Clone,
  head: string,
  since: string,
  own: string | undefined,
): Promise<void> {
  if (head === since) return;
  const landed = await failoverCommits(c, head, FAILOVER_LOOKBACK_COMMITS, since);
  const theirs = landed.find((f) => f.execution !== own);
  if (!theirs) return;
  throw new ConcurrentFailover(
    `${c.where}: execution ${theirs.execution} committed a failover to ${theirs.target ?? "another region"} on ${c.repo.branch} (${theirs.sha.slice(0, 12)}, ${theirs.committedAt}) after this execution planned; nothing was pushed by this execution`,
    [
      "that execution owns the failover now: follow it (gitops-failover status <its ARN>); start a new failover by hand only if it is still needed once it ends",
    ],
  );
}

/** Pushes `sha`; returns undefined when it landed, or the branch's new head when someone moved it first. */
async function pushCommit(
  c: Clone,
  sha: string,
  base: string,
): Promise<{ head: string; rejection: unknown } | undefined> {
  const branch = c.repo.branch;
  await writeRef({ fs, dir: c.dir, ref: `refs/heads/${branch}`, value: sha, force: true });
  try {
    await push({
      fs,
      http: boundedHttp,
      dir: c.dir,
      remote: "origin",
      ref: branch,
      remoteRef: branch,
      headers: { ...c.headers },
      cache: c.cache,
    });
    return undefined;
  } catch (e) {
    const code = errorCode(e);
    if (code !== "PushRejectedError" && code !== "GitPushError") throw gitError(e, c, "pushing");
    const head = await refresh(c);
    if (head !== base) return { head, rejection: e };
    throw new GitAuthError(
      `${c.where} refused the push to ${branch} although the branch did not move (${errorText(e)})`,
      [
        `a branch protection rule or hook blocks it: allow the token in git.credentialsSecretArn to push to ${branch}`,
      ],
      { cause: e },
    );
  }
}

async function commitTree(
  c: Clone,
  tree: string,
  parent: string,
  message: string,
): Promise<string> {
  const person = {
    name: c.repo.author.name,
    email: c.repo.author.email,
    timestamp: Math.floor(Date.now() / 1000),
    timezoneOffset: 0,
  };
  return writeCommit({
    fs,
    dir: c.dir,
    commit: { message, tree, parent: [parent], author: person, committer: person },
  });
}

/** `subject`, a blank line, `body`, a blank line, then one `Key: value` trailer per line. */
function commitText(message: CommitMessage, changes: ValueChange[]): string {
  const oneLine = (s: string) => s.replace(/\s*[\r\n]+\s*/g, " ").trim();
  const trailers = Object.entries(message.trailers).map(
    ([key, value]) => `${oneLine(key)}: ${oneLine(value)}`,
  );
  const body = typeof message.body === "string" ? message.body : message.body(changes);
  const parts = [oneLine(message.subject), body.trim(), trailers.join("\n")].filter(
    (p) => p.length > 0,
  );
  return `${parts.join("\n\n")}\n`;
}

/**
 * Spells every file one way (`./a//b.yaml` is `a/b.yaml`: the edits of one file are applied
 * together) and drops exact repeats; two different values for one key cannot both be made true.
 */
function uniqueEdits(edits: RenderedEdit[]): RenderedEdit[] {
  const byKey = new Map<string, RenderedEdit>();
  for (const given of edits) {
    const edit = { ...given, file: repoPath(given.file) };
    const key = `${edit.file}\0${edit.path}`;
    const seen = byKey.get(key);
    if (seen && seen.value !== edit.value) {
      throw new GitEditError(
        `edits set ${edit.file} ${edit.path} to both ${JSON.stringify(seen.value)} and ${JSON.stringify(edit.value)}`,
        ["fix git.retarget in the topology so each key is set once"],
      );
    }
    if (!seen) byKey.set(key, edit);
  }
  return [...byKey.values()];
}

/** Applies the edits on top of commit `base`; returns the new root tree, or none when nothing changes. */
async function applyEdits(
  c: Clone,
  base: string,
  edits: RenderedEdit[],
): Promise<{ tree?: string; changes: ValueChange[] }> {
  const files = new Map<string, RenderedEdit[]>();
  for (const edit of edits) files.set(edit.file, [...(files.get(edit.file) ?? []), edit]);
  const changes = new Map<RenderedEdit, ValueChange>();
  let tree = (await readCommit({ fs, dir: c.dir, oid: base, cache: c.cache })).commit.tree;
  let changed = false;
  for (const [file, fileEdits] of files) {
    const before = await readText(c, base, file);
    const after = editYaml(before, file, fileEdits);
    fileEdits.forEach((edit, i) => {
      const change = after.changes[i];
      if (change) changes.set(edit, change);
    });
    if (after.text === before) continue;
    const blob = await writeBlob({ fs, dir: c.dir, blob: Buffer.from(after.text, "utf8") });
    tree = await replaceBlob(c, tree, pathSegments(file), blob);
    changed = true;
  }
  const ordered = edits.flatMap((e) => changes.get(e) ?? []);
  return changed ? { tree, changes: ordered } : { changes: ordered };
}

/** Writes new trees from the file up to the root, keeping every other entry (and the file's mode). */
async function replaceBlob(
  c: Clone,
  treeOid: string,
  segments: string[],
  blob: string,
): Promise<string> {
  const [name, ...rest] = segments;
  const { tree } = await readTree({ fs, dir: c.dir, oid: treeOid, cache: c.cache });
  const entry = tree.find((e) => e.path === name);
  if (!entry)
    throw new UnexpectedError(`tree ${treeOid} lost entry ${name} between reading and writing`);
  const oid = rest.length ? await replaceBlob(c, entry.oid, rest, blob) : blob;
  return writeTree({ fs, dir: c.dir, tree: tree.map((e) => (e === entry ? { ...e, oid } : e)) });
}

function pathSegments(file: string): string[] {
  return file.split("/").filter((s) => s !== "" && s !== ".");
}

/** The one spelling of a path inside the repository: no `./` or `.` segments, `//` or trailing `/`. */
function repoPath(file: string): string {
  return pathSegments(file).join("/");
}

/** Git's file mode of a symbolic link: its blob is the link's target path, not the file's text. */
const SYMLINK_MODE = "120000";

/**
 * Refuses a retarget file that is a symbolic link, or lies under one, in `commit`: the edit
 * would rewrite the link's target path as if it were YAML, or land outside the file named.
 * A missing entry is left for readBlob to report.
 */
async function assertNoSymlink(c: Clone, commit: string, file: string): Promise<void> {
  let oid = (await readCommit({ fs, dir: c.dir, oid: commit, cache: c.cache })).commit.tree;
  const walked: string[] = [];
  for (const name of pathSegments(file)) {
    const { tree } = await readTree({ fs, dir: c.dir, oid, cache: c.cache });
    const entry = tree.find((e) => e.path === name);
    if (!entry) return;
    walked.push(name);
    if (entry.mode === SYMLINK_MODE)
      throw new GitEditError(
        `${file}: ${walked.join("/")} is a symbolic link on ${c.repo.branch} (commit ${commit.slice(0, 12)}) in ${c.where}; a retarget edits regular files only, nothing was pushed`,
        [
          "point git.retarget[].file at the real file, or replace the link with the file in the repository",
        ],
      );
    if (entry.type !== "tree") return;
    oid = entry.oid;
  }
}

async function readText(c: Clone, commit: string, file: string): Promise<string> {
  await assertNoSymlink(c, commit, file);
  try {
    const { blob } = await readBlob({
      fs,
      dir: c.dir,
      oid: commit,
      filepath: pathSegments(file).join("/"),
      cache: c.cache,
    });
    return Buffer.from(blob).toString("utf8");
  } catch (e) {
    const code = errorCode(e);
    const what =
      code === "NotFoundError"
        ? "does not exist"
        : code === "ObjectTypeError"
          ? "is a directory, not a file"
          : undefined;
    if (!what) throw gitError(e, c, `reading ${file}`);
    throw new GitEditError(
      `${file} ${what} on ${c.repo.branch} (commit ${commit.slice(0, 12)}) in ${c.where}`,
      ["fix git.retarget[].file in the topology, or add the file to the repository"],
      { cause: e },
    );
  }
}

function parseYaml(text: string, file: string): Document.Parsed {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const problem = doc.errors[0];
  if (problem) {
    const at = problem.linePos?.[0];
    throw new GitEditError(
      `${file}${at ? `:${at.line}:${at.col}` : ""} is not valid YAML: ${problem.message.split("\n")[0]}`,
      [
        "fix the file in the repository (one YAML document, no duplicate keys), or point git.retarget at the right file",
      ],
      { cause: problem },
    );
  }
  return doc;
}

type Lookup =
  | { kind: "found"; parent: YAMLMap; pair: Pair<unknown, unknown> }
  | { kind: "absent"; parent: YAMLMap; key: string }
  | { kind: "blocked"; at: string; found: string };

/** Walks a dotted path; every key before the last must be a map. */
function locate(doc: Document.Parsed, path: string): Lookup {
  const keys = path.split(".");
  const leaf = keys.pop() ?? path;
  let current: unknown = doc.contents;
  for (const [i, key] of keys.entries()) {
    if (!isMap(current))
      return {
        kind: "blocked",
        at: keys.slice(0, i).join(".") || "the document root",
        found: describeNode(current),
      };
    const pair = current.items.find((p) => keyText(p.key) === key);
    if (!pair) return { kind: "blocked", at: keys.slice(0, i + 1).join("."), found: "missing" };
    current = pair.value;
  }
  if (!isMap(current))
    return {
      kind: "blocked",
      at: keys.join(".") || "the document root",
      found: describeNode(current),
    };
  const pair = current.items.find((p) => keyText(p.key) === leaf);
  return pair
    ? { kind: "found", parent: current, pair }
    : { kind: "absent", parent: current, key: leaf };
}

function keyText(key: unknown): string {
  return String(isScalar(key) ? key.value : key);
}

function describeNode(node: unknown): string {
  if (node === null || node === undefined) return "empty";
  if (isSeq(node)) return "a list";
  if (isMap(node)) return "a map";
  if (isScalar(node))
    return node.value === null ? "null" : `the ${typeof node.value} ${JSON.stringify(node.value)}`;
  return "an alias or other non-map node";
}

function plainValue(node: unknown, doc: Document.Parsed): unknown {
  if (isScalar(node)) return node.value;
  if (node && typeof node === "object" && "toJS" in node && typeof node.toJS === "function") {
    return node.toJS(doc, { maxAliasCount: 100 });
  }
  return node ?? null;
}

interface Splice {
  start: number;
  end: number;
  text: string;
}

/**
 * Sets the edits in one file. Existing scalar values are replaced in the original text (same
 * quoting style), so comments, formatting and every other byte stay as they were; the result
 * is re-parsed and must equal the Document API's result. New keys (and anything the splice
 * cannot express) go through the Document API, which keeps comments but may reformat.
 */
function editYaml(
  text: string,
  file: string,
  edits: RenderedEdit[],
): { text: string; changes: ValueChange[] } {
  const doc = parseYaml(text, file);
  const splices: Splice[] = [];
  let reformat = false;
  const changes: ValueChange[] = [];
  for (const edit of edits) {
    const found = locate(doc, edit.path);
    if (found.kind === "blocked") {
      throw new GitEditError(
        `${file}: cannot set ${edit.path}: ${found.at} is ${found.found}, not a map`,
        [
          "every key before the last in git.retarget[].path must exist as a map; fix the path in the topology or the file",
        ],
      );
    }
    const from = found.kind === "found" ? plainValue(found.pair.value, doc) : undefined;
    changes.push({ file, path: edit.path, from, to: edit.value });
    if (from === edit.value) continue;
    if (found.kind === "absent") {
      found.parent.set(found.key, edit.value);
      reformat = true;
      continue;
    }
    const node = found.pair.value;
    if (!isScalar(node)) {
      throw new GitEditError(
        `${file}: ${edit.path} is ${describeNode(node)}; an edit may only replace a single value`,
        ["point git.retarget[].path at a scalar key inside it"],
      );
    }
    const rendered = renderScalar(edit.value, node);
    if (rendered !== undefined && node.range && node.range[1] > node.range[0]) {
      splices.push({ start: node.range[0], end: node.range[1], text: rendered });
    } else {
      reformat = true;
    }
    node.value = edit.value;
  }
  if (!reformat) {
    const spliced = splices
      .sort((a, b) => b.start - a.start)
      .reduce((out, s) => out.slice(0, s.start) + s.text + out.slice(s.end), text);
    const check = parseDocument(spliced, { uniqueKeys: true });
    if (!check.errors.length && isDeepStrictEqual(check.toJS(), doc.toJS()))
      return { text: spliced, changes };
  }
  return { text: keepLayout(text, doc.toString({ lineWidth: 0 })), changes };
}

/**
 * The Document API writes LF and drops a byte-order mark: give the file back its own line
 * break (that of its first line) and BOM. Every LF in YAML output is a line break (a newline
 * inside a value is either a line of a block scalar or an escape), so all are converted.
 */
function keepLayout(original: string, written: string): string {
  const bom = original.startsWith("\uFEFF") ? "\uFEFF" : "";
  const crlf = /^[^\n]*\r\n/.test(original);
  const body = written.startsWith("\uFEFF") ? written.slice(1) : written;
  return bom + (crlf ? body.replace(/\r?\n/g, "\r\n") : body);
}

/** The value as YAML source on one line, in the original's quoting style when both are strings. */
function renderScalar(value: RenderedEdit["value"], original: Scalar): string | undefined {
  const scalar = new Scalar(value);
  const inlineStyles: unknown[] = [Scalar.PLAIN, Scalar.QUOTE_SINGLE, Scalar.QUOTE_DOUBLE];
  if (
    typeof value === "string" &&
    typeof original.value === "string" &&
    inlineStyles.includes(original.type)
  ) {
    scalar.type = original.type;
  }
  const text = new Document(scalar).toString({ lineWidth: 0 }).replace(/\n$/, "");
  return text.includes("\n") ? undefined : text;
}

function printableUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    return u.toString().replace(/\/$/, "");
  } catch {
    return redact(url);
  }
}

function errorCode(e: unknown): string | undefined {
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") return e.code;
  return undefined;
}

function errorText(e: unknown): string {
  return redact(e instanceof Error ? e.message : String(e))
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 300);
}

/** The first network-level failure in the cause chain, if any. */
function networkFailure(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; cur && depth < 5; depth++) {
    const code = errorCode(cur);
    if (code && (NETWORK_CODES.has(code) || code.startsWith("UND_ERR"))) return code;
    if (cur instanceof Error && (cur.name === "AbortError" || cur.name === "TimeoutError"))
      return "timed out";
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return undefined;
}

function missingBranch(c: Clone, cause: unknown): GitEditError {
  return new GitEditError(
    `branch ${c.repo.branch} does not exist in ${c.where}`,
    ["set git.branch in the topology to an existing branch (or create it)"],
    { cause },
  );
}

/** Maps a library or network error to the named error the state machine routes on. */
function gitError(e: unknown, c: Clone, doing: string): FailoverError {
  if (isFailoverError(e)) return e;
  const code = errorCode(e);
  const data = (
    e as { data?: { statusCode?: unknown; statusMessage?: unknown; response?: unknown } }
  ).data;
  const status =
    code === "HttpError" && typeof data?.statusCode === "number" ? data.statusCode : undefined;
  if (status === 401 || status === 403) {
    return new GitAuthError(
      `${c.where} rejected the credentials (HTTP ${status}): the token in git.credentialsSecretArn must be able to push to ${c.repo.branch}`,
      [],
      { cause: e },
    );
  }
  if (status === 404) {
    return new ConfigError(
      `${c.where} answered HTTP 404 while ${doing}: no such repository`,
      [
        "check git.url in the topology, and that the token in git.credentialsSecretArn can see the repository",
      ],
      { cause: e },
    );
  }
  if (status !== undefined) {
    const said =
      typeof data?.response === "string" ? data.response.trim().split("\n")[0]?.slice(0, 200) : "";
    return new GitUnreachable(
      `${c.where} answered HTTP ${status} while ${doing}${said ? `: ${said}` : ""}`,
      ["the Git server is failing; the step is retried"],
      { cause: e },
    );
  }
  const network = networkFailure(e);
  if (network) {
    return new GitUnreachable(
      `${c.where} is unreachable while ${doing} (${network})`,
      [
        "check the server and the network path from the function (VPC, NAT, security groups); the step is retried",
      ],
      { cause: e },
    );
  }
  if (code === "NotFoundError" && doing === "cloning") return missingBranch(c, e);
  if (code === "SmartHttpError") {
    return new ConfigError(
      `${c.where} is not a Git smart-HTTP endpoint`,
      [
        "check git.url in the topology: it must be the repository's clone URL (https://host/org/repo.git)",
      ],
      { cause: e },
    );
  }
  return new UnexpectedError(`${doing} ${c.where} failed: ${errorText(e)}`, [], { cause: e });
}
