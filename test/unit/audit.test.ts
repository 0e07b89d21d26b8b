import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
import { resetClients } from "../../functions/lib/aws.ts";
import { loadTopology, resetRuntimeTopology } from "../../functions/lib/config.ts";
import { acquireLock, lastFailover, releaseLock } from "../../functions/lib/lock.ts";
import { registerSecret } from "../../functions/lib/redact.ts";
import { type FailoverReport, recordFailureStep, reportStep } from "../../functions/lib/report.ts";
import type { FailoverState, PlatformSnapshot } from "../../functions/lib/state.ts";
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

describe("single-flight lock: bounded takeover", () => {
  const exec = (name: string) => ({
    name,
    arn: `arn:aws:states:us-east-1:000000000000:execution:sm:${name}`,
  });

  /** Points the SDK clients at `env` for the duration of `work`. */
  async function withEndpoints<T>(env: Record<string, string>, work: () => Promise<T>): Promise<T> {
    const before = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    resetClients();
    try {
      return await work();
    } finally {
      Object.assign(process.env, before);
      resetClients();
    }
  }

  it("gives up with FailoverInProgress when the lock keeps vanishing between the refused put and the read", async () => {
    // Prepare: a DynamoDB endpoint in front of dynalite that answers every read of this lock
    // with "no item", as if holders kept releasing it just in time.
    await acquireLock("lock-flap", exec("holder"), 600);
    const calls: string[] = [];
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        const action = String(req.headers["x-amz-target"] ?? "").split(".")[1] ?? "";
        calls.push(action);
        if (action === "GetItem" && body.includes("lock#lock-flap")) {
          res.writeHead(200, { "content-type": "application/x-amz-json-1.0" }).end("{}");
          return;
        }
        const upstream = await fetch(dynamo.endpoint, {
          method: "POST",
          headers: Object.fromEntries(
            Object.entries(req.headers).filter(([k]) => k !== "host" && k !== "content-length"),
          ) as Record<string, string>,
          body,
        });
        res
          .writeHead(upstream.status, { "content-type": "application/x-amz-json-1.0" })
          .end(Buffer.from(await upstream.arrayBuffer()));
      });
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const endpoint = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    try {
      // Act
      const error = await withEndpoints({ AWS_ENDPOINT_URL_DYNAMODB: endpoint }, () =>
        acquireLock("lock-flap", exec("contender"), 600).catch((e: unknown) => e),
      );

      // Assess
      expect(error).toMatchObject({
        name: "FailoverInProgress",
        message: expect.stringContaining("was taken and released 3 times while contender"),
      });
      expect(calls.filter((c) => c === "PutItem")).toHaveLength(3);
      expect(calls.filter((c) => c === "GetItem")).toHaveLength(3);
    } finally {
      await new Promise((r) => proxy.close(r));
    }
  });

  it("does not wait on a Step Functions endpoint that never answers: the live lease holds", async () => {
    // Prepare: a holder whose execution lookup gets no answer at all.
    await acquireLock("lock-silent", exec("holder"), 600);
    const sockets = new Set<Socket>();
    const silent = createServer(() => undefined);
    silent.on("connection", (s) => sockets.add(s));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;

    try {
      // Act
      const started = Date.now();
      const error = await withEndpoints({ AWS_ENDPOINT_URL_SFN: endpoint }, () =>
        acquireLock("lock-silent", exec("contender"), 600).catch((e: unknown) => e),
      );

      // Assess
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(error).toMatchObject({
        name: "FailoverInProgress",
        message: expect.stringContaining("holder holds the lock"),
      });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});

describe("closing the chain: Report and RecordFailure", () => {
  const dir = mkdtempSync(join(tmpdir(), "gf-close-"));
  const WEST: PlatformSnapshot = {
    activeRegion: "us-west-2",
    activeRegions: ["us-west-2"],
    passiveRegions: ["us-east-2"],
    gitHead: "1".repeat(40),
    auroraWriterRegion: "us-west-2",
    trafficDials: { "us-west-2": 100, "us-east-2": 0 },
  };
  const execution = {
    id: "arn:aws:states:us-east-1:000000000000:execution:sm:report-s3-down",
    name: "report-s3-down",
    startTime: new Date().toISOString(),
  };
  /** A failover that did everything: only Report is left. */
  const completed: FailoverState = {
    execution,
    input: {
      targetRegion: "us-east-2",
      reason: "region move",
      mode: "graceful",
      dryRun: false,
      allowDataLoss: false,
      requestedBy: "jane",
      requireApproval: false,
    },
    plan: {
      sourceRegion: "us-west-2",
      targetRegion: "us-east-2",
      before: WEST,
      needs: { retarget: true, aurora: true, traffic: true, demote: false },
      noop: false,
      order: "sequential",
      retarget: "one-commit",
      demoteRegions: [],
      approvalTimeoutSeconds: 3600,
      actions: [],
    },
    spoke: { status: "SUCCEEDED", spokes: [] },
    traffic: {
      status: "SUCCEEDED",
      skipped: false,
      stage: 0,
      percent: 100,
      complete: true,
      changes: [],
      dials: { "us-west-2": 0, "us-east-2": 100 },
    },
    trafficHealth: { status: "SUCCEEDED", stage: 0, checkedAt: new Date().toISOString() },
  };

  beforeAll(() => {
    Object.assign(process.env, {
      TOPOLOGY: JSON.stringify(loadTopology("config/topology.example.yaml")),
      // Everything but DynamoDB (dynalite) is unreachable: S3, and the after-snapshot's APIs.
      AWS_ENDPOINT_URL: "http://127.0.0.1:9",
      AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9",
      REPORT_BUCKET: "gitops-failover-reports",
    });
    resetRuntimeTopology();
    resetClients();
  });
  afterAll(() => {
    resetRuntimeTopology();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a Report that cannot write to S3 still releases the lock; RecordFailure then pins the failure on Report", async () => {
    await acquireLock("payments", { name: execution.name, arn: execution.id }, 600);

    const failed = await reportStep(completed).catch((e: Error) => e);
    const next = await acquireLock("payments", { name: "next", arn: `${execution.id}-next` }, 600)
      .then((holder) => holder?.owner)
      .catch((e: Error) => e.name);
    process.env.REPORT_DIR = dir;
    const recorded = await recordFailureStep({
      state: {
        ...completed,
        error: { Error: (failed as Error).name, Cause: (failed as Error).message },
      },
      execution,
    });
    delete process.env.REPORT_DIR;

    expect(failed).toMatchObject({ message: expect.stringMatching(/writing the report to s3:/) });
    expect(next).toBe("next");
    expect(recorded).toMatchObject({ status: "FAILED", failedStep: "Report" });
    const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;
    expect(report.steps.find((s) => s.name === "VerifyTraffic")?.status).toBe("SUCCEEDED");
    expect(report.manualSteps.join("\n")).toMatch(/failover itself completed.*nothing to undo/);
    const trail = await readAuditTrail(execution.name);
    expect(trail.map((e) => e.step)).toEqual(["Report", "RecordFailure"]);
    expect(recorded.audit).toEqual({ events: 2, head: trail[1]?.hash });
  });

  it("after traffic moved and VerifyTraffic failed, the manual steps undo traffic first, then Git, then Aurora", async () => {
    const t = loadTopology("config/topology.example.yaml");
    const arn = (region: string) => t.regions[region]?.globalAccelerator?.endpointGroupArn;
    const sha = "9".repeat(40);
    process.env.REPORT_DIR = dir;

    await recordFailureStep({
      state: {
        ...completed,
        execution: { ...execution, name: "verify-traffic-failed" },
        converge: {
          retarget: {
            status: "SUCCEEDED",
            skipped: false,
            sha,
            previousSha: WEST.gitHead,
            attempts: 1,
            changes: [],
            subject: "failover(payments): make us-east-2 active",
          },
          argo: { status: "SUCCEEDED", done: 2, total: 2, hub: "primary" },
          promotion: {
            status: "SUCCEEDED",
            skipped: false,
            action: "switchover",
            writerBefore: "us-west-2",
          },
          aurora: { status: "SUCCEEDED", writerRegion: "us-east-2" },
        },
        trafficHealth: { status: "FAILED", stage: 0 },
        error: {
          Error: "TrafficVerifyTimeout",
          Cause: "[VerifyTraffic] us-east-2 endpoints not healthy 300s after stage 1",
        },
      },
      execution: { ...execution, name: "verify-traffic-failed" },
    });
    delete process.env.REPORT_DIR;

    const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;
    const [check, traffic, git, aurora, forward] = report.manualSteps;
    expect(report.failedStep).toBe("VerifyTraffic");
    expect(check).toMatch(/^The platform could not be read after the failure/);
    expect(traffic).toMatch(/^Undo traffic first/);
    expect(traffic).toContain(
      `\`aws globalaccelerator update-endpoint-group --region us-west-2 --endpoint-group-arn ${arn("us-west-2")} --traffic-dial-percentage 100\`, then \`aws globalaccelerator update-endpoint-group --region us-west-2 --endpoint-group-arn ${arn("us-east-2")} --traffic-dial-percentage 0\``,
    );
    expect(git).toContain(`git revert --no-edit ${sha}`);
    expect(aurora).toMatch(/^Undo Aurora last: .*switchover-global-cluster --region us-east-2 /);
    expect(forward).toMatch(/^Or finish forward/);
    // The after-state was unreadable, yet the steps that ran start the trigger's cooldown.
    expect(await lastFailover("payments")).toMatchObject({
      execution: "verify-traffic-failed",
      changed: [
        "traffic: may have changed (the after-state could not be read)",
        "git: may have changed (the after-state could not be read)",
        "aurora: may have changed (the after-state could not be read)",
      ],
    });
  });
});
