/**
 * A real Git server for the tests and the drill: the `git http-backend` CGI (the same smart-HTTP
 * implementation many Git hosts run) behind a node:http server on 127.0.0.1 with HTTP basic
 * auth, pushes enabled. Nothing is emulated: clients see real refs, packs and ref-update
 * rejections, so the orchestrator's compare-and-swap retry is tested against the real protocol.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { timingSafeEqual } from "node:crypto";
import { rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createWorkDir } from "./workdir.ts";

/** Credentials and the seed commit of the Git server. */
export interface GitServerOptions {
  username: string;
  password: string;
  /** The initial commit's files: path (slash-separated) -> content. */
  files: Record<string, string>;
  /** The branch served and seeded; default `main`. */
  branch?: string;
  /** The repository's name in the URL; default `platform`. */
  repoName?: string;
  /** Credentials that may fetch but not push (HTTP 403 on receive-pack), as a read-only token. */
  reader?: { username: string; password: string };
}

/** A running Git server: its URL, the bare repository, reads of the branch, and fault switches. */
export interface GitServer {
  /** `http://127.0.0.1:<port>/<repoName>.git`, without credentials. */
  url: string;
  /** The bare repository on disk. */
  repoDir: string;
  /** The branch head's SHA. */
  head(): Promise<string>;
  /** The branch history, newest first. */
  log(): Promise<{ sha: string; message: string; author: string }[]>;
  /** A file's content at the branch head. */
  readFile(path: string): Promise<string>;
  /** A commit made by "someone else" straight into the branch; returns its SHA. */
  commitDirect(files: Record<string, string>, message: string): Promise<string>;
  /**
   * Just before the next receive-pack POST is served, commits `files` (default: a change to
   * NOTES.md) with `message` straight into the branch, so that push is not a fast-forward.
   * One-shot.
   */
  injectConflictOnNextPush(files?: Record<string, string>, message?: string): void;
  /**
   * One-shot: `prepare` runs when the next receive-pack POST arrives, `done` once git has
   * answered it (its ref updates made, `from` and `to` the branch head before and after) and
   * before that answer ends, so the pusher only learns of its push after `done` acted.
   */
  onNextPush(hook: PushHook): void;
  /**
   * Runs `hook` (awaited) just before each receive-pack POST is served from now on, with the
   * count of pushes since it was set: someone acting on the platform while a push arrives.
   */
  beforePush(hook: (push: number) => Promise<void>): void;
  /** Rotates the password: the old credentials then get 401. */
  setPassword(password: string): void;
  /** Receive-pack POSTs served (accepted or not) and requests refused for wrong credentials. */
  stats(): { pushes: number; rejectedAuth: number };
  /** Closes the server, kills running CGI children and removes the repository. */
  stop(): Promise<void>;
}

/** What happens around one push (see GitServer.onNextPush). */
export interface PushHook {
  prepare?: () => void;
  done: (head: { from: string; to: string }) => Promise<void>;
}

const AUTHOR = "sandbox <sandbox@localhost>";
/** The seed commit's date, fixed so the same files always give the same initial SHA. */
const SEED_EPOCH_SECONDS = 1_700_000_000;
const MAX_CGI_HEADER_BYTES = 64 * 1024;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Starts the server on an ephemeral port with the repository seeded by one commit of `files`. */
export async function startGitServer(options: GitServerOptions): Promise<GitServer> {
  const branch = options.branch ?? "main";
  const repoName = options.repoName ?? "platform";
  if (!NAME_PATTERN.test(repoName))
    throw new Error(`repoName "${repoName}" must match ${NAME_PATTERN}`);
  const root = await createWorkDir("git");
  const repoDir = join(root, `${repoName}.git`);
  const children = new Set<ChildProcess>();
  const counters = { pushes: 0, rejectedAuth: 0 };
  let password = options.password;
  let pendingConflict: { files: Record<string, string>; message: string } | undefined;
  let everyPush: { run: (push: number) => Promise<void>; pushes: number } | undefined;
  let conflictCount = 0;
  let pushHook: PushHook | undefined;
  let commitQueue: Promise<unknown> = Promise.resolve();

  const env = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    GIT_CONFIG_NOSYSTEM: "1",
    GIT_CONFIG_GLOBAL: "/dev/null",
    LC_ALL: "C",
  };

  function git(args: string[], input?: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn("git", args, { env, cwd: root, stdio: ["pipe", "pipe", "pipe"] });
      children.add(child);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (c: Buffer) => out.push(c));
      child.stderr.on("data", (c: Buffer) => err.push(c));
      child.stdin.on("error", () => undefined);
      child.on("error", reject);
      child.on("close", (code) => {
        children.delete(child);
        if (code === 0) resolve(Buffer.concat(out));
        else
          reject(
            new Error(`git ${args[0]} failed (${code}): ${Buffer.concat(err).toString().trim()}`),
          );
      });
      child.stdin.end(input);
    });
  }
  const gitIn = (args: string[], input?: Buffer) => git(["--git-dir", repoDir, ...args], input);
  const ref = `refs/heads/${branch}`;

  /** One commit of `files` on top of `parent` via fast-import, then a CAS update of the branch. */
  async function writeCommit(
    files: Record<string, string>,
    message: string,
    parent: string | undefined,
    epochSeconds: number,
  ): Promise<string> {
    const scratch = "refs/sandbox/import";
    const chunks: Buffer[] = [];
    const data = (text: string) => {
      const bytes = Buffer.from(text);
      chunks.push(Buffer.from(`data ${bytes.length}\n`), bytes, Buffer.from("\n"));
    };
    chunks.push(Buffer.from(`commit ${scratch}\nauthor ${AUTHOR} ${epochSeconds} +0000\n`));
    chunks.push(Buffer.from(`committer ${AUTHOR} ${epochSeconds} +0000\n`));
    data(message);
    if (parent) chunks.push(Buffer.from(`from ${parent}\n`));
    for (const [path, content] of Object.entries(files)) {
      chunks.push(Buffer.from(`M 100644 inline ${JSON.stringify(path)}\n`));
      data(content);
    }
    chunks.push(Buffer.from("done\n"));
    await gitIn(["fast-import", "--quiet", "--done", "--force"], Buffer.concat(chunks));
    const sha = (await gitIn(["rev-parse", "--verify", scratch])).toString().trim();
    await gitIn(["update-ref", "-d", scratch]);
    await gitIn(["update-ref", ref, sha, parent ?? ""]);
    return sha;
  }

  const head = async () => (await gitIn(["rev-parse", "--verify", ref])).toString().trim();

  function commitDirect(files: Record<string, string>, message: string): Promise<string> {
    const run = commitQueue.then(async () =>
      writeCommit(files, message, await head(), Math.floor(Date.now() / 1000)),
    );
    commitQueue = run.catch(() => undefined);
    return run;
  }

  await git(["init", "--quiet", "--bare", `--initial-branch=${branch}`, repoDir]);
  await gitIn(["config", "http.receivepack", "true"]);
  await writeCommit(options.files, "Initial commit", undefined, SEED_EPOCH_SECONDS);

  /** "write" for the pushing credentials, "read" for the reader's, false otherwise. */
  function authorized(req: IncomingMessage): "write" | "read" | false {
    const header = req.headers.authorization ?? "";
    const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
    if (!match?.[1]) return false;
    const given = Buffer.from(match[1], "base64");
    const same = (user: string, pass: string) => {
      const expected = Buffer.from(`${user}:${pass}`);
      return given.length === expected.length && timingSafeEqual(given, expected);
    };
    if (same(options.username, password)) return "write";
    if (options.reader && same(options.reader.username, options.reader.password)) return "read";
    return false;
  }

  function plain(
    res: ServerResponse,
    status: number,
    text: string,
    headers: Record<string, string> = {},
  ) {
    res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", ...headers });
    res.end(`${text}\n`);
  }

  function runCgi(
    req: IncomingMessage,
    res: ServerResponse,
    pathInfo: string,
    query: string,
    beforeEnd?: () => Promise<void>,
  ) {
    const cgiEnv: Record<string, string> = {
      ...env,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: "1",
      GATEWAY_INTERFACE: "CGI/1.1",
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: pathInfo,
      QUERY_STRING: query,
      REMOTE_USER: options.username,
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      CONTENT_TYPE: req.headers["content-type"] ?? "",
    };
    // Without CONTENT_LENGTH (a chunked body) http-backend reads the body until EOF.
    const passThrough: [string, string | undefined][] = [
      ["CONTENT_LENGTH", req.headers["content-length"]],
      ["HTTP_CONTENT_ENCODING", req.headers["content-encoding"]],
      ["HTTP_GIT_PROTOCOL", req.headers["git-protocol"] as string | undefined],
    ];
    for (const [name, value] of passThrough) if (value) cgiEnv[name] = value;

    // Its own process group, so stop() also ends the upload-pack / pack-objects it runs.
    const child = spawn("git", ["http-backend"], { env: cgiEnv, cwd: root, detached: true });
    children.add(child);
    const stderr: Buffer[] = [];
    child.stderr.on("data", (c: Buffer) => {
      if (stderr.length < 16) stderr.push(c);
    });
    child.stdin.on("error", () => undefined);
    req.pipe(child.stdin);

    let buffered = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const text = buffered.toString("latin1");
      const crlf = text.indexOf("\r\n\r\n");
      const lf = text.indexOf("\n\n");
      const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf : lf;
      if (end < 0) {
        if (buffered.length > MAX_CGI_HEADER_BYTES) killGroup(child);
        return;
      }
      child.stdout.pause();
      child.stdout.off("data", onHead);
      let status = 200;
      for (const line of text.slice(0, end).split(/\r?\n/)) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10) || 500;
        else res.appendHeader(name, value);
      }
      res.writeHead(status);
      res.write(buffered.subarray(end + (end === crlf ? 4 : 2)));
      if (!beforeEnd) {
        child.stdout.pipe(res);
        return;
      }
      child.stdout.pipe(res, { end: false });
      child.stdout.once("end", () => {
        // A hook that fails leaves the branch as git left it; the drill's history shows it.
        const end = () => res.end();
        beforeEnd().then(end, end);
      });
    };
    child.stdout.on("data", onHead);
    child.on("error", () => {
      if (!res.headersSent) plain(res, 500, "cannot run git http-backend");
    });
    child.on("close", (code) => {
      children.delete(child);
      if (res.headersSent) return;
      const detail = Buffer.concat(stderr).toString().trim();
      plain(res, 500, `git http-backend exited with ${code} before answering: ${detail}`);
    });
    res.on("close", () => {
      if (!res.writableFinished) killGroup(child);
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const prefix = `/${repoName}.git/`;
    if (!url.pathname.startsWith(prefix)) {
      req.resume();
      return plain(res, 404, "repository not found");
    }
    if (req.method !== "GET" && req.method !== "POST") {
      req.resume();
      return plain(res, 405, "method not allowed", { Allow: "GET, POST" });
    }
    const access = authorized(req);
    if (!access) {
      // Real git clients first ask without credentials; only wrong credentials count.
      if (req.headers.authorization) counters.rejectedAuth++;
      req.resume();
      return plain(res, 401, "authentication required", {
        "WWW-Authenticate": 'Basic realm="git"',
      });
    }
    const pushing =
      url.pathname === `${prefix}git-receive-pack` ||
      url.searchParams.get("service") === "git-receive-pack";
    if (access === "read" && pushing) {
      req.resume();
      return plain(res, 403, "read-only credentials: pushing is not allowed");
    }
    if (req.method === "POST" && url.pathname === `${prefix}git-receive-pack`) {
      counters.pushes++;
      const conflict = pendingConflict;
      pendingConflict = undefined;
      if (conflict) await commitDirect(conflict.files, conflict.message);
      if (everyPush) await everyPush.run(++everyPush.pushes);
      const hook = pushHook;
      pushHook = undefined;
      if (hook) {
        hook.prepare?.();
        const from = await head();
        const done = async () => hook.done({ from, to: await head() });
        return runCgi(req, res, url.pathname, url.search.slice(1), done);
      }
    }
    runCgi(req, res, url.pathname, url.search.slice(1));
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) plain(res, 500, e instanceof Error ? e.message : String(e));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/${repoName}.git`,
    repoDir,
    head,
    async log() {
      const raw = (await gitIn(["log", "--format=%H%x1f%an <%ae>%x1f%B%x1e", ref])).toString();
      return raw
        .split("\x1e")
        .map((record) => record.replace(/^\n/, ""))
        .filter((record) => record.length > 0)
        .map((record) => {
          const [sha = "", author = "", message = ""] = record.split("\x1f");
          return { sha, author, message: message.trimEnd() };
        });
    },
    async readFile(path) {
      return (await gitIn(["cat-file", "blob", `${ref}:${path}`])).toString("utf8");
    },
    commitDirect,
    beforePush(run) {
      everyPush = { run, pushes: 0 };
    },
    injectConflictOnNextPush(files, message = "Concurrent change by another committer") {
      conflictCount++;
      pendingConflict = {
        files: files ?? { "NOTES.md": `Note ${conflictCount} from another committer.\n` },
        message,
      };
    },
    onNextPush(hook) {
      pushHook = hook;
    },
    setPassword(next) {
      password = next;
    },
    stats: () => ({ ...counters }),
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      const exits = [...children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("close", () => resolve());
            killGroup(child);
          }),
      );
      await Promise.all([closed, ...exits]);
      await rm(root, { recursive: true, force: true });
    },
  };
}

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}
