import validator from "asl-validator";
import { describe, expect, it } from "vitest";
import { FUNCTIONS, placeholderOf } from "../../functions/catalog.ts";
import { EXECUTION_TIMEOUT_SECONDS } from "../../functions/lib/config.ts";
import * as errors from "../../functions/lib/errors.ts";
import { LOCK_LEASE_SECONDS } from "../../functions/lib/steps.ts";
import { localDefinition } from "../../sandbox/runner.ts";
import { aslText, placeholders, substitute } from "../../statemachine/definition.ts";

interface State {
  Type: string;
  Next?: string;
  Retry?: { ErrorEquals: string[] }[];
  Catch?: { ErrorEquals: string[]; Next: string }[];
  Branches?: { States: Record<string, State> }[];
  Error?: string;
  Resource?: string;
}

function allStates(states: Record<string, State>, out: [string, State][] = []): [string, State][] {
  for (const [name, s] of Object.entries(states)) {
    out.push([name, s]);
    for (const b of s.Branches ?? []) allStates(b.States, out);
  }
  return out;
}

const definition = JSON.parse(aslText()) as {
  States: Record<string, State>;
  TimeoutSeconds?: number;
};
const states = allStates(definition.States);
/** Names defined by AWS (Step Functions and the Lambda service), not by us. */
const awsDefined = (name: string) => name.startsWith("States.") || name.startsWith("Lambda.");
type ErrorClass = new (m: string) => errors.FailoverError;
const errorClasses = (Object.values(errors) as unknown[]).filter(
  (v): v is ErrorClass => typeof v === "function" && v.prototype instanceof errors.FailoverError,
);
const errorNames = new Map(errorClasses.map((C) => [new C("x").name, new C("x")]));

describe("statemachine/failover.asl.json", () => {
  it("is valid ASL (asl-validator, paths checked) once substituted", () => {
    const result = validator(localDefinition(), { checkPaths: true, checkArn: true });
    expect(result.errors).toEqual([]);
    expect(result.isValid).toBe(true);
  });

  it("names in every ErrorEquals an error that errors.ts defines (or one AWS defines)", () => {
    const named = states.flatMap(([, s]) =>
      [...(s.Retry ?? []), ...(s.Catch ?? [])].flatMap((r) => r.ErrorEquals),
    );
    const unknown = named.filter((n) => !awsDefined(n) && !errorNames.has(n));
    expect(named.length).toBeGreaterThan(10);
    expect(unknown).toEqual([]);
  });

  it("retries every retryable error somewhere, and never a non-retryable one", () => {
    const retried = new Set(
      states.flatMap(([, s]) => (s.Retry ?? []).flatMap((r) => r.ErrorEquals)),
    );
    const retryable = [...errorNames.values()].filter((e) => e.retryable).map((e) => e.name);
    const nonRetryable = [...errorNames.values()].filter((e) => !e.retryable).map((e) => e.name);
    expect(retryable.filter((n) => !retried.has(n))).toEqual([]);
    expect(nonRetryable.filter((n) => retried.has(n))).toEqual([]);
    expect(retried.has("States.ALL")).toBe(false);
  });

  it("uses error names that survive minification (explicit name strings, unique)", () => {
    const names = errorClasses.map((C) => new C("x").name);
    expect(new Set(names).size).toBe(names.length);
    for (const [name, error] of errorNames) expect(error.constructor.name).toBe(name);
  });

  it("has exactly one placeholder per function, and substitution fills them all", () => {
    const wanted = FUNCTIONS.map((f) => placeholderOf(f.state)).sort();
    expect(placeholders(aslText())).toEqual(wanted);
    expect(JSON.stringify(localDefinition())).not.toMatch(/\$\{/);
    expect(() => substitute(aslText(), {})).toThrow(/missing .*PlanFunctionArn/);
    const all = Object.fromEntries(wanted.map((w) => [w, "arn"]));
    expect(() => substitute(aslText(), { ...all, Extra: "x" })).toThrow(/unused Extra/);
  });

  it("gives every Task except the failure path a Catch to RecordFailure, directly or through Compensate", () => {
    const top = Object.entries(definition.States);
    const tasks = top.filter(([, s]) => s.Type === "Task" || s.Type === "Parallel");
    const exempt = new Set(["RecordFailure", "Notify"]);
    // What can fail after something changed, before traffic moved, is compensated first.
    const compensated = new Set(["Converge", "ShiftTraffic"]);
    for (const [name, s] of tasks) {
      if (exempt.has(name)) continue;
      expect(
        s.Catch?.map((c) => [c.ErrorEquals.join(), c.Next]),
        name,
      ).toEqual([["States.ALL", compensated.has(name) ? "Compensate" : "RecordFailure"]]);
    }
    const done = definition.States["CompensateDone?"] as { Default?: string };
    expect(done.Default).toBe("RecordFailure");
  });

  it("bounds every loop: each Wait leads back to a poller whose result has a deadline, and the machine has a timeout", () => {
    expect(definition.TimeoutSeconds).toBe(EXECUTION_TIMEOUT_SECONDS);
    expect(LOCK_LEASE_SECONDS).toBeGreaterThan(EXECUTION_TIMEOUT_SECONDS);
    const waits = states.filter(([, s]) => s.Type === "Wait");
    expect(waits.map(([n]) => n).sort()).toEqual(
      [
        "AwaitAppsWait",
        "AwaitAuroraWait",
        "AwaitCapacityWait",
        "CompensateWait",
        "FenceWait",
        "NextTrafficStage",
        "VerifyTrafficWait",
      ].sort(),
    );
    const pollWaits = waits.filter(([, s]) => s.Next !== "ShiftTraffic");
    // Each poll loop waits as long as its poller says (functions/lib/pace.ts, bounded there);
    // test/asl/transitions.test.ts bounds the polls each deadline allows.
    for (const [name, s] of pollWaits)
      expect((s as { SecondsPath?: string }).SecondsPath, name).toMatch(
        /^\$\.\w+\.nextWaitSeconds$/,
      );
  });

  it("moves traffic only from the Converge state's success path, once the data phase is not deferred", () => {
    const into = states.filter(([, s]) => s.Next === "ShiftTraffic").map(([n]) => n);
    const choice = definition.States["DataDeferred?"] as unknown as {
      Choices: { Variable: string; StringEquals: string; Next: string }[];
      Default: string;
    };
    const intoChoice = states.filter(([, s]) => s.Next === "DataDeferred?").map(([n]) => n);

    expect(into.sort()).toEqual(["NextTrafficStage"]);
    expect(choice.Default).toBe("ShiftTraffic");
    expect(choice.Choices).toEqual([
      { Variable: "$.converge.promotion.status", StringEquals: "DEFERRED", Next: "DataPhase" },
    ]);
    expect(intoChoice).toEqual(["Converge"]);
  });

  it("demotes the source only after traffic moved and was verified, fences it, then reports", () => {
    const into = states.filter(([, s]) => s.Next === "DemoteSource").map(([n]) => n);
    const healthy = definition.States["TrafficHealthy?"] as unknown as {
      Choices: { Next: string }[];
    };

    expect(into).toEqual([]);
    expect(healthy.Choices.map((c) => c.Next)).toContain("DemoteSource");
    expect((definition.States.DemoteSource as { Next?: string }).Next).toBe("Fence");
    expect(
      states
        .filter(([, s]) => s.Next === "Fence")
        .map(([n]) => n)
        .sort(),
    ).toEqual(["DemoteSource", "FenceWait"]);
    const fenced = definition.States["Fenced?"] as unknown as { Choices: { Next: string }[] };
    expect(fenced.Choices.map((c) => c.Next)).toEqual(["Report", "FenceFailed"]);
  });
});
