/** The operator CLI run in-process by the end-to-end tests, its output captured. */
import { vi } from "vitest";
import { main } from "../../cli/main.ts";

/** Runs the CLI in-process and returns its exit code and what it printed. */
export async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const capture = (chunk: string | Uint8Array, encoding?: unknown, done?: unknown) => {
    out += String(chunk);
    const callback = typeof encoding === "function" ? encoding : done;
    if (typeof callback === "function") callback();
    return true;
  };
  const write = vi
    .spyOn(process.stdout, "write")
    .mockImplementation(capture as typeof process.stdout.write);
  const err = vi
    .spyOn(process.stderr, "write")
    .mockImplementation(capture as typeof process.stderr.write);
  try {
    return { code: await main(["node", "gitops-failover", ...args]), out };
  } finally {
    write.mockRestore();
    err.mockRestore();
  }
}
