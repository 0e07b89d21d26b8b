/**
 * Runs statemachine/failover.asl.json unchanged with aws-local-stepfunctions, each Task state
 * overridden to call the real handler in-process (through its middy wrapper, with a Lambda
 * context), so the tests and the drill exercise the same definition that CDK deploys.
 */
import { randomUUID } from "node:crypto";
import type { Context } from "aws-lambda";
import { StateMachine } from "aws-local-stepfunctions";
import { FUNCTIONS, type FunctionSpec, placeholderOf } from "../functions/catalog.ts";
import { aslText, substitute } from "../statemachine/definition.ts";
import { SANDBOX_ACCOUNT, SANDBOX_REGION } from "./aws/protocol.ts";
import { asInvocationOf } from "./function-logs.ts";

/** The ARN the local state machine answers to (StartExecution, DescribeExecution, ...). */
export const LOCAL_STATE_MACHINE_ARN = `arn:aws:states:${SANDBOX_REGION}:${SANDBOX_ACCOUNT}:stateMachine:gitops-failover`;

/** An execution's ARN, as Step Functions derives it from the state machine's. */
export function executionArnOf(stateMachineArn: string, name: string): string {
  return `${stateMachineArn.replace(":stateMachine:", ":execution:")}:${name}`;
}

/** One entry of aws-local-stepfunctions' execution event log (the package does not export the type). */
export type EventLog =
  ReturnType<StateMachine["run"]>["eventLogs"] extends AsyncGenerator<infer E> ? E : never;

type Handler = (event: unknown, context: Context) => Promise<unknown>;

/** A function as the sandbox runs it: its Lambda name, handler directory and timeout. */
type LocalFunction = { dir: string; timeoutSeconds: number };

const functionNameOf = (spec: LocalFunction) => `gitops-failover-${spec.dir}`;

/** The fake ARN each `${XFunctionArn}` placeholder gets outside AWS. */
function localFunctionArn(spec: LocalFunction): string {
  return `arn:aws:lambda:${SANDBOX_REGION}:${SANDBOX_ACCOUNT}:function:${functionNameOf(spec)}`;
}

/** The ASL with local ARNs substituted, parsed. */
export function localDefinition(): Record<string, unknown> {
  const values = Object.fromEntries(
    FUNCTIONS.map((f) => [placeholderOf(f.state), localFunctionArn(f)]),
  );
  return JSON.parse(substitute(aslText(), values)) as Record<string, unknown>;
}

function lambdaContext(spec: LocalFunction): Context {
  const deadline = Date.now() + spec.timeoutSeconds * 1000;
  const name = functionNameOf(spec);
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: name,
    functionVersion: "$LATEST",
    invokedFunctionArn: localFunctionArn(spec),
    memoryLimitInMB: "256",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${name}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => deadline - Date.now(),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

const handlers = new Map<string, Handler>();

async function handlerOf(spec: LocalFunction): Promise<Handler> {
  let h = handlers.get(spec.dir);
  if (!h) {
    const mod = (await import(`../functions/${spec.dir}/handler.ts`)) as { handler: Handler };
    h = mod.handler;
    handlers.set(spec.dir, h);
  }
  return h;
}

/** Invokes one function's real handler as Lambda would, its stdout going to its own log. */
async function invoke(spec: LocalFunction, event: unknown): Promise<unknown> {
  const handler = await handlerOf(spec);
  return asInvocationOf(functionNameOf(spec), () => handler(event, lambdaContext(spec)));
}

async function invokeLocal(state: FunctionSpec["state"], event: unknown): Promise<unknown> {
  const spec = FUNCTIONS.find((f) => f.state === state);
  if (!spec) throw new Error(`no function for state ${state}`);
  return invoke(spec, event);
}

/** The trigger function as EventBridge invokes it (infra: TRIGGER, 60 s). */
const TRIGGER_FUNCTION: LocalFunction = { dir: "trigger", timeoutSeconds: 60 };

/** Delivers one EventBridge event to the real trigger handler, as Lambda would. */
export function invokeTrigger(event: unknown): Promise<unknown> {
  return invoke(TRIGGER_FUNCTION, event);
}

/** The approval entry point (infra: its function URL, AWS_IAM auth). */
const APPROVER_FUNCTION: LocalFunction = { dir: "approver", timeoutSeconds: 30 };

/** Delivers one function URL request (payload format 2.0) to the real approver handler. */
export function invokeApprover(event: unknown): Promise<unknown> {
  return invoke(APPROVER_FUNCTION, event);
}

/** One local execution: its input and name, compressed waits and retries, approval, events. */
export interface LocalRunOptions {
  input: unknown;
  executionName: string;
  stateMachineArn?: string;
  /** Milliseconds each Wait state really waits (time is compressed locally). */
  waitMs?: number;
  /** Milliseconds between retries. */
  retryMs?: number;
  /**
   * Sandbox seconds per AWS second (sandbox/time-model.ts): when set, every Wait state waits its
   * `Seconds` (or the value at its `SecondsPath`) times this, and every Retry its
   * `IntervalSeconds` times this, instead of `waitMs` / `retryMs`.
   */
  timeScale?: number;
  /**
   * Called with the Approval task's payload after the approval function ran; resolves when
   * approved (its value becomes the task output) and rejects to reject.
   */
  approve?: (payload: { taskToken: string; execution: unknown }) => Promise<unknown>;
  onEvent?: (event: EventLog) => void;
  /** Aborting stops the execution (StopExecution). */
  signal?: AbortSignal;
}

/** How a local execution ended, with every event the engine logged. */
export interface LocalRunResult {
  executionArn: string;
  status: "SUCCEEDED" | "FAILED" | "ABORTED";
  output?: unknown;
  error?: string;
  cause?: string;
  events: EventLog[];
}

/** One state of the ASL, as far as the sandbox reads it. */
export interface AslState {
  Type?: string;
  Resource?: string;
  Next?: string;
  Seconds?: number;
  SecondsPath?: string;
  ResultPath?: string;
  Retry?: {
    ErrorEquals: string[];
    IntervalSeconds?: number;
    MaxAttempts?: number;
    BackoffRate?: number;
    MaxDelaySeconds?: number;
    JitterStrategy?: string;
  }[];
  Branches?: { States: Record<string, AslState> }[];
}

/** Every state of a definition by name, those inside Parallel branches included. */
export function allStates(definition: Record<string, unknown>): Map<string, AslState> {
  const found = new Map<string, AslState>();
  const visit = (states: Record<string, AslState>) => {
    for (const [name, s] of Object.entries(states)) {
      found.set(name, s);
      for (const b of s.Branches ?? []) visit(b.States);
    }
  };
  visit(definition.States as Record<string, AslState>);
  return found;
}

function waitStates(definition: Record<string, unknown>): string[] {
  return [...allStates(definition)].filter(([, s]) => s.Type === "Wait").map(([name]) => name);
}

/** `$.argo.nextWaitSeconds` -> ["argo", "nextWaitSeconds"]; undefined for other shapes. */
function pathKeys(path: string | undefined): string[] | undefined {
  const m = path?.match(/^\$((?:\.[A-Za-z0-9_]+)+)$/);
  return m?.[1]?.slice(1).split(".");
}

/**
 * Wait times under a time scale. A `SecondsPath` Wait reads the value its path names in the
 * latest result of the Task whose ResultPath holds it (every poll loop is Task -> Choice -> Wait),
 * at the moment the engine reads the override: a getter, since the value changes every poll.
 */
function scaledWaits(
  definition: Record<string, unknown>,
  scale: number,
  results: Map<string, unknown>,
): Record<string, number> {
  const waits: Record<string, number> = {};
  for (const [name, s] of allStates(definition)) {
    if (s.Type !== "Wait") continue;
    if (typeof s.Seconds === "number") waits[name] = s.Seconds * 1000 * scale;
    const keys = pathKeys(s.SecondsPath);
    if (!keys) continue;
    Object.defineProperty(waits, name, {
      enumerable: true,
      get: () => {
        let v: unknown = results.get(keys[0] ?? "");
        for (const k of keys.slice(1)) v = (v as Record<string, unknown> | undefined)?.[k];
        return (typeof v === "number" && v >= 0 ? v : 0) * 1000 * scale;
      },
    });
  }
  return waits;
}

/** Retry intervals under a time scale: each retrier's IntervalSeconds, scaled. */
function scaledRetries(definition: Record<string, unknown>, scale: number) {
  const retries: Record<string, number[]> = {};
  for (const [name, s] of allStates(definition))
    if (s.Retry) retries[name] = s.Retry.map((r) => (r.IntervalSeconds ?? 1) * 1000 * scale);
  return retries;
}

interface TaskDefinition {
  Type?: string;
  TimeoutSecondsPath?: string;
  Parameters?: { Payload?: Record<string, unknown> };
  Branches?: { States: Record<string, TaskDefinition> }[];
}

/**
 * aws-local-stepfunctions reads `TimeoutSecondsPath` from the effective input (after
 * `Parameters`); Step Functions reads it from the state input. Where the path's first key is
 * passed through unchanged into the Lambda `Payload`, the same value sits under `$.Payload`, so
 * the local run points there and both honour the same timeout.
 */
function alignTimeoutPaths(states: Record<string, TaskDefinition>): void {
  for (const state of Object.values(states)) {
    const path = state.TimeoutSecondsPath;
    const key = path?.match(/^\$\.([A-Za-z0-9_]+)/)?.[1];
    if (path && key && state.Parameters?.Payload?.[`${key}.$`] === `$.${key}`) {
      state.TimeoutSecondsPath = path.replace(/^\$\./, "$.Payload.");
    }
    for (const branch of state.Branches ?? []) alignTimeoutPaths(branch.States);
  }
}

/**
 * The task's result, or a rejection as soon as the run is aborted. aws-local-stepfunctions
 * clears a Task's timeout timer (and the execution's) only once the task settles, so a task
 * that never does — Approval waiting for its token — would keep the process alive for the
 * approval timeout after the execution was stopped.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}

/**
 * The definitions this process already validated (their JSON text). aws-local-stepfunctions
 * validates a definition with asl-validator each time a StateMachine is built, compiling its
 * JSON schemas anew: ~0.3 s of CPU per execution for the same text every time.
 */
const validated = new Set<string>();

/** Runs one execution to its end and returns its outcome and event log. */
export async function runLocal(options: LocalRunOptions): Promise<LocalRunResult> {
  const definition = localDefinition();
  alignTimeoutPaths(definition.States as Record<string, TaskDefinition>);
  const text = JSON.stringify(definition);
  const machine = new StateMachine(
    definition as unknown as ConstructorParameters<typeof StateMachine>[0],
    {
      validationOptions: validated.has(text) ? { noValidate: true } : { checkArn: false },
    },
  );
  validated.add(text);
  const executionArn = executionArnOf(
    options.stateMachineArn ?? LOCAL_STATE_MACHINE_ARN,
    options.executionName,
  );
  const overrides: Record<string, (input: unknown) => Promise<unknown>> = {};
  const states = allStates(definition);
  /** Each Task's latest result by its ResultPath's first key (for SecondsPath Waits). */
  const results = new Map<string, unknown>();
  for (const spec of FUNCTIONS) {
    const task =
      spec.state === "Approval"
        ? async (input: unknown) => {
            const payload = (input as { Payload: { taskToken: string; execution: unknown } })
              .Payload;
            await invokeLocal("Approval", payload);
            if (!options.approve)
              throw Object.assign(new Error("no approver in this run"), { name: "States.Timeout" });
            return options.approve(payload);
          }
        : (input: unknown) => invokeLocal(spec.state, input);
    const resultKey = pathKeys(states.get(spec.state)?.ResultPath)?.[0];
    overrides[spec.state] = async (input) => {
      const result = await untilAborted(task(input), options.signal);
      if (resultKey) results.set(resultKey, result);
      return result;
    };
  }
  const scale = options.timeScale;
  const waits =
    scale === undefined
      ? Object.fromEntries(waitStates(definition).map((n) => [n, options.waitMs ?? 0]))
      : scaledWaits(definition, scale, results);
  const retries =
    scale === undefined
      ? Object.fromEntries(FUNCTIONS.map((f) => [f.state, options.retryMs ?? 0]))
      : scaledRetries(definition, scale);
  const execution = machine.run(options.input as never, {
    overrides: {
      taskResourceLocalHandlers: overrides as never,
      waitTimeOverrides: waits,
      retryIntervalOverrides: retries,
    },
    context: {
      Execution: {
        Id: executionArn,
        Name: options.executionName,
        StartTime: new Date().toISOString(),
        Input: options.input,
      },
      Task: { Token: `local-task-token-${randomUUID()}` },
    } as never,
  });
  options.signal?.addEventListener("abort", () => execution.abort(), { once: true });
  const events: EventLog[] = [];
  const collecting = (async () => {
    for await (const event of execution.eventLogs) {
      events.push(event);
      options.onEvent?.(event);
    }
  })();
  try {
    const output = await execution.result;
    await collecting;
    return { executionArn, status: "SUCCEEDED", output, events };
  } catch (e) {
    await collecting;
    if (options.signal?.aborted) return { executionArn, status: "ABORTED", events };
    const failure = (e as { cause?: { name?: string; message?: string } }).cause ?? (e as Error);
    return {
      executionArn,
      status: "FAILED",
      error: failure.name ?? "Error",
      cause: failure.message ?? "",
      events,
    };
  }
}
