/**
 * What the failure report can still say when Plan itself failed. The state RecordFailure gets is
 * then the raw execution input plus the caught error — no validated `input`, no `plan` — yet the
 * operator needs the requested target, the mode and what the platform looked like to act on it.
 */
import { type FailoverInput, FailoverInputSchema, type Topology } from "./config.ts";
import { type PartialSnapshot, partialSnapshot, sourceRegionOf } from "./steps.ts";

export interface FailedPlan {
  /** The input's fields that are valid each on its own (defaults filled): a bad one is left out. */
  input: Partial<FailoverInput>;
  /** The platform when the failure was recorded (Plan changes nothing): every part that could be read. */
  before: PartialSnapshot;
  sourceRegion: string | null;
}

/** The input's valid fields, checked one by one against the one input schema. */
function validFields(raw: unknown): Partial<FailoverInput> {
  const given = raw && typeof raw === "object" ? (raw as Record<string, unknown>) : {};
  const input: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(FailoverInputSchema.shape)) {
    const field = schema.safeParse(given[key]);
    if (field.success && field.data !== undefined) input[key] = field.data;
  }
  return input as Partial<FailoverInput>;
}

/**
 * Reads what a failed Plan could not hand on: the requested input's valid fields and a
 * snapshot of whichever parts of the platform answer now (Aurora is asked in the requested
 * target first, as Plan does).
 */
export async function failedPlanOf(raw: unknown, t: Topology): Promise<FailedPlan> {
  const input = validFields(raw);
  const target = input.targetRegion && t.regions[input.targetRegion] ? input.targetRegion : null;
  const before = await partialSnapshot(t, target ?? Object.keys(t.regions)[0] ?? "");
  return { input, before, sourceRegion: sourceRegionOf(before, target ?? "") };
}
