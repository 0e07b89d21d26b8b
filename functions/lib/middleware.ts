/**
 * The cross-cutting part of every handler: structured, redacted logging with the Lambda
 * context, an early named timeout before Lambda's own, and errors turned into named errors
 * whose messages carry no secrets and no stack.
 */
import { Logger } from "@aws-lambda-powertools/logger";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy, { type MiddlewareObj } from "@middy/core";
import type { Context } from "aws-lambda";
import { describe, FailoverError, StepTimeout, UnexpectedError } from "./errors.ts";
import { redact } from "./redact.ts";

/** One logger per container; every string it writes passes through `redact`. */
export const logger = new Logger({
  serviceName: "gitops-failover",
  jsonReplacerFn: (_key: string, value: unknown) => (typeof value === "string" ? redact(value) : value),
});

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

/**
 * Wraps a step function as a Lambda handler. `step` is the ASL state name, used in logs and
 * error messages so a failure always says where it happened.
 */
export function stepHandler<TEvent, TResult>(step: string, fn: (event: TEvent) => Promise<TResult>) {
  return middy<TEvent, TResult, Error, Context>({
    timeoutEarlyInMillis: 2000,
    timeoutEarlyResponse: () => {
      throw new StepTimeout(`[${step}] stopped 2 s before the Lambda timeout; it is safe to retry`);
    },
  })
    .use(injectLambdaContext(logger, { resetKeys: true }))
    .use(namedErrors(step))
    .handler(async (event: TEvent) => {
      logger.appendKeys({ step });
      const result = await fn(event);
      logger.info(`${step} done`, { result: result as Record<string, unknown> });
      return result;
    });
}
