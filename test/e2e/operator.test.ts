/**
 * The operator's and the trigger's paths against a running sandbox: the CLI talks to the
 * sandbox's Step Functions API exactly as it would to AWS (`--sandbox <endpoint file>`, or just
 * the environment and an execution ARN as SNS prints it), the trigger gets the alarm
 * EventBridge would deliver, and the drill's guards start nothing.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Sha256 } from "@aws-crypto/sha256-js";
import { GetCommand } from "@aws-sdk/lib-dynamodb";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeSandboxFile } from "../../cli/sandbox-file.ts";
import { readAuditTrail } from "../../functions/lib/audit.ts";
import { dynamoClient } from "../../functions/lib/aws.ts";
import { lastFailover } from "../../functions/lib/lock.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { type TriggerDecision, triggerOnAlarm } from "../../functions/lib/trigger.ts";
import { SANDBOX_USER_ARN } from "../../sandbox/aws/sts.ts";
import { DRILL_DEFAULTS, type DrillOptions, runDrill } from "../../sandbox/drill.ts";
import {
  AUDIT_TABLE,
  PLATFORM,
  SANDBOX_PRINCIPALS,
  type Sandbox,
  startSandbox,
} from "../../sandbox/index.ts";
import { runLocal } from "../../sandbox/runner.ts";
import { cli } from "./cli-run.ts";

const root = mkdtempSync(join(tmpdir(), "gf-operator-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

async function until<T>(what: () => Promise<T | undefined>, label: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const value = await what();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`gave up waiting for ${label}`);
}

describe("operator CLI against a running sandbox", () => {
  let sandbox: Sandbox;
  let endpointFile: string;
  beforeEach(async () => {
    n += 1;
    sandbox = await startSandbox({ reportDir: join(root, `op-${n}`), waitMs: 5 });
    endpointFile = join(root, `sandbox-${n}.json`);
    await writeSandboxFile(endpointFile, {
      stateMachineArn: sandbox.stateMachineArn,
      region: "us-east-1",
      env: sandbox.env,
      reportDir: join(root, `op-${n}`),
    });
  });
  afterEach(async () => {
    await sandbox.stop();
  });

  /** Starts a failover to us-east-2 that waits at Approval, as an operator would. */
  const startWithApproval = (name: string) =>
    cli(
      ...["start", "--sandbox", endpointFile, "--target", "us-east-2"],
      ...["--reason", "planned region move", "--require-approval", "--name", name],
    );

  const waitingAtApproval = (name: string) =>
    until(async () => {
      const { out } = await cli("status", name, "--sandbox", endpointFile, "--json");
      const line = out.split("\n").find((l) => l.includes('"awaitingApproval"')) ?? "{}";
      return (JSON.parse(line) as { awaitingApproval?: boolean }).awaitingApproval
        ? true
        : undefined;
    }, "the execution to wait at Approval");

  it("start --require-approval waits at Approval; approve releases it; watch follows it to SUCCEEDED", async () => {
    const started = await startWithApproval("approve-me");
    expect(started.code).toBe(0);
    await waitingAtApproval("approve-me");
    expect((await sandbox.state()).trafficDials).toMatchObject({ "us-west-2": 100 });

    const approved = await cli("approve", "approve-me", "--sandbox", endpointFile, "--by", "jane");
    const watched = await cli("watch", "approve-me", "--sandbox", endpointFile);

    expect(approved.code).toBe(0);
    expect(watched.code).toBe(0);
    for (const step of [
      "Approval",
      "VerifySpoke",
      "CommitRetarget",
      "AwaitArgoSync",
      "ShiftTraffic",
      "Report",
    ]) {
      expect(watched.out).toContain(step);
    }
    expect(watched.out).toMatch(/SUCCEEDED/);
    expect(watched.out).not.toMatch(/local-task-token/);
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-east-2",
      trafficDials: { "us-east-2": 100 },
    });
    // Every command the CLI suggests works when pasted: it names the sandbox file.
    expect(started.out).toContain(
      `follow it: npx gitops-failover watch approve-me --sandbox ${endpointFile}`,
    );
    expect(approved.out).toContain(
      `npx gitops-failover watch approve-me --sandbox ${endpointFile}`,
    );
    // The approval is on record: who, when, and how long the request waited.
    const dir = join(root, `op-${n}`);
    const report = JSON.parse(readFileSync(join(dir, "report.json"), "utf8")) as FailoverReport;
    expect(report.approval).toMatchObject({
      by: "jane",
      at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      waitedSeconds: expect.any(Number),
      principal: SANDBOX_USER_ARN,
    });
    const decided = (await readAuditTrail(report.execution.name)).find(
      (e) => e.step === "Approval" && e.outcome === "DECIDED",
    );
    expect(decided).toMatchObject({
      actor: "jane",
      after: { approvedBy: "jane", principal: SANDBOX_USER_ARN },
    });
    expect(approved.out).toContain(
      `approved approve-me as jane (verified principal ${SANDBOX_USER_ARN})`,
    );
    expect(readFileSync(join(dir, "report.md"), "utf8")).toContain(
      `- Approved by: jane (verified principal ${SANDBOX_USER_ARN}) at `,
    );
  });

  it("the Approve command of the SNS approval request works as pasted (an execution ARN, no flags)", async () => {
    await startWithApproval("paste-me");
    await waitingAtApproval("paste-me");
    const request = sandbox.aws.sns
      .messages()
      .find((m) => m.subject?.startsWith("[gitops-failover] approve"));
    const command = request?.message.match(/^Approve: npx gitops-failover (approve \S+)$/m)?.[1];
    expect(command).toBe(
      `approve ${sandbox.stateMachineArn.replace(":stateMachine:", ":execution:")}:paste-me`,
    );

    const approved = await cli(...(command ?? "").split(" "), "--by", "jane");
    expect(approved).toMatchObject({ code: 0 });
    await sandbox.sfn.idle();
    expect((await cli("status", "paste-me", "--sandbox", endpointFile)).code).toBe(0);
    expect(await sandbox.state()).toMatchObject({ activeRegion: "us-east-2" });
  });

  it("an approval nobody answers times out: FAILED (States.Timeout), nothing changed, lock released", async () => {
    const before = await sandbox.state();
    // The local runner's emulation of an Approval that nobody answers before its timeout.
    const result = await runLocal({
      input: {
        targetRegion: "us-east-2",
        reason: "nobody is on call",
        mode: "graceful",
        requireApproval: true,
        requestedBy: "test",
      },
      executionName: "unanswered",
      stateMachineArn: sandbox.stateMachineArn,
      waitMs: 5,
    });

    expect(result).toMatchObject({ status: "FAILED", error: "States.Timeout" });
    const entered = result.events.flatMap((e) =>
      e.type === "StateEntered" && "state" in e && e.state ? [e.state.name] : [],
    );
    expect(entered).toEqual(expect.arrayContaining(["Plan", "Approval", "RecordFailure"]));
    expect(entered).not.toContain("VerifySpoke");
    expect(await sandbox.state()).toEqual(before);
    const lock = await dynamoClient().send(
      new GetCommand({ TableName: AUDIT_TABLE, Key: { pk: `lock#${PLATFORM}`, sk: "lock" } }),
    );
    expect(lock.Item).toBeUndefined();
    expect(await lastFailover(PLATFORM)).toBeUndefined();
    const report = JSON.parse(readFileSync(join(root, `op-${n}`, "report.json"), "utf8")) as {
      failedStep: string;
      error: { name: string };
      changed: string[];
    };
    expect(report).toMatchObject({ failedStep: "Approval", changed: [] });
    expect(report.error.name).toBe("States.Timeout");
    const subjects = sandbox.aws.sns.messages().map((m) => m.subject);
    expect(subjects).toEqual([
      "[gitops-failover] approve failover to us-east-2?",
      "[gitops-failover] failover to us-east-2 FAILED",
    ]);
  });

  it("reject ends the execution with ApprovalRejected and nothing changed", async () => {
    const before = await sandbox.state();
    await startWithApproval("reject-me");
    await waitingAtApproval("reject-me");

    const rejected = await cli(
      "reject",
      "reject-me",
      "--sandbox",
      endpointFile,
      "--reason",
      "primary recovered",
    );
    const watched = await cli("watch", "reject-me", "--sandbox", endpointFile);

    expect(rejected.code).toBe(0);
    expect(watched.code).toBe(1);
    expect(watched.out).toContain("ApprovalRejected");
    expect(await sandbox.state()).toEqual(before);
    const report = JSON.parse(readFileSync(join(root, `op-${n}`, "report.json"), "utf8")) as {
      failedStep: string;
      changed: string[];
    };
    expect(report.failedStep).toBe("Approval");
    expect(report.changed).toEqual([]);
    expect(watched.out).toContain("rejected by");
    expect(rejected.out).toContain(`rejected reject-me (verified principal ${SANDBOX_USER_ARN})`);
    expect((report as unknown as FailoverReport).error?.message).toContain(
      `(verified principal ${SANDBOX_USER_ARN}): primary recovered`,
    );
  });

  it("the approval entry point refuses an unsigned call, a wrong secret, a changed body and a principal the topology does not list", async () => {
    await startWithApproval("guarded");
    await waitingAtApproval("guarded");
    const executionArn = `${sandbox.stateMachineArn.replace(":stateMachine:", ":execution:")}:guarded`;
    const body = { decision: "approve", executionArn, by: "mallory" } as const;
    const url = sandbox.approvalUrl.url;
    const [operator, auditor] = SANDBOX_PRINCIPALS;
    /** A POST signed for `lambda` with the given key pair; `tamper` changes it after signing. */
    const signedPost = async (
      key: { accessKeyId: string; secretAccessKey: string },
      tamper: (b: string) => string = (b) => b,
    ) => {
      const u = new URL(url);
      const payload = JSON.stringify(body);
      const signed = await new SignatureV4({
        service: "lambda",
        region: "us-east-1",
        credentials: key,
        sha256: Sha256,
      }).sign(
        new HttpRequest({
          method: "POST",
          protocol: "http:",
          hostname: u.hostname,
          port: Number(u.port),
          path: "/",
          headers: { host: u.host, "content-type": "application/json" },
          body: payload,
        }),
      );
      const res = await fetch(url, {
        method: "POST",
        headers: signed.headers,
        body: tamper(payload),
      });
      return { status: res.status, text: await res.text() };
    };
    if (!operator || !auditor) throw new Error("no sandbox principals");

    const unsigned = await fetch(url, { method: "POST", body: JSON.stringify(body) });
    const wrongSecret = await signedPost({ ...operator, secretAccessKey: "guessed" });
    const changed = await signedPost(operator, (b) => b.replace("mallory", "jane"));
    const unlisted = await signedPost(auditor);
    const status = await cli("status", "guarded", "--sandbox", endpointFile, "--json");

    expect(unsigned.status).toBe(403);
    expect(await unsigned.text()).toBe('{"Message":"Forbidden"}');
    expect(wrongSecret.status).toBe(403);
    expect(wrongSecret.text).toContain("The request signature we calculated does not match");
    expect(changed.status).toBe(403);
    expect(changed.text).toContain("The request signature we calculated does not match");
    expect(unlisted.status).toBe(403);
    expect(JSON.parse(unlisted.text)).toEqual({
      message: `${auditor.arn} may not approve or reject failovers of ${PLATFORM}: the topology's approvers are ${operator.arn}`,
    });
    expect(status.out).toContain('"awaitingApproval":true');
  });
});

describe("the trigger's cooldown against a running sandbox", () => {
  let sandbox: Sandbox;
  beforeEach(async () => {
    n += 1;
    sandbox = await startSandbox({ reportDir: join(root, `cooldown-${n}`), waitMs: 5 });
  });
  afterEach(async () => {
    await sandbox.stop();
  });

  /** Only `region`'s health check fails, and its alarm reaches the trigger (alarm time `at`). */
  async function alarm(region: string, at: string): Promise<TriggerDecision> {
    for (const [name, r] of Object.entries(sandbox.topology.regions))
      sandbox.aws.route53.setFailingFraction(r.route53.healthCheckId, name === region ? 1 : 0);
    const healthCheckId = sandbox.topology.regions[region]?.route53.healthCheckId ?? "";
    return triggerOnAlarm({
      "detail-type": "CloudWatch Alarm State Change",
      source: "aws.cloudwatch",
      detail: {
        alarmName: `gitops-failover-${region}`,
        state: { value: "ALARM", timestamp: at },
        configuration: {
          metrics: [{ metricStat: { metric: { dimensions: { HealthCheckId: healthCheckId } } } }],
        },
      },
    });
  }

  /** The execution's status, by its ARN alone (as the trigger's SNS message prints it). */
  const statusOf = async (executionArn: string | undefined) => {
    const { out } = await cli("status", executionArn ?? "", "--json");
    return (JSON.parse(out.split("\n")[0] ?? "") as { status: string }).status;
  };

  it("a standby's alarm runs a no-op that holds nothing back; a real failover then does", async () => {
    const before = await sandbox.state();
    // us-east-2 is a standby: Plan turns its alarm into a no-op, and the execution SUCCEEDS.
    const standby = await alarm("us-east-2", "2024-05-01T12:00:00.000Z");
    expect(standby).toMatchObject({ decision: "started", targetRegion: "us-west-2" });
    await sandbox.sfn.idle();
    expect(await statusOf(standby.executionArn)).toBe("SUCCEEDED");
    expect(await sandbox.state()).toEqual(before);
    expect(await lastFailover(PLATFORM)).toBeUndefined();

    // The active region fails minutes later: that failover must start, not be "cooldown".
    const active = await alarm("us-west-2", "2024-05-01T12:05:00.000Z");
    expect(active).toMatchObject({ decision: "started", targetRegion: "us-east-2" });
    await sandbox.sfn.idle();
    expect(await statusOf(active.executionArn)).toBe("SUCCEEDED");
    expect(await sandbox.state()).toMatchObject({
      activeRegion: "us-east-2",
      auroraWriterRegion: "us-east-2",
    });
    expect(await lastFailover(PLATFORM)).toMatchObject({ execution: active.incident });

    // That one changed the platform: the next alarm inside the cooldown is held back, and told.
    const next = await alarm("us-east-2", "2024-05-01T12:10:00.000Z");
    expect(next.decision).toBe("cooldown");
    expect(next.reason).toMatch(
      new RegExp(`^cooldown: failover ${active.incident} changed the platform 0 min ago`),
    );
    expect(next.notified).toBe(true);
    const told = sandbox.aws.sns.messages().at(-1);
    expect(told?.subject).toBe(
      "[gitops-failover] us-east-2: automatic failover held back (cooldown)",
    );
    expect(told?.message).toContain(
      "To fail over anyway: npx gitops-failover start --state-machine",
    );
    await sandbox.sfn.idle();
    expect(await sandbox.state()).toMatchObject({ activeRegion: "us-east-2" });
  });

  it("a failover that FAILED half-way starts the cooldown too", async () => {
    sandbox.injectFault("ga-update-fails", "us-east-2");
    const first = await alarm("us-west-2", "2024-05-01T12:00:00.000Z");
    expect(first.decision).toBe("started");
    await sandbox.sfn.idle();
    expect(await statusOf(first.executionArn)).toBe("FAILED");
    const after = await sandbox.state();
    // Git was retargeted and the writer moved before traffic failed. The alarm says us-west-2
    // is down: compensation does not hand it the writer back, so both stay active in Git.
    expect(after).toMatchObject({
      activeRegions: ["us-west-2", "us-east-2"],
      auroraWriterRegion: "us-east-2",
    });
    expect(after.gitLog).toHaveLength(2);
    expect(await lastFailover(PLATFORM)).toMatchObject({ execution: first.incident });

    const again = await alarm("us-west-2", "2024-05-01T12:03:00.000Z");
    expect(again.decision).toBe("cooldown");
    expect(again.reason).toContain(`failover ${first.incident} changed the platform`);
  });
});

describe("drills through the trigger (--via alarm)", () => {
  const drill = (options: Partial<DrillOptions>) => {
    n += 1;
    return runDrill({
      ...DRILL_DEFAULTS,
      reportDir: join(root, `alarm-${n}`),
      via: "alarm",
      ...options,
    });
  };

  it("an alarm on the active region fails over automatically (ungraceful, RPO-guarded)", async () => {
    const result = await drill({});

    expect(result.trigger.map((d) => d.decision)).toEqual(["started"]);
    expect(result.status).toBe("SUCCEEDED");
    expect(result.executions).toHaveLength(1);
    expect(result.after).toMatchObject({
      activeRegion: "us-east-2",
      auroraWriterRegion: "us-east-2",
    });
    const audit = readFileSync(join(result.reportDir, "audit.jsonl"), "utf8");
    expect(audit).toContain('"step":"Trigger"');
  });

  it("the same alarm delivered three times starts exactly one execution", async () => {
    const result = await drill({ alarmRepeats: 3 });

    expect(result.trigger.map((d) => d.decision)).toEqual([
      "started",
      "already-started",
      "already-started",
    ]);
    expect(new Set(result.trigger.map((d) => d.incident)).size).toBe(1);
    expect(result.executions).toHaveLength(1);
    expect(result.status).toBe("SUCCEEDED");
  });

  it("with the kill switch on nothing starts, and the report says why", async () => {
    const result = await drill({ killSwitch: true });

    expect(result.status).toBe("NOT_STARTED");
    expect(result.executions).toHaveLength(0);
    expect(result.after).toEqual(result.before);
    expect(readFileSync(join(result.reportDir, "report.md"), "utf8")).toMatch(/kill switch on/);
  });

  it("an alarm inside the cooldown after a failover starts nothing", async () => {
    const result = await drill({ cooldownHit: true });

    expect(result.status).toBe("NOT_STARTED");
    expect(result.trigger.map((d) => d.decision)).toEqual(["cooldown"]);
    expect(result.executions).toHaveLength(1);
    expect(readFileSync(join(result.reportDir, "report.json"), "utf8")).toMatch(/cooldown/);
  });
});
