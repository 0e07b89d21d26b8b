/**
 * Tracing is on where Lambda runs the code and harmless everywhere else: Powertools Tracer
 * turns itself off without `AWS_EXECUTION_ENV` (the sandbox, the tests, the CLI), leaving the
 * SDK clients untouched; on Lambda every client from aws.ts carries the X-Ray instrumentation.
 * Each case imports the modules afresh, as a new container would.
 */
import { afterEach, describe, expect, it, vi } from "vitest";

const xrayMiddleware = (client: { middlewareStack: { identify(): string[] } }) =>
  client.middlewareStack.identify().filter((m) => /xray/i.test(m));

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

describe("tracer", () => {
  it("is off outside Lambda, and the SDK clients carry no X-Ray middleware", async () => {
    vi.stubEnv("AWS_EXECUTION_ENV", "");
    const { tracer } = await import("../../functions/lib/telemetry.ts");
    const { rdsClient, dynamoClient } = await import("../../functions/lib/aws.ts");

    expect(tracer.isTracingEnabled()).toBe(false);
    expect(xrayMiddleware(rdsClient("us-west-2"))).toEqual([]);
    expect(xrayMiddleware(dynamoClient("us-west-2"))).toEqual([]);
  });

  it("is on in a Lambda execution environment, and every client from aws.ts is captured", async () => {
    vi.stubEnv("AWS_EXECUTION_ENV", "AWS_Lambda_nodejs22.x");
    const { tracer } = await import("../../functions/lib/telemetry.ts");
    const aws = await import("../../functions/lib/aws.ts");
    const clients = [
      aws.rdsClient("us-west-2"),
      aws.rdsOnceClient("us-west-2"),
      aws.cloudWatchClient("us-west-2"),
      aws.secretsClient("us-west-2"),
      aws.dynamoClient("us-west-2"),
      aws.s3Client("us-west-2"),
      aws.snsClient("us-west-2"),
      aws.sfnClient("us-west-2"),
      aws.ssmClient("us-west-2"),
      aws.globalAcceleratorClient(),
      aws.route53Client(),
    ];

    expect(tracer.isTracingEnabled()).toBe(true);
    for (const client of clients)
      expect(xrayMiddleware(client), client.constructor.name).toEqual([
        "XRaySDKInstrumentation - build",
      ]);
  });
});
