/**
 * What Powertools Metrics and Tracer (with the X-Ray SDK) add to a function's cold start: the
 * module init of functions/lib/telemetry.ts (logger, metrics, tracer) against the logger alone,
 * each bundled as the functions are (infra/lib/bundling.ts's options) and imported in a fresh Node
 * process, the two alternating so that load on the machine hits both alike. Medians of N.
 *
 *   npx tsx bench/telemetry-init.ts [--runs 21]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { build } from "esbuild";
import { BUNDLE_OPTIONS } from "../infra/lib/bundling.ts";

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 21;
const out = mkdtempSync(join(tmpdir(), "gf-telemetry-"));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const entries = {
  "logger only": `import { Logger } from "@aws-lambda-powertools/logger"; export const logger = new Logger({ serviceName: "gitops-failover" });`,
  "telemetry.ts (logger, metrics, tracer)": `export * from ${JSON.stringify(resolve("functions/lib/telemetry.ts"))};`,
};

const bundles: [string, string][] = [];
for (const [name, source] of Object.entries(entries)) {
  const entry = join(out, `${bundles.length}.ts`);
  writeFileSync(entry, source);
  const outfile = join(out, `${bundles.length}.mjs`);
  await build({
    ...BUNDLE_OPTIONS,
    mainFields: [...BUNDLE_OPTIONS.mainFields],
    entryPoints: [entry],
    outfile,
    nodePaths: [resolve("node_modules")],
  });
  bundles.push([name, outfile]);
}

const samples = new Map(
  bundles.map(([name]) => [name, { wall: [] as number[], cpu: [] as number[] }]),
);
for (let i = 0; i < runs; i++) {
  for (const [name, file] of bundles) {
    const script = `const c=process.cpuUsage(),t=performance.now();await import(${JSON.stringify(file)});const u=process.cpuUsage(c);process.stdout.write(JSON.stringify([performance.now()-t,(u.user+u.system)/1000]))`;
    const answer = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, AWS_REGION: "us-east-1", AWS_EXECUTION_ENV: "AWS_Lambda_nodejs22.x" },
    });
    const [ms = 0, cpuMs = 0] = JSON.parse(answer.toString()) as number[];
    samples.get(name)?.wall.push(ms);
    samples.get(name)?.cpu.push(cpuMs);
  }
}
console.log(
  `Node ${process.version}, ${runs} alternating runs each, median init (import) time, as on Lambda (AWS_EXECUTION_ENV set: tracing on)\n`,
);
console.log("| module | bundle (minified) | init wall | init CPU |\n| --- | --- | --- | --- |");
for (const [name, file] of bundles) {
  const s = samples.get(name);
  console.log(
    `| ${name} | ${(statSync(file).size / 1024).toFixed(0)} KiB | ${median(s?.wall ?? []).toFixed(0)} ms | ${median(s?.cpu ?? []).toFixed(0)} ms |`,
  );
}
rmSync(out, { recursive: true, force: true });
