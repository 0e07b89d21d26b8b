/**
 * `validate-config` and `validate-input`: the same schemas the functions and CDK use, so a
 * file that passes here passes at synth time and in Plan.
 */
import {
  loadTopology,
  parseDocumentText,
  parseInput,
  readConfigFile,
} from "../functions/lib/config.ts";

/** Throws ConfigError / InputValidationError with one line per problem. */
export function validateConfig(path: string): string {
  const t = loadTopology(path);
  return `${path}: valid (${Object.keys(t.regions).length} regions: ${Object.keys(t.regions).join(", ")})`;
}

/** Validates an execution input file against a topology file. */
export function validateInput(inputPath: string, configPath: string): string {
  const t = loadTopology(configPath);
  const input = parseInput(parseDocumentText(readConfigFile(inputPath), inputPath), t);
  return `${inputPath}: valid (failover to ${input.targetRegion}, ${input.mode}${input.dryRun ? ", dry run" : ""})`;
}
