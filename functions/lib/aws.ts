/**
 * AWS client factories. Endpoints come the standard way (`AWS_ENDPOINT_URL_<SERVICE>`), so the
 * sandbox needs no branch here; clients are created once per region and container, each
 * captured by the tracer (an X-Ray subsegment per call on Lambda, unchanged elsewhere).
 */
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
import { AwsThrottled, AwsUnavailable, describe, FailoverError } from "./errors.ts";
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

const caches = new Set<Map<string, unknown>>();

/** Forgets every client: the sandbox and tests point the endpoints elsewhere between runs. */
export function resetClients(): void {
  for (const cache of caches) cache.clear();
}

/**
 * One traced client per region, made on first use. Calling `memo` has no side effect (the cache joins
 * `caches` only when it gets its first client), so the bundler may drop the clients a function
 * never uses: each call below is marked pure.
 */
function memo<T extends object>(make: (region: string) => T): (region?: string) => T {
  const cache = new Map<string, T>();
  return (region = homeRegion()) => {
    let client = cache.get(region);
    if (!client) {
      client = tracer.captureAWSv3Client(make(region));
      cache.set(region, client);
      caches.add(cache);
    }
    return client;
  };
}

export const rdsClient = /* @__PURE__ */ memo((region) => new RDSClient({ region, ...SDK_CONFIG }));
/**
 * RDS with no SDK retry, for the calls that must be sent once (a global-cluster promotion): a
 * retry after a first attempt that took effect but answered 5xx would be refused while Aurora
 * keeps promoting. The caller re-reads the cluster after any error instead.
 */
export const rdsOnceClient = /* @__PURE__ */ memo(
  (region) => new RDSClient({ region, ...SDK_CONFIG, maxAttempts: 1 }),
);
export const cloudWatchClient = /* @__PURE__ */ memo(
  (region) => new CloudWatchClient({ region, ...SDK_CONFIG }),
);
export const secretsClient = /* @__PURE__ */ memo(
  (region) => new SecretsManagerClient({ region, ...SDK_CONFIG }),
);
export const dynamoClient = /* @__PURE__ */ memo(
  (region) => new DynamoDBClient({ region, ...SDK_CONFIG }),
);
export const s3Client = /* @__PURE__ */ memo((region) => new S3Client({ region, ...SDK_CONFIG }));
export const snsClient = /* @__PURE__ */ memo((region) => new SNSClient({ region, ...SDK_CONFIG }));
export const sfnClient = /* @__PURE__ */ memo((region) => new SFNClient({ region, ...SDK_CONFIG }));
export const ssmClient = /* @__PURE__ */ memo((region) => new SSMClient({ region, ...SDK_CONFIG }));
export const kmsClient = /* @__PURE__ */ memo((region) => new KMSClient({ region, ...SDK_CONFIG }));
export const globalAcceleratorClient = () => gaMemo(GLOBAL_ACCELERATOR_REGION);
const gaMemo = /* @__PURE__ */ memo(
  (region) => new GlobalAcceleratorClient({ region, ...SDK_CONFIG }),
);
export const route53Client = () => r53Memo(ROUTE53_REGION);
const r53Memo = /* @__PURE__ */ memo((region) => new Route53Client({ region, ...SDK_CONFIG }));

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
