/**
 * Secrets during a regional failure: the function reads the replica in its own region first
 * (same name and suffix, only the ARN's region differs) and falls back to the ARN's region, so
 * an orchestrator outside the failed region still reads a secret created there. Every call is
 * checked for the region its client was signed for.
 */
import {
  GetSecretValueCommand,
  ResourceNotFoundException,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { mockClient } from "aws-sdk-client-mock";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { regionOfArn, resetClients } from "../../functions/lib/aws.ts";
import { FailoverError } from "../../functions/lib/errors.ts";
import {
  clearSecretCache,
  getSecret,
  invalidateSecretToken,
  replicaArn,
  secretNameOf,
} from "../../functions/lib/secrets.ts";

const GIT = "arn:aws:secretsmanager:us-west-2:111122223333:secret:gitops-failover/git-AbCdEf";
const GIT_IN_USE2 =
  "arn:aws:secretsmanager:us-east-2:111122223333:secret:gitops-failover/git-AbCdEf";
const VALUE = JSON.stringify({ username: "gitops-failover", token: "tok-123" });

const sm = mockClient(SecretsManagerClient);

const notFound = () =>
  new ResourceNotFoundException({
    message: "Secrets Manager can't find the specified secret.",
    $metadata: { httpStatusCode: 400 },
  });
const refused = () =>
  Object.assign(new Error("connect ECONNREFUSED 10.0.0.1:443"), { code: "ECONNREFUSED" });
const throttled = () =>
  Object.assign(new Error("Rate exceeded"), {
    name: "ThrottlingException",
    $metadata: { httpStatusCode: 400 },
  });
const denied = () =>
  Object.assign(new Error("not authorized to perform secretsmanager:GetSecretValue"), {
    name: "AccessDeniedException",
    $metadata: { httpStatusCode: 400 },
  });

/**
 * Secrets Manager as seen from each region: `stored` maps an ARN to its value in the ARN's
 * region (a secret is found only by a client of that region); `down` makes a region not answer.
 */
function secretsManager(stored: Record<string, string>, faults: Record<string, () => Error> = {}) {
  sm.on(GetSecretValueCommand).callsFake(async (input: { SecretId: string }, getClient) => {
    const region = await getClient().config.region();
    const fault = faults[region];
    if (fault) throw fault();
    const value = stored[input.SecretId];
    if (value === undefined || regionOfArn(input.SecretId) !== region) throw notFound();
    return { ARN: input.SecretId, SecretString: value };
  });
}

/** Each GetSecretValue sent: the region its client signs for, and the SecretId. */
async function calls() {
  return Promise.all(
    sm.commandCalls(GetSecretValueCommand).map(async (c) => ({
      region: await (c.thisValue as SecretsManagerClient).config.region(),
      secretId: c.args[0].input.SecretId,
    })),
  );
}

async function failure(p: Promise<unknown>): Promise<FailoverError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof FailoverError)) throw new Error(`expected a FailoverError, got ${String(e)}`);
  return e;
}

const savedRegion = process.env.AWS_REGION;
beforeEach(() => {
  sm.reset();
  clearSecretCache();
  resetClients();
  process.env.AWS_REGION = "us-east-2";
});
afterEach(() => {
  if (savedRegion === undefined) delete process.env.AWS_REGION;
  else process.env.AWS_REGION = savedRegion;
});

describe("replicaArn and secretNameOf", () => {
  it("keep name and suffix and change only the region; the name drops the suffix", () => {
    expect(secretNameOf(GIT)).toBe("gitops-failover/git");
    expect(replicaArn(GIT, "us-east-2")).toBe(GIT_IN_USE2);
    expect(
      replicaArn(
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:111122223333:secret:a:b-AbCdEf",
        "us-gov-east-1",
      ),
    ).toBe("arn:aws-us-gov:secretsmanager:us-gov-east-1:111122223333:secret:a:b-AbCdEf");
  });
});

describe("getSecret, in a function outside the secret's region", () => {
  it("reads the replica in its own region and never calls the secret's region", async () => {
    secretsManager({ [GIT_IN_USE2]: VALUE });
    await expect(getSecret(GIT)).resolves.toEqual({
      username: "gitops-failover",
      token: "tok-123",
    });
    expect(await calls()).toEqual([{ region: "us-east-2", secretId: GIT_IN_USE2 }]);
  });

  it("reads the replica while the secret's region is down (the failover away from it)", async () => {
    secretsManager({ [GIT_IN_USE2]: VALUE }, { "us-west-2": refused });
    await expect(getSecret(GIT)).resolves.toMatchObject({ token: "tok-123" });
    expect((await calls()).map((c) => c.region)).toEqual(["us-east-2"]);
  });

  it("falls back to the secret's region when there is no replica", async () => {
    secretsManager({ [GIT]: VALUE });
    await expect(getSecret(GIT)).resolves.toMatchObject({ token: "tok-123" });
    expect(await calls()).toEqual([
      { region: "us-east-2", secretId: GIT_IN_USE2 },
      { region: "us-west-2", secretId: GIT },
    ]);
  });

  it("falls back to the secret's region when its own region's Secrets Manager does not answer", async () => {
    secretsManager({ [GIT]: VALUE }, { "us-east-2": refused });
    await expect(getSecret(GIT)).resolves.toMatchObject({ token: "tok-123" });
    expect((await calls()).map((c) => c.region)).toEqual(["us-east-2", "us-west-2"]);
  });

  it("without a replica and with the secret's region down: SecretUnavailable naming both copies and the command that adds the replica", async () => {
    secretsManager({ [GIT]: VALUE }, { "us-west-2": refused });
    const e = await failure(getSecret(GIT));
    expect(e.name).toBe("SecretUnavailable");
    expect(e.retryable).toBe(false);
    expect(e.message).toMatch(
      /^secret gitops-failover\/git could not be read in us-east-2 \(replica \S+: ResourceNotFoundException.*\) nor in us-west-2 \(\S+: Error: connect ECONNREFUSED.*\): replicate the secret/,
    );
    expect(e.message).toContain(`(replica ${GIT_IN_USE2}: `);
    expect(e.message).toContain(`(${GIT}: `);
    expect(e.details).toEqual([
      `replicate the secret to the orchestrator's region: aws secretsmanager replicate-secret-to-regions --region us-west-2 --secret-id ${GIT} --add-replica-regions Region=us-east-2`,
    ]);
    expect((await calls()).map((c) => c.region)).toEqual(["us-east-2", "us-west-2"]);
  });

  it("names the missing grant when the replica's read is denied and the origin is down", async () => {
    secretsManager({}, { "us-east-2": denied, "us-west-2": refused });
    const e = await failure(getSecret(GIT));
    expect(e.name).toBe("SecretUnavailable");
    expect(e.details[0]).toMatch(
      /^allow secretsmanager:GetSecretValue on arn:aws:secretsmanager:us-east-2:\S+ \(gitops-failover\/git in us-east-2\) to the function's role/,
    );
  });

  it("stays retryable when a retry can help: a throttled origin, or a replica that did not answer", async () => {
    secretsManager({}, { "us-west-2": throttled });
    expect((await failure(getSecret(GIT))).name).toBe("AwsThrottled");
    sm.reset();
    secretsManager({}, { "us-east-2": refused, "us-west-2": refused });
    const e = await failure(getSecret(GIT));
    expect(e.name).toBe("AwsUnavailable");
    expect(e.retryable).toBe(true);
  });

  it("caches by the topology's ARN: one read per container and TTL", async () => {
    secretsManager({ [GIT_IN_USE2]: VALUE });
    await getSecret(GIT);
    await getSecret(GIT);
    expect(await calls()).toHaveLength(1);
  });
});

describe("invalidating a cached secret (a token refused after a rotation)", () => {
  const rotating = () => {
    let token = "tok-before";
    sm.on(GetSecretValueCommand).callsFake(async (input: { SecretId: string }) => ({
      ARN: input.SecretId,
      SecretString: JSON.stringify({ token }),
    }));
    return (next: string) => {
      token = next;
    };
  };

  it("by the refused token: drops only the entries holding it, not a newer value", async () => {
    const rotate = rotating();
    await getSecret(GIT);
    rotate("tok-after");

    invalidateSecretToken("tok-before");
    await expect(getSecret(GIT)).resolves.toEqual({ token: "tok-after" });
    invalidateSecretToken("tok-before");
    await expect(getSecret(GIT)).resolves.toEqual({ token: "tok-after" });

    expect(await calls()).toHaveLength(2);
  });
});

describe("getSecret, in the secret's own region", () => {
  it("reads it there only, once", async () => {
    process.env.AWS_REGION = "us-west-2";
    secretsManager({ [GIT]: VALUE });
    await expect(getSecret(GIT)).resolves.toMatchObject({ token: "tok-123" });
    expect(await calls()).toEqual([{ region: "us-west-2", secretId: GIT }]);
  });

  it("keeps the single-read errors: not found is SecretUnavailable, no answer is retryable", async () => {
    process.env.AWS_REGION = "us-west-2";
    secretsManager({});
    expect((await failure(getSecret(GIT))).name).toBe("SecretUnavailable");
    sm.reset();
    secretsManager({}, { "us-west-2": refused });
    expect((await failure(getSecret(GIT))).name).toBe("AwsUnavailable");
  });
});
