/**
 * Bundles every function the way CDK does (esbuild, ESM, minified, arm64 Node 22 target) and
 * measures each bundle's size, its largest packages, and its module init time (a fresh Node
 * process importing it, median of N runs): the cold-start cost that is ours. Init is reported as
 * wall time and as CPU time (user + system of the import), which other load on the machine
 * inflates far less.
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

/** The three packages (or "ours") contributing most bytes to the bundle. */
function topPackages(inputs: Record<string, { bytesInOutput: number }>): string {
  const bytes = new Map<string, number>();
  for (const [path, { bytesInOutput }] of Object.entries(inputs)) {
    const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)?.[1] ?? "ours";
    bytes.set(pkg, (bytes.get(pkg) ?? 0) + bytesInOutput);
  }
  return [...bytes]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 3)
    .map(([pkg, n]) => `${pkg} ${(n / 1024).toFixed(0)}`)
    .join(", ");
}

const rows: string[] = [];
for (const f of FUNCTIONS) {
  const outfile = join(out, f.dir, "index.mjs");
  const result = await build({
    ...BUNDLE_OPTIONS,
    entryPoints: [`functions/${f.dir}/handler.ts`],
    outfile,
    metafile: true,
  });
  const size = statSync(outfile).size;
  const inputs = Object.values(result.metafile.outputs)[0]?.inputs ?? {};
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const script = `const c=process.cpuUsage(),t=performance.now();await import(${JSON.stringify(outfile)});const u=process.cpuUsage(c);process.stdout.write(JSON.stringify([performance.now()-t,(u.user+u.system)/1000]))`;
    const answer = execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      env: { ...process.env, AWS_REGION: "us-east-1" },
    });
    const [ms = 0, cpuMs = 0] = JSON.parse(answer.toString()) as number[];
    wall.push(ms);
    cpu.push(cpuMs);
  }
  rows.push(
    `| ${f.dir} | ${(size / 1024).toFixed(0)} KiB | ${topPackages(inputs)} | ${median(wall).toFixed(0)} ms | ${median(cpu).toFixed(0)} ms |`,
  );
}
rmSync(out, { recursive: true, force: true });
console.log(`Node ${process.version}, ${runs} runs each, median init (import) time\n`);
console.log(
  "| function | bundle (minified) | largest packages (KiB) | init wall | init CPU |\n| --- | --- | --- | --- | --- |",
);
console.log(rows.join("\n"));
