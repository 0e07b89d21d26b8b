/**
 * The cross-cutting part of every handler: structured, redacted logging with the Lambda
 * context, an X-Ray segment per invocation, the invocation's metrics flushed as EMF, an early
 * named timeout before Lambda's own, errors turned into named errors whose messages carry no
 * secrets and no stack, and one audit event per step outcome.
 */
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import { captureLambdaHandler } from "@aws-lambda-powertools/tracer/middleware";
import middy, { type MiddlewareObj } from "@middy/core";
import type { Context } from "aws-lambda";
import { type AuditOutcome, appendAuditEvent } from "./audit.ts";
import { withSessionName } from "./aws.ts";
import { describe, FailoverError, StepTimeout, UnexpectedError } from "./errors.ts";
import { logger, metrics, tracer } from "./telemetry.ts";

export { logger } from "./telemetry.ts";

function namedErrors(step: string): MiddlewareObj {
  return {
    onError: (request) => {
      const error = request.error;
      const named =
        error instanceof FailoverError
          ? error
          : new UnexpectedError(`[${step}] ${describe(error)}`, [], { cause: error });
      logger.error(`${step} failed`, { error: named.toData() });
      request.error = named;
    },
  };
}

/** What a step's event says about who asked and which execution it belongs to. */
interface StepEvent {
  execution?: { name?: string };
  input?: { requestedBy?: string };
  state?: { execution?: { name?: string }; input?: { requestedBy?: string } };
}

/** What a step's result says about its outcome; every step returns a subset of these. */
interface StepResult {
  status?: string;
  skipped?: boolean;
  polls?: number;
  error?: { name: string; message: string };
  [key: string]: unknown;
}

/** The action each step performs, as the audit trail and the report name it. */
const STEP_ACTIONS: Record<string, string> = {
  Plan: "validate the input, snapshot the platform, plan the remaining steps",
  Approval: "ask an operator to approve",
  VerifySpoke: "verify the target spoke(s): readyz, nodes, namespaces, secret operators",
  CommitRetarget: "commit the retarget to Git",
  AwaitArgoSync: "wait for Argo CD: apps Synced at the commit and Healthy",
  AwaitCapacity: "wait for the committed capacity: replicas Ready on the target",
  PromoteAurora: "promote Aurora in the target region",
  AwaitAurora: "wait for the Aurora writer in the target region",
  ShiftTraffic: "shift traffic to the target region",
  VerifyTraffic: "verify the target's endpoints are healthy",
  DemoteSource: "commit the old region(s) passive, now that traffic is on the target",
  Fence: "verify the old region(s) cannot serve or write",
  Compensate: "restore users and a writable database in one region after the failure",
};

function outcomeOf(result: StepResult): AuditOutcome {
  if (result.status === "FAILED") return "FAILED";
  if (result.status === "IN_PROGRESS") return "IN_PROGRESS";
  return result.skipped ? "SKIPPED" : "SUCCEEDED";
}

/** The before/after a step's result carries, in the platform's terms. */
function beforeAfter(step: string, result: StepResult): { before?: unknown; after: unknown } {
  const r = result as Record<string, unknown> & StepResult;
  switch (step) {
    case "Plan": {
      const plan = r.plan as { before?: unknown; needs?: unknown; actions?: unknown } | undefined;
      return { before: plan?.before, after: { needs: plan?.needs, actions: plan?.actions } };
    }
    case "CommitRetarget":
      return {
        before: { gitHead: r.previousSha },
        after: {
          gitHead: r.sha,
          subject: r.subject,
          changes: r.changes,
          ...(r.floors ? { floors: r.floors } : {}),
        },
      };
    case "DemoteSource":
      return {
        before: { gitHead: r.previousSha },
        after: {
          gitHead: r.sha,
          subject: r.subject,
          changes: r.changes,
          regions: r.regions,
          ...(r.reason ? { reason: r.reason } : {}),
        },
      };
    case "Compensate":
      return {
        after: {
          actions: r.actions,
          servingRegion: r.servingRegion,
          writerRegion: r.writerRegion,
          ...(r.revertCommit ? { revertCommit: r.revertCommit } : {}),
        },
      };
    case "PromoteAurora":
      return {
        before: { auroraWriterRegion: r.writerBefore },
        after: {
          action: r.action,
          calledIn: r.calledIn,
          ...(r.actor ? { actor: r.actor } : {}),
          // Capacity parity: the target's MinCapacity before/after, a failback's restore.
          ...(r.auroraCapacity ? { auroraCapacity: r.auroraCapacity } : {}),
          ...(r.auroraRestore ? { auroraRestore: r.auroraRestore } : {}),
        },
      };
    case "ShiftTraffic": {
      const changes = (r.changes as { region: string; from: number }[] | undefined) ?? [];
      const dials = (r.dials as Record<string, number> | undefined) ?? {};
      const before = { ...dials, ...Object.fromEntries(changes.map((c) => [c.region, c.from])) };
      const actors = (r.changes as { region: string; actor?: object }[] | undefined) ?? [];
      const writes = actors.flatMap((c) => (c.actor ? [{ region: c.region, ...c.actor }] : []));
      return {
        before: { trafficDials: before },
        after: {
          trafficDials: dials,
          stage: r.stage,
          percent: r.percent,
          ...(writes.length ? { actors: writes } : {}),
        },
      };
    }
    default:
      return { after: result };
  }
}

/**
 * Appends the step's outcome to the audit trail: one event per step, and for pollers only the
 * first poll and the last (the trail records decisions, not every look). Report and
 * RecordFailure close the chain themselves (the report records the closed chain's length and
 * head); Notify runs after the close and appends nothing, so that closing event stays last.
 */
function auditTrail(step: string): MiddlewareObj<StepEvent, StepResult> {
  const startedAt = (request: { internal: unknown }) => {
    const at = (request.internal as Record<string, unknown>).startedAt;
    return typeof at === "string" ? at : new Date().toISOString();
  };
  const identity = (event: StepEvent) => ({
    execution: event.execution?.name ?? event.state?.execution?.name,
    actor: event.input?.requestedBy ?? event.state?.input?.requestedBy ?? "unknown",
  });
  return {
    before: (request) => {
      (request.internal as Record<string, unknown>).startedAt = new Date().toISOString();
    },
    after: async (request) => {
      const { execution, actor } = identity(request.event);
      const result = request.response ?? {};
      const outcome = outcomeOf(result);
      if (!execution || (outcome === "IN_PROGRESS" && (result.polls ?? 1) > 1)) return;
      await appendAuditEvent({
        execution,
        step,
        actor,
        action: STEP_ACTIONS[step] ?? step,
        outcome,
        ...beforeAfter(step, result),
        ...(result.error ? { detail: `${result.error.name}: ${result.error.message}` } : {}),
        startedAt: startedAt(request),
        endedAt: new Date().toISOString(),
      });
    },
    onError: async (request) => {
      const { execution, actor } = identity(request.event);
      if (!execution) return;
      await appendAuditEvent({
        execution,
        step,
        actor,
        action: STEP_ACTIONS[step] ?? step,
        outcome: "FAILED",
        detail: describe(request.error),
        startedAt: startedAt(request),
        endedAt: new Date().toISOString(),
      }).catch((e: unknown) =>
        logger.error("could not append to the audit trail", { error: describe(e) }),
      );
    },
  };
}

/**
 * Wraps a step function as a Lambda handler. `step` is the ASL state name, used in logs, error
 * messages and the audit trail so a failure always says where it happened.
 */
export function stepHandler<TEvent, TResult>(
  step: string,
  fn: (event: TEvent) => Promise<TResult>,
  options: { audit?: boolean } = {},
) {
  const handler = middy<TEvent, TResult, Error, Context>({
    timeoutEarlyInMillis: 2000,
    timeoutEarlyResponse: () => {
      throw new StepTimeout(`[${step}] stopped 2 s before the Lambda timeout; it is safe to retry`);
    },
  })
    .use(captureLambdaHandler(tracer, { captureResponse: false }))
    .use(logMetrics(metrics))
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(namedErrors(step));
  if (options.audit !== false)
    handler.use(auditTrail(step) as unknown as MiddlewareObj<TEvent, TResult>);
  return handler.handler(async (event: TEvent) => {
    logger.appendKeys({ step });
    tracer.putAnnotation("Step", step);
    // Roles assumed in other accounts carry the execution's name (CloudTrail there shows it).
    const e = event as StepEvent;
    const execution = e?.execution?.name ?? e?.state?.execution?.name;
    const result = await withSessionName(execution, () => fn(event));
    logger.info(`${step} done`, { result: result as Record<string, unknown> });
    return result;
  });
}
