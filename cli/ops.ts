/**
 * The operator commands: `start`, `status`, `watch`, `approve`, `reject`, `list`. They talk to
 * the state machine through the Step Functions API only (`@aws-sdk/client-sfn`), so they work
 * the same against AWS and against a running `sandbox up` (`--sandbox <endpoint file>`).
 * Approval tokens are read from the execution history and never printed. An execution ARN (as
 * the SNS messages print it) names its state machine, so `approve <ARN>` works as pasted.
 *
 * Exit codes: 0 success; 1 the operation failed, or the execution it reports on failed
 * (`status`: FAILED, TIMED_OUT or ABORTED — a RUNNING execution is 0; `watch`: anything but
 * SUCCEEDED); 2 invalid usage or input (one line per problem).
 */
import { userInfo } from "node:os";
import {
  DescribeExecutionCommand,
  type DescribeExecutionCommandOutput,
  type ExecutionStatus,
  type HistoryEvent,
  ListExecutionsCommand,
  paginateGetExecutionHistory,
  SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { type Command, InvalidArgumentError, Option } from "commander";
import { pendingToken, WAIT_FOR_TOKEN } from "../functions/lib/approver.ts";
import { regionOfArn } from "../functions/lib/aws.ts";
import {
  type FailoverInput,
  FailoverInputSchema,
  formatIssues,
  loadTopology,
  parseInput,
} from "../functions/lib/config.ts";
import { describe, InputValidationError } from "../functions/lib/errors.ts";
import { registerSecret } from "../functions/lib/redact.ts";
import { approvalUrlOf, type DecisionBody, sendDecision } from "./approval.ts";
import { EXECUTION_ARN, readSandboxFile, STATE_MACHINE_ARN } from "./sandbox-file.ts";

/** The operation ran and failed (AWS refused it, or the execution it watched failed): exit 1. */
class OperationFailed extends Error {
  override readonly name = "OperationFailed";
}

const EXIT_CODES_HELP = `
Exit codes:
  0  success
  1  the operation failed, or the execution it reports on failed
     (status: FAILED, TIMED_OUT or ABORTED; watch: anything but SUCCEEDED)
  2  invalid usage or input`;

const EXECUTION_NAME = /^[A-Za-z0-9_-]{1,80}$/;
const ENDED: ReadonlySet<string> = new Set(["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"]);
const END_STATUS: Record<string, ExecutionStatus> = {
  ExecutionSucceeded: "SUCCEEDED",
  ExecutionFailed: "FAILED",
  ExecutionAborted: "ABORTED",
  ExecutionTimedOut: "TIMED_OUT",
};
const STATUSES = [
  "RUNNING",
  "SUCCEEDED",
  "FAILED",
  "TIMED_OUT",
  "ABORTED",
  "PENDING_REDRIVE",
] as const;

interface ConnectionFlags {
  sandbox?: string;
  stateMachine?: string;
  region?: string;
  profile?: string;
  json: boolean;
}

interface Connection {
  client: SFNClient;
  stateMachineArn: string;
  /**
   * A follow-up command to print, with the connection flags it needs to work when pasted
   * (`--sandbox <file>`; against AWS the environment or the execution ARN carries the rest).
   */
  suggest: (command: string) => string;
}

/** Adds the options every operator command shares. */
function connectionOptions(cmd: Command): Command {
  return cmd
    .option(
      "--sandbox <file>",
      "a running `sandbox up`'s endpoint file (sets endpoints, credentials, state machine)",
    )
    .option(
      "--state-machine <arn>",
      "the state machine (default: $GITOPS_FAILOVER_STATE_MACHINE_ARN)",
    )
    .option(
      "--region <region>",
      "AWS region of the Step Functions API (default: the state machine's)",
    )
    .option("--profile <profile>", "AWS profile from ~/.aws/config (default: $AWS_PROFILE)")
    .option("--json", "print JSON for scripts", false)
    .addHelpText("after", EXIT_CODES_HELP);
}

/**
 * The state machine an execution ARN belongs to:
 * `arn:aws:states:<region>:<account>:execution:<machine>:<name>` →
 * `arn:aws:states:<region>:<account>:stateMachine:<machine>`.
 */
export function stateMachineOfExecution(executionArn: string): string | undefined {
  if (!EXECUTION_ARN.test(executionArn)) return undefined;
  const parts = executionArn.split(":");
  return [...parts.slice(0, 5), "stateMachine", parts[6]].join(":");
}

/**
 * Resolves where to talk to: the sandbox file's endpoints, or AWS with region and profile.
 * An execution ARN (`ref`, as the SNS messages print it) names its own state machine and
 * region, so it needs neither --state-machine nor the environment; an explicit
 * --state-machine that disagrees with it is a usage error.
 */
function connect(flags: ConnectionFlags, ref?: string): Connection {
  const owner = ref?.startsWith("arn:") ? stateMachineOfExecution(ref) : undefined;
  if (owner && flags.stateMachine && flags.stateMachine !== owner) {
    throw new InputValidationError(
      `<execution>: "${ref}" belongs to ${owner}, not to --state-machine ${flags.stateMachine}`,
    );
  }
  let stateMachineArn =
    flags.stateMachine ?? owner ?? process.env.GITOPS_FAILOVER_STATE_MACHINE_ARN;
  let region = flags.region;
  if (flags.sandbox) {
    const sandbox = readSandboxFile(flags.sandbox);
    // Only its AWS_* variables: the SDK needs nothing else from it.
    for (const [key, value] of Object.entries(sandbox.env)) {
      if (/^AWS_[A-Z0-9_]+$/.test(key)) process.env[key] = value;
    }
    stateMachineArn = flags.stateMachine ?? owner ?? sandbox.stateMachineArn;
    region ??= sandbox.region;
  }
  if (!stateMachineArn) {
    throw new InputValidationError(
      "no state machine: pass --state-machine <arn>, set GITOPS_FAILOVER_STATE_MACHINE_ARN, or use --sandbox <file>",
    );
  }
  if (!STATE_MACHINE_ARN.test(stateMachineArn)) {
    throw new InputValidationError(
      `--state-machine: "${stateMachineArn}" is not a state machine ARN`,
    );
  }
  region ??= regionOfArn(stateMachineArn);
  const client = new SFNClient({
    region,
    maxAttempts: 3,
    ...(flags.profile ? { profile: flags.profile } : {}),
  });
  const again = flags.sandbox ? ` --sandbox ${flags.sandbox}` : "";
  return {
    client,
    stateMachineArn,
    suggest: (command) => `npx gitops-failover ${command}${again}`,
  };
}

/** An execution name or ARN, as the API wants it (an ARN of this state machine). */
function executionArn(conn: Connection, ref: string): string {
  if (ref.startsWith("arn:")) {
    if (!EXECUTION_ARN.test(ref))
      throw new InputValidationError(`<execution>: "${ref}" is not an execution ARN`);
    return ref;
  }
  if (!EXECUTION_NAME.test(ref)) {
    throw new InputValidationError(
      `<execution>: "${ref}" is not an execution name (1-80 of A-Z a-z 0-9 _ -)`,
    );
  }
  return `${conn.stateMachineArn.replace(":stateMachine:", ":execution:")}:${ref}`;
}

const USAGE_ERRORS = new Set([
  "ExecutionDoesNotExist",
  "StateMachineDoesNotExist",
  "InvalidArn",
  "InvalidName",
  "InvalidExecutionInput",
  "ValidationException",
]);

/** Sends one API call; AWS's refusal becomes exit 2 when it is about the input, 1 otherwise. */
async function call<T>(what: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (e) {
    const name = (e as { name?: string }).name ?? "";
    if (USAGE_ERRORS.has(name))
      throw new InputValidationError(`${what}: ${describe(e)}`, [], { cause: e });
    throw new OperationFailed(`${what}: ${describe(e)}`, { cause: e });
  }
}

/** The whole history, oldest first (a failover stays far below 1,000 events per page). */
async function history(
  conn: Connection,
  arn: string,
  includeExecutionData: boolean,
): Promise<HistoryEvent[]> {
  return call(`reading the history of ${nameOf(arn)}`, async () => {
    const events: HistoryEvent[] = [];
    const pages = paginateGetExecutionHistory(
      { client: conn.client },
      { executionArn: arn, maxResults: 1000, includeExecutionData },
    );
    for await (const page of pages) events.push(...(page.events ?? []));
    return events.sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
  });
}

/** Events newer than `after`, oldest first: reads the history backwards until it reaches `after`. */
async function newEvents(conn: Connection, arn: string, after: number): Promise<HistoryEvent[]> {
  return call(`reading the history of ${nameOf(arn)}`, async () => {
    const fresh: HistoryEvent[] = [];
    const pages = paginateGetExecutionHistory(
      { client: conn.client },
      { executionArn: arn, reverseOrder: true, maxResults: 100, includeExecutionData: false },
    );
    for await (const page of pages) {
      const events = page.events ?? [];
      fresh.push(...events.filter((e) => (e.id ?? 0) > after));
      if (events.some((e) => (e.id ?? 0) <= after)) break;
    }
    return fresh.sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
  });
}

const nameOf = (arn: string) => arn.split(":").at(-1) ?? arn;
/** The Approval task token still waiting in this history, if any (never printed). */
function pendingApprovalToken(events: HistoryEvent[]): string | undefined {
  const token = pendingToken(events);
  if (token) registerSecret(token);
  return token;
}

/** States entered and not yet exited, in order. */
function currentStates(events: HistoryEvent[]): string[] {
  const open: string[] = [];
  for (const e of events) {
    const entered = e.stateEnteredEventDetails?.name;
    const exited = e.stateExitedEventDetails?.name;
    if (entered) open.push(entered);
    const at = exited ? open.lastIndexOf(exited) : -1;
    if (at >= 0) open.splice(at, 1);
  }
  return open;
}

function failureOf(e: HistoryEvent): { error?: string; cause?: string } | undefined {
  return (
    e.executionFailedEventDetails ??
    e.executionAbortedEventDetails ??
    e.executionTimedOutEventDetails ??
    e.lambdaFunctionFailedEventDetails ??
    e.taskFailedEventDetails ??
    e.taskTimedOutEventDetails ??
    undefined
  );
}

/** `+m:ss.t` since the execution started. */
function elapsed(ms: number): string {
  const tenths = Math.round(Math.max(0, ms) / 100);
  const minutes = Math.floor(tenths / 600);
  return `+${minutes}:${((tenths % 600) / 10).toFixed(1).padStart(4, "0")}`;
}

/** A duration: `1.5s` under a minute, `2m5s` above. */
function seconds(ms: number): string {
  if (ms < 59_950) return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
  const total = Math.round(ms / 1000);
  return `${Math.floor(total / 60)}m${total % 60}s`;
}

const iso = (d: Date | undefined) => d?.toISOString();

function inputSummary(text: string | undefined): Partial<FailoverInput> {
  try {
    const input = JSON.parse(text ?? "{}") as Partial<FailoverInput>;
    const { targetRegion, mode, dryRun, requireApproval, requestedBy, reason } = input;
    return { targetRegion, mode, dryRun, requireApproval, requestedBy, reason };
  } catch {
    return {};
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function positiveInt(max: number) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max)
      throw new InvalidArgumentError(`must be a whole number from 1 to ${max}`);
    return n;
  };
}

function operator(): string {
  try {
    return process.env.GITOPS_FAILOVER_USER ?? userInfo().username;
  } catch {
    return "unknown";
  }
}

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/[-:]/g, "");
}

interface StartFlags extends ConnectionFlags {
  target: string;
  reason: string;
  mode: "graceful" | "ungraceful";
  dryRun: boolean;
  allowDataLoss: boolean;
  requireApproval: boolean;
  requestedBy?: string;
  name?: string;
  config?: string;
}

/** Builds and validates the execution input exactly as Plan will (and against a topology if given). */
function startInput(flags: StartFlags): FailoverInput {
  const raw = {
    targetRegion: flags.target,
    reason: flags.reason,
    mode: flags.mode,
    dryRun: flags.dryRun,
    allowDataLoss: flags.allowDataLoss,
    requireApproval: flags.requireApproval,
    requestedBy: flags.requestedBy ?? `cli:${operator()}`,
  };
  if (flags.config) return parseInput(raw, loadTopology(flags.config));
  const parsed = FailoverInputSchema.safeParse(raw);
  if (!parsed.success)
    throw new InputValidationError("execution input is invalid", formatIssues(parsed.error));
  return parsed.data;
}

async function describeExec(
  conn: Connection,
  arn: string,
): Promise<DescribeExecutionCommandOutput> {
  return call(`describing ${nameOf(arn)}`, () =>
    conn.client.send(new DescribeExecutionCommand({ executionArn: arn })),
  );
}

/** The execution if it is waiting for approval; OperationFailed naming what it is doing otherwise. */
async function pendingApproval(
  conn: Connection,
  ref: string,
): Promise<{ arn: string; token: string }> {
  const arn = executionArn(conn, ref);
  const exec = await describeExec(conn, arn);
  if (exec.status !== "RUNNING") {
    throw new OperationFailed(
      `execution ${nameOf(arn)} is ${exec.status}, not waiting for approval`,
    );
  }
  const events = await history(conn, arn, true);
  const token = pendingApprovalToken(events);
  if (!token) {
    const at = currentStates(events).join(", ") || "between states";
    throw new OperationFailed(
      `execution ${nameOf(arn)} is not waiting for approval (now at: ${at})`,
    );
  }
  return { arn, token };
}

/** Starts an execution with `input` and prints how to follow it. */
async function launch(
  flags: StartFlags,
  input: FailoverInput,
  out: (line: string) => void,
  kind: "failover" | "failback" = "failover",
): Promise<void> {
  const prefix = input.dryRun ? "dryrun" : kind === "failback" ? "failback" : "manual";
  const name = flags.name ?? `${prefix}-${input.targetRegion}-${stamp(new Date())}`;
  if (!EXECUTION_NAME.test(name))
    throw new InputValidationError(`--name: "${name}" is not an execution name`);
  const conn = connect(flags);
  const started = await call(`starting ${name}`, () =>
    conn.client.send(
      new StartExecutionCommand({
        stateMachineArn: conn.stateMachineArn,
        name,
        input: JSON.stringify(input),
      }),
    ),
  );
  if (flags.json) {
    out(
      JSON.stringify({
        name,
        executionArn: started.executionArn,
        startDate: iso(started.startDate),
        input,
      }),
    );
    return;
  }
  const notes = [
    input.mode,
    input.dryRun && "dry run",
    input.requireApproval && "approval required",
  ].filter(Boolean);
  out(`started ${name}: ${kind} to ${input.targetRegion} (${notes.join(", ")})`);
  out(`  ${started.executionArn}`);
  out(`  follow it: ${conn.suggest(`watch ${name}`)}`);
}

/**
 * The region the newest succeeded failover left (its plan's source region): where a failback
 * goes by default. Refuses with what to pass instead when no execution says.
 */
async function lastLeftRegion(conn: Connection): Promise<string> {
  const listed = await call("listing executions", () =>
    conn.client.send(
      new ListExecutionsCommand({
        stateMachineArn: conn.stateMachineArn,
        statusFilter: "SUCCEEDED",
        maxResults: 20,
      }),
    ),
  );
  for (const e of listed.executions ?? []) {
    if (!e.executionArn) continue;
    const arn = e.executionArn;
    const exec = await describeExec(conn, arn);
    const state = JSON.parse(exec.output ?? "{}") as {
      input?: { dryRun?: boolean };
      plan?: { noop?: boolean; sourceRegion?: string | null };
    };
    if (state.input?.dryRun || state.plan?.noop || !state.plan?.sourceRegion) continue;
    return state.plan.sourceRegion;
  }
  throw new InputValidationError("no region to fail back to", [
    "no succeeded failover among the newest 20 executions names the region it left: pass --to <region>",
  ]);
}

/** Sends the decision to the approval entry point; a refusal fails naming what it said. */
async function decide(
  conn: Connection,
  url: string,
  body: DecisionBody,
): Promise<{ principal: string }> {
  const answer = await sendDecision(url, body, {
    region: await conn.client.config.region(),
    credentials: () => conn.client.config.credentials(),
  });
  if (!answer.ok)
    throw new OperationFailed(
      `the approval entry point refused to ${body.decision} ${nameOf(body.executionArn)}${answer.status ? ` (HTTP ${answer.status})` : ""}: ${answer.message}`,
    );
  return answer;
}

/** Registers the operator commands on the CLI; `out` prints one line. */
export function registerOperatorCommands(cli: Command, out: (line: string) => void): void {
  connectionOptions(
    cli
      .command("start")
      .description("start a failover (validated with the same schema Plan uses)")
      .requiredOption("--target <region>", "region to fail over to, e.g. us-east-2")
      .requiredOption("--reason <text>", "why (recorded in Git, the audit trail and the report)")
      .addOption(
        new Option(
          "--mode <mode>",
          "Aurora promotion: graceful (switchover) or ungraceful (failover)",
        )
          .choices(["graceful", "ungraceful"])
          .default("graceful"),
      )
      .option("--dry-run", "plan only: the execution ends with the plan and changes nothing", false)
      .option(
        "--allow-data-loss",
        "let an ungraceful failover go ahead whatever the replication lag (overrides the RPO guard)",
        false,
      )
      .option("--require-approval", "stop at the Approval step until `approve`", false)
      .option("--requested-by <who>", "who asks (default: cli:<your user name>)")
      .option("--name <execution>", "execution name (default: manual-<target>-<UTC time>)")
      .option("-c, --config <topology>", "also check the target against this topology file"),
  ).action(async (flags: StartFlags) => {
    await launch(flags, startInput(flags), out);
  });

  connectionOptions(
    cli
      .command("failback")
      .description(
        "fail back: a graceful failover to the region the last failover left, behind the failback pre-checks (VerifySpoke, before any commit)",
      )
      .option(
        "--to <region>",
        "region to fail back to (default: the region the newest succeeded failover left)",
      )
      .requiredOption("--reason <text>", "why (recorded in Git, the audit trail and the report)")
      .option(
        "--dry-run",
        "plan only: change nothing (the pre-checks run after Plan, in VerifySpoke)",
        false,
      )
      .option("--require-approval", "stop at the Approval step until `approve`", false)
      .option("--requested-by <who>", "who asks (default: cli:<your user name>)")
      .option("--name <execution>", "execution name (default: failback-<region>-<UTC time>)")
      .option("-c, --config <topology>", "also check the region against this topology file"),
  ).action(
    async (flags: Omit<StartFlags, "target" | "mode" | "allowDataLoss"> & { to?: string }) => {
      const to = flags.to ?? (await lastLeftRegion(connect(flags)));
      const input = {
        ...startInput({ ...flags, target: to, mode: "graceful", allowDataLoss: false }),
        failback: true,
      };
      await launch(
        { ...flags, target: to, mode: "graceful", allowDataLoss: false },
        input,
        out,
        "failback",
      );
    },
  );

  connectionOptions(
    cli
      .command("status")
      .description(
        "an execution's status, current step and whether it waits for approval (default: the newest)",
      )
      .argument("[execution]", "execution name, or its ARN (which needs no --state-machine)"),
  ).action(async (ref: string | undefined, flags: ConnectionFlags) => {
    const conn = connect(flags, ref);
    let arn = ref ? executionArn(conn, ref) : undefined;
    if (!arn) {
      const newest = await call("listing executions", () =>
        conn.client.send(
          new ListExecutionsCommand({ stateMachineArn: conn.stateMachineArn, maxResults: 1 }),
        ),
      );
      arn = newest.executions?.[0]?.executionArn;
      if (!arn) {
        out(flags.json ? "null" : "no executions");
        return;
      }
    }
    const exec = await describeExec(conn, arn);
    const events = await history(conn, arn, true);
    const awaitingApproval =
      exec.status === "RUNNING" && pendingApprovalToken(events) !== undefined;
    const status = {
      name: exec.name ?? nameOf(arn),
      executionArn: arn,
      status: exec.status,
      startDate: iso(exec.startDate),
      stopDate: iso(exec.stopDate),
      input: inputSummary(exec.input),
      current: exec.status === "RUNNING" ? currentStates(events) : [],
      awaitingApproval,
      ...(exec.error ? { error: exec.error } : {}),
      ...(exec.cause ? { cause: exec.cause } : {}),
    };
    if (flags.json) out(JSON.stringify(status));
    else {
      const took =
        (exec.stopDate ?? new Date()).getTime() - (exec.startDate ?? new Date()).getTime();
      const i = status.input;
      out(
        `${status.name}  ${exec.status}  started ${status.startDate} (${seconds(took)}${exec.stopDate ? "" : " so far"})`,
      );
      out(
        `  failover to ${i.targetRegion ?? "?"} (${i.mode ?? "?"}${i.dryRun ? ", dry run" : ""}), requested by ${i.requestedBy ?? "?"}: ${i.reason ?? ""}`,
      );
      if (status.current.length) out(`  now at: ${status.current.join(", ")}`);
      if (awaitingApproval) {
        out(
          `  waiting for approval: ${conn.suggest(`approve ${status.name}`)}  (or ${conn.suggest(`reject ${status.name} --reason "<why>"`)})`,
        );
      }
      if (exec.error || exec.cause) out(`  error: ${exec.error ?? ""}: ${exec.cause ?? ""}`);
    }
    if (ENDED.has(exec.status ?? "") && exec.status !== "SUCCEEDED") {
      throw new OperationFailed(`execution ${status.name} ${exec.status}`);
    }
  });

  connectionOptions(
    cli
      .command("watch")
      .description(
        "follow an execution step by step until it ends (exit 0 when it succeeded, 1 otherwise)",
      )
      .argument("<execution>", "execution name, or its ARN (which needs no --state-machine)")
      .option(
        "--interval <ms>",
        "milliseconds between polls of the history",
        positiveInt(60_000),
        2000,
      )
      .option(
        "--timeout <seconds>",
        "give up watching after this long (exit 1)",
        positiveInt(86_400),
      ),
  ).action(async (ref: string, flags: ConnectionFlags & { interval: number; timeout?: number }) => {
    const conn = connect(flags, ref);
    const arn = executionArn(conn, ref);
    const name = nameOf(arn);
    const exec = await describeExec(conn, arn);
    const start = exec.startDate?.getTime() ?? Date.now();
    const deadline = flags.timeout ? Date.now() + flags.timeout * 1000 : Number.POSITIVE_INFINITY;
    const entered = new Map<string, number>();
    const emit = (at: number, event: string, text: string, extra: Record<string, unknown> = {}) =>
      out(
        flags.json
          ? JSON.stringify({
              at: new Date(at).toISOString(),
              elapsedMs: at - start,
              event,
              ...extra,
            })
          : `${elapsed(at - start).padStart(8)}  ${text}`,
      );
    let seen = 0;
    let ended: { status: ExecutionStatus; error?: string; cause?: string } | undefined;
    while (!ended) {
      for (const e of await newEvents(conn, arn, seen)) {
        seen = Math.max(seen, e.id ?? 0);
        const at = e.timestamp?.getTime() ?? Date.now();
        const failure = failureOf(e);
        if (e.stateEnteredEventDetails?.name) {
          const state = e.stateEnteredEventDetails.name;
          entered.set(state, at);
          emit(at, "entered", `entered ${state}`, { state });
        } else if (e.stateExitedEventDetails?.name) {
          const state = e.stateExitedEventDetails.name;
          const took = at - (entered.get(state) ?? at);
          emit(at, "exited", `exited  ${state} (${seconds(took)})`, { state, durationMs: took });
        } else if (
          e.type === "TaskScheduled" &&
          WAIT_FOR_TOKEN.test(e.taskScheduledEventDetails?.resource ?? "")
        ) {
          emit(at, "awaiting-approval", `waiting for approval: ${conn.suggest(`approve ${name}`)}`);
        } else if (e.type && END_STATUS[e.type]) {
          ended = { status: END_STATUS[e.type] ?? "FAILED", ...(failure ?? {}) };
          const why = failure?.error
            ? `: ${failure.error}${failure.cause ? `: ${failure.cause}` : ""}`
            : "";
          emit(at, "ended", `${ended.status}${why}`, { status: ended.status, ...(failure ?? {}) });
        } else if (failure?.error) {
          emit(
            at,
            "failed",
            `  ${failure.error}${failure.cause ? `: ${failure.cause}` : ""}`,
            failure,
          );
        }
      }
      if (ended) break;
      if (Date.now() >= deadline) {
        throw new OperationFailed(
          `execution ${name} still running after ${flags.timeout}s of watching`,
        );
      }
      await sleep(flags.interval);
    }
    if (ended.status !== "SUCCEEDED")
      throw new OperationFailed(`execution ${name} ${ended.status}`);
  });

  connectionOptions(
    cli
      .command("approve")
      .description(
        "approve a failover waiting at its Approval step, through the approval entry point (SigV4: your verified principal is recorded)",
      )
      .argument("<execution>", "execution name, or its ARN (which needs no --state-machine)")
      .option("--by <name>", "who approves (default: $GITOPS_FAILOVER_USER or your user name)")
      .option(
        "--approval-url <url>",
        "the approval function URL (default: $GITOPS_FAILOVER_APPROVAL_URL; the stack's ApprovalUrl output)",
      ),
  ).action(async (ref: string, flags: ConnectionFlags & { by?: string; approvalUrl?: string }) => {
    const url = approvalUrlOf(flags);
    const conn = connect(flags, ref);
    const { arn } = await pendingApproval(conn, ref);
    const approvedBy = flags.by ?? operator();
    const answer = await decide(conn, url, {
      decision: "approve",
      executionArn: arn,
      by: approvedBy,
    });
    if (flags.json)
      out(
        JSON.stringify({
          name: nameOf(arn),
          executionArn: arn,
          approvedBy,
          principal: answer.principal,
        }),
      );
    else
      out(
        `approved ${nameOf(arn)} as ${approvedBy} (verified principal ${answer.principal}); follow it: ${conn.suggest(`watch ${nameOf(arn)}`)}`,
      );
  });

  connectionOptions(
    cli
      .command("reject")
      .description(
        "reject a failover waiting at its Approval step, through the approval entry point (the execution fails with ApprovalRejected)",
      )
      .argument("<execution>", "execution name, or its ARN (which needs no --state-machine)")
      .requiredOption("--reason <text>", "why (becomes the failure's cause)")
      .option("--by <name>", "who rejects (default: $GITOPS_FAILOVER_USER or your user name)")
      .option(
        "--approval-url <url>",
        "the approval function URL (default: $GITOPS_FAILOVER_APPROVAL_URL; the stack's ApprovalUrl output)",
      ),
  ).action(
    async (
      ref: string,
      flags: ConnectionFlags & { reason: string; by?: string; approvalUrl?: string },
    ) => {
      const reason = flags.reason.trim();
      if (reason.length < 3 || reason.length > 500) {
        throw new InputValidationError("--reason: must say why in 3 to 500 characters");
      }
      const url = approvalUrlOf(flags);
      const conn = connect(flags, ref);
      const { arn } = await pendingApproval(conn, ref);
      const answer = await decide(conn, url, {
        decision: "reject",
        executionArn: arn,
        by: flags.by ?? operator(),
        reason,
      });
      if (flags.json)
        out(
          JSON.stringify({
            name: nameOf(arn),
            executionArn: arn,
            rejected: true,
            reason,
            principal: answer.principal,
          }),
        );
      else out(`rejected ${nameOf(arn)} (verified principal ${answer.principal}): ${reason}`);
    },
  );

  connectionOptions(
    cli
      .command("list")
      .description("recent executions, newest first")
      .addOption(
        new Option("--status <status>", "only executions with this status").choices([...STATUSES]),
      )
      .option("--limit <n>", "how many", positiveInt(1000), 20),
  ).action(
    async (flags: ConnectionFlags & { status?: (typeof STATUSES)[number]; limit: number }) => {
      const conn = connect(flags);
      const page = await call("listing executions", () =>
        conn.client.send(
          new ListExecutionsCommand({
            stateMachineArn: conn.stateMachineArn,
            maxResults: flags.limit,
            ...(flags.status ? { statusFilter: flags.status } : {}),
          }),
        ),
      );
      const rows = (page.executions ?? []).map((e) => ({
        name: e.name ?? "",
        executionArn: e.executionArn ?? "",
        status: e.status ?? "",
        startDate: iso(e.startDate),
        stopDate: iso(e.stopDate),
      }));
      if (flags.json) {
        out(JSON.stringify(rows));
        return;
      }
      if (!rows.length) {
        out("no executions");
        return;
      }
      const width = Math.max(4, ...rows.map((r) => r.name.length));
      out(`${"NAME".padEnd(width)}  ${"STATUS".padEnd(15)}  ${"STARTED".padEnd(24)}  ENDED`);
      for (const r of rows) {
        out(
          `${r.name.padEnd(width)}  ${r.status.padEnd(15)}  ${(r.startDate ?? "").padEnd(24)}  ${r.stopDate ?? "-"}`,
        );
      }
    },
  );
}
