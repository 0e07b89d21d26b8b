/**
 * Poll windows. A poller does one check per invocation; the window (start, deadline, count)
 * travels in the execution state so the deadline is fixed when the step began, whatever the
 * Wait states and retries in between.
 */
import type { PollProgress } from "./state.ts";

/** Seconds of every polling Wait state in the ASL (a test holds the two together). */
export const POLL_INTERVAL_SECONDS = 10;

export interface PollWindow {
  startedAt: string;
  deadline: string;
  polls: number;
  checkedAt: string;
  /** True when this poll ran at or after the deadline, or used up the window's polls. */
  expired: boolean;
}

/**
 * Continues the window in `previous`, or opens a new one of `seconds` when there is none
 * (or when `stage` differs: each traffic stage has its own window). A window also ends after
 * `seconds / POLL_INTERVAL_SECONDS` polls (for a paced loop, once the waits it asked for reach
 * `seconds` too, never sooner): the loop stays bounded even where time runs compressed (the
 * sandbox) or a clock misbehaves.
 */
export function pollWindow(
  previous: PollProgress | undefined,
  seconds: number,
  now: Date = new Date(),
  stage?: number,
): PollWindow {
  const fresh = !previous?.deadline || !previous.startedAt || previous.stage !== stage;
  const startedAt = fresh ? now.toISOString() : (previous.startedAt as string);
  const deadline = fresh
    ? new Date(now.getTime() + seconds * 1000).toISOString()
    : (previous.deadline as string);
  const polls = (fresh ? 0 : (previous.polls ?? 0)) + 1;
  const asked =
    fresh || previous.pacedSeconds === undefined
      ? Number.POSITIVE_INFINITY
      : previous.pacedSeconds + (previous.nextWaitSeconds ?? 0);
  return {
    startedAt,
    deadline,
    polls,
    checkedAt: now.toISOString(),
    expired: now.getTime() >= Date.parse(deadline) || pollsSpent(polls, asked, seconds),
  };
}

/**
 * Where time runs compressed (the sandbox), a window of `seconds` is over once its `polls`
 * (POLL_INTERVAL_SECONDS each) reach it; for a paced loop (functions/lib/pace.ts), which may poll
 * more often, only once the waits it asked for (`askedSeconds`) reach it too: never before its
 * deadline in AWS time.
 */
export function pollsSpent(polls: number, askedSeconds: number, seconds: number): boolean {
  return polls * POLL_INTERVAL_SECONDS >= seconds && askedSeconds >= seconds;
}
