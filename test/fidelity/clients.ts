/**
 * The real command-line clients the fidelity tests drive: the AWS CLI v2 (Debian `awscli`),
 * kubectl (Debian `kubernetes-client`) and git. A missing client fails the test that needs it,
 * naming the package to install; nothing is skipped. Clients run asynchronously, so the sandbox
 * serving them in this same process keeps answering.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";

/** What a client printed and its exit status. */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A client binary, resolved once. */
export interface Client {
  path: string;
  run(args: string[], env?: Record<string, string>, stdin?: string): Promise<Run>;
}

function onPath(name: string): string[] {
  return (process.env.PATH ?? "")
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, name))
    .filter((p) => existsSync(p));
}

function exec(path: string, args: string[], env: Record<string, string>, stdin?: string) {
  return new Promise<Run>((resolve) => {
    const child = execFile(
      path,
      args,
      { env: { ...process.env, ...env }, timeout: 30_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (stdin !== undefined) child.stdin?.end(stdin);
    else child.stdin?.end();
  });
}

function client(path: string): Client {
  return { path, run: (args, env = {}, stdin) => exec(path, args, env, stdin) };
}

function missing(what: string, pkg: string, found = ""): Error {
  return new Error(
    `${what} is not installed${found}: install the Debian package ${pkg} (apt-get install -y ${pkg}); .ci/run installs it when it is missing`,
  );
}

/** The AWS CLI v2; a v1 `aws` earlier on PATH (pip) is passed over, as the CLI's output differs. */
export async function awsCli(): Promise<Client> {
  const candidates = [...new Set(["/usr/bin/aws", ...onPath("aws")])].filter((p) => existsSync(p));
  const versions: string[] = [];
  for (const path of candidates) {
    const { stdout, stderr } = await exec(path, ["--version"], {});
    const version = `${stdout}${stderr}`.trim();
    if (version.startsWith("aws-cli/2.")) return client(path);
    versions.push(`${path}: ${version || "no version"}`);
  }
  throw missing(
    "the AWS CLI v2",
    "awscli",
    versions.length ? ` (found only ${versions.join("; ")})` : "",
  );
}

/** kubectl on PATH. */
export function kubectl(): Client {
  const [path] = onPath("kubectl");
  if (!path) throw missing("kubectl", "kubernetes-client");
  return client(path);
}

/** git on PATH. */
export function git(): Client {
  const [path] = onPath("git");
  if (!path) throw missing("git", "git");
  return client(path);
}
