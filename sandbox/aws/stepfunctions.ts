/**
 * Step Functions (awsJson1_0) for the sandbox, backed by the local runner: the CLI and the
 * drill start, watch, approve and stop executions through the real SFN client, and the history
 * they read has the shape AWS gives (so `watch` and `approve` work the same against AWS).
 */
import { type EventLog, executionArnOf, runLocal } from "../runner.ts";
import { AwsServiceError, type JsonServiceHandler } from "./protocol.ts";

const MAX_INPUT_BYTES = 256 * 1024;

type Status = "RUNNING" | "SUCCEEDED" | "FAILED" | "ABORTED";

interface HistoryEvent {
  id: number;
  previousEventId: number;
  timestamp: number;
  type: string;
  [details: string]: unknown;
}

interface Execution {
  executionArn: string;
  name: string;
  input: string;
  status: Status;
  startDate: number;
  stopDate?: number;
  output?: string;
  error?: string;
  cause?: string;
  history: HistoryEvent[];
  abort: AbortController;
  done: Promise<void>;
}

interface PendingTask {
  executionArn: string;
  resolve: (output: unknown) => void;
  reject: (error: Error) => void;
}

export interface StepFunctionsOptions {
  stateMachineArn: string;
  /** Milliseconds each Wait state really waits. */
  waitMs: number;
  retryMs: number;
}

export interface StepFunctions {
  handler: JsonServiceHandler;
  /** Resolves when every execution started so far has ended. */
  idle(): Promise<void>;
  /** Stops every running execution (as StopExecution would) and waits for them to end. */
  stopAll(): Promise<void>;
}

const seconds = (ms: number) => ms / 1000;

function requireString(input: Record<string, unknown>, key: string): string {
  const v = input[key];
  if (typeof v !== "string" || !v)
    throw new AwsServiceError("ValidationException", `${key} is required`);
  return v;
}

/** Creates the service; register its handler as `states` / `AWSStepFunctions` (JSON 1.0). */
export function createStepFunctions(options: StepFunctionsOptions): StepFunctions {
  const executions = new Map<string, Execution>();
  const tasks = new Map<string, PendingTask>();

  function record(exec: Execution, type: string, details: Record<string, unknown> = {}): void {
    const id = exec.history.length + 1;
    exec.history.push({
      id,
      previousEventId: id - 1,
      timestamp: seconds(Date.now()),
      type,
      ...details,
    });
  }

  function recordLog(exec: Execution, event: EventLog): void {
    if (!("state" in event) || !event.state) return;
    const { name, type } = event.state;
    const json = (v: unknown) => JSON.stringify(v ?? null);
    if (event.type === "StateEntered") {
      record(exec, `${type}StateEntered`, {
        stateEnteredEventDetails: { name, input: json(event.state.input) },
      });
    } else if (event.type === "StateExited") {
      record(exec, `${type}StateExited`, {
        stateExitedEventDetails: { name, output: json(event.state.output) },
      });
    } else if (event.type === "StateFailed" || event.type === "StateRetried") {
      const failure = event as { Error?: string; Cause?: unknown };
      if (type === "Task") {
        record(exec, "LambdaFunctionFailed", {
          lambdaFunctionFailedEventDetails: {
            error: failure.Error ?? "States.TaskFailed",
            cause: String(failure.Cause ?? ""),
          },
        });
      }
    }
  }

  function start(input: Record<string, unknown>) {
    const arn = requireString(input, "stateMachineArn");
    if (arn !== options.stateMachineArn)
      throw new AwsServiceError(
        "StateMachineDoesNotExist",
        `State Machine Does Not Exist: '${arn}'`,
      );
    const name = typeof input.name === "string" && input.name ? input.name : crypto.randomUUID();
    if (!/^[A-Za-z0-9_-]{1,80}$/.test(name))
      throw new AwsServiceError("InvalidName", `Invalid Name: '${name}'`);
    const text = typeof input.input === "string" ? input.input : "{}";
    if (Buffer.byteLength(text) > MAX_INPUT_BYTES)
      throw new AwsServiceError("InvalidExecutionInput", "input is larger than 256 KiB");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new AwsServiceError(
        "InvalidExecutionInput",
        "Invalid State Machine Execution Input: not JSON",
      );
    }
    const executionArn = executionArnOf(arn, name);
    const existing = executions.get(executionArn);
    if (existing) {
      // Same name and input while it runs: Step Functions answers with the running execution.
      if (existing.status === "RUNNING" && existing.input === text) {
        return { executionArn, startDate: seconds(existing.startDate) };
      }
      throw new AwsServiceError(
        "ExecutionAlreadyExists",
        `Execution Already Exists: '${executionArn}'`,
      );
    }
    const abort = new AbortController();
    const exec: Execution = {
      executionArn,
      name,
      input: text,
      status: "RUNNING",
      startDate: Date.now(),
      history: [],
      abort,
      done: Promise.resolve(),
    };
    executions.set(executionArn, exec);
    record(exec, "ExecutionStarted", { executionStartedEventDetails: { input: text } });
    exec.done = runLocal({
      input: parsed,
      executionName: name,
      stateMachineArn: arn,
      waitMs: options.waitMs,
      retryMs: options.retryMs,
      signal: abort.signal,
      onEvent: (e) => recordLog(exec, e),
      approve: (payload) =>
        new Promise((resolve, reject) => {
          tasks.set(payload.taskToken, { executionArn, resolve, reject });
          record(exec, "TaskScheduled", {
            taskScheduledEventDetails: {
              resourceType: "lambda",
              resource: "invoke.waitForTaskToken",
              region: arn.split(":")[3],
              parameters: JSON.stringify({ Payload: payload }),
            },
          });
        }),
    }).then((result) => {
      exec.status = result.status;
      exec.stopDate = Date.now();
      for (const [token, t] of tasks) if (t.executionArn === executionArn) tasks.delete(token);
      if (result.status === "SUCCEEDED") {
        exec.output = JSON.stringify(result.output ?? null);
        record(exec, "ExecutionSucceeded", {
          executionSucceededEventDetails: { output: exec.output },
        });
      } else if (result.status === "FAILED") {
        exec.error = result.error;
        exec.cause = result.cause;
        record(exec, "ExecutionFailed", {
          executionFailedEventDetails: { error: exec.error, cause: exec.cause },
        });
      } else {
        record(exec, "ExecutionAborted", {
          executionAbortedEventDetails: { error: exec.error, cause: exec.cause },
        });
      }
    });
    return { executionArn, startDate: seconds(exec.startDate) };
  }

  function find(input: Record<string, unknown>): Execution {
    const arn = requireString(input, "executionArn");
    const exec = executions.get(arn);
    if (!exec)
      throw new AwsServiceError("ExecutionDoesNotExist", `Execution Does Not Exist: '${arn}'`);
    return exec;
  }

  function describeExecution(e: Execution) {
    return {
      executionArn: e.executionArn,
      stateMachineArn: options.stateMachineArn,
      name: e.name,
      status: e.status,
      startDate: seconds(e.startDate),
      ...(e.stopDate ? { stopDate: seconds(e.stopDate) } : {}),
      input: e.input,
      ...(e.output !== undefined ? { output: e.output } : {}),
      ...(e.error ? { error: e.error } : {}),
      ...(e.cause ? { cause: e.cause } : {}),
    };
  }

  function task(input: Record<string, unknown>): PendingTask {
    const token = requireString(input, "taskToken");
    const t = tasks.get(token);
    if (!t) throw new AwsServiceError("TaskDoesNotExist", "Task Timed Out or does not exist");
    tasks.delete(token);
    return t;
  }

  const handler: JsonServiceHandler = (action, input) => {
    switch (action) {
      case "StartExecution":
        return start(input);
      case "DescribeExecution":
        return describeExecution(find(input));
      case "GetExecutionHistory": {
        const e = find(input);
        const events = input.reverseOrder === true ? [...e.history].reverse() : e.history;
        return { events };
      }
      case "ListExecutions": {
        requireString(input, "stateMachineArn");
        const list = [...executions.values()]
          .filter((e) => !input.statusFilter || e.status === input.statusFilter)
          .sort((a, b) => b.startDate - a.startDate)
          .map((e) => {
            const {
              input: _input,
              output: _output,
              error: _error,
              cause: _cause,
              ...rest
            } = describeExecution(e);
            return rest;
          });
        return { executions: list };
      }
      case "StopExecution": {
        const e = find(input);
        if (e.status === "RUNNING") {
          e.error = typeof input.error === "string" ? input.error : undefined;
          e.cause = typeof input.cause === "string" ? input.cause : undefined;
          e.abort.abort();
        }
        return { stopDate: seconds(Date.now()) };
      }
      case "SendTaskSuccess": {
        const output = requireString(input, "output");
        const t = task(input);
        t.resolve(JSON.parse(output));
        return {};
      }
      case "SendTaskFailure": {
        const t = task(input);
        const error = typeof input.error === "string" ? input.error : "TaskFailed";
        t.reject(
          Object.assign(new Error(typeof input.cause === "string" ? input.cause : ""), {
            name: error,
          }),
        );
        return {};
      }
      default:
        throw new AwsServiceError("UnknownOperationException", `Unknown operation ${action}`);
    }
  };

  return {
    handler,
    idle: async () => {
      await Promise.all([...executions.values()].map((e) => e.done));
    },
    stopAll: async () => {
      for (const e of executions.values()) if (e.status === "RUNNING") e.abort.abort();
      await Promise.all([...executions.values()].map((e) => e.done));
    },
  };
}
