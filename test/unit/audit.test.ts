import { CreateTableCommand, DynamoDBClient, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AuditEvent,
  appendAuditEvent,
  canonicalJson,
  GENESIS_HASH,
  readAuditTrail,
  verifyChain,
} from "../../functions/lib/audit.ts";
import { acquireLock, releaseLock } from "../../functions/lib/lock.ts";
import { registerSecret } from "../../functions/lib/redact.ts";
import { startDynamo } from "../../sandbox/aws/dynamodb.ts";

const TABLE = "audit-test";
let dynamo: { endpoint: string; stop(): Promise<void> };
const saved = { ...process.env };

beforeAll(async () => {
  dynamo = await startDynamo();
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    AWS_ACCESS_KEY_ID: "AKIDSANDBOX",
    AWS_SECRET_ACCESS_KEY: "sandbox-secret",
    AWS_REGION: "us-east-1",
    AUDIT_TABLE: TABLE,
    // A holder's execution is looked up in Step Functions; nothing answers here, so it counts as running.
    AWS_ENDPOINT_URL_SFN: "http://127.0.0.1:9",
  });
  await new DynamoDBClient({}).send(
    new CreateTableCommand({
      TableName: TABLE,
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
  await dynamo.stop();
});

const event = (execution: string, step: string) => ({
  execution,
  step,
  actor: "jane@example.com",
  action: `do ${step}`,
  outcome: "SUCCEEDED" as const,
  before: { dial: 0 },
  after: { dial: 100 },
});

async function chainOf(execution: string, steps: string[]): Promise<AuditEvent[]> {
  for (const step of steps) await appendAuditEvent(event(execution, step));
  return readAuditTrail(execution);
}

describe("audit trail (DynamoDB through dynalite)", () => {
  it("chains events: each carries the previous one's hash, in sequence", async () => {
    const events = await chainOf("exec-chain", ["Plan", "VerifySpoke", "CommitRetarget"]);

    expect(events.map((e) => [e.seq, e.step])).toEqual([
      [1, "Plan"],
      [2, "VerifySpoke"],
      [3, "CommitRetarget"],
    ]);
    expect(events[0]?.prevHash).toBe(GENESIS_HASH);
    expect(events[1]?.prevHash).toBe(events[0]?.hash);
    expect(verifyChain(events)).toEqual({ intact: true, events: 3, head: events[2]?.hash });
  });

  it("keeps every event when concurrent writers (the Parallel branches) append at once", async () => {
    await Promise.all(
      ["a", "b", "c", "d", "e", "f"].map((s) => appendAuditEvent(event("exec-race", s))),
    );

    const events = await readAuditTrail("exec-race");

    expect(events.map((e) => e.step).sort()).toEqual(["a", "b", "c", "d", "e", "f"]);
    expect(verifyChain(events).intact).toBe(true);
  });

  it("detects an edited event, naming it", async () => {
    const events = await chainOf("exec-edit", ["Plan", "ShiftTraffic", "Report"]);
    const edited = events.map((e) => (e.seq === 2 ? { ...e, after: { dial: 50 } } : e));

    expect(verifyChain(edited)).toMatchObject({
      intact: false,
      seq: 2,
      problem: expect.stringMatching(/edited/),
    });
  });

  it("detects a deleted event and a reordered pair", async () => {
    const events = await chainOf("exec-delete", ["Plan", "ShiftTraffic", "Report"]);
    const [first, second, third] = events as [AuditEvent, AuditEvent, AuditEvent];

    expect(verifyChain([first, third])).toMatchObject({ intact: false, seq: 3 });
    expect(verifyChain([first, third, second])).toMatchObject({ intact: false });
    const renumbered = [first, { ...third, seq: 2 }];
    expect(verifyChain(renumbered)).toMatchObject({ intact: false, seq: 2 });
  });

  it("detects an item edited in the table itself", async () => {
    await chainOf("exec-table", ["Plan", "Report"]);
    const [, second] = (await readAuditTrail("exec-table")) as [AuditEvent, AuditEvent];
    const forged = canonicalJson({ ...second, actor: "mallory" });
    await new DynamoDBClient({}).send(
      new UpdateItemCommand({
        TableName: TABLE,
        Key: { pk: { S: "exec#exec-table" }, sk: { S: "00000002" } },
        UpdateExpression: "SET #e = :e",
        ExpressionAttributeNames: { "#e": "event" },
        ExpressionAttributeValues: { ":e": { S: forged } },
      }),
    );

    expect(verifyChain(await readAuditTrail("exec-table"))).toMatchObject({
      intact: false,
      seq: 2,
    });
  });

  it("never stores a secret, whether registered or only token-shaped", async () => {
    registerSecret("s3cr3t-registered-value");
    await appendAuditEvent({
      ...event("exec-secret", "CommitRetarget"),
      detail:
        "push failed: Authorization: Bearer ghp_abcdefghijklmnopqrstuvwxyz123456 and s3cr3t-registered-value",
    });

    const [stored] = await readAuditTrail("exec-secret");

    expect(stored?.detail).not.toContain("ghp_abcdefghijklmnopqrstuvwxyz123456");
    expect(stored?.detail).not.toContain("s3cr3t-registered-value");
    expect(stored?.detail).toContain("[REDACTED]");
    expect(verifyChain(stored ? [stored] : []).intact).toBe(true);
  });
});

describe("single-flight lock", () => {
  const exec = (name: string) => ({
    name,
    arn: `arn:aws:states:us-east-1:000000000000:execution:sm:${name}`,
  });

  it("lets one execution hold the platform's lock and refuses a second, naming the holder", async () => {
    await acquireLock("lock-a", exec("first"), 600);

    await expect(acquireLock("lock-a", exec("second"), 600)).rejects.toMatchObject({
      name: "FailoverInProgress",
      message: expect.stringContaining("first holds the lock"),
    });
  });

  it("renews for the holder, releases only for the holder, then admits the next", async () => {
    await acquireLock("lock-b", exec("first"), 600);
    await acquireLock("lock-b", exec("first"), 600);

    expect(await releaseLock("lock-b", "second")).toBe(false);
    expect(await releaseLock("lock-b", "first")).toBe(true);
    await expect(acquireLock("lock-b", exec("second"), 600)).resolves.toMatchObject({
      owner: "second",
    });
  });

  it("takes over a stale (expired) lease, and only one of two contenders wins it", async () => {
    await acquireLock("lock-c", exec("crashed"), -10);

    const results = await Promise.allSettled([
      acquireLock("lock-c", exec("x"), 600),
      acquireLock("lock-c", exec("y"), 600),
    ]);

    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(
      results
        .filter((r) => r.status === "rejected")
        .map((r) => (r as PromiseRejectedResult).reason.name),
    ).toEqual(["FailoverInProgress"]);
  });
});
