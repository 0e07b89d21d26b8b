/**
 * Secrets Manager access. Values are cached per container for a short time, registered for
 * redaction, and never returned in a step's output.
 */
import { GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import { awsError, secretsClient } from "./aws.ts";
import { SecretUnavailable } from "./errors.ts";
import { registerSecret } from "./redact.ts";

const TTL_MS = 5 * 60 * 1000;
const cache = new Map<string, { value: SecretValue; at: number }>();

/** A token secret (`{"token": ...}`) or basic credentials (`{"username": ..., "token"|"password": ...}`). */
export interface SecretValue {
  token: string;
  username?: string;
}

function regionOfArn(arn: string): string {
  return arn.split(":")[3] ?? "us-east-1";
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

/** Fetches and parses a secret by ARN, in the secret's own region. */
export async function getSecret(arn: string): Promise<SecretValue> {
  const hit = cache.get(arn);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.value;
  let raw: string | undefined;
  try {
    const out = await secretsClient(regionOfArn(arn)).send(
      new GetSecretValueCommand({ SecretId: arn }),
    );
    raw = out.SecretString;
  } catch (e) {
    throw awsError(e, `reading secret ${arn}`, SecretUnavailable);
  }
  if (!raw) throw new SecretUnavailable(`secret ${arn} has no SecretString`);
  const value = parseSecret(arn, raw);
  registerSecret(value.token);
  cache.set(arn, { value, at: Date.now() });
  return value;
}

/** Drops cached secrets (rotation in tests and the sandbox). */
export function clearSecretCache(): void {
  cache.clear();
}
