/**
 * The sandbox's working directories in the system temp dir: the CA with its private keys, the
 * Git repository. A killed drill or `sandbox up` (SIGKILL, a crash, a closed terminal) never
 * reaches its cleanup, so each directory is named after the process that owns it and the next
 * sandbox to start removes those whose process is gone — this user's only.
 */
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive, scratchDirs } from "../functions/lib/scratch-dirs.ts";

/** `<tmpdir>/gitops-failover-sandbox-<kind>-<pid>-<random>`. */
const PREFIX = "gitops-failover-sandbox-";
const OWNED = /^gitops-failover-sandbox-[a-z]+-(\d+)-[A-Za-z0-9]{6}$/;

/** Creates a fresh working directory (mode 0700) owned by this process. */
export function createWorkDir(kind: "ca" | "git"): Promise<string> {
  return mkdtemp(join(tmpdir(), `${PREFIX}${kind}-${process.pid}-`));
}

/**
 * Removes the working directories of sandboxes whose process is gone, returning them. Only
 * directories owned by this user: another user's (or one of a live sandbox, this process's
 * included) is left alone. Best effort: a directory that cannot be removed is skipped.
 */
export async function sweepAbandonedWorkDirs(): Promise<string[]> {
  const uid = process.getuid?.();
  const swept: string[] = [];
  for (const { dir, pid } of await scratchDirs(OWNED)) {
    if (pid === process.pid || processAlive(pid)) continue;
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
