/**
 * How every function is bundled. One set of esbuild options serves the deployed bundles (CDK
 * NodejsFunction), the IAM derivation (which must tree-shake exactly like the deployed bundle)
 * and bench/bundle.ts (a test keeps that copy equal to this one).
 */
import { type BundlingOptions, LogLevel, OutputFormat } from "aws-cdk-lib/aws-lambda-nodejs";

/** esbuild options shared by CDK, the IAM derivation and the bundle bench. */
export const BUNDLE_OPTIONS = {
  bundle: true,
  minify: true,
  platform: "node",
  target: "node22",
  format: "esm",
  mainFields: ["module", "main"],
  banner: {
    js: "import { createRequire } from 'module'; const require = createRequire(import.meta.url);",
  },
  legalComments: "none",
} as const;

/** esbuild passes `--define` as one command-line argument; Linux caps one at 128 KiB. */
export const MAX_COMPILED_TOPOLOGY_BYTES = 100 * 1024;

/**
 * NodejsFunction bundling with BUNDLE_OPTIONS, local esbuild (no Docker) and the AWS SDK bundled
 * (pinned, tree-shaken, and visible to the IAM derivation). The topology is compiled in as
 * `process.env.TOPOLOGY`: Lambda caps all environment variables of a function at 4 KB in total,
 * and the example topology alone is larger as JSON.
 */
export function functionBundling(topologyJson: string): BundlingOptions {
  const literal = JSON.stringify(topologyJson);
  if (Buffer.byteLength(literal) > MAX_COMPILED_TOPOLOGY_BYTES) {
    throw new Error(
      `the topology is ${Buffer.byteLength(literal)} bytes as JSON; at most ${MAX_COMPILED_TOPOLOGY_BYTES} can be compiled into the functions`,
    );
  }
  return {
    minify: BUNDLE_OPTIONS.minify,
    target: BUNDLE_OPTIONS.target,
    format: OutputFormat.ESM,
    mainFields: [...BUNDLE_OPTIONS.mainFields],
    banner: BUNDLE_OPTIONS.banner.js,
    esbuildArgs: { "--legal-comments": BUNDLE_OPTIONS.legalComments },
    externalModules: [],
    sourceMap: false,
    forceDockerBundling: false,
    logLevel: LogLevel.WARNING,
    define: { "process.env.TOPOLOGY": literal },
  };
}
