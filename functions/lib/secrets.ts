/**
 * Secrets Manager access. Values are cached per container for a short time (until a client
 * reports the token refused: invalidateSecretToken), registered for redaction, and never returned in
 * a step's output.
 *
 * A failover runs exactly when a region is failing, and that region may be the one a secret
 * lives in. Secrets Manager replicates a secret to other regions under the same name and
 * suffix (only the region of the ARN differs), so a function reads the replica in its own
 * region first and falls back to the ARN's region; a secret with neither readable fails with
 * the command that adds the missing replica.
 */
import { DescribeSecretCommand, GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import { awsError, configuredRegion, type RoleAccess, regionOfArn, secretsClient } from "./aws.ts";
import {
  AssumeRoleRefused,
  AwsThrottled,
  AwsUnavailable,
  describe,
  type FailoverError,
  SecretUnavailable,
} from "./errors.ts";
import { logger } from "./middleware.ts";
import { registerSecret } from "./redact.ts";

const TTL_MS = 5 * 60 * 1000;
const cache = new Map<string, { value: SecretValue; at: number }>();

/** A token secret (`{"token": ...}`) or basic credentials (`{"username": ..., "token"|"password": ...}`). */
export interface SecretValue {
  token: string;
  username?: string;
}

/** The region of a Secrets Manager ARN (`arn:<partition>:secretsmanager:<region>:...`). */
function secretRegion(arn: string): string {
  return regionOfArn(arn) ?? "us-east-1";
}

/**
 * The ARN of the secret's replica in `region`: Secrets Manager replicas keep the primary's name
 * and 6-character suffix, only the region differs. The IAM grants use the same function.
 */
export function replicaArn(arn: string, region: string): string {
  const parts = arn.split(":");
  parts[3] = region;
  return parts.join(":");
}

function parseSecret(arn: string, raw: string): SecretValue {
  const name = arn.split(":").slice(6).join(":");
  let data: unknown = raw;
  if (raw.trim().startsWith("{")) {
    try {
      data = JSON.parse(raw);
    } catch {
      throw new SecretUnavailable(`secret ${name} is not valid JSON`, [
        'store {"token": "..."} or a plain token',
      ]);
    }
  }
  if (typeof data === "string") return { token: data.trim() };
  const o = data as Record<string, unknown>;
  const token = o.token ?? o.password;
  if (typeof token !== "string" || !token) {
    throw new SecretUnavailable(`secret ${name} has no "token" (or "password") field`, [
      'store {"token": "..."} or {"username": "...", "token": "..."}',
    ]);
  }
  return { token, ...(typeof o.username === "string" ? { username: o.username } : {}) };
}

interface Read {
  arn: string;
  region: string;
}

interface Failure extends Read {
  error: FailoverError;
  /** The service's error name (`ResourceNotFoundException`, ...) and message. */
  code: string | undefined;
  said: string;
}

/**
 * The secret's name (the ARN's resource without the 6-character suffix): messages lead with it.
 */
export function secretNameOf(arn: string): string {
  return arn
    .split(":")
    .slice(6)
    .join(":")
    .replace(/-[A-Za-z0-9]{6}$/, "");
}

/** What to do about an unreadable replica, from the replica's own error. */
function remedy(primary: string, home: string, replica: Failure): string {
  if (replica.code === "AccessDeniedException") {
    return `allow secretsmanager:GetSecretValue on ${replica.arn} (${secretNameOf(primary)} in ${home}) to the function's role: redeploy the orchestrator stack in ${home}`;
  }
  if (replica.code === "DecryptionFailure") {
    return `allow the function's role kms:Decrypt on the KMS key of the replica of ${secretNameOf(primary)} in ${home}`;
  }
  return `replicate the secret to the orchestrator's region: ${replicateCommand(primary, home)}`;
}

/** The AWS CLI command that adds the replica of `primary` in `region`. */
function replicateCommand(primary: string, region: string): string {
  return `aws secretsmanager replicate-secret-to-regions --region ${secretRegion(primary)} --secret-id ${primary} --add-replica-regions Region=${region}`;
}

/** Whether a secret is where a function in `region` reads it; `fix` says how when it is not. */
export type SecretPresence = { present: true } | { present: false; why: string; fix: string };

/**
 * The replica rule for one orchestrator region: the secret (its replica, when the ARN names
 * another region) exists there, so a function in that region reads it without reaching the
 * ARN's region, which may be the one failing. Asks DescribeSecret, so no value is read. A
 * service that does not answer throws (AwsUnavailable, AwsThrottled): nothing is known then.
 */
export async function secretPresence(
  arn: string,
  region: string,
  role?: RoleAccess,
): Promise<SecretPresence> {
  const id = secretRegion(arn) === region ? arn : replicaArn(arn, region);
  try {
    await secretsClient(region, role).send(new DescribeSecretCommand({ SecretId: id }));
    return { present: true };
  } catch (e) {
    const code = (e as { name?: string }).name;
    if (code === "ResourceNotFoundException") {
      return {
        present: false,
        why: `${secretNameOf(arn)} has no replica in ${region}`,
        fix: replicateCommand(arn, region),
      };
    }
    if (code === "AccessDeniedException") {
      return {
        present: false,
        why: `${secretNameOf(arn)} in ${region}: DescribeSecret denied (${describe(e)})`,
        fix: `allow secretsmanager:DescribeSecret on ${id}: redeploy the orchestrator stacks`,
      };
    }
    throw awsError(
      e,
      `describing secret ${secretNameOf(arn)} in ${region} (${id})`,
      SecretUnavailable,
    );
  }
}

/** Both reads failed: retryable only when a retry can help (a throttle, or a replica that did not answer). */
function unavailable(primary: string, home: string, replica: Failure, origin: Failure): Error {
  const message = `secret ${secretNameOf(primary)} could not be read in ${home} (replica ${replica.arn}: ${replica.said}) nor in ${origin.region} (${origin.arn}: ${origin.said})`;
  const details = [remedy(primary, home, replica)];
  const cause = { cause: origin.error };
  if (replica.error instanceof AwsUnavailable || replica.error instanceof AwsThrottled) {
    return new AwsUnavailable(message, details, cause);
  }
  if (origin.error instanceof AwsThrottled) return new AwsThrottled(message, details, cause);
  return new SecretUnavailable(message, details, cause);
}

async function attempt(
  at: Read,
  role: RoleAccess | undefined,
): Promise<{ raw: string | undefined } | Failure> {
  try {
    const out = await secretsClient(at.region, role).send(
      new GetSecretValueCommand({ SecretId: at.arn }),
    );
    return { raw: out.SecretString };
  } catch (e) {
    return {
      ...at,
      error: awsError(
        e,
        `reading secret ${secretNameOf(at.arn)} in ${at.region} (${at.arn})`,
        SecretUnavailable,
      ),
      code: (e as { name?: string }).name,
      said: describe(e),
    };
  }
}

/**
 * Fetches and parses a secret by ARN: the replica in the function's own region first when the
 * ARN names another region, then the ARN's own region. Throws SecretUnavailable naming both
 * ARNs (and how to add the replica) when neither can be read; a throttle or a replica that did
 * not answer throws a retryable error instead.
 */
export async function getSecret(arn: string, role?: RoleAccess): Promise<SecretValue> {
  const hit = cache.get(arn);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.value;
  const origin: Read = { arn, region: secretRegion(arn) };
  const home = configuredRegion();
  let raw: string | undefined;
  let readFrom = arn;
  if (!home || home === origin.region) {
    const got = await attempt(origin, role);
    if ("error" in got) throw got.error;
    raw = got.raw;
  } else {
    const replica: Read = { arn: replicaArn(arn, home), region: home };
    const fromReplica = await attempt(replica, role);
    // A role that cannot be assumed fails both reads the same way: said once, by name.
    if ("error" in fromReplica && fromReplica.error instanceof AssumeRoleRefused)
      throw fromReplica.error;
    if ("error" in fromReplica) {
      const fromOrigin = await attempt(origin, role);
      if ("error" in fromOrigin) throw unavailable(arn, home, fromReplica, fromOrigin);
      logger.warn("secret read from its primary region: no readable replica here", {
        secret: secretNameOf(arn),
        region: origin.region,
        replicaRegion: home,
        replicaError: fromReplica.said,
        fix: remedy(arn, home, fromReplica),
      });
      raw = fromOrigin.raw;
    } else {
      raw = fromReplica.raw;
      readFrom = replica.arn;
    }
  }
  if (!raw) throw new SecretUnavailable(`secret ${readFrom} has no SecretString`);
  const value = parseSecret(arn, raw);
  registerSecret(value.token);
  cache.set(arn, { value, at: Date.now() });
  return value;
}

/**
 * Forgets every cached secret whose token is `token`: for a client that was handed a token,
 * not its ARN, and saw it refused (GitAuthError, SpokeAuthError). Without this, a token rotated
 * within the TTL would keep failing every execution on a warm container until the TTL ran out.
 * A newer value cached meanwhile under the same ARN is kept.
 */
export function invalidateSecretToken(token: string): void {
  for (const [arn, entry] of cache) if (entry.value.token === token) cache.delete(arn);
}

/** Drops cached secrets (rotation in tests and the sandbox). */
export function clearSecretCache(): void {
  cache.clear();
}
