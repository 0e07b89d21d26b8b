/**
 * Adaptive poll waits. A fixed 10 s Wait finds a service done up to 10 s late and polls a slow
 * one every 10 s until its deadline (60 polls in 600 s: 180 state transitions for one loop).
 * Instead each poller returns `nextWaitSeconds`, which the loop's Wait reads (SecondsPath):
 * halving the distance to the service's expected completion (short waits just before it), then
 * a backoff that doubles with the lateness, bounded by MAX_WAIT_SECONDS. A service done on time
 * is seen within MIN_WAIT_SECONDS; a late one within about its lateness; a loop makes a few
 * dozen transitions at most whatever its deadline (see maxPollsOf).
 */

/**
 * The shortest wait: the finest quantization near the expected completion (3 s: at 2 s the
 * worst case of a failover passes 200 state transitions, test/asl/transitions.test.ts).
 */
export const MIN_WAIT_SECONDS = 3;
/** The longest wait: how late, at worst, a service that is very late is seen. */
export const MAX_WAIT_SECONDS = 120;

/**
 * When each loop's service is expected to be done, in seconds after its window opened
 * (cloud-facts.md): Argo CD applies a commit it was told about (webhook/refresh) and rolls out
 * in about half a minute; an Aurora switchover or failover completes in under a minute; a
 * target's endpoints are healthy in GA already (checked at once, then backed off).
 */
export const EXPECTED_SECONDS = {
  argoSync: 30,
  aurora: 60,
  trafficVerify: 0,
  /** Compensate waits for a promotion (its own or a switch back) when it waits at all. */
  compensate: 60,
  /**
   * Fence: the dials and the writer are right at once, and the old region's apps go passive as
   * soon as Argo CD applies the demote commit it was told about: checked at once, then backed off.
   */
  fence: 0,
  /**
   * The capacity gate looks for pods left Pending for want of nodes: they show as soon as Argo CD
   * applies the floors; checked at once, then backed off.
   */
  capacity: 0,
} as const;

/** Seconds to wait before the next poll, `elapsed` seconds into a window expecting `expected`. */
export function nextWaitSeconds(elapsed: number, expected: number): number {
  const before = expected - elapsed;
  const wait = before > 0 ? Math.ceil(before / 2) : Math.ceil(-before);
  return Math.min(MAX_WAIT_SECONDS, Math.max(MIN_WAIT_SECONDS, wait));
}

/** What a paced poll remembers of its window between invocations. */
export interface Paced {
  startedAt?: string;
  checkedAt?: string;
  nextWaitSeconds?: number;
  /** Seconds of Wait the loop asked for in this window so far. */
  pacedSeconds?: number;
}

/**
 * The wait after a poll: `elapsed` is the time since the window opened by the clock, or the
 * waits the loop asked for so far when more (time-compressed runs, a clock that lags).
 */
export function paceOf(
  result: Paced,
  previous: Paced | undefined,
  expected: number,
): { nextWaitSeconds: number; pacedSeconds: number } {
  const start = Date.parse(result.startedAt ?? "");
  const at = Date.parse(result.checkedAt ?? "");
  const byClock = Number.isFinite(start) && Number.isFinite(at) ? (at - start) / 1000 : 0;
  const sameWindow = previous?.startedAt !== undefined && previous.startedAt === result.startedAt;
  const pacedSeconds = sameWindow
    ? (previous.pacedSeconds ?? 0) + (previous.nextWaitSeconds ?? 0)
    : 0;
  return {
    nextWaitSeconds: nextWaitSeconds(Math.max(0, byClock, pacedSeconds), expected),
    pacedSeconds,
  };
}

/**
 * The most polls a loop can make before its deadline, when every poll takes no time (the first
 * at 0, the last at or after `deadline`): what bounds its state transitions.
 */
export function maxPollsOf(expected: number, deadline: number): number {
  let elapsed = 0;
  let polls = 1;
  while (elapsed < deadline) {
    elapsed += nextWaitSeconds(elapsed, expected);
    polls++;
  }
  return polls;
}

/**
 * A poller whose result also says when to poll next (its loop's Wait reads `nextWaitSeconds`);
 * `previousOf` finds its previous result in the state.
 */
export function paced<S, R extends Paced>(
  poll: (state: S) => Promise<R>,
  expected: number,
  previousOf: (state: S) => Paced | undefined,
): (state: S) => Promise<R & { nextWaitSeconds: number; pacedSeconds: number }> {
  return async (state) => {
    const result = await poll(state);
    return { ...result, ...paceOf(result, previousOf(state), expected) };
  };
}
