/**
 * The sandbox's CloudWatch Logs: what the in-process functions write to stdout (Powertools'
 * EMF metric lines, and the logger's lines when it is not silenced) goes, as on Lambda, to the
 * function's own log, `<REPORT_DIR>/logs/<function name>.log`, not to the drill's stdout (which
 * `drill --json` keeps to one JSON document). A write belongs to the invocation whose async
 * context made it, so the two Parallel branches' functions keep their own logs.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { appendFileSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";

/** The log file of the invocation running in this async context. */
const invocation = new AsyncLocalStorage<string>();

type Write = typeof process.stdout.write;
let installed: Write | undefined;

/**
 * Routes stdout writes made inside an invocation to its log file. Installed again whenever
 * something (a test's spy restored) has replaced it since.
 */
function capture(): void {
  if (installed && process.stdout.write === installed) return;
  const passOn = process.stdout.write.bind(process.stdout) as Write;
  installed = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const file = invocation.getStore();
    if (!file) return (passOn as (...a: unknown[]) => boolean)(chunk, ...rest);
    appendFileSync(file, chunk);
    const done = rest.find((r) => typeof r === "function") as (() => void) | undefined;
    done?.();
    return true;
  }) as Write;
  process.stdout.write = installed;
}

/**
 * Runs one invocation of `functionName` with its stdout going to its log under `REPORT_DIR`
 * (unchanged when REPORT_DIR is not set).
 */
export function asInvocationOf<T>(functionName: string, run: () => Promise<T>): Promise<T> {
  const dir = process.env.REPORT_DIR;
  if (!dir) return run();
  mkdirSync(join(dir, "logs"), { recursive: true });
  capture();
  return invocation.run(join(dir, "logs", `${functionName}.log`), run);
}

/** Starts a sandbox's logs afresh: `<reportDir>/logs/` holds this sandbox's invocations only. */
export function clearFunctionLogs(reportDir: string): void {
  rmSync(join(reportDir, "logs"), { recursive: true, force: true });
}
