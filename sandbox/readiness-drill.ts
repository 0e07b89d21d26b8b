/**
 * `drill --readiness`: the readiness function, run in the embedded sandbox against every target
 * region with the faults asked for, exactly as the schedule runs it on AWS (evaluate, store the
 * latest result, audit a changed verdict, emit the metrics).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDocumentText, parseTopology, runtimeTopology } from "../functions/lib/config.ts";
import { InputValidationError } from "../functions/lib/errors.ts";
import {
  type CheckResult,
  collectMetrics,
  type RecordedReadiness,
  readinessStep,
} from "../functions/lib/readiness.ts";
import type { ReadinessFaultName } from "./faults.ts";
import { startSandbox } from "./index.ts";
import { injectReadinessFault } from "./readiness-faults.ts";

export interface ReadinessDrillOptions {
  /** The region the faults are injected against (a region that is not active). */
  target: string;
  faults: ReadinessFaultName[];
  spokes?: number;
  apps?: number;
  /** Each check as it finishes (progress on a terminal). */
  onResult?: (result: CheckResult, done: number, total: number) => void;
}

export interface ReadinessDrillResult extends RecordedReadiness {
  faults: ReadinessFaultName[];
  /** The EMF documents the run emitted (TargetReady, FailingChecks per region). */
  metrics: unknown[];
}

/** Starts a sandbox, injects the faults, runs the readiness function once, stops the sandbox. */
export async function runReadinessDrill(o: ReadinessDrillOptions): Promise<ReadinessDrillResult> {
  const reportDir = await mkdtemp(join(tmpdir(), "gitops-failover-readiness-"));
  const sandbox = await startSandbox({
    ...(o.spokes ? { spokes: o.spokes } : {}),
    ...(o.apps ? { apps: o.apps } : {}),
    reportDir,
  });
  try {
    for (const fault of o.faults) await injectReadinessFault(sandbox, fault, o.target);
    const metrics: unknown[] = [];
    const recorded = await readinessStep({}, runtimeTopology(), {
      sink: collectMetrics(metrics),
      ...(o.onResult ? { onResult: o.onResult } : {}),
    });
    return { ...recorded, faults: o.faults, metrics };
  } finally {
    await sandbox.stop();
    await rm(reportDir, { recursive: true, force: true });
  }
}

/**
 * `readiness --sandbox <file>`: the readiness function run here against a running `sandbox up`
 * (its endpoints, credentials and topology in `env`), storing and auditing in its table.
 */
export async function readinessOnSandbox(
  env: Record<string, string>,
  region: string | undefined,
  onResult: (result: CheckResult, done: number, total: number) => void,
): Promise<RecordedReadiness> {
  const raw = env.TOPOLOGY;
  if (!raw) throw new InputValidationError("the sandbox endpoint file holds no TOPOLOGY");
  Object.assign(process.env, env);
  const topology = parseTopology(parseDocumentText(raw, "TOPOLOGY"), "TOPOLOGY");
  return readinessStep(region ? { region } : {}, topology, {
    sink: collectMetrics([]),
    onResult,
  });
}
