/**
 * The operator commands end to end through `main()`: the real SFN client talks over HTTP to a
 * small Step Functions (JSON 1.0) server that keeps executions and histories shaped as AWS (and
 * the sandbox emulator) returns them, including the Approval's TaskScheduled event.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import { answerApproval, type FunctionUrlRequest } from "../../functions/lib/approver.ts";
import { resetRuntimeTopology } from "../../functions/lib/config.ts";
import { type FunctionUrlServer, startFunctionUrl } from "../../sandbox/aws/function-url.ts";

const STATE_MACHINE_ARN = "arn:aws:states:us-east-1:000000000000:stateMachine:gitops-failover";
const arnOf = (name: string) =>
  `arn:aws:states:us-east-1:000000000000:execution:gitops-failover:${name}`;
const TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAcret-task-token-do-not-print-0123456789";

interface Event {
  id: number;
  previousEventId: number;
  timestamp: number;
  type: string;
  [details: string]: unknown;
}

interface Execution {
  name: string;
  status: "RUNNING" | "SUCCEEDED" | "FAILED";
  startDate: number;
  stopDate?: number;
  input: string;
  error?: string;
  cause?: string;
  events: Event[];
  /** Events become visible one poll at a time from this many on (a running execution). */
  visible: number;
}

const T0 = Date.parse("2024-05-01T12:00:00Z") / 1000;

function events(...specs: [number, string, Record<string, unknown>?][]): Event[] {
  return specs.map(([at, type, details], i) => ({
    id: i + 1,
    previousEventId: i,
    timestamp: T0 + at,
    type,
    ...details,
  }));
}
const enter = (name: string, type = "Task") =>
  [`${type}StateEntered`, { stateEnteredEventDetails: { name, input: "{}" } }] as const;
const exit = (name: string, type = "Task") =>
  [`${type}StateExited`, { stateExitedEventDetails: { name, output: "{}" } }] as const;

const INPUT = JSON.stringify({
  targetRegion: "us-east-2",
  reason: "usw2 down",
  mode: "ungraceful",
  dryRun: false,
  allowDataLoss: false,
  requestedBy: "trigger:usw2-endpoint-down",
  requireApproval: true,
});

function fixtures(): Map<string, Execution> {
  const waiting: Execution = {
    name: "auto-us-west-2-20240501T120000Z",
    status: "RUNNING",
    startDate: T0,
    input: INPUT,
    events: events(
      [0, "ExecutionStarted", { executionStartedEventDetails: { input: INPUT } }],
      [0.1, ...enter("Plan")],
      [2.1, ...exit("Plan")],
      [2.1, ...enter("Route", "Choice")],
      [2.1, ...exit("Route", "Choice")],
      [2.2, ...enter("Approval")],
      [
        2.2,
        "TaskScheduled",
        {
          taskScheduledEventDetails: {
            resourceType: "lambda",
            resource: "invoke.waitForTaskToken",
            region: "us-east-1",
            parameters: JSON.stringify({
              FunctionName: "approval",
              Payload: { taskToken: TOKEN, execution: {} },
            }),
          },
        },
      ],
      [
        2.2,
        "TaskStarted",
        {
          taskStartedEventDetails: { resourceType: "lambda", resource: "invoke.waitForTaskToken" },
        },
      ],
    ),
    visible: Number.POSITIVE_INFINITY,
  };
  const succeeded: Execution = {
    name: "manual-us-east-2-20240501T110000Z",
    status: "RUNNING",
    startDate: T0 - 3600,
    input: INPUT,
    events: events(
      [0, "ExecutionStarted", {}],
      [0.1, ...enter("Plan")],
      [1.6, ...exit("Plan")],
      [1.7, ...enter("VerifySpoke")],
      [3.7, ...exit("VerifySpoke")],
      [3.8, ...enter("ShiftTraffic")],
      [64, ...exit("ShiftTraffic")],
      [65, "ExecutionSucceeded", { executionSucceededEventDetails: { output: "{}" } }],
    ).map((e) => ({ ...e, timestamp: e.timestamp - 3600 })),
    visible: 1,
  };
  const failed: Execution = {
    name: "manual-eu-west-1-20240501T100000Z",
    status: "RUNNING",
    startDate: T0 - 7200,
    input: INPUT.replace("us-east-2", "eu-west-1"),
    events: events(
      [0, "ExecutionStarted", {}],
      [0.1, ...enter("AwaitArgoSync")],
      [
        600,
        "LambdaFunctionFailed",
        {
          lambdaFunctionFailedEventDetails: {
            error: "ArgoSyncTimeout",
            cause: "3 apps not Synced",
          },
        },
      ],
      [
        601,
        "ExecutionFailed",
        { executionFailedEventDetails: { error: "ArgoSyncTimeout", cause: "3 apps not Synced" } },
      ],
    ).map((e) => ({ ...e, timestamp: e.timestamp - 7200 })),
    visible: 1,
  };
  return new Map([waiting, succeeded, failed].map((e) => [arnOf(e.name), e]));
}

class ServiceError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let server: Server;
let executions: Map<string, Execution>;
const calls: { action: string; input: Record<string, unknown> }[] = [];
let taskSuccessAnswer: ServiceError | undefined;

function visibleEvents(e: Execution): Event[] {
  const shown = e.events.slice(0, e.visible);
  if (e.visible < e.events.length) e.visible++;
  const last = shown.at(-1);
  if (last?.type === "ExecutionSucceeded")
    Object.assign(e, { status: "SUCCEEDED", stopDate: last.timestamp });
  if (last?.type === "ExecutionFailed") {
    Object.assign(e, {
      status: "FAILED",
      stopDate: last.timestamp,
      error: "ArgoSyncTimeout",
      cause: "3 apps not Synced",
    });
  }
  return shown;
}

function fixture(name: string): Execution {
  const e = executions.get(arnOf(name));
  if (!e) throw new Error(`no fixture ${name}`);
  return e;
}

function find(input: Record<string, unknown>): Execution {
  const e = executions.get(String(input.executionArn));
  if (!e)
    throw new ServiceError(
      "ExecutionDoesNotExist",
      `Execution Does Not Exist: '${String(input.executionArn)}'`,
    );
  return e;
}

function task(input: Record<string, unknown>): Execution {
  const e = [...executions.values()].find(
    (x) => x.status === "RUNNING" && x.events.some((v) => JSON.stringify(v).includes(TOKEN)),
  );
  const pending = e?.events.at(-1)?.type === "TaskStarted";
  if (!e || !pending || input.taskToken !== TOKEN)
    throw new ServiceError("TaskDoesNotExist", "Task does not exist");
  return e;
}

function append(e: Execution, type: string, details: Record<string, unknown>): void {
  const id = e.events.length + 1;
  e.events.push({ id, previousEventId: id - 1, timestamp: Date.now() / 1000, type, ...details });
}

const describeOf = (e: Execution) => ({
  executionArn: arnOf(e.name),
  stateMachineArn: STATE_MACHINE_ARN,
  name: e.name,
  status: e.status,
  startDate: e.startDate,
  ...(e.stopDate ? { stopDate: e.stopDate } : {}),
});

function handle(action: string, input: Record<string, unknown>): unknown {
  switch (action) {
    case "StartExecution": {
      const name = String(input.name);
      if (executions.has(arnOf(name)))
        throw new ServiceError(
          "ExecutionAlreadyExists",
          `Execution Already Exists: '${arnOf(name)}'`,
        );
      const now = Date.now() / 1000;
      executions.set(arnOf(name), {
        name,
        status: "RUNNING",
        startDate: now,
        input: String(input.input),
        events: events([0, "ExecutionStarted", {}]).map((e) => ({ ...e, timestamp: now })),
        visible: Number.POSITIVE_INFINITY,
      });
      return { executionArn: arnOf(name), startDate: now };
    }
    case "ListExecutions":
      return {
        executions: [...executions.values()]
          .filter((e) => !input.statusFilter || e.status === input.statusFilter)
          .sort((a, b) => b.startDate - a.startDate)
          .slice(0, Number(input.maxResults ?? 100))
          .map(describeOf),
      };
    case "DescribeExecution": {
      const e = find(input);
      return {
        ...describeOf(e),
        input: e.input,
        ...(e.error ? { error: e.error, cause: e.cause } : {}),
      };
    }
    case "GetExecutionHistory": {
      const shown = visibleEvents(find(input));
      return { events: input.reverseOrder === true ? [...shown].reverse() : shown };
    }
    case "SendTaskSuccess": {
      const e = task(input);
      if (taskSuccessAnswer) throw taskSuccessAnswer;
      append(e, "TaskSucceeded", { taskSucceededEventDetails: { output: String(input.output) } });
      append(e, "TaskStateExited", { stateExitedEventDetails: { name: "Approval", output: "{}" } });
      return {};
    }
    case "SendTaskFailure": {
      const e = task(input);
      append(e, "TaskFailed", {
        taskFailedEventDetails: { error: input.error, cause: input.cause },
      });
      return {};
    }
    default:
      throw new ServiceError("UnknownOperationException", action);
  }
}

/** Runs the CLI in-process and captures what it prints. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const stdout = vi
    .spyOn(process.stdout, "write")
    .mockImplementation((chunk) => out.push(String(chunk)) > 0);
  const stderr = vi
    .spyOn(process.stderr, "write")
    .mockImplementation((chunk) => err.push(String(chunk)) > 0);
  try {
    const code = await main(["node", "gitops-failover", ...args]);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
}

const dir = mkdtempSync(join(tmpdir(), "gf-ops-"));
let sandboxFile: string;
const sb = () => ["--sandbox", sandboxFile];
const callsOf = (action: string) => calls.filter((c) => c.action === action).map((c) => c.input);

/** Serves a JSON 1.0 service (`X-Amz-Target: AWSStepFunctions.<Action>`) on 127.0.0.1. */
async function serveJson(
  handler: (action: string, input: Record<string, unknown>) => unknown,
): Promise<{ server: Server; url: string }> {
  const srv = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", async () => {
      const action = String(req.headers["x-amz-target"] ?? "").replace("AWSStepFunctions.", "");
      const input = JSON.parse(body || "{}") as Record<string, unknown>;
      calls.push({ action, input });
      const headers = { "content-type": "application/x-amz-json-1.0" };
      try {
        const answer = JSON.stringify(await handler(action, input));
        res.writeHead(200, headers).end(answer);
      } catch (e) {
        const code = (e as { code?: string }).code;
        res
          .writeHead(code ? 400 : 500, headers)
          .end(
            JSON.stringify({ __type: code ?? "InternalFailure", message: (e as Error).message }),
          );
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return { server: srv, url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}` };
}

/** An endpoint file as `sandbox up` writes it (its env also holds what the functions need). */
function endpointFile(name: string, url: string, stateMachineArn: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    JSON.stringify({
      stateMachineArn,
      region: "us-east-1",
      env: {
        AWS_ENDPOINT_URL_SFN: url,
        AWS_ACCESS_KEY_ID: "sandbox",
        AWS_SECRET_ACCESS_KEY: "sandbox",
        AUDIT_TABLE: "sandbox-audit",
        STATE_MACHINE_ARN: stateMachineArn,
        GITOPS_FAILOVER_APPROVAL_URL: approvalUrl.url,
      },
      reportDir: join(dir, "reports"),
    }),
  );
  return path;
}

/** The operator the approval entry point verifies (the endpoint file's key pair). */
const PRINCIPAL = "arn:aws:iam::000000000000:user/operator";
let approvalUrl: FunctionUrlServer;

beforeAll(async () => {
  const fake = await serveJson(handle);
  server = fake.server;
  // The approval entry point, running the real approver against the fake Step Functions.
  const lambdaEnv = {
    TOPOLOGY: readFileSync("config/topology.example.yaml", "utf8"),
    STATE_MACHINE_ARN,
  };
  approvalUrl = await startFunctionUrl({
    region: "us-east-1",
    principals: [
      {
        accessKeyId: "sandbox",
        secretAccessKey: "sandbox",
        arn: PRINCIPAL,
        accountId: "000000000000",
        userId: "AIDAOPERATOR",
      },
    ],
    // The function's own environment, only while it runs (the CLI's must stay without it).
    invoke: async (event) => {
      Object.assign(process.env, lambdaEnv);
      resetRuntimeTopology();
      try {
        return await answerApproval(event as FunctionUrlRequest);
      } finally {
        for (const key of Object.keys(lambdaEnv)) delete process.env[key];
      }
    },
  });
  sandboxFile = endpointFile("sandbox.json", fake.url, STATE_MACHINE_ARN);
  process.env.GITOPS_FAILOVER_USER = "alice";
});

afterAll(async () => {
  await approvalUrl.stop();
  await new Promise((resolve) => server.close(resolve));
});

beforeEach(() => {
  executions = fixtures();
  calls.length = 0;
  taskSuccessAnswer = undefined;
  delete process.env.GITOPS_FAILOVER_STATE_MACHINE_ARN;
});

describe("operator CLI: state machine of an execution ARN", () => {
  it("derives arn:...:stateMachine:<sm> from arn:...:execution:<sm>:<name>", async () => {
    const { stateMachineOfExecution } = await import("../../cli/ops.ts");
    expect(
      stateMachineOfExecution("arn:aws:states:eu-west-1:123456789012:execution:gf-payments:auto-x"),
    ).toBe("arn:aws:states:eu-west-1:123456789012:stateMachine:gf-payments");
    expect(
      stateMachineOfExecution("arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:a:b"),
    ).toBe("arn:aws-us-gov:states:us-gov-west-1:123456789012:stateMachine:a");
    expect(stateMachineOfExecution(STATE_MACHINE_ARN)).toBeUndefined();
    expect(stateMachineOfExecution("arn:aws:rds:us-east-1:000000000000:cluster:x")).toBeUndefined();
  });
});

describe("operator CLI: help and usage", () => {
  it.each(["start", "status", "watch", "approve", "reject", "list"])(
    "%s --help documents flags and exit codes",
    async (command) => {
      const r = await cli(command, "--help");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: gitops-failover ${command}`);
      expect(r.stdout).toMatch(
        /--sandbox <file>[\s\S]*--json[\s\S]*Exit codes:\n {2}0 {2}success\n {2}1 {2}the operation failed/,
      );
    },
  );

  it.each([
    [
      "a missing --target",
      ["start", "--reason", "drill"],
      /required option '--target <region>' not specified/,
    ],
    [
      "an unknown --mode",
      ["start", "--target", "us-east-2", "--reason", "drill", "--mode", "sideways"],
      /--mode <mode>' argument 'sideways' is invalid/,
    ],
    [
      "a URL as region",
      ["start", "--target", "https://evil.example.com", "--reason", "drill"],
      /targetRegion: must be an AWS region name/,
    ],
    [
      "a one-letter reason",
      ["start", "--target", "us-east-2", "--reason", "x"],
      /reason: must say why/,
    ],
    [
      "a region outside the topology",
      [
        "start",
        "--target",
        "ap-south-1",
        "--reason",
        "drill",
        "-c",
        "config/topology.example.yaml",
      ],
      /targetRegion: "ap-south-1" is not in the topology/,
    ],
    [
      "a bad execution name",
      ["approve", "no spaces!"],
      /<execution>: "no spaces!" is not an execution name/,
    ],
    [
      "a foreign ARN",
      ["status", "arn:aws:rds:us-east-1:000000000000:cluster:x"],
      /is not an execution ARN/,
    ],
    [
      "an execution that does not exist",
      ["status", "nope"],
      /ExecutionDoesNotExist: Execution Does Not Exist/,
    ],
    [
      "a missing reject --reason",
      ["reject", "auto-us-west-2-20240501T120000Z"],
      /required option '--reason <text>'/,
    ],
    ["a zero --limit", ["list", "--limit", "0"], /must be a whole number from 1 to 1000/],
    ["an unknown --status", ["list", "--status", "DONE"], /argument 'DONE' is invalid/],
  ])("exits 2 for %s, without a stack trace", async (_name, args, message) => {
    const r = await cli(...args, ...sb());
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(callsOf("StartExecution")).toHaveLength(0);
  });

  it("exits 2 without a state machine, and for a file that is not an endpoint file", async () => {
    const none = await cli("list");
    expect(none).toMatchObject({ code: 2 });
    expect(none.stderr).toContain("no state machine: pass --state-machine <arn>");
    const bad = join(dir, "bad.json");
    writeFileSync(
      bad,
      JSON.stringify({ stateMachineArn: "x", region: "us-east-1", env: { AWS_REGION: 5 } }),
    );
    const r = await cli("list", "--sandbox", bad);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/stateMachineArn: must be a state machine ARN/);
    expect(r.stderr).toMatch(/env\.AWS_REGION: Invalid input: expected string/);
    expect((await cli("list", "--sandbox", join(dir, "absent.json"))).code).toBe(2);
  });
});

describe("operator CLI: start", () => {
  it("starts with the validated input and prints JSON for scripts", async () => {
    const r = await cli(
      "start",
      "--target",
      "us-east-2",
      "--reason",
      "game day",
      "--dry-run",
      "--json",
      ...sb(),
    );
    expect(r).toMatchObject({ code: 0, stderr: "" });
    const printed = JSON.parse(r.stdout) as { name: string; executionArn: string };
    expect(printed.name).toMatch(/^dryrun-us-east-2-\d{8}T\d{6}Z$/);
    expect(printed.executionArn).toBe(arnOf(printed.name));
    const [sent] = callsOf("StartExecution");
    expect(sent).toMatchObject({ stateMachineArn: STATE_MACHINE_ARN, name: printed.name });
    expect(JSON.parse(String(sent?.input))).toEqual({
      targetRegion: "us-east-2",
      reason: "game day",
      mode: "graceful",
      dryRun: true,
      allowDataLoss: false,
      requestedBy: "cli:alice",
      requireApproval: false,
    });
  });

  it("passes mode, data-loss and approval flags, checks the topology, and names the execution", async () => {
    const r = await cli(
      "start",
      "--target",
      "eu-west-1",
      "--reason",
      "usw2 lost",
      "--mode",
      "ungraceful",
      "--allow-data-loss",
      "--require-approval",
      "--name",
      "incident-42",
      "-c",
      "config/topology.example.yaml",
      ...sb(),
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(
      "started incident-42: failover to eu-west-1 (ungraceful, approval required)",
    );
    expect(JSON.parse(String(callsOf("StartExecution")[0]?.input))).toMatchObject({
      mode: "ungraceful",
      allowDataLoss: true,
      requireApproval: true,
    });
  });

  it("exits 1 when Step Functions refuses (a name already used)", async () => {
    const r = await cli(
      "start",
      "--target",
      "us-east-2",
      "--reason",
      "again",
      "--name",
      "auto-us-west-2-20240501T120000Z",
      ...sb(),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^error: starting auto-us-west-2-20240501T120000Z: ExecutionAlreadyExists/,
    );
  });
});

describe("operator CLI: list and status", () => {
  it("lists newest first, as JSON and as a table, filtered by status", async () => {
    const r = await cli("list", "--json", ...sb());
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { name: string; status: string; startDate: string }[];
    expect(rows.map((x) => x.name)).toEqual([
      "auto-us-west-2-20240501T120000Z",
      "manual-us-east-2-20240501T110000Z",
      "manual-eu-west-1-20240501T100000Z",
    ]);
    expect(rows[0]).toMatchObject({ status: "RUNNING", startDate: "2024-05-01T12:00:00.000Z" });
    const table = await cli("list", "--status", "RUNNING", "--limit", "1", ...sb());
    expect(table.stdout.split("\n")[0]).toMatch(/^NAME +STATUS +STARTED +ENDED$/);
    expect(callsOf("ListExecutions").at(-1)).toMatchObject({
      statusFilter: "RUNNING",
      maxResults: 1,
    });
  });

  it("shows a waiting execution's step and how to approve it, never its token", async () => {
    const text = await cli("status", "auto-us-west-2-20240501T120000Z", ...sb());
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(
      "auto-us-west-2-20240501T120000Z  RUNNING  started 2024-05-01T12:00:00.000Z",
    );
    expect(text.stdout).toContain(
      "failover to us-east-2 (ungraceful), requested by trigger:usw2-endpoint-down: usw2 down",
    );
    expect(text.stdout).toContain("now at: Approval");
    expect(text.stdout).toContain(
      "waiting for approval: npx gitops-failover approve auto-us-west-2-20240501T120000Z",
    );
    const json = await cli("status", "--json", ...sb());
    expect(JSON.parse(json.stdout)).toMatchObject({
      name: "auto-us-west-2-20240501T120000Z",
      status: "RUNNING",
      current: ["Approval"],
      awaitingApproval: true,
    });
    expect(text.stdout + json.stdout).not.toContain(TOKEN);
  });

  it("exits 1 for a failed execution and says why", async () => {
    const failed = fixture("manual-eu-west-1-20240501T100000Z");
    failed.visible = Number.POSITIVE_INFINITY;
    visibleEvents(failed);
    const r = await cli("status", arnOf("manual-eu-west-1-20240501T100000Z"), ...sb());
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("FAILED");
    expect(r.stdout).toContain("error: ArgoSyncTimeout: 3 apps not Synced");
  });

  it("applies only the endpoint file's AWS_* variables", async () => {
    const audit = process.env.AUDIT_TABLE;
    expect((await cli("list", ...sb())).code).toBe(0);
    expect(process.env.AWS_ENDPOINT_URL_SFN).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(process.env.AUDIT_TABLE).toBe(audit);
    expect(process.env.STATE_MACHINE_ARN).toBeUndefined();
  });

  it("uses --state-machine (or the environment) instead of a sandbox file", async () => {
    await cli("list", ...sb());
    const flag = await cli("list", "--json", "--state-machine", STATE_MACHINE_ARN);
    expect(flag.code).toBe(0);
    process.env.GITOPS_FAILOVER_STATE_MACHINE_ARN = STATE_MACHINE_ARN;
    const env = await cli("list", "--json");
    expect(JSON.parse(env.stdout)).toHaveLength(3);
  });
});

describe("operator CLI: approve and reject", () => {
  const WAITING = "auto-us-west-2-20240501T120000Z";

  it("approves through the entry point: the pending task token, who typed and who AWS verified, without printing the token", async () => {
    const r = await cli("approve", WAITING, "--by", "bob", ...sb());
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(r.stdout).toContain(`approved ${WAITING} as bob (verified principal ${PRINCIPAL})`);
    expect(callsOf("SendTaskSuccess")).toEqual([
      { taskToken: TOKEN, output: JSON.stringify({ approvedBy: "bob", principal: PRINCIPAL }) },
    ]);
    expect(r.stdout).not.toContain(TOKEN);
    const again = await cli("approve", WAITING, ...sb());
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`execution ${WAITING} is not waiting for approval`);
    expect(callsOf("SendTaskSuccess")).toHaveLength(1);
  });

  it("approves as the operator by default and prints JSON", async () => {
    const r = await cli("approve", arnOf(WAITING), "--json", ...sb());
    expect(JSON.parse(r.stdout)).toEqual({
      name: WAITING,
      executionArn: arnOf(WAITING),
      approvedBy: "alice",
      principal: PRINCIPAL,
    });
  });

  it("rejects with ApprovalRejected, and who and why as cause", async () => {
    const r = await cli(
      ...["reject", WAITING, "--reason", "the region is back", "--by", "bob"],
      ...sb(),
    );
    expect(r.code).toBe(0);
    expect(callsOf("SendTaskFailure")).toEqual([
      {
        taskToken: TOKEN,
        error: "ApprovalRejected",
        cause: `rejected by bob (verified principal ${PRINCIPAL}): the region is back`,
      },
    ]);
    expect(r.stdout).not.toContain(TOKEN);
  });

  it("redacts the token even when AWS echoes it in an error", async () => {
    taskSuccessAnswer = new ServiceError("TaskTimedOut", `Task Timed Out: '${TOKEN}'`);
    const r = await cli("approve", WAITING, ...sb());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("TaskTimedOut");
    expect(r.stderr + r.stdout).not.toContain(TOKEN);
  });

  it("approve and reject take the execution ARN from the SNS message alone: no --state-machine", async () => {
    await cli("list", ...sb()); // the endpoint (AWS_ENDPOINT_URL_SFN) stays in the environment
    process.env.GITOPS_FAILOVER_APPROVAL_URL = approvalUrl.url; // as an operator's shell sets it
    const approved = await cli("approve", arnOf(WAITING), "--by", "bob");
    expect(approved).toMatchObject({ code: 0, stderr: "" });
    expect(approved.stdout).toContain(`approved ${WAITING} as bob`);
    expect(callsOf("DescribeExecution").at(-1)).toEqual({ executionArn: arnOf(WAITING) });
    expect(callsOf("SendTaskSuccess")).toEqual([
      { taskToken: TOKEN, output: JSON.stringify({ approvedBy: "bob", principal: PRINCIPAL }) },
    ]);

    executions = fixtures();
    const rejected = await cli("reject", arnOf(WAITING), "--reason", "primary recovered");
    expect(rejected.code).toBe(0);
    expect(callsOf("SendTaskFailure")).toHaveLength(1);
    const status = await cli("status", arnOf(WAITING), "--json");
    expect(JSON.parse(status.stdout)).toMatchObject({ name: WAITING });
    // A bare name still needs to know the state machine.
    expect((await cli("approve", WAITING)).code).toBe(2);
  });

  it("exits 2 when --state-machine contradicts the execution ARN", async () => {
    const other = STATE_MACHINE_ARN.replace("gitops-failover", "other-platform");
    const r = await cli("approve", arnOf(WAITING), "--state-machine", other, ...sb());
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`belongs to ${STATE_MACHINE_ARN}, not to --state-machine ${other}`);
    expect(callsOf("SendTaskSuccess")).toHaveLength(0);
  });

  it("refuses an execution that is not running", async () => {
    fixture("manual-us-east-2-20240501T110000Z").status = "SUCCEEDED";
    const r = await cli("approve", "manual-us-east-2-20240501T110000Z", ...sb());
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("is SUCCEEDED, not waiting for approval");
    expect(callsOf("SendTaskSuccess")).toHaveLength(0);
  });
});

describe("operator CLI: watch", () => {
  it("prints each state entered and exited with elapsed time and exits 0 on success", async () => {
    const r = await cli("watch", "manual-us-east-2-20240501T110000Z", "--interval", "5", ...sb());
    expect(r).toMatchObject({ code: 0, stderr: "" });
    expect(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.trim()),
    ).toEqual([
      "+0:00.1  entered Plan",
      "+0:01.6  exited  Plan (1.5s)",
      "+0:01.7  entered VerifySpoke",
      "+0:03.7  exited  VerifySpoke (2.0s)",
      "+0:03.8  entered ShiftTraffic",
      "+1:04.0  exited  ShiftTraffic (1m0s)",
      "+1:05.0  SUCCEEDED",
    ]);
    expect(callsOf("GetExecutionHistory").length).toBeGreaterThan(5);
  });

  it("exits 1 when the execution fails, with the error, and --json prints one object per line", async () => {
    const r = await cli(
      "watch",
      "manual-eu-west-1-20240501T100000Z",
      "--interval",
      "5",
      "--json",
      ...sb(),
    );
    expect(r.code).toBe(1);
    const lines = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.event)).toEqual(["entered", "failed", "ended"]);
    expect(lines.at(-1)).toMatchObject({
      status: "FAILED",
      error: "ArgoSyncTimeout",
      cause: "3 apps not Synced",
      elapsedMs: 601_000,
    });
    expect(r.stderr).toContain("error: execution manual-eu-west-1-20240501T100000Z FAILED");
  });

  it("says an execution waits for approval, and gives up after --timeout with exit 1", async () => {
    const r = await cli(
      "watch",
      "auto-us-west-2-20240501T120000Z",
      "--interval",
      "50",
      "--timeout",
      "1",
      ...sb(),
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(
      "waiting for approval: npx gitops-failover approve auto-us-west-2-20240501T120000Z",
    );
    expect(r.stdout).not.toContain(TOKEN);
    expect(r.stderr).toContain("still running after 1s of watching");
  });
});

describe("operator CLI against the sandbox's Step Functions emulator", () => {
  it("starts a real execution of the ASL and watches it fail in Plan (no topology), exit 1", async () => {
    const { createStepFunctions } = await import("../../sandbox/aws/stepfunctions.ts");
    const { LOCAL_STATE_MACHINE_ARN } = await import("../../sandbox/runner.ts");
    const emulator = createStepFunctions({
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      waitMs: 0,
      retryMs: 0,
    });
    const { server: emu, url } = await serveJson((action, input) =>
      emulator.handler(action, input, { region: "us-east-1" }),
    );
    const topology = process.env.TOPOLOGY;
    delete process.env.TOPOLOGY;
    try {
      const file = endpointFile("emulator.json", url, LOCAL_STATE_MACHINE_ARN);
      const started = await cli(
        "start",
        "--target",
        "us-east-2",
        "--reason",
        "emulator run",
        "--name",
        "emu-1",
        "--sandbox",
        file,
      );
      expect(started.code).toBe(0);
      const watched = await cli("watch", "emu-1", "--interval", "20", "--sandbox", file);
      expect(watched.code).toBe(1);
      const lines = watched.stdout.trim().split("\n");
      expect(lines[0]).toMatch(/^ *\+0:\d\d\.\d {2}entered Plan$/);
      expect(lines.at(-1)).toMatch(/^ *\+0:\d\d\.\d {2}FAILED: /);
      expect(watched.stderr).toContain("error: execution emu-1 FAILED");
      const listed = await cli("list", "--json", "--sandbox", file);
      expect(JSON.parse(listed.stdout)).toMatchObject([{ name: "emu-1", status: "FAILED" }]);
    } finally {
      if (topology !== undefined) process.env.TOPOLOGY = topology;
      await emulator.idle();
      await new Promise((resolve) => emu.close(resolve));
    }
  });
});
