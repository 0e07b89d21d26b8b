/**
 * The sandbox's working directories in the system temp dir: the CA with its private keys, the
 * Git repository. A killed drill or `sandbox up` (SIGKILL, a crash, a closed terminal) never
 * reaches its cleanup, so each directory is named after the process that owns it and the next
 * sandbox to start removes those whose process is gone — this user's only.
 */
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** `<tmpdir>/gitops-failover-sandbox-<kind>-<pid>-<random>`. */
const PREFIX = "gitops-failover-sandbox-";
const OWNED = /^gitops-failover-sandbox-[a-z]+-(\d+)-[A-Za-z0-9]{6}$/;

/** Creates a fresh working directory (mode 0700) owned by this process. */
export function createWorkDir(kind: "ca" | "git"): Promise<string> {
  return mkdtemp(join(tmpdir(), `${PREFIX}${kind}-${process.pid}-`));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the process exists but is another user's.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the working directories of sandboxes whose process is gone, returning them. Only
 * directories owned by this user: another user's (or one of a live sandbox, this process's
 * included) is left alone. Best effort: a directory that cannot be removed is skipped.
 */
export async function sweepAbandonedWorkDirs(): Promise<string[]> {
  const root = tmpdir();
  const uid = process.getuid?.();
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const swept: string[] = [];
  for (const name of names) {
    const pid = Number(OWNED.exec(name)?.[1] ?? Number.NaN);
    if (!Number.isInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    const dir = join(root, name);
    try {
      const info = await stat(dir);
      if (!info.isDirectory() || (uid !== undefined && info.uid !== uid)) continue;
      await rm(dir, { recursive: true, force: true });
      swept.push(dir);
    } catch {
      // Removed meanwhile by another sandbox starting, or not ours to remove.
    }
  }
  return swept;
}
