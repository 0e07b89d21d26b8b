/**
 * Every fault of the sandbox, ungraceful: however the drill ends, users stay served by the region
 * holding the writer (split from drill.test.ts so two workers can run them side by side).
 */
import { describe, it } from "vitest";
import { FAULTS, type FaultName } from "../../sandbox/faults.ts";
import { drill, expectInvariants, expectUsersServed } from "./drill-helpers.ts";

describe("drill: every fault, both modes: users stay served by the region holding the writer", () => {
  const faults = Object.keys(FAULTS) as FaultName[];
  it.each(faults.map((f) => [f]))("%s, ungraceful", async (fault) => {
    const result = await drill({ faults: [fault], mode: "ungraceful" });

    expectInvariants(result);
    expectUsersServed(result);
  });
});
