/**
 * AWS client factories. Endpoints come the standard way (`AWS_ENDPOINT_URL_<SERVICE>`), so the
 * sandbox needs no branch here; clients are created once per region and container, each
 * captured by the tracer (an X-Ray subsegment per call on Lambda, unchanged elsewhere).
 *
 * A resource in another account is reached through the role the topology names for it: the
 * factory is given that role and returns a client whose credentials come from STS AssumeRole
 * (the SDK's own provider), cached until shortly before they expire, with the execution's name
 * as the session name so the target account's CloudTrail says which failover acted.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { GlobalAcceleratorClient } from "@aws-sdk/client-global-accelerator";
import { KMSClient } from "@aws-sdk/client-kms";
import { RDSClient } from "@aws-sdk/client-rds";
import { Route53Client } from "@aws-sdk/client-route-53";
import { S3Client } from "@aws-sdk/client-s3";
import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SFNClient } from "@aws-sdk/client-sfn";
import { SNSClient } from "@aws-sdk/client-sns";
import { SSMClient } from "@aws-sdk/client-ssm";
import { fromTemporaryCredentials } from "@aws-sdk/credential-providers";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";
import { accountOfArn, type RoleAccess } from "./arn.ts";
import {
  AssumeRoleRefused,
  AwsThrottled,
  AwsUnavailable,
  describe,
  FailoverError,
} from "./errors.ts";
import { tracer } from "./telemetry.ts";

/** The Global Accelerator control plane is served only from us-west-2. */
const GLOBAL_ACCELERATOR_REGION = "us-west-2";
/** Route 53 is global; its API is in us-east-1. */
const ROUTE53_REGION = "us-east-1";

/** Every call is bounded: a dead region's endpoint must fail fast, not hang the Lambda. */
const SDK_CONFIG = {
  maxAttempts: 3,
  requestHandler: { connectionTimeout: 3_000, requestTimeout: 10_000 },
} as const;

/** The region this code runs in, as Lambda (or the AWS CLI's conventions) set it, if set. */
export function configuredRegion(): string | undefined {
  return process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
}

function homeRegion(): string {
  return configuredRegion() ?? "us-east-1";
}

/** The region part of an ARN (`arn:<partition>:<service>:<region>:...`); undefined when empty. */
export function regionOfArn(arn: string): string | undefined {
  return arn.split(":")[3] || undefined;
}

export type { RoleAccess };

/** The session name outside any execution (the trigger, readiness, the CLI). */
const DEFAULT_SESSION_NAME = "gitops-failover";

const session = new AsyncLocalStorage<string>();

/** AssumeRole's RoleSessionName: 2 to 64 of `[\w+=,.@-]`; an execution name may be up to 80. */
export function sessionNameOf(name: string): string {
  const clean = name.replace(/[^\w+=,.@-]/g, "-").slice(0, 64);
  return clean.length >= 2 ? clean : DEFAULT_SESSION_NAME;
}

/** The session name the roles assumed now carry: the execution's name inside a step. */
function sessionName(): string {
  return session.getStore() ?? DEFAULT_SESSION_NAME;
}

/**
 * Runs `fn` with `name` (an execution's name) as the session name of every role it assumes.
 * Async-local, so concurrent executions in one process (the sandbox) each keep their own.
 */
export function withSessionName<T>(name: string | undefined, fn: () => Promise<T>): Promise<T> {
  return name ? session.run(sessionNameOf(name), fn) : fn();
}

/** How long assumed credentials live; they are renewed this long before that. */
const ASSUMED_SECONDS = 900;
const RENEW_BEFORE_MS = 300_000;

/**
 * A refused AssumeRole as a named error: which role, which account, which caller (from STS's
 * own message), and the trust policy the role is missing. Throttles and errors without an
 * answer stay retryable (STS already retried them); nothing else is retried.
 */
function assumeRoleError(e: unknown, role: RoleAccess): FailoverError {
  const what = `AssumeRole ${role.roleArn}`;
  const name = (e as { name?: string }).name;
  if (name && THROTTLING.has(name))
    return new AwsThrottled(`${what}: throttled by STS`, [], { cause: e });
  if (unanswered(e)) {
    return new AwsUnavailable(`${what}: STS did not answer (${describe(e)})`, [], { cause: e });
  }
  const said = e instanceof Error ? e.message : String(e);
  const caller = /User: (arn:\S+) is not authorized/.exec(said)?.[1];
  const callerAccount = caller ? accountOfArn(caller) : undefined;
  const account = accountOfArn(role.roleArn) ?? "unknown";
  const from = caller
    ? `${caller} (account ${callerAccount ?? "unknown"})`
    : "this function's role (its own account)";
  // The principal a trust policy names: the role behind an assumed-role session, else the caller.
  const principal = caller?.replace(
    /^arn:(aws[a-z-]*):sts::(\d{12}):assumed-role\/([^/]+)\/.*$/,
    "arn:$1:iam::$2:role/$3",
  );
  const condition = role.externalId
    ? " with the condition StringEquals sts:ExternalId = the externalId the topology gives this role"
    : " (the topology sets no externalId, so none is sent)";
  if (name !== "AccessDenied") {
    // Not a trust problem: the region, the function's own credentials or the request itself.
    const hint: Record<string, string> = {
      RegionDisabledException: `STS is not activated in ${homeRegion()}: activate it in the IAM account settings of the orchestrator's account`,
      ExpiredTokenException: "this function's own credentials expired: check its execution role",
      InvalidClientTokenId:
        "this function's own credentials are not valid: check its execution role",
      CredentialsProviderError:
        "this function has no credentials of its own: check its execution role",
    };
    return new AssumeRoleRefused(
      `cannot assume ${role.roleArn} (account ${account}): ${describe(e)}`,
      [hint[name ?? ""] ?? "check the role ARN and the topology's externalId for this role"],
      { cause: e },
    );
  }
  const trust = [
    `in account ${account}, the trust policy of ${role.roleArn} must allow sts:AssumeRole to ${principal ?? "the orchestrator's function roles"}${condition}; the MemberAccountRoles stack deployed there does exactly that (README, "Cross-account platforms")`,
    `and this function's role must be allowed sts:AssumeRole on ${role.roleArn}: redeploy the orchestrator stacks with this roleArn in the topology`,
  ];
  return new AssumeRoleRefused(
    `cannot assume ${role.roleArn} (account ${account}) from ${from}: ${describe(e)}`,
    trust,
    { cause: e },
  );
}

const providers = new Map<string, AwsCredentialIdentityProvider>();

/**
 * Credentials of `role` for the current session: one STS AssumeRole, shared by every client of
 * that role, renewed shortly before expiry; a failure is not cached, so the next call asks again.
 */
function assumedRole(role: RoleAccess): AwsCredentialIdentityProvider {
  const name = sessionName();
  const key = `${role.roleArn}\n${role.externalId ?? ""}\n${name}`;
  const known = providers.get(key);
  if (known) return known;
  const assume = fromTemporaryCredentials({
    params: {
      RoleArn: role.roleArn,
      RoleSessionName: name,
      DurationSeconds: ASSUMED_SECONDS,
      ...(role.externalId ? { ExternalId: role.externalId } : {}),
    },
    clientConfig: { region: homeRegion(), ...SDK_CONFIG },
  });
  let pending: Promise<AwsCredentialIdentity> | undefined;
  const provider: AwsCredentialIdentityProvider = async () => {
    if (pending) {
      const current = await pending.catch(() => undefined);
      const expires = current?.expiration?.getTime() ?? 0;
      if (current && expires - Date.now() > RENEW_BEFORE_MS) return current;
    }
    pending = assume().catch((e: unknown) => {
      throw assumeRoleError(e, role);
    });
    pending.catch(() => {
      pending = undefined;
    });
    return pending;
  };
  bounded(providers, key, provider);
  return provider;
}

/** Sessions come and go with executions: a warm container keeps only the latest few. */
const MAX_ASSUMED = 64;

function bounded<V>(map: Map<string, V>, key: string, value: V): void {
  map.set(key, value);
  if (map.size > MAX_ASSUMED) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
}

/** Who makes a call on a resource, for the audit trail: the account and, when assumed, the role. */
export interface AwsActor {
  account: string;
  roleArn: string;
  sessionName: string;
}

/**
 * The identity a change is made with when it is made in another account: the assumed role's
 * account, ARN and session name. Undefined with the function's own role (single-account
 * platforms record what they always did).
 */
export function actorFor(role: RoleAccess | undefined): AwsActor | undefined {
  if (!role) return undefined;
  return {
    account: accountOfArn(role.roleArn) ?? "unknown",
    roleArn: role.roleArn,
    sessionName: sessionName(),
  };
}

const caches = new Set<Map<string, unknown>>();

/** Forgets every client: the sandbox and tests point the endpoints elsewhere between runs. */
export function resetClients(): void {
  for (const cache of caches) cache.clear();
  providers.clear();
}

type ClientMaker<T> = (region: string, extra: { credentials?: AwsCredentialIdentityProvider }) => T;

/**
 * One traced client per region (and per assumed role and session), made on first use. Calling
 * `memo` has no side effect (the cache joins `caches` only when it gets its first client), so the
 * bundler may drop the clients a function never uses: each call below is marked pure.
 */
function memo<T extends object>(make: ClientMaker<T>): (region?: string, role?: RoleAccess) => T {
  const cache = new Map<string, T>();
  return (region = homeRegion(), role) => {
    const key = role
      ? `${region}\n${role.roleArn}\n${role.externalId ?? ""}\n${sessionName()}`
      : region;
    let client = cache.get(key);
    if (!client) {
      client = tracer.captureAWSv3Client(
        make(region, role ? { credentials: assumedRole(role) } : {}),
      );
      bounded(cache, key, client);
      caches.add(cache);
    }
    return client;
  };
}

export const rdsClient = /* @__PURE__ */ memo(
  (region, extra) => new RDSClient({ region, ...SDK_CONFIG, ...extra }),
);
/**
 * RDS with no SDK retry, for the calls that must be sent once (a global-cluster promotion): a
 * retry after a first attempt that took effect but answered 5xx would be refused while Aurora
 * keeps promoting. The caller re-reads the cluster after any error instead.
 */
export const rdsOnceClient = /* @__PURE__ */ memo(
  (region, extra) => new RDSClient({ region, ...SDK_CONFIG, maxAttempts: 1, ...extra }),
);
export const cloudWatchClient = /* @__PURE__ */ memo(
  (region, extra) => new CloudWatchClient({ region, ...SDK_CONFIG, ...extra }),
);
export const secretsClient = /* @__PURE__ */ memo(
  (region, extra) => new SecretsManagerClient({ region, ...SDK_CONFIG, ...extra }),
);
export const dynamoClient = /* @__PURE__ */ memo(
  (region) => new DynamoDBClient({ region, ...SDK_CONFIG }),
);
export const s3Client = /* @__PURE__ */ memo((region) => new S3Client({ region, ...SDK_CONFIG }));
export const snsClient = /* @__PURE__ */ memo((region) => new SNSClient({ region, ...SDK_CONFIG }));
export const sfnClient = /* @__PURE__ */ memo((region) => new SFNClient({ region, ...SDK_CONFIG }));
export const ssmClient = /* @__PURE__ */ memo((region) => new SSMClient({ region, ...SDK_CONFIG }));
export const kmsClient = /* @__PURE__ */ memo((region) => new KMSClient({ region, ...SDK_CONFIG }));
export const globalAcceleratorClient = (role?: RoleAccess) =>
  gaMemo(GLOBAL_ACCELERATOR_REGION, role);
const gaMemo = /* @__PURE__ */ memo(
  (region, extra) => new GlobalAcceleratorClient({ region, ...SDK_CONFIG, ...extra }),
);
export const route53Client = (role?: RoleAccess) => r53Memo(ROUTE53_REGION, role);
const r53Memo = /* @__PURE__ */ memo(
  (region, extra) => new Route53Client({ region, ...SDK_CONFIG, ...extra }),
);

const THROTTLING = new Set([
  "ThrottlingException",
  "Throttling",
  "ThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "PriorRequestNotComplete",
  "ProvisionedThroughputExceededException",
]);

/** Errors that mean "the service did not answer" (as opposed to an answer we dislike). */
const NO_ANSWER_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/** True when a call got no answer: connection failures, timeouts, aborts and 5xx. */
export function unanswered(e: unknown): boolean {
  const err = e as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  return (
    err.name === "AbortError" ||
    err.name === "TimeoutError" ||
    (err.$metadata?.httpStatusCode ?? 0) >= 500 ||
    (err.code !== undefined && NO_ANSWER_CODES.has(err.code))
  );
}

/**
 * Maps an AWS SDK error to a named error the ASL can route: throttling and 5xx become
 * retryable; anything else becomes `fallback` with the service's message (never a stack).
 */
export function awsError(
  e: unknown,
  what: string,
  fallback: new (
    message: string,
    details?: string[],
    options?: { cause?: unknown },
  ) => FailoverError,
): FailoverError {
  if (e instanceof FailoverError) return e;
  const name = (e as { name?: string }).name;
  if (name && THROTTLING.has(name))
    return new AwsThrottled(`${what}: throttled by AWS`, [], { cause: e });
  if (unanswered(e)) {
    return new AwsUnavailable(`${what}: AWS did not answer (${describe(e)})`, [], { cause: e });
  }
  return new fallback(`${what}: ${describe(e)}`, [], { cause: e });
}
