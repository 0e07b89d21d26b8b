/**
 * What capacity parity adds to a failover, in the embedded sandbox: the AwaitCapacity gate's time
 * on the critical path beyond Argo CD's wait, from each invocation's audit event (startedAt,
 * endedAt in audit.jsonl). The apps loop polls Argo CD and then the gate in each pass, so every
 * gate invocation before Argo CD's wait ended adds its own time, plus how much later than Argo
 * CD's wait the gate ends, `max(0, gate end - Argo CD end)`.
 * Also its polls, its handler time, and Plan's time (Plan reads the source's capacity live). One
 * graceful drill us-west-2 -> us-east-2 per run, in this process.
 *
 *   npx tsx bench/capacity.ts [--runs 3] [--sizes 3x6,50x2000]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FailoverReport } from "../functions/lib/report.ts";
import { DRILL_DEFAULTS, runDrill } from "../sandbox/drill.ts";

interface Invocation {
  step: string;
  outcome: string;
  startedAt: string;
  endedAt: string;
}

/** The gate's time on the critical path beyond Argo CD's wait, from the audit events. */
function gateAdds(events: Invocation[]): number {
  const at = (iso: string) => Date.parse(iso);
  const gate = events.filter((e) => e.step === "AwaitCapacity");
  const argo = events.filter((e) => e.step === "AwaitArgoSync");
  const argoEnd = Math.max(0, ...argo.map((e) => at(e.endedAt)));
  const gateEnd = Math.max(0, ...gate.map((e) => at(e.endedAt)));
  const after = Math.max(0, gateEnd - argoEnd);
  const before = gate
    .filter((e) => at(e.endedAt) <= argoEnd)
    .reduce((sum, e) => sum + at(e.endedAt) - at(e.startedAt), 0);
  return before + after;
}

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
    "| size | runs (status) | gate polls | gate handler wall | time the gate adds (critical path beyond Argo CD's wait) | AwaitArgoSync handler wall | Plan wall | drill wall |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const [spokes = 3, apps = 6] of sizes) {
    const rows: Row[] = [];
    for (let i = 0; i < runs; i++) {
      const dir = join(root, `${spokes}x${apps}-${i}`);
      const r = await runDrill({ ...DRILL_DEFAULTS, spokes, apps, reportDir: dir });
      const step = (name: string) => r.executions[0]?.steps.find((s) => s.name === name);
      const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;
      const events = readFileSync(join(dir, "audit.jsonl"), "utf8")
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Invocation)
        .filter((e) => e.startedAt && e.endedAt);
      rows.push({
        status: `${r.status}${report.status === r.status ? "" : `/${report.status}`}`,
        polls: step("AwaitCapacity")?.invocations ?? 0,
        gateWall: step("AwaitCapacity")?.wallMs ?? 0,
        added: gateAdds(events),
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
