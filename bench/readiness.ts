/**
 * The readiness evaluation's wall time in the embedded sandbox: every target region x check and
 * the platform checks, as the readiness function runs them (evaluateReadiness; storing and
 * metrics excluded). Each size gets one sandbox, one warm-up evaluation (TLS sessions, module
 * init, the first clone), then `--runs` measured ones; prints min / median / max as Markdown.
 *
 *   npx tsx bench/readiness.ts [--runs 5] [--sizes 3x6,50x2000]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runtimeTopology } from "../functions/lib/config.ts";
import { evaluateReadiness } from "../functions/lib/readiness.ts";
import { startSandbox } from "../sandbox/index.ts";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const runs = Number(arg("runs", "5"));
const sizes = arg("sizes", "3x6,50x2000")
  .split(",")
  .map((s) => s.split("x").map(Number) as [number, number]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

console.log("| spokes | apps | checks | not READY | wall min | wall median | wall max |");
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const [spokes, apps] of sizes) {
  const reportDir = await mkdtemp(join(tmpdir(), "gf-bench-readiness-"));
  const sandbox = await startSandbox({ spokes, apps, reportDir });
  try {
    const t = runtimeTopology();
    await evaluateReadiness(t);
    const walls: number[] = [];
    let last: Awaited<ReturnType<typeof evaluateReadiness>> | undefined;
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      last = await evaluateReadiness(t);
      walls.push(performance.now() - start);
    }
    const notReady = last?.results.filter((r) => r.status !== "READY").length ?? 0;
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    console.log(
      `| ${spokes} | ${apps} | ${last?.results.length ?? 0} | ${notReady} | ${s(Math.min(...walls))} | ${s(median(walls))} | ${s(Math.max(...walls))} |`,
    );
  } finally {
    await sandbox.stop();
    await rm(reportDir, { recursive: true, force: true });
  }
}
