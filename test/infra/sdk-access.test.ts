/**
 * The SDK-call derivation on small fixtures: tree-shaking decides what a function reaches, our
 * imports decide what counts (not the commands the SDK bundles for itself), lib-dynamodb maps
 * to DynamoDB operations, and imports that would hide calls are refused.
 */
import { beforeAll, describe, expect, it } from "vitest";
import {
  deriveSdkAccess,
  type FunctionAccess,
  iamActionOf,
  sdkImports,
} from "../../infra/lib/sdk-access.ts";

const FIXTURES = "test/infra/fixtures/sdk";
let derived: Map<string, FunctionAccess>;

beforeAll(async () => {
  derived = await deriveSdkAccess(
    ["start", "paginate", "report", "document"].map((name) => ({
      name,
      entry: `${FIXTURES}/${name}.ts`,
    })),
  );
});

describe("deriveSdkAccess", () => {
  it("grants a function only the commands its own reachable code sends", () => {
    expect(derived.get("start")?.actions).toEqual(["states:StartExecution"]);
    expect(derived.get("paginate")?.actions).toEqual(["states:ListExecutions"]);
  });

  it("ignores what the SDK bundles for itself (S3 Express sessions, credential providers, endpoint discovery)", () => {
    expect(derived.get("report")?.actions).toEqual(["s3:PutObject"]);
  });

  it("maps lib-dynamodb's document commands to the DynamoDB operation they send", () => {
    expect(derived.get("document")?.actions).toEqual(["dynamodb:PutItem"]);
    expect(derived.get("document")?.calls).toEqual([
      {
        action: "dynamodb:PutItem",
        pkg: "@aws-sdk/lib-dynamodb",
        command: "PutCommand",
        module: `${FIXTURES}/document.ts`,
      },
    ]);
  });

  it("says where each call comes from and how big the bundle is", () => {
    expect(derived.get("start")?.calls[0]?.module).toBe(`${FIXTURES}/calls.ts`);
    expect(derived.get("start")?.bundleBytes).toBeGreaterThan(10_000);
  });
});

describe("iamActionOf", () => {
  it("takes the service prefix from the client package and the action from the command", () => {
    expect(iamActionOf("@aws-sdk/client-global-accelerator", "UpdateEndpointGroupCommand")).toBe(
      "globalaccelerator:UpdateEndpointGroup",
    );
    expect(iamActionOf("@aws-sdk/client-route-53", "GetHealthCheckStatusCommand")).toBe(
      "route53:GetHealthCheckStatus",
    );
    expect(iamActionOf("@aws-sdk/client-sfn", "StartExecutionCommand")).toBe(
      "states:StartExecution",
    );
    // The one operation whose IAM action is named otherwise (the Lambda API's Invoke).
    expect(iamActionOf("@aws-sdk/client-lambda", "InvokeCommand")).toBe("lambda:InvokeFunction");
    expect(iamActionOf("@aws-sdk/lib-dynamodb", "TransactWriteCommand")).toBe(
      "dynamodb:TransactWriteItems",
    );
  });

  it("refuses a package or document command it has no mapping for", () => {
    expect(() => iamActionOf("@aws-sdk/client-ec2", "DescribeInstancesCommand")).toThrow(
      /no IAM service prefix/,
    );
    expect(() => iamActionOf("@aws-sdk/lib-dynamodb", "ExecuteStatementCommand")).toThrow(
      /no DynamoDB operation/,
    );
  });
});

describe("sdkImports", () => {
  it("reads named value imports and re-exports, skipping type-only ones", () => {
    const text = [
      'import { type GetMetricDataCommandOutput, GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";',
      'import type { RDSClient } from "@aws-sdk/client-rds";',
      'import { PutCommand as Put } from "@aws-sdk/lib-dynamodb";',
      'export { PublishCommand } from "@aws-sdk/client-sns";',
      'import { z } from "zod";',
    ].join("\n");
    expect(sdkImports("m.ts", text).map((i) => `${i.pkg} ${i.name}`)).toEqual([
      "@aws-sdk/client-cloudwatch GetMetricDataCommand",
      "@aws-sdk/lib-dynamodb PutCommand",
      "@aws-sdk/client-sns PublishCommand",
    ]);
  });

  it.each([
    ['import { SFN } from "@aws-sdk/client-sfn";', /m\.ts:1: aggregated client SFN/],
    [
      'import { DynamoDBDocument } from "@aws-sdk/lib-dynamodb";',
      /aggregated client DynamoDBDocument/,
    ],
    ['import * as rds from "@aws-sdk/client-rds";', /namespace import/],
    ['const sns = await import("@aws-sdk/client-sns");', /dynamic import/],
    ['import { waitUntilExecutionSucceeded } from "@aws-sdk/client-sfn";', /waiter/],
    ['export * from "@aws-sdk/client-ssm";', /export \*/],
  ])("refuses %s", (text, message) => {
    expect(() => sdkImports("m.ts", text)).toThrow(message);
  });
});
