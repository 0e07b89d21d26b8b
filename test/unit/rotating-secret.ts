/**
 * A secret in Secrets Manager (aws-sdk-client-mock) whose value an operator rotates: for the
 * tests that a client refusing a token drops it from getSecret's cache.
 */
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { mockClient } from "aws-sdk-client-mock";
import { regionOfArn } from "../../functions/lib/aws.ts";
import { clearSecretCache } from "../../functions/lib/secrets.ts";

export interface RotatingSecret {
  /** Stores a new value (a plain token or JSON), as a rotation does. */
  rotate(value: string): void;
  /** GetSecretValue calls so far. */
  reads(): number;
  /** Puts the client, the cache and AWS_REGION back. */
  restore(): void;
}

/** Serves `value` for `arn`, read in the ARN's own region (no replica lookup). */
export function rotatingSecret(arn: string, value: string): RotatingSecret {
  const sm = mockClient(SecretsManagerClient);
  let stored = value;
  sm.on(GetSecretValueCommand).callsFake(async () => ({ ARN: arn, SecretString: stored }));
  const savedRegion = process.env.AWS_REGION;
  process.env.AWS_REGION = regionOfArn(arn) ?? "us-east-1";
  clearSecretCache();
  return {
    rotate: (next) => {
      stored = next;
    },
    reads: () => sm.commandCalls(GetSecretValueCommand).length,
    restore: () => {
      sm.restore();
      clearSecretCache();
      if (savedRegion === undefined) delete process.env.AWS_REGION;
      else process.env.AWS_REGION = savedRegion;
    },
  };
}
