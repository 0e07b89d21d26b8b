/**
 * Bundles every function the way CDK does (esbuild, ESM, minified, arm64 Node 22 target) and
 * measures each bundle's size and its module init time (a fresh Node process importing it,
 * median of N runs): the cold-start cost that is ours.
 *
 *   npm run bench:bundle [-- --runs 7]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { FUNCTIONS } from "../functions/catalog.ts";

/** esbuild options shared with the CDK NodejsFunction bundling (infra). */
export const BUNDLE_OPTIONS = {
  bundle: true,
  minify: true,
  platform: "node",
  target: "node22",
  format: "esm",
  mainFields: ["module", "main"] as string[],
  banner: {
    js: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
  },
  legalComments: "none",
} as const;

const runs = Number(process.argv[process.argv.indexOf("--runs") + 1]) || 5;
const out = mkdtempSync(join(tmpdir(), "gf-bundle-"));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;

const rows: string[] = [];
for (const f of FUNCTIONS) {
  const outfile = join(out, f.dir, "index.mjs");
  await build({ ...BUNDLE_OPTIONS, entryPoints: [`functions/${f.dir}/handler.ts`], outfile });
  const size = statSync(outfile).size;
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const script = `const t=performance.now();await import(${JSON.stringify(outfile)});process.stdout.write(String(performance.now()-t))`;
    const ms = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, AWS_REGION: "us-east-1" },
    });
    times.push(Number(ms.toString()));
  }
  rows.push(`| ${f.dir} | ${(size / 1024).toFixed(0)} KiB | ${median(times).toFixed(0)} ms |`);
}
rmSync(out, { recursive: true, force: true });
console.log(`Node ${process.version}, ${runs} runs each, median init (import) time\n`);
console.log("| function | bundle (minified) | init |\n| --- | --- | --- |");
console.log(rows.join("\n"));
