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

interface Loop {
  expected: number;
  deadline: number;
}

/**
 * Each poll loop's pace and deadline, as its pollers use them (functions/lib/steps.ts), by its
 * first Task. The apps loop polls Argo CD and the capacity gate in each pass until Argo CD is
 * done; then only the gate (its own loop, `AwaitCapacity`) for `gateSeconds` at most, within
 * Argo CD's deadline (functions/lib/capacity.ts).
 */
const LOOPS: Record<string, Loop> = {
  AwaitArgoSync: { expected: EXPECTED_SECONDS.argoSync, deadline: t.argoSyncSeconds },
  // The example topology names no capacity floors: the schema's default gate deadline.
  AwaitCapacity: {
    expected: EXPECTED_SECONDS.capacity,
    deadline: topology.capacity?.gateSeconds ?? 120,
  },
  AwaitAurora: { expected: EXPECTED_SECONDS.aurora, deadline: t.auroraSeconds },
  VerifyTraffic: { expected: EXPECTED_SECONDS.trafficVerify, deadline: t.trafficVerifySeconds },
  Compensate: { expected: EXPECTED_SECONDS.compensate, deadline: t.auroraSeconds },
  Fence: { expected: EXPECTED_SECONDS.fence, deadline: FENCE_SECONDS },
};

/** When each poll of a loop runs, in seconds after its first, up to the one at its deadline. */
function pollTimes(loop: Loop): number[] {
  const times = [0];
  for (let at = 0; at < loop.deadline; times.push(at)) at += nextWaitSeconds(at, loop.expected);
  return times;
}

/**
 * States entered by a loop of `perPass` states a pass that, done at any of its polls, hands
 * over to `then` (`thenPerPass` states a pass) until `then`'s deadline or its own, whichever
 * comes first: the most over every poll it could be done at.
 */
function handOverCount(first: Loop, perPass: number, then: Loop, thenPerPass: number): number {
  return Math.max(
    ...pollTimes(first).map((doneAt, i) => {
      const end = Math.min(doneAt + then.deadline, first.deadline);
      const after = pollTimes({ ...then, deadline: Math.max(0, end - doneAt) }).length - 1;
      return perPass * (i + 1) + thenPerPass * after - 1;
    }),
  );
}

/** The Tasks of a pass from `task` to its Choice (one, or several polled in a row). */
function passOf(states: Record<string, State>, task: string): string[] {
  const tasks: string[] = [];
  for (let name = task; states[name]?.Type === "Task"; name = states[name]?.Next ?? "")
    tasks.push(name);
  return tasks;
}

/** First Task -> its loop's paced Wait: Task (-> Task...) -> Choice -> Wait -> the same Task. */
function pollLoops(states: Record<string, State>): Map<string, string> {
  const loops = new Map<string, string>();
  for (const [name, s] of Object.entries(states)) {
    // A poll loop's Wait is paced (SecondsPath); a fixed Wait between traffic stages is not one.
    const pass = s.Type === "Wait" && s.SecondsPath && s.Next ? passOf(states, s.Next) : [];
    const choice = states[states[pass.at(-1) ?? ""]?.Next ?? ""];
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
    // The Tasks and the Choice per pass, the Wait between passes; then the Choice's exits or a
    // Catch of any of its Tasks.
    const loop = LOOPS[start];
    if (!loop) throw new Error(`poll loop ${start} has no pace in this test`);
    const pass = passOf(states, start).map((n) => states[n] as State);
    const choiceName = pass.at(-1)?.Next ?? "";
    const choice = states[choiceName];
    const exits = [
      ...(choice?.Choices ?? []).map((c) => c.Next),
      ...(choice?.Default ? [choice.Default] : []),
    ];
    // An exit into another loop that shares this Choice: the hand-over (the apps loop's gate).
    const [then, thenWait] =
      [...loops].find(
        ([task, w]) =>
          task !== start &&
          exits.includes(w) &&
          states[passOf(states, task).at(-1) ?? ""]?.Next === choiceName,
      ) ?? [];
    const thenLoop = then ? LOOPS[then] : undefined;
    count = thenLoop
      ? handOverCount(loop, pass.length + 2, thenLoop, passOf(states, then ?? "").length + 2)
      : (pass.length + 2) * pollTimes(loop).length - 1;
    nexts = [...exits, ...pass.flatMap((p) => (p.Catch ?? []).map((c) => c.Next))].filter(
      (n) => n !== wait && n !== thenWait,
    );
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
    expect(t).toMatchObject({
      argoSyncSeconds: 600,
      auroraSeconds: 600,
      trafficVerifySeconds: 300,
    });
    expect(pollTimes(LOOPS.AwaitArgoSync as Loop)).toHaveLength(
      maxPollsOf(EXPECTED_SECONDS.argoSync, t.argoSyncSeconds),
    );
    expect(maxPollsOf(EXPECTED_SECONDS.argoSync, t.argoSyncSeconds)).toBeLessThanOrEqual(20);
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
