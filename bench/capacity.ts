/**
 * What capacity parity adds to a failover, in the embedded sandbox: the AwaitCapacity gate runs
 * beside AwaitArgoSync (a Parallel), so what it adds to the failover is how much later than
 * Argo CD's wait it ends (`max(0, gate end - Argo CD end)`, from the audit timestamps in
 * report.json); also its polls, its handler time, and Plan's time (Plan now reads the source's
 * capacity live). One graceful drill us-west-2 -> us-east-2 per run, in this process.
 *
 *   npx tsx bench/capacity.ts [--runs 3] [--sizes 3x6,50x2000]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FailoverReport } from "../functions/lib/report.ts";
import { DRILL_DEFAULTS, runDrill } from "../sandbox/drill.ts";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const runs = Number(arg("runs", "3"));
const sizes = arg("sizes", "3x6,50x2000")
  .split(",")
  .map((s) => s.split("x").map(Number));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

interface Row {
  status: string;
  polls: number;
  gateWall: number;
  added: number;
  argoWall: number;
  planWall: number;
  total: number;
}

const root = mkdtempSync(join(tmpdir(), "gf-bench-capacity-"));
try {
  console.log(
    "| size | runs (status) | gate polls | gate handler wall | gate ends after Argo CD by (= time added) | AwaitArgoSync handler wall | Plan wall | drill wall |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const [spokes = 3, apps = 6] of sizes) {
    const rows: Row[] = [];
    for (let i = 0; i < runs; i++) {
      const dir = join(root, `${spokes}x${apps}-${i}`);
      const r = await runDrill({ ...DRILL_DEFAULTS, spokes, apps, reportDir: dir });
      const step = (name: string) => r.executions[0]?.steps.find((s) => s.name === name);
      const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;
      const end = (name: string) =>
        Date.parse(report.steps.find((s) => s.name === name)?.endedAt ?? "") || 0;
      rows.push({
        status: r.status,
        polls: step("AwaitCapacity")?.invocations ?? 0,
        gateWall: step("AwaitCapacity")?.wallMs ?? 0,
        added: Math.max(0, end("AwaitCapacity") - end("AwaitArgoSync")),
        argoWall: step("AwaitArgoSync")?.wallMs ?? 0,
        planWall: step("Plan")?.wallMs ?? 0,
        total: r.sandbox.wallMs,
      });
    }
    const m = (k: keyof Row) => `${Math.round(median(rows.map((x) => Number(x[k]))))} ms`;
    const statuses = [...new Set(rows.map((x) => x.status))].join("/");
    console.log(
      `| ${spokes} spokes x ${apps} apps | ${runs} (${statuses}) | ${rows.map((x) => x.polls).join("/")} | ${m("gateWall")} | ${m("added")} (${rows.map((x) => x.added).join("/")}) | ${m("argoWall")} | ${m("planWall")} | ${m("total")} |`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
