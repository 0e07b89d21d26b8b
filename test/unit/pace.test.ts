/**
 * The adaptive poll pace and the sandbox's time model: pure functions, no sandbox.
 */
import { describe, expect, it } from "vitest";
import { paced, paceOf } from "../../functions/lib/pace.ts";
import {
  DEFAULT_TIME_MODEL,
  detectionSeconds,
  sandboxMs,
  timeModel,
} from "../../sandbox/time-model.ts";

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

describe("paceOf", () => {
  it("counts the waits asked for in the window when the clock shows less (compressed time)", () => {
    const first = paceOf({ startedAt: at(0), checkedAt: at(0) }, undefined, 60);
    expect(first).toEqual({ nextWaitSeconds: 30, pacedSeconds: 0 });
    // The clock says 0 s went by; the loop asked for 30 s of Wait: 30 s it is.
    const second = paceOf(
      { startedAt: at(0), checkedAt: at(0) },
      { startedAt: at(0), ...first },
      60,
    );
    expect(second).toEqual({ nextWaitSeconds: 15, pacedSeconds: 30 });
    // A new window (another traffic stage, a new step) starts again from 0.
    expect(
      paceOf({ startedAt: at(5), checkedAt: at(5) }, { startedAt: at(0), ...second }, 60),
    ).toEqual({ nextWaitSeconds: 30, pacedSeconds: 0 });
  });

  it("follows the clock when it shows more than the waits (slow polls)", () => {
    expect(paceOf({ startedAt: at(0), checkedAt: at(50) }, undefined, 60).nextWaitSeconds).toBe(5);
  });

  it("paced() adds the pace to the poller's result", async () => {
    const poll = paced(
      async (_: { previous?: { startedAt: string } }) => ({
        status: "IN_PROGRESS",
        startedAt: at(0),
        checkedAt: at(0),
      }),
      30,
      (s) => s.previous,
    );
    expect(await poll({})).toMatchObject({ status: "IN_PROGRESS", nextWaitSeconds: 15 });
  });
});

describe("time model", () => {
  it("cloud-facts defaults, overridable by key, scaled by one factor", () => {
    expect(detectionSeconds(DEFAULT_TIME_MODEL)).toBe(30 * 3 + 60 + 1);
    const m = timeModel(0.01, { "aurora.switchoverSeconds": 90 });
    expect(m.aurora).toEqual({ switchoverSeconds: 90, failoverSeconds: 60 });
    expect(sandboxMs(m, 100)).toBe(1000);
    expect(() => timeModel(0)).toThrow(/time scale must be > 0/);
    expect(() => timeModel(0.01, { "aurora.nope": 1 })).toThrow(
      /unknown time model key "aurora.nope"/,
    );
    expect(() => timeModel(0.01, { "argocd.syncSeconds": -1 })).toThrow(/>= 0/);
  });
});
