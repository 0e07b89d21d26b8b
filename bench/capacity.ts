/**
 * What capacity parity adds to a failover, in the embedded sandbox: the AwaitCapacity gate
 * (invocations, handler wall time, and what its polls would take on AWS with 10 s Waits) and
 * Plan's live read of the source's capacity, per size. Each size is one drill (graceful,
 * us-west-2 -> us-east-2) in this process; the figures come from the execution history.
 *
 *   npx tsx bench/capacity.ts [--runs 3] [--sizes 3x6,50x2000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

const root = mkdtempSync(join(tmpdir(), "gf-bench-capacity-"));
try {
  console.log(
    "| size | status | gate invocations | gate handler wall | gate on AWS ~ | Plan wall | Argo sync wall | drill wall |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const [spokes = 3, apps = 6] of sizes) {
    const rows: {
      status: string;
      inv: number;
      wall: number;
      aws: number;
      plan: number;
      argo: number;
      total: number;
    }[] = [];
    for (let i = 0; i < runs; i++) {
      const r = await runDrill({
        ...DRILL_DEFAULTS,
        spokes,
        apps,
        reportDir: join(root, `${spokes}x${apps}-${i}`),
      });
      const step = (name: string) => r.executions[0]?.steps.find((s) => s.name === name);
      const gate = step("AwaitCapacity");
      rows.push({
        status: r.status,
        inv: gate?.invocations ?? 0,
        wall: gate?.wallMs ?? 0,
        aws: gate?.emulatedMs ?? 0,
        plan: step("Plan")?.wallMs ?? 0,
        argo: step("AwaitArgoSync")?.wallMs ?? 0,
        total: r.sandbox.wallMs,
      });
    }
    const m = (k: keyof (typeof rows)[number]) => median(rows.map((x) => Number(x[k])));
    const ms = (v: number) => `${Math.round(v)} ms`;
    console.log(
      `| ${spokes} spokes x ${apps} apps | ${[...new Set(rows.map((x) => x.status))].join("/")} | ${rows.map((x) => x.inv).join("/")} | ${ms(m("wall"))} | ${ms(m("aws"))} | ${ms(m("plan"))} | ${ms(m("argo"))} | ${ms(m("total"))} |`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
