/**
 * Scratch directories in the system temp dir named after the process that made them
 * (`<prefix><pid>-<random>`): whoever starts next can tell those a crashed or killed process
 * left behind (Git clones in a warm Lambda, a sandbox's keys) from those still in use.
 */
import { readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The temp dir's entries whose name `pattern` matches, with the pid its first group captures. */
export async function scratchDirs(pattern: RegExp): Promise<{ dir: string; pid: number }[]> {
  const root = tmpdir();
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  return names.flatMap((name) => {
    const pid = Number(pattern.exec(name)?.[1] ?? Number.NaN);
    return Number.isInteger(pid) ? [{ dir: join(root, name), pid }] : [];
  });
}

/** True while process `pid` exists, this user's or another's. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
