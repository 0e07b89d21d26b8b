/**
 * Named errors. `error.name` is what Step Functions matches in `Retry`/`Catch` `ErrorEquals`,
 * so each class sets it explicitly (minified bundles rename classes). A test checks that every
 * name the ASL mentions is defined here and that every retryable error has a Retry rule.
 */
import { redact } from "./redact.ts";

export interface ErrorData {
  name: string;
  message: string;
  details?: string[];
}

export abstract class FailoverError extends Error {
  abstract override readonly name: string;
  /** Transient: the ASL retries it with backoff and jitter. */
  abstract readonly retryable: boolean;
  /** One line per problem, each saying what is wrong and where. */
  readonly details: string[];

  constructor(message: string, details: string[] = [], options?: { cause?: unknown }) {
    super(redact(details.length ? `${message}: ${details.join("; ")}` : message), options);
    this.details = details.map(redact);
  }

  /** The error as data, for a poller's `FAILED` result and the audit trail. */
  toData(): ErrorData {
    return {
      name: this.name,
      message: this.message,
      ...(this.details.length ? { details: this.details } : {}),
    };
  }
}

// Compensation
/** Compensation could not restore users and the writer to one region; the report lists the rest. */
export class CompensationIncomplete extends FailoverError {
  readonly name = "CompensationIncomplete";
  readonly retryable = false;
}

// Configuration and input
export class ConfigError extends FailoverError {
  readonly name = "ConfigError";
  readonly retryable = false;
}
export class InputValidationError extends FailoverError {
  readonly name = "InputValidationError";
  readonly retryable = false;
}
export class SecretUnavailable extends FailoverError {
  readonly name = "SecretUnavailable";
  readonly retryable = false;
}

// Spoke
export class SpokeUnreachable extends FailoverError {
  readonly name = "SpokeUnreachable";
  readonly retryable = true;
}
export class SpokeAuthError extends FailoverError {
  readonly name = "SpokeAuthError";
  readonly retryable = false;
}
export class SpokeNotReady extends FailoverError {
  readonly name = "SpokeNotReady";
  readonly retryable = false;
}

// Git
export class GitUnreachable extends FailoverError {
  readonly name = "GitUnreachable";
  readonly retryable = true;
}
export class GitAuthError extends FailoverError {
  readonly name = "GitAuthError";
  readonly retryable = false;
}
export class GitEditError extends FailoverError {
  readonly name = "GitEditError";
  readonly retryable = false;
}
export class GitPushConflict extends FailoverError {
  readonly name = "GitPushConflict";
  readonly retryable = true;
}
/**
 * Another execution's failover commit landed on the branch since this one planned (another
 * orchestrator region, or an operator): it owns the failover now, so this one stops before
 * anything of its own is pushed and before traffic moves.
 */
export class ConcurrentFailover extends FailoverError {
  readonly name = "ConcurrentFailover";
  readonly retryable = false;
}
/**
 * A commit pushed on top of the retarget commit makes the target region passive again (its
 * retarget values no longer hold there), and Argo CD deploys it: the failover cannot complete.
 */
export class RetargetUndone extends FailoverError {
  readonly name = "RetargetUndone";
  readonly retryable = false;
}
/**
 * The branch no longer contains the retarget commit (a force-push dropped it, or it is buried
 * deeper than the orchestrator looks) while Argo CD reports another revision.
 */
export class RetargetCommitLost extends FailoverError {
  readonly name = "RetargetCommitLost";
  readonly retryable = false;
}

// Argo CD
export class ArgoUnreachable extends FailoverError {
  readonly name = "ArgoUnreachable";
  readonly retryable = true;
}
export class ArgoAuthError extends FailoverError {
  readonly name = "ArgoAuthError";
  readonly retryable = false;
}
export class ArgoSyncFailed extends FailoverError {
  readonly name = "ArgoSyncFailed";
  readonly retryable = false;
}
export class ArgoSyncTimeout extends FailoverError {
  readonly name = "ArgoSyncTimeout";
  readonly retryable = false;
}

// Aurora
export class AuroraPromotionRefused extends FailoverError {
  readonly name = "AuroraPromotionRefused";
  readonly retryable = false;
}
export class AuroraPromotionFailed extends FailoverError {
  readonly name = "AuroraPromotionFailed";
  readonly retryable = false;
}
export class AuroraPromotionTimeout extends FailoverError {
  readonly name = "AuroraPromotionTimeout";
  readonly retryable = false;
}

// Traffic
export class TrafficPreconditionFailed extends FailoverError {
  readonly name = "TrafficPreconditionFailed";
  readonly retryable = false;
}
export class TrafficShiftFailed extends FailoverError {
  readonly name = "TrafficShiftFailed";
  readonly retryable = false;
}
export class TrafficVerifyTimeout extends FailoverError {
  readonly name = "TrafficVerifyTimeout";
  readonly retryable = false;
}

// AWS APIs in general
export class AwsThrottled extends FailoverError {
  readonly name = "AwsThrottled";
  readonly retryable = true;
}
export class AwsUnavailable extends FailoverError {
  readonly name = "AwsUnavailable";
  readonly retryable = true;
}

/**
 * A spoke or an Argo CD hub answered with more bytes than any real answer has: a server that
 * is broken or hostile, or a selector far too wide. Never retried: the next answer is the same.
 */
export class ResponseTooLarge extends FailoverError {
  readonly name = "ResponseTooLarge";
  readonly retryable = false;
}

// Workflow
export class StepTimeout extends FailoverError {
  readonly name = "StepTimeout";
  readonly retryable = true;
}
/** Another failover of the same platform holds the single-flight lock. */
export class FailoverInProgress extends FailoverError {
  readonly name = "FailoverInProgress";
  readonly retryable = false;
}
/** The target region's own health check says it is failing: moving there would not help. */
export class TargetUnhealthy extends FailoverError {
  readonly name = "TargetUnhealthy";
  readonly retryable = false;
}
/** An operator rejected the failover at the Approval step. */
export class ApprovalRejected extends FailoverError {
  readonly name = "ApprovalRejected";
  readonly retryable = false;
}

// Fencing and failback
/**
 * After traffic moved: an old region still serves or writes (its dial is up, it holds Aurora's
 * writer, or its apps did not go passive). The failover itself completed; the report says what
 * is still live there and the commands that fence it.
 */
export class OldRegionNotFenced extends FailoverError {
  readonly name = "OldRegionNotFenced";
  readonly retryable = false;
}
/** A failback's pre-checks found the region it would return to not ready to take the platform. */
export class FailbackRefused extends FailoverError {
  readonly name = "FailbackRefused";
  readonly retryable = false;
}
// Capacity parity
/** The target did not reach the committed replicas Ready by the gate's deadline: traffic stays. */
export class TargetCapacityShort extends FailoverError {
  readonly name = "TargetCapacityShort";
  readonly retryable = false;
}
/** The source's capacity is neither readable nor stored, and the topology says refuse. */
export class CapacityUnknown extends FailoverError {
  readonly name = "CapacityUnknown";
  readonly retryable = false;
}

/** Anything that is not one of ours (a bug, a library error): reported by name, never with a stack. */
export class UnexpectedError extends FailoverError {
  readonly name = "UnexpectedError";
  readonly retryable = false;
}

// Cross-account
/**
 * STS refused to let the function assume a resource's role (no trust, a wrong external id, a
 * missing sts:AssumeRole grant): says which role, from which account, and the trust it lacks.
 * Never retried: the next attempt is refused the same way until the policy changes.
 */
export class AssumeRoleRefused extends FailoverError {
  readonly name = "AssumeRoleRefused";
  readonly retryable = false;
}

/** True for our named errors (as opposed to bugs and library errors). */
export function isFailoverError(e: unknown): e is FailoverError {
  return e instanceof FailoverError;
}

/** A short, redacted description of any thrown value, for messages and logs. */
export function describe(e: unknown): string {
  if (e instanceof Error) return redact(`${e.name}: ${e.message}`);
  return redact(String(e));
}
