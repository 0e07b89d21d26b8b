/**
 * Route 53 health checks as the orchestrator reads them: the fraction of checker regions that
 * currently see an endpoint failing. Used by the trigger to corroborate an alarm and by Plan to
 * refuse a target that is itself failing.
 */
import { GetHealthCheckStatusCommand } from "@aws-sdk/client-route-53";
import { awsError, type RoleAccess, route53Client } from "./aws.ts";
import { UnexpectedError } from "./errors.ts";

export interface HealthCheckView {
  healthCheckId: string;
  checkers: number;
  failing: number;
  /** failing / checkers; 1 when no checker reported (nothing says the endpoint is up). */
  failingFraction: number;
}

/** Reads a health check's last observations: a checker is healthy when its report starts with "Success". */
export async function readHealthCheck(
  healthCheckId: string,
  role?: RoleAccess,
): Promise<HealthCheckView> {
  let observations: { StatusReport?: { Status?: string } }[];
  try {
    const out = await route53Client(role).send(
      new GetHealthCheckStatusCommand({ HealthCheckId: healthCheckId }),
    );
    observations = out.HealthCheckObservations ?? [];
  } catch (e) {
    throw awsError(e, `reading Route 53 health check ${healthCheckId}`, UnexpectedError);
  }
  const failing = observations.filter((o) => !o.StatusReport?.Status?.startsWith("Success")).length;
  const checkers = observations.length;
  return { healthCheckId, checkers, failing, failingFraction: checkers ? failing / checkers : 1 };
}
