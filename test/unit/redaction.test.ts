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
  });
});
