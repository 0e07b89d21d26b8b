/**
 * State transitions per failover in the worst case the default deadlines allow, computed from
 * the ASL and the topology defaults (not timed): every path through the definition, each poll
 * loop repeated as often as its pace allows before its deadline (functions/lib/pace.ts), each
 * Parallel counting its longest branches, Converge entered twice (graceful), ShiftTraffic once
 * per traffic stage. Retries are not counted (a retried Task is not a new state entered here).
 */
import { describe, expect, it } from "vitest";
import { loadTopology } from "../../functions/lib/config.ts";
import {
  EXPECTED_SECONDS,
  MAX_WAIT_SECONDS,
  MIN_WAIT_SECONDS,
  maxPollsOf,
  nextWaitSeconds,
} from "../../functions/lib/pace.ts";
import { FENCE_SECONDS } from "../../functions/lib/steps.ts";
import { DEFAULT_TOPOLOGY } from "../../infra/lib/settings.ts";
import { aslText } from "../../statemachine/definition.ts";

interface State {
  Type: string;
  Next?: string;
  Default?: string;
  End?: boolean;
  Choices?: { Next: string }[];
  Catch?: { Next: string }[];
  Branches?: { StartAt: string; States: Record<string, State> }[];
  SecondsPath?: string;
}

const definition = JSON.parse(aslText()) as { StartAt: string; States: Record<string, State> };
const topology = loadTopology(DEFAULT_TOPOLOGY);
const t = topology.timeouts;

/** Each poll loop's pace and deadline, as its poller uses them (functions/lib/steps.ts). */
const LOOPS: Record<string, { expected: number; deadline: number }> = {
  AwaitArgoSync: { expected: EXPECTED_SECONDS.argoSync, deadline: t.argoSyncSeconds },
  AwaitAurora: { expected: EXPECTED_SECONDS.aurora, deadline: t.auroraSeconds },
  VerifyTraffic: { expected: EXPECTED_SECONDS.trafficVerify, deadline: t.trafficVerifySeconds },
  Compensate: { expected: EXPECTED_SECONDS.compensate, deadline: t.auroraSeconds },
  Fence: { expected: EXPECTED_SECONDS.fence, deadline: FENCE_SECONDS },
  // The example topology names no capacity floors: the schema's default gate deadline.
  AwaitCapacity: {
    expected: EXPECTED_SECONDS.capacity,
    deadline: topology.capacity?.gateSeconds ?? 120,
  },
};

/** Task -> its loop's Wait: Task -> Choice -> Wait -> the same Task (a poll loop). */
function pollLoops(states: Record<string, State>): Map<string, string> {
  const loops = new Map<string, string>();
  for (const [name, s] of Object.entries(states)) {
    const task = s.Type === "Wait" && s.Next ? states[s.Next] : undefined;
    const choice = task?.Type === "Task" ? states[task.Next ?? ""] : undefined;
    const back = [choice?.Default, ...(choice?.Choices ?? []).map((c) => c.Next)];
    if (s.Next && choice?.Type === "Choice" && back.includes(name)) loops.set(s.Next, name);
    for (const b of s.Branches ?? []) for (const [k, v] of pollLoops(b.States)) loops.set(k, v);
  }
  return loops;
}

const loops = pollLoops(definition.States);
const limits: Record<string, number> = {
  Converge: 2,
  ShiftTraffic: topology.traffic.stages.length,
  NextTrafficStage: topology.traffic.stages.length - 1,
};

/** What the path knows of the input: the mode, and whether Converge runs its data phase. */
interface Facts {
  mode: "graceful" | "ungraceful";
  phase: boolean;
  deferred: boolean;
}

interface Rule {
  Variable?: string;
  StringEquals?: string;
  IsPresent?: boolean;
  Or?: Rule[];
  Next?: string;
}

/** A Choice rule on what the path knows: true or false; undefined when it reads live data. */
function decide(rule: Rule, f: Facts): boolean | undefined {
  if (rule.Or) {
    const parts = rule.Or.map((r) => decide(r, f));
    if (parts.includes(true)) return true;
    return parts.includes(undefined) ? undefined : false;
  }
  if (rule.Variable === "$.input.mode") return rule.StringEquals === f.mode;
  if (rule.Variable === "$.convergePhase") return rule.IsPresent === f.phase;
  if (rule.Variable === "$.converge.promotion.status" && rule.StringEquals === "DEFERRED")
    return f.deferred;
  return undefined;
}

/** The most states entered from `start` to the end of `states`, with visit counts `seen`. */
function longest(
  states: Record<string, State>,
  start: string,
  seen: Map<string, number>,
  f: Facts,
  path: string[],
): { count: number; path: string[] } {
  const s = states[start];
  if (!s) throw new Error(`no state ${start}`);
  const visits = (seen.get(start) ?? 0) + 1;
  if (visits > (limits[start] ?? 1)) return { count: Number.NEGATIVE_INFINITY, path };
  const here = new Map(seen).set(start, visits);
  let facts = f;
  let count = 1;
  let nexts: string[] = [];
  const wait = loops.get(start);
  if (wait) {
    // Task and Choice per poll, the Wait between polls; then the Choice's exits or a Catch.
    const loop = LOOPS[start];
    if (!loop) throw new Error(`poll loop ${start} has no pace in this test`);
    count = 3 * maxPollsOf(loop.expected, loop.deadline) - 1;
    const choice = states[s.Next ?? ""];
    nexts = [
      ...(choice?.Choices ?? []).map((c) => c.Next),
      ...(choice?.Default ? [choice.Default] : []),
      ...(s.Catch ?? []).map((c) => c.Next),
    ].filter((n) => n !== wait);
  } else if (s.Type === "Parallel") {
    for (const b of s.Branches ?? []) count += longest(b.States, b.StartAt, new Map(), f, []).count;
    facts = { ...f, deferred: f.mode === "graceful" && !f.phase };
    nexts = [...(s.Next ? [s.Next] : []), ...(s.Catch ?? []).map((c) => c.Next)];
  } else if (s.Type === "Choice") {
    for (const rule of (s.Choices ?? []) as Rule[]) {
      const d = decide(rule, f);
      if (d === false) continue;
      nexts.push(rule.Next ?? "");
      if (d === true) break;
    }
    const decided = ((s.Choices ?? []) as Rule[]).some((r) => decide(r, f) === true);
    if (!decided && s.Default) nexts.push(s.Default);
  } else {
    if (start === "DataPhase") facts = { ...f, phase: true };
    nexts = [...(s.Next ? [s.Next] : []), ...(s.Catch ?? []).map((c) => c.Next)];
  }
  let best = { count, path: [...path, start] };
  for (const n of new Set(nexts)) {
    const rest = longest(states, n, here, facts, [...path, start]);
    if (count + rest.count > best.count) best = { count: count + rest.count, path: rest.path };
  }
  return best;
}

function worstCase() {
  const paths = (["graceful", "ungraceful"] as const).map((mode) =>
    longest(
      definition.States,
      definition.StartAt,
      new Map(),
      {
        mode,
        phase: false,
        deferred: false,
      },
      [],
    ),
  );
  return paths.sort((a, b) => b.count - a.count)[0] ?? { count: 0, path: [] };
}

describe("state transitions per failover", () => {
  it("every poll loop of the ASL is paced (its Wait reads the poller's nextWaitSeconds) and listed here", () => {
    expect([...loops.keys()].sort()).toEqual(Object.keys(LOOPS).sort());
    for (const [task, wait] of loops) {
      const every = (states: Record<string, State>): State[] =>
        Object.values(states).flatMap((s) => [
          s,
          ...(s.Branches ?? []).flatMap((b) => every(b.States)),
        ]);
      const waitState = every(definition.States).find((s) => s.Type === "Wait" && s.Next === task);
      expect(waitState?.SecondsPath, wait).toMatch(/^\$\.[a-zA-Z]+\.nextWaitSeconds$/);
    }
  });

  it("stays under 200 in the worst case the default deadlines allow", () => {
    const worst = worstCase();
    const polls = Object.fromEntries(
      Object.entries(LOOPS).map(([k, l]) => [k, maxPollsOf(l.expected, l.deadline)]),
    );
    expect(t).toMatchObject({
      argoSyncSeconds: 600,
      auroraSeconds: 600,
      trafficVerifySeconds: 300,
    });
    expect(polls.AwaitArgoSync).toBeLessThanOrEqual(20);
    expect(worst.count, worst.path.join(" > ")).toBeLessThan(200);
  });

  it("the pace: short near the expected completion, doubling after it, within its bounds", () => {
    expect(nextWaitSeconds(0, 60)).toBe(30);
    expect(nextWaitSeconds(58, 60)).toBe(MIN_WAIT_SECONDS);
    expect(nextWaitSeconds(61, 60)).toBe(MIN_WAIT_SECONDS);
    expect(nextWaitSeconds(90, 60)).toBe(30);
    expect(nextWaitSeconds(10_000, 60)).toBe(MAX_WAIT_SECONDS);
    // A fixed 10 s wait made 60 polls of a 600 s deadline.
    expect(maxPollsOf(60, 600)).toBeLessThan(600 / 10 / 3);
  });
});
