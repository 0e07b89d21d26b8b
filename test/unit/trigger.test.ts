/**
 * The trigger's decisions, one test per branch: AWS APIs are mocked at the SDK client (Route 53,
 * SSM, Step Functions, SNS); the audit trail, the lock, the last-failover marker and the incident
 * claims are real (a dynalite DynamoDB on 127.0.0.1, emptied before each test).
 */
import type { Server } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import {
  CreateTableCommand,
  DeleteItemCommand,
  DynamoDBClient,
  ScanCommand,
} from "@aws-sdk/client-dynamodb";
import { GetHealthCheckStatusCommand, Route53Client } from "@aws-sdk/client-route-53";
import {
  ExecutionAlreadyExists,
  type ExecutionListItem,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { PublishCommand, SNSClient } from "@aws-sdk/client-sns";
import { GetParameterCommand, ParameterNotFound, SSMClient } from "@aws-sdk/client-ssm";
import type { Context } from "aws-lambda";
import { mockClient } from "aws-sdk-client-mock";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { readAuditTrail, verifyChain } from "../../functions/lib/audit.ts";
import { loadTopology, resetRuntimeTopology, type Topology } from "../../functions/lib/config.ts";
import { acquireLock, lastFailover, releaseLock } from "../../functions/lib/lock.ts";
import { logger } from "../../functions/lib/middleware.ts";
import {
  collectMetrics,
  type Evaluation,
  type ReadinessStatus,
  recordReadiness,
} from "../../functions/lib/readiness.ts";
import {
  incidentName,
  shellQuote,
  type TriggerDecision,
  triggerOnAlarm,
} from "../../functions/lib/trigger.ts";
import { handler } from "../../functions/trigger/handler.ts";

const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:gitops-failover";
const TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:gitops-failover";
const CHECK = {
  "us-west-2": "11111111-1111-4111-8111-111111111111",
  "us-east-2": "22222222-2222-4222-8222-222222222222",
  "eu-west-1": "33333333-3333-4333-8333-333333333333",
} as const;
const ALARM_TIME = "2024-05-01T12:34:56.789+0000";
const INCIDENT = "auto-us-west-2-20240501T123456Z";
const PLATFORM = "payments";
const CHANGED = [
  "Git: active region us-west-2 -> us-east-2",
  "Aurora: writer us-west-2 -> us-east-2",
];

/** An execution of `name` that takes the lock and ends, having changed `changed`, `endedMinutesAgo` ago. */
async function failoverEnded(name: string, changed: string[], endedMinutesAgo = 0): Promise<void> {
  const arn = `${STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:")}:${name}`;
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(Date.now() - endedMinutesAgo * 60_000);
  try {
    await acquireLock(PLATFORM, { name, arn }, 3600);
    expect(await releaseLock(PLATFORM, name, { changed })).toBe(true);
  } finally {
    vi.useRealTimers();
  }
}

/** Empties the table: every test starts without lock, marker, claims or audit chains. */
async function emptyTable(): Promise<void> {
  const client = new DynamoDBClient({});
  const { Items = [] } = await client.send(new ScanCommand({ TableName: "audit" }));
  for (const item of Items) {
    await client.send(
      new DeleteItemCommand({
        TableName: "audit",
        Key: { pk: item.pk as { S: string }, sk: item.sk as { S: string } },
      }),
    );
  }
}

const route53 = mockClient(Route53Client);
const ssm = mockClient(SSMClient);
const sfn = mockClient(SFNClient);
const sns = mockClient(SNSClient);

let dynamo: Server;

const TRIGGER: Topology["trigger"] = {
  mode: "auto",
  corroborationThreshold: 0.5,
  cooldownMinutes: 60,
  killSwitchParameter: "/gitops-failover/kill-switch",
};

/** The example topology with the test's trigger settings, changed by `trigger`. */
function useTopology(trigger: Partial<Topology["trigger"]> = {}): void {
  const t = loadTopology("config/topology.example.yaml");
  process.env.TOPOLOGY = JSON.stringify({ ...t, trigger: { ...TRIGGER, ...trigger } });
  resetRuntimeTopology();
}

function alarmEvent(
  overrides: {
    state?: string;
    timestamp?: string;
    healthCheckId?: string | null;
    alarmName?: string;
  } = {},
) {
  const id = overrides.healthCheckId === undefined ? CHECK["us-west-2"] : overrides.healthCheckId;
  return {
    version: "0",
    id: "c4c1c1c9-6542-e61b-6ef0-8c4d36933a92",
    "detail-type": "CloudWatch Alarm State Change",
    source: "aws.cloudwatch",
    account: "123456789012",
    time: "2024-05-01T12:34:57Z",
    region: "us-east-1",
    resources: ["arn:aws:cloudwatch:us-east-1:123456789012:alarm:usw2-endpoint-down"],
    detail: {
      alarmName: overrides.alarmName ?? "usw2-endpoint-down",
      state: {
        value: overrides.state ?? "ALARM",
        reason: "Threshold Crossed: 1 datapoint [0.0] was less than the threshold (1.0).",
        timestamp: overrides.timestamp ?? ALARM_TIME,
      },
      previousState: { value: "OK", timestamp: "2024-05-01T10:00:00.000+0000" },
      configuration: {
        description: "us-west-2 endpoint health",
        metrics: [
          {
            id: "m1",
            metricStat: {
              metric: {
                namespace: "AWS/Route53",
                name: "HealthCheckStatus",
                dimensions: id === null ? {} : { HealthCheckId: id },
              },
              period: 60,
              stat: "Minimum",
            },
            returnData: true,
          },
        ],
      },
    },
  };
}

/** `failing` of `total` Route 53 checkers report a failure. */
function checkers(failing: number, total = 8) {
  return {
    HealthCheckObservations: Array.from({ length: total }, (_, i) => ({
      Region: "us-east-1" as const,
      IPAddress: `15.177.0.${i}`,
      StatusReport: {
        Status:
          i < failing ? "Failure: Connection timed out." : "Success: HTTP Status Code 200, OK",
        CheckedTime: new Date(),
      },
    })),
  };
}

function health(byRegion: Partial<Record<keyof typeof CHECK, [number, number?]>>): void {
  for (const [region, [failing, total]] of Object.entries(byRegion)) {
    route53
      .on(GetHealthCheckStatusCommand, { HealthCheckId: CHECK[region as keyof typeof CHECK] })
      .resolves(checkers(failing, total));
  }
}

function execution(
  name: string,
  status: "RUNNING" | "SUCCEEDED",
  stoppedMinutesAgo?: number,
): ExecutionListItem {
  return {
    executionArn: `${STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:")}:${name}`,
    stateMachineArn: STATE_MACHINE_ARN,
    name,
    status,
    startDate: new Date(Date.now() - 3_600_000 * 3),
    ...(stoppedMinutesAgo === undefined
      ? {}
      : { stopDate: new Date(Date.now() - stoppedMinutesAgo * 60_000) }),
  };
}

function startCalls() {
  return sfn.commandCalls(StartExecutionCommand).map((c) => c.args[0].input);
}

/** Asserts the decision is the last event of its audit chain, and the chain is intact. */
async function expectAudited(d: TriggerDecision): Promise<void> {
  const trail = await readAuditTrail(d.incident ?? "trigger-unmatched");
  expect(verifyChain(trail)).toMatchObject({ intact: true });
  expect(trail.at(-1)).toMatchObject({
    step: "Trigger",
    action: expect.stringContaining(d.decision),
    detail: d.reason,
  });
  expect(d.problems).toBeUndefined();
}

beforeAll(async () => {
  const dynalite = createRequire(import.meta.url)("dynalite") as (o: {
    createTableMs: number;
  }) => Server;
  dynamo = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => dynamo.listen(0, "127.0.0.1", resolve));
  Object.assign(process.env, {
    AWS_REGION: "us-east-1",
    AWS_ACCESS_KEY_ID: "test",
    AWS_SECRET_ACCESS_KEY: "test",
    AWS_ENDPOINT_URL_DYNAMODB: `http://127.0.0.1:${(dynamo.address() as AddressInfo).port}`,
    AUDIT_TABLE: "audit",
  });
  await new DynamoDBClient({}).send(
    new CreateTableCommand({
      TableName: "audit",
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
  await new Promise((resolve) => dynamo.close(resolve));
});

beforeEach(async () => {
  await emptyTable();
  for (const m of [route53, ssm, sfn, sns]) m.reset();
  process.env.STATE_MACHINE_ARN = STATE_MACHINE_ARN;
  process.env.TOPIC_ARN = TOPIC_ARN;
  useTopology();
  health({ "us-west-2": [8], "us-east-2": [0], "eu-west-1": [0] });
  ssm
    .on(GetParameterCommand)
    .rejects(new ParameterNotFound({ message: "not found", $metadata: {} }));
  sfn.on(ListExecutionsCommand).resolves({ executions: [] });
  sfn.on(StartExecutionCommand).callsFake((input: { name: string }) => ({
    executionArn: `${STATE_MACHINE_ARN.replace(":stateMachine:", ":execution:")}:${input.name}`,
    startDate: new Date(),
  }));
  sns.on(PublishCommand).resolves({ MessageId: "m-1" });
});

describe("trigger: events it must ignore", () => {
  it.each([
    ["null", null, /malformed event: \(root\)/],
    ["a string", "ALARM", /malformed event/],
    [
      "another detail-type",
      { ...alarmEvent(), "detail-type": "EC2 Instance State-change Notification" },
      /detail-type/,
    ],
    [
      "no state",
      { ...alarmEvent(), detail: { alarmName: "x", configuration: { metrics: [] } } },
      /detail\.state/,
    ],
    [
      "a bad timestamp",
      alarmEvent({ timestamp: "yesterday" }),
      /detail\.state\.timestamp: must be an ISO 8601 timestamp with a 4-digit year/,
    ],
    [
      "an extended-year timestamp (it would put '+' in the execution name)",
      alarmEvent({ timestamp: "+010000-01-01T00:00:00Z" }),
      /detail\.state\.timestamp: must be an ISO 8601 timestamp with a 4-digit year/,
    ],
    [
      "a date without a time",
      alarmEvent({ timestamp: "2024-05-01" }),
      /detail\.state\.timestamp: must be an ISO 8601 timestamp/,
    ],
  ])(
    "ignores %s as malformed, with the reason, and touches nothing",
    async (_name, event, reason) => {
      const d = await triggerOnAlarm(event);
      expect(d).toMatchObject({ decision: "ignored", notified: false });
      expect(d.reason).toMatch(reason);
      expect(route53.calls()).toHaveLength(0);
      expect(sfn.calls()).toHaveLength(0);
      await expectAudited(d);
    },
  );

  it.each(["OK", "INSUFFICIENT_DATA"])("ignores an alarm going to %s", async (state) => {
    const d = await triggerOnAlarm(alarmEvent({ state }));
    expect(d).toMatchObject({ decision: "ignored", reason: `alarm state is ${state}, not ALARM` });
    expect(route53.calls()).toHaveLength(0);
    expect(startCalls()).toHaveLength(0);
    await expectAudited(d);
  });

  it("ignores an alarm on a health check outside the topology (a region it does not know)", async () => {
    const d = await triggerOnAlarm(
      alarmEvent({ healthCheckId: "99999999-9999-4999-8999-999999999999" }),
    );
    expect(d.decision).toBe("ignored");
    expect(d.reason).toBe(
      "unknown alarm: health check 99999999-9999-4999-8999-999999999999 belongs to no region of the topology",
    );
    expect(startCalls()).toHaveLength(0);
    await expectAudited(d);
  });

  it("ignores an alarm whose metric has no HealthCheckId dimension", async () => {
    const d = await triggerOnAlarm(alarmEvent({ healthCheckId: null }));
    expect(d).toMatchObject({
      decision: "ignored",
      reason: "unknown alarm: its metric has no HealthCheckId dimension",
    });
    expect(startCalls()).toHaveLength(0);
  });

  it("returns the decision through the Lambda handler instead of throwing", async () => {
    const context = {
      functionName: "gitops-failover-trigger",
      functionVersion: "$LATEST",
      invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:gitops-failover-trigger",
      memoryLimitInMB: "256",
      awsRequestId: "req-1",
      getRemainingTimeInMillis: () => 30_000,
    } as unknown as Context;
    await expect(handler({ not: "an alarm" }, context)).resolves.toMatchObject({
      decision: "ignored",
    });
  });
});

describe("trigger: corroboration", () => {
  it("does nothing when fewer checkers than the threshold see the region failing", async () => {
    health({ "us-west-2": [3, 8] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "not-corroborated",
      failedRegion: "us-west-2",
      incident: INCIDENT,
      reason: "3/8 checkers failing, below the threshold 0.5",
    });
    expect(startCalls()).toHaveLength(0);
    expect(sns.calls()).toHaveLength(0);
    await expectAudited(d);
  });

  it("acts at exactly the threshold", async () => {
    health({ "us-west-2": [4, 8] });
    expect((await triggerOnAlarm(alarmEvent())).decision).toBe("started");
  });

  it("does not act on a health check without observations", async () => {
    health({ "us-west-2": [0, 0] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "not-corroborated",
      reason: "0/0 checkers failing, below the threshold 0.5",
    });
    expect(startCalls()).toHaveLength(0);
  });
});

describe("trigger: kill switch", () => {
  it.each(["on", " TRUE\n", "Enabled"])(
    "does nothing but tell humans when the kill switch is %j",
    async (value) => {
      ssm
        .on(GetParameterCommand, { Name: "/gitops-failover/kill-switch" })
        .resolves({ Parameter: { Value: value } });
      const d = await triggerOnAlarm(alarmEvent());
      expect(d).toMatchObject({
        decision: "kill-switch-on",
        targetRegion: "us-east-2",
        notified: true,
      });
      expect(d.reason).toMatch(
        /^kill switch on \(\/gitops-failover\/kill-switch = ".+"\); would have failed over to us-east-2$/,
      );
      expect(startCalls()).toHaveLength(0);
      expect(sns.commandCalls(PublishCommand)[0]?.args[0].input).toMatchObject({
        TopicArn: TOPIC_ARN,
        Subject: "[gitops-failover] us-west-2: automatic failover suppressed (kill switch on)",
      });
      await expectAudited(d);
    },
  );

  it("reads the parameter the topology names, and proceeds when it is off", async () => {
    useTopology({ killSwitchParameter: "/payments/failover/kill" });
    ssm
      .on(GetParameterCommand, { Name: "/payments/failover/kill" })
      .resolves({ Parameter: { Value: "off" } });
    expect((await triggerOnAlarm(alarmEvent())).decision).toBe("started");
    expect(ssm.commandCalls(GetParameterCommand)[0]?.args[0].input.Name).toBe(
      "/payments/failover/kill",
    );
  });

  it("treats a kill switch it cannot read as on", async () => {
    ssm
      .on(GetParameterCommand)
      .rejects(Object.assign(new Error("not authorized"), { name: "AccessDeniedException" }));
    const d = await triggerOnAlarm(alarmEvent());
    expect(d.decision).toBe("kill-switch-on");
    expect(d.reason).toMatch(
      /could not be read \(AccessDeniedException: not authorized\), treated as on/,
    );
    expect(startCalls()).toHaveLength(0);
  });
});

describe("trigger: cooldown", () => {
  it("does nothing while another execution runs", async () => {
    sfn
      .on(ListExecutionsCommand, { statusFilter: "RUNNING" })
      .resolves({ executions: [execution("cli-us-east-2-20240501T120000Z", "RUNNING")] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "cooldown",
      reason: "execution cli-us-east-2-20240501T120000Z is running",
      notified: true,
    });
    expect(startCalls()).toHaveLength(0);
    expect(sns.commandCalls(PublishCommand)[0]?.args[0].input.Subject).toBe(
      "[gitops-failover] us-west-2: automatic failover held back (cooldown)",
    );
    await expectAudited(d);
  });

  it("does nothing within the cooldown after a failover that changed the platform, and says so", async () => {
    await failoverEnded("auto-eu-west-1-20240501T110000Z", CHANGED, 12.5);
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "cooldown",
      reason:
        "cooldown: failover auto-eu-west-1-20240501T110000Z changed the platform 12 min ago (2 changes; cooldown 60 min)",
      targetRegion: "us-east-2",
      notified: true,
    });
    expect(startCalls()).toHaveLength(0);
    const sent = sns.commandCalls(PublishCommand)[0]?.args[0].input;
    expect(sent?.Subject).toBe(
      "[gitops-failover] us-west-2: automatic failover held back (cooldown)",
    );
    expect(sent?.Message).toContain(
      `To fail over anyway: npx gitops-failover start --state-machine ${STATE_MACHINE_ARN} --target us-east-2 --mode ungraceful --reason`,
    );
    await expectAudited(d);
  });

  it("counts a failover that failed half-way, even when its lock was no longer its own", async () => {
    // RecordFailure releases with the report's changes, whoever holds the lock by then.
    const changed = ["Git: active region us-west-2 -> us-east-2"];
    expect(await releaseLock(PLATFORM, "auto-eu-west-1-20240501T110000Z", { changed })).toBe(false);
    const d = await triggerOnAlarm(alarmEvent());
    expect(d.decision).toBe("cooldown");
    expect(d.reason).toMatch(/changed the platform 0 min ago \(1 change; cooldown 60 min\)$/);
  });

  it("does not count executions that changed nothing: dry runs, no-ops, rejected approvals", async () => {
    // Step Functions lists them as SUCCEEDED (or FAILED) minutes ago; none wrote the marker.
    sfn.on(ListExecutionsCommand, { statusFilter: "SUCCEEDED" }).resolves({
      executions: [
        execution("auto-us-east-2-20240501T120000Z", "SUCCEEDED", 2),
        execution("dryrun-us-east-2-20240501T121000Z", "SUCCEEDED", 1),
      ],
    });
    await failoverEnded("auto-us-east-2-20240501T120000Z", [], 2);
    expect(await lastFailover(PLATFORM)).toBeUndefined();
    const d = await triggerOnAlarm(alarmEvent());
    expect(d.decision).toBe("started");
    expect(startCalls().map((c) => c.name)).toEqual([INCIDENT]);
  });

  it("a no-op never hides an earlier failover: the marker keeps the last one that changed something", async () => {
    await failoverEnded("auto-eu-west-1-20240501T110000Z", CHANGED, 20);
    await failoverEnded("auto-us-east-2-20240501T120000Z", [], 1);
    expect(await lastFailover(PLATFORM)).toMatchObject({
      execution: "auto-eu-west-1-20240501T110000Z",
      changed: CHANGED,
    });
    expect((await triggerOnAlarm(alarmEvent())).decision).toBe("cooldown");
  });

  it("acts once the cooldown has passed", async () => {
    await failoverEnded("auto-eu-west-1-20240501T090000Z", CHANGED, 61);
    expect((await triggerOnAlarm(alarmEvent())).decision).toBe("started");
  });

  it("acts at once with a cooldown of 0 minutes", async () => {
    useTopology({ cooldownMinutes: 0 });
    await failoverEnded("auto-eu-west-1-20240501T110000Z", CHANGED, 0);
    expect((await triggerOnAlarm(alarmEvent())).decision).toBe("started");
  });

  it("does not count this incident's own running execution: it is the same failover", async () => {
    sfn
      .on(ListExecutionsCommand, { statusFilter: "RUNNING" })
      .resolves({ executions: [execution(INCIDENT, "RUNNING")] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "already-started",
      reason: `already started for this incident: ${INCIDENT}`,
    });
    expect(startCalls().map((c) => c.name)).toEqual([INCIDENT]);
  });
});

describe("trigger: target", () => {
  it("skips an unhealthy higher-priority region for the next healthy one", async () => {
    health({ "us-east-2": [6, 8], "eu-west-1": [1, 8] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "started",
      targetRegion: "eu-west-1",
      candidates: [
        { region: "us-east-2", failing: 6, checkers: 8, healthy: false },
        { region: "eu-west-1", failing: 1, checkers: 8, healthy: true },
      ],
    });
    expect(startCalls()[0]?.input).toContain('"targetRegion":"eu-west-1"');
  });

  /** Stores an evaluation of the targets, `minutesAgo`, through the readiness module itself. */
  async function evaluated(verdicts: Record<string, ReadinessStatus>, minutesAgo = 5) {
    const startedAt = new Date(Date.now() - minutesAgo * 60_000).toISOString();
    const evaluation: Evaluation = {
      platform: "payments",
      evaluatedIn: "us-east-1",
      activeRegion: "us-west-2",
      startedAt,
      durationMs: 900,
      verdicts,
      results: Object.entries(verdicts).map(([region, status]) => ({
        region,
        check: "aurora",
        status,
        detail: status === "READY" ? "fine" : "replication lag 30 s",
        observedAt: startedAt,
      })),
    };
    await recordReadiness(evaluation, collectMetrics([]));
  }

  it("prefers a healthy target whose latest readiness is READY over a higher-priority one that is not, and records which result it used", async () => {
    await evaluated({ "us-east-2": "NOT_READY", "eu-west-1": "READY" }, 5);
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "started",
      targetRegion: "eu-west-1",
      candidates: [
        { region: "us-east-2", healthy: true, readiness: "NOT_READY" },
        { region: "eu-west-1", healthy: true, readiness: "READY" },
      ],
      targetReadiness: { verdict: "READY", evaluatedIn: "us-east-1" },
    });
    expect(d.targetReadiness?.ageSeconds).toBeGreaterThanOrEqual(299);
    expect(d.targetReadiness?.ageSeconds).toBeLessThan(330);
    expect(startCalls()[0]?.input).toContain('"targetRegion":"eu-west-1"');
  });

  it("falls back to the first healthy target when none is READY, saying which readiness it had", async () => {
    await evaluated({ "us-east-2": "NOT_READY", "eu-west-1": "UNKNOWN" });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      targetRegion: "us-east-2",
      targetReadiness: { verdict: "NOT_READY" },
    });
  });

  it("never picks an unhealthy region for being READY", async () => {
    await evaluated({ "us-east-2": "READY", "eu-west-1": "NOT_READY" });
    health({ "us-east-2": [7, 8] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      targetRegion: "eu-west-1",
      candidates: [
        { region: "us-east-2", healthy: false },
        { region: "eu-west-1", healthy: true, readiness: "NOT_READY" },
      ],
    });
    expect(d.candidates?.[0]?.readiness).toBeUndefined();
  });

  it("notifies and starts nothing when no other region is healthy", async () => {
    health({ "us-east-2": [8, 8], "eu-west-1": [0, 0] });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "no-healthy-target",
      reason: "no healthy target: us-east-2 8/8 failing, eu-west-1 0/0 failing",
      notified: true,
    });
    expect(d.targetRegion).toBeUndefined();
    expect(startCalls()).toHaveLength(0);
    expect(sns.commandCalls(PublishCommand)[0]?.args[0].input.Subject).toBe(
      "[gitops-failover] us-west-2: no healthy failover target",
    );
    await expectAudited(d);
  });
});

describe("trigger: modes", () => {
  const expectedInput = (requireApproval: boolean) => ({
    targetRegion: "us-east-2",
    reason: `us-west-2 health check ${CHECK["us-west-2"]} in ALARM: 8/8 checkers failing`,
    mode: "ungraceful",
    allowDataLoss: false,
    requestedBy: "trigger:usw2-endpoint-down",
    detectedAt: "2024-05-01T12:34:56.789Z",
    failedRegion: "us-west-2",
    requireApproval,
  });

  it("auto: starts the failover with the deterministic name and the exact input, and says so", async () => {
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "started",
      incident: INCIDENT,
      executionArn: `arn:aws:states:us-east-1:123456789012:execution:gitops-failover:${INCIDENT}`,
      notified: true,
    });
    const [call, ...more] = startCalls();
    expect(more).toHaveLength(0);
    expect(call?.stateMachineArn).toBe(STATE_MACHINE_ARN);
    expect(call?.name).toBe(INCIDENT);
    expect(JSON.parse(call?.input ?? "")).toEqual(expectedInput(false));
    // The execution ARN names the state machine: the command works as pasted.
    expect(sns.commandCalls(PublishCommand)[0]?.args[0].input.Message).toContain(
      `Watch: npx gitops-failover watch arn:aws:states:us-east-1:123456789012:execution:gitops-failover:${INCIDENT}`,
    );
    await expectAudited(d);
  });

  it("approval: starts the failover with the approval gate on (the Approval step asks humans)", async () => {
    useTopology({ mode: "approval" });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({ decision: "started", mode: "approval", notified: false });
    expect(JSON.parse(startCalls()[0]?.input ?? "")).toEqual(expectedInput(true));
    expect(sns.calls()).toHaveLength(0);
    await expectAudited(d);
  });

  it("notify: publishes the recommendation with the command to start it, starts nothing", async () => {
    useTopology({ mode: "notify" });
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({ decision: "notified", targetRegion: "us-east-2", notified: true });
    expect(startCalls()).toHaveLength(0);
    const message = sns.commandCalls(PublishCommand)[0]?.args[0].input.Message ?? "";
    expect(message).toContain(
      "Decision: notified: notify mode: failover to us-east-2 recommended (8/8 checkers failing)",
    );
    expect(message).toContain(
      `Start: npx gitops-failover start --state-machine ${STATE_MACHINE_ARN} --target us-east-2 --mode ungraceful --reason 'us-west-2 health check ${CHECK["us-west-2"]} in ALARM: 8/8 checkers failing'`,
    );
    await expectAudited(d);
  });

  it("records a notification that could not be sent, without losing the decision", async () => {
    useTopology({ mode: "notify" });
    sns
      .on(PublishCommand)
      .rejects(Object.assign(new Error("topic gone"), { name: "NotFoundException" }));
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({ decision: "notified", notified: false });
    expect(d.problems).toEqual([
      `publishing to ${TOPIC_ARN} failed: NotFoundException: topic gone`,
    ]);
  });
});

describe("trigger: idempotence", () => {
  it("names the incident after the alarm state's time", () => {
    expect(incidentName("us-west-2", ALARM_TIME)).toBe(INCIDENT);
    expect(incidentName("eu-west-1", "2024-12-31T23:59:59Z")).toMatch(
      /^auto-eu-west-1-20241231T235959Z$/,
    );
    expect(incidentName("us-gov-west-1", ALARM_TIME)).toMatch(/^[A-Za-z0-9_-]{1,80}$/);
  });

  it.each([
    ["an extended year", "us-west-2", "+010000-01-01T00:00:00Z"],
    ["a negative year", "us-west-2", "-000001-01-01T00:00:00Z"],
    ["no time at all", "us-west-2", "not a time"],
    ["an odd region and a long one", `eu west/1:${"x".repeat(100)}`, ALARM_TIME],
  ])("always makes a valid execution name, even from %s", (_name, region, time) => {
    expect(incidentName(region, time)).toMatch(/^[A-Za-z0-9_-]{1,80}$/);
  });

  it("of two concurrent deliveries, exactly one says started (AWS answers both with the running execution)", async () => {
    // ListExecutions is eventually consistent: neither delivery sees the other's execution. A
    // second StartExecution with the same name and input succeeds, returning the first.
    const started = new Map<string, { input: string; startDate: Date }>();
    sfn.on(StartExecutionCommand).callsFake((input: { name: string; input: string }) => {
      const previous = started.get(input.name);
      if (previous && previous.input !== input.input)
        throw new ExecutionAlreadyExists({ message: "Execution Already Exists", $metadata: {} });
      const run = previous ?? { input: input.input, startDate: new Date() };
      started.set(input.name, run);
      return {
        executionArn: `arn:aws:states:us-east-1:123456789012:execution:gitops-failover:${input.name}`,
        startDate: run.startDate,
      };
    });
    const decisions = await Promise.all([
      triggerOnAlarm(alarmEvent()),
      triggerOnAlarm(alarmEvent()),
    ]);
    expect(decisions.map((d) => d.decision).sort()).toEqual(["already-started", "started"]);
    expect(new Set(decisions.map((d) => d.executionArn)).size).toBe(1);
    expect(started.size).toBe(1);
    const subjects = sns.commandCalls(PublishCommand).map((c) => c.args[0].input.Subject);
    expect(subjects).toEqual(["[gitops-failover] us-west-2: automatic failover started"]);
    const trail = await readAuditTrail(INCIDENT);
    expect(verifyChain(trail)).toMatchObject({ intact: true });
    expect(trail.map((e) => e.outcome).sort()).toEqual(["SKIPPED", "SUCCEEDED"]);
  });

  it("gives the claim back when the start fails, so Lambda's retry of the event starts it", async () => {
    sfn
      .on(StartExecutionCommand)
      .rejectsOnce(Object.assign(new Error("Rate exceeded"), { name: "ThrottlingException" }))
      .callsFake((input: { name: string }) => ({
        executionArn: `arn:aws:states:us-east-1:123456789012:execution:gitops-failover:${input.name}`,
        startDate: new Date(),
      }));
    await expect(triggerOnAlarm(alarmEvent())).rejects.toThrow(/throttled by AWS/);
    const retried = await triggerOnAlarm(alarmEvent());
    expect(retried.decision).toBe("started");
    expect(startCalls()).toHaveLength(2);
  });

  it("starts one execution for the same alarm delivered three times", async () => {
    // Step Functions as it behaves: the name is unique; the same name and input while it runs
    // returns the running execution, anything else is ExecutionAlreadyExists.
    const started = new Map<string, string>();
    sfn.on(ListExecutionsCommand, { statusFilter: "RUNNING" }).callsFake(() => ({
      executions: [...started.keys()].map((name) => execution(name, "RUNNING")),
    }));
    sfn.on(StartExecutionCommand).callsFake((input: { name: string; input: string }) => {
      const previous = started.get(input.name);
      if (previous !== undefined && previous !== input.input) {
        throw new ExecutionAlreadyExists({ message: "Execution Already Exists", $metadata: {} });
      }
      started.set(input.name, input.input);
      return {
        executionArn: `arn:aws:states:us-east-1:123456789012:execution:gitops-failover:${input.name}`,
        startDate: new Date(),
      };
    });
    const first = await triggerOnAlarm(alarmEvent());
    health({ "us-west-2": [7, 8] });
    const second = await triggerOnAlarm(alarmEvent());
    const third = await triggerOnAlarm(alarmEvent());
    expect([first.decision, second.decision, third.decision]).toEqual([
      "started",
      "already-started",
      "already-started",
    ]);
    expect(new Set(startCalls().map((c) => c.name))).toEqual(new Set([INCIDENT]));
    expect(started.size).toBe(1);
    const trail = await readAuditTrail(INCIDENT);
    expect(trail.slice(-3).map((e) => e.outcome)).toEqual(["SUCCEEDED", "SKIPPED", "SKIPPED"]);
  });

  it("treats ExecutionAlreadyExists as already started, not as an error", async () => {
    sfn
      .on(StartExecutionCommand)
      .rejects(new ExecutionAlreadyExists({ message: "Execution Already Exists", $metadata: {} }));
    const d = await triggerOnAlarm(alarmEvent());
    expect(d).toMatchObject({
      decision: "already-started",
      reason: `already started for this incident: ${INCIDENT}`,
      executionArn: `arn:aws:states:us-east-1:123456789012:execution:gitops-failover:${INCIDENT}`,
      notified: false,
    });
    await expectAudited(d);
  });

  it("a new alarm time is a new incident, held back by the cooldown", async () => {
    await failoverEnded(INCIDENT, CHANGED, 5);
    sfn
      .on(StartExecutionCommand, { name: INCIDENT })
      .rejects(new ExecutionAlreadyExists({ message: "Execution Already Exists", $metadata: {} }));
    expect((await triggerOnAlarm(alarmEvent())).decision).toBe("already-started");
    const later = await triggerOnAlarm(alarmEvent({ timestamp: "2024-05-01T12:50:00.000+0000" }));
    expect(later).toMatchObject({
      decision: "cooldown",
      incident: "auto-us-west-2-20240501T125000Z",
    });
  });
});

describe("trigger: its own failures are audited, then rethrown", () => {
  const lambdaContext = {
    functionName: "gitops-failover-trigger",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:gitops-failover-trigger",
    memoryLimitInMB: "256",
    awsRequestId: "req-2",
    getRemainingTimeInMillis: () => 30_000,
  } as unknown as Context;

  async function lastTriggerEvent() {
    const trail = await readAuditTrail(INCIDENT);
    expect(verifyChain(trail)).toMatchObject({ intact: true });
    return trail.at(-1);
  }

  it("Route 53 failing: an error decision in the incident's chain, and the Lambda fails", async () => {
    route53
      .on(GetHealthCheckStatusCommand)
      .rejects(Object.assign(new Error("Rate exceeded"), { name: "Throttling" }));
    await expect(handler(alarmEvent(), lambdaContext)).rejects.toThrow(
      /reading Route 53 health check .*: throttled by AWS/,
    );
    expect(await lastTriggerEvent()).toMatchObject({
      step: "Trigger",
      action: "error",
      outcome: "FAILED",
      actor: "trigger:usw2-endpoint-down",
      detail: expect.stringMatching(
        /^the trigger failed: .*reading Route 53 health check .*throttled/,
      ),
    });
    expect(startCalls()).toHaveLength(0);
  });

  it("no STATE_MACHINE_ARN: the error names what is missing and what was decided so far", async () => {
    delete process.env.STATE_MACHINE_ARN;
    await expect(triggerOnAlarm(alarmEvent())).rejects.toThrow(/STATE_MACHINE_ARN is not set/);
    const event = await lastTriggerEvent();
    expect(event).toMatchObject({
      action: "error (us-west-2 -> us-east-2)",
      outcome: "FAILED",
      detail: expect.stringContaining("STATE_MACHINE_ARN is not set"),
    });
    expect(event?.before).toMatchObject({ corroboration: { failing: 8, checkers: 8 } });
  });

  it("Step Functions failing: audited with the input it was about to start", async () => {
    sfn
      .on(StartExecutionCommand)
      .rejects(Object.assign(new Error("access denied"), { name: "AccessDeniedException" }));
    await expect(triggerOnAlarm(alarmEvent())).rejects.toThrow(/access denied/);
    const event = await lastTriggerEvent();
    expect(event).toMatchObject({ action: "error (us-west-2 -> us-east-2)", outcome: "FAILED" });
    expect(event?.after).toMatchObject({ decision: "error", input: { targetRegion: "us-east-2" } });
  });
});

describe("trigger: notification commands", () => {
  it.each([
    ["plain", "us-east-2", "us-east-2"],
    ["spaces", "a b", "'a b'"],
    ["a quote", "it's down", "'it'\\''s down'"],
    ["shell syntax", "$(rm -rf /); `x`", "'$(rm -rf /); `x`'"],
  ])("quotes %s for a POSIX shell", (_name, word, quoted) => {
    expect(shellQuote(word)).toBe(quoted);
  });
});

describe("trigger: logging", () => {
  it("logs every decision with its reason", async () => {
    const info = vi.spyOn(logger, "info");
    const warn = vi.spyOn(logger, "warn");
    await triggerOnAlarm(alarmEvent({ state: "OK" }));
    ssm.on(GetParameterCommand).resolves({ Parameter: { Value: "on" } });
    await triggerOnAlarm(alarmEvent());
    expect(info).toHaveBeenCalledWith(
      "trigger decision: ignored",
      expect.objectContaining({
        decision: expect.objectContaining({ reason: "alarm state is OK, not ALARM" }),
      }),
    );
    expect(warn).toHaveBeenCalledWith("trigger decision: kill-switch-on", expect.anything());
    info.mockRestore();
    warn.mockRestore();
  });
});
