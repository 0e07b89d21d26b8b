/**
 * A token-shaped string inside an error never reaches the logs, the audit trail or the report,
 * whichever way it travels: thrown inside a step (middleware), or carried in the Catch's Cause
 * to RecordFailure. The AWS side is the sandbox's emulators and dynalite.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import type { Context } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { readAuditTrail } from "../../functions/lib/audit.ts";
import { dynamoClient, resetClients } from "../../functions/lib/aws.ts";
import { loadTopology, resetRuntimeTopology } from "../../functions/lib/config.ts";
import { logger, stepHandler } from "../../functions/lib/middleware.ts";
import { redact } from "../../functions/lib/redact.ts";
import { recordFailureStep } from "../../functions/lib/report.ts";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";

const TOKEN = "ghp_Zx8kQ2mN4pR6sT8vW0yA2cE4gI6kM8oQ0sU2";
const JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXBhcnQ";
const saved = { ...process.env };
const dir = mkdtempSync(join(tmpdir(), "gf-redact-"));
let aws: AwsSandbox;

beforeAll(async () => {
  aws = await startAwsSandbox();
  Object.assign(process.env, aws.env, {
    TOPOLOGY: JSON.stringify(loadTopology("config/topology.example.yaml")),
    AUDIT_TABLE: "redaction-audit",
    REPORT_DIR: dir,
  });
  resetRuntimeTopology();
  resetClients();
  await dynamoClient().send(
    new CreateTableCommand({
      TableName: "redaction-audit",
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
      ],
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
  );
});

afterAll(async () => {
  process.env = saved;
  resetRuntimeTopology();
  resetClients();
  await aws.stop();
  rmSync(dir, { recursive: true, force: true });
});

const context = {
  getRemainingTimeInMillis: () => 30_000,
  functionName: "test",
  awsRequestId: "r",
} as unknown as Context;

describe("redaction", () => {
  it("a token inside a thrown error reaches neither the caller, the logs nor the audit trail", async () => {
    let logged = "";
    const capture = (chunk: string | Uint8Array) => {
      logged += String(chunk);
      return true;
    };
    const writes = [
      vi.spyOn(process.stdout, "write").mockImplementation(capture),
      vi.spyOn(process.stderr, "write").mockImplementation(capture),
    ];
    logger.setLogLevel("INFO");
    const failing = stepHandler("CommitRetarget", async () => {
      throw new Error(
        `push refused for https://x:${TOKEN}@git.example.com: Authorization: Bearer ${JWT}`,
      );
    });

    const outcome = await failing(
      { execution: { name: "redact-1" }, input: { requestedBy: "jane" } },
      context,
    ).catch((e: Error) => e);
    for (const w of writes) w.mockRestore();
    logger.setLogLevel("SILENT");

    expect(outcome).toMatchObject({ name: "UnexpectedError" });
    const trail = JSON.stringify(await readAuditTrail("redact-1"));
    expect(logged).toContain("CommitRetarget failed");
    expect(trail).toContain("FAILED");
    for (const text of [String((outcome as Error).message), logged, trail]) {
      expect(text).not.toContain(TOKEN);
      expect(text).not.toContain(JWT);
      expect(text).toContain("[REDACTED]");
    }
  });

  it("a token in the Cause a Catch hands to RecordFailure stays out of report.md, report.json and audit.jsonl", async () => {
    const cause = JSON.stringify({
      errorType: "GitAuthError",
      errorMessage: `[CommitRetarget] rejected token ${TOKEN}`,
    });

    const summary = await recordFailureStep({
      state: {
        input: {
          targetRegion: "us-east-2",
          reason: "drill",
          mode: "graceful",
          dryRun: false,
          allowDataLoss: false,
          requestedBy: "jane",
          requireApproval: false,
        },
        error: { Error: "GitAuthError", Cause: cause },
      },
      execution: {
        id: "arn:aws:states:us-east-1:111122223333:execution:sm:redact-2",
        name: "redact-2",
        startTime: new Date().toISOString(),
      },
    });

    expect(summary).toMatchObject({ status: "FAILED", failedStep: "CommitRetarget" });
    for (const file of ["report.md", "report.json", "audit.jsonl"]) {
      const text = readFileSync(join(dir, file), "utf8");
      expect(text, file).not.toContain(TOKEN);
      expect(text, file).toContain("GitAuthError");
    }
    const head = readFileSync(join(dir, "audit.jsonl"), "utf8").trim().split("\n").at(-1);
    const sha256 = (JSON.parse(head ?? "{}") as { hash: string }).hash;
    expect(sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(join(dir, "report.md"), "utf8")).toContain(`head ${sha256}`);
  });
});

describe("token shapes redacted without being registered", () => {
  const PEM = [
    "-----BEGIN RSA PRIVATE KEY-----",
    "MIIEowIBAAKCAQEAzH8y3Lw0a9bQ7x1m2N3o4P5q6R7s8T9u0V1w2X3y4Z5a6B7c",
    "-----END RSA PRIVATE KEY-----",
  ].join("\n");
  it.each<[string, string, string]>([
    ["token <value>", "push rejected token Zx8kQ2mN4pR6sT8v", "Zx8kQ2mN4pR6sT8v"],
    ["token: value", "config token: 5f3a9c1e7b2d", "5f3a9c1e7b2d"],
    [
      "aws_secret_access_key = ...",
      "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
      "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ],
    [
      "x-api-key: <hex>",
      "header x-api-key: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
      "9f86d081884c7d659a2feaa0c55ad015",
    ],
    ["a PEM private key block", `key was ${PEM} in the chart`, "MIIEowIBAAKCAQEA"],
    ["a truncated PEM block", `${PEM.slice(0, 60)}`, "MIIEowIBAAK"],
    ["a bearer token", "curl -H 'Authorization: Bearer 7Hq2kP9xVm4tL8wZ' x", "7Hq2kP9xVm4tL8wZ"],
    ["a bearer token in JSON", '{"authorization":"Bearer 7Hq2kP9xVm4tL8wZ"}', "7Hq2kP9xVm4tL8wZ"],
    [
      "the sandbox Argo CD's session token",
      "session argocd-session-0123456789abcdef0123456789abcdef0123456789abcdef expired",
      "0123456789abcdef0123456789abcdef",
    ],
    [
      "Argo CD's token cookie",
      "cookie argocd.token=Zm9vYmFyYmF6cXV4MTIz; Path=/",
      "Zm9vYmFyYmF6cXV4MTIz",
    ],
  ])("%s", (_shape, text, secret) => {
    const out = redact(text);

    expect(out).not.toContain(secret);
    expect(out).toContain("[REDACTED]");
  });

  it("leaves commit SHAs, audit hashes, ARNs and prose about tokens alone", () => {
    const texts = [
      "committed 7e006064bcd8c9b441fba0bee21a8ceaa1236781 (git revert --no-edit 7e006064bcd8c9b441fba0bee21a8ceaa1236781)",
      "head a9b7279a0db4e4952978a30771635ac4b8bffcbc0b0dd01b5f9531642056cc2e",
      "tokenSecretArn arn:aws:secretsmanager:us-west-2:111122223333:secret:argocd/token-AbCdEf",
      "the token from tokenSecretArn was rejected; Bearer tokens need an RBAC role",
      "Basic authentication failed for the spoke",
    ];

    for (const text of texts) expect(redact(text)).toBe(text);
  });
});
