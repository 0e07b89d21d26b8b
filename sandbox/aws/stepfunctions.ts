/**
 * Step Functions (awsJson1_0) for the sandbox, backed by the local runner: the CLI and the
 * drill start, watch, approve and stop executions through the real SFN client, and the history
 * they read has the shape AWS gives (so `watch` and `approve` work the same against AWS):
 * a Lambda Task is TaskStateEntered, LambdaFunctionScheduled, LambdaFunctionStarted, then
 * LambdaFunctionSucceeded or LambdaFunctionFailed with the function's own error; each retry is a
 * new LambdaFunctionScheduled / Started pair; each event's previousEventId chains it to the
 * state's previous event, as AWS does, so readers can tell Parallel branches apart.
 */
import { allStates, type EventLog, executionArnOf, localDefinition, runLocal } from "../runner.ts";
import {
  AwsServiceError,
  type JsonServiceHandler,
  regionOfArn,
  requireString,
} from "./protocol.ts";

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
  states: Map<string, StateTrack>;
  abort: AbortController;
  done: Promise<void>;
}

/** Which of an execution's states last recorded which event, and whether its last attempt failed. */
interface StateTrack {
  lastEventId: number;
  failed: boolean;
}

interface PendingTask {
  executionArn: string;
  resolve: (output: unknown) => void;
  reject: (error: Error) => void;
}

/** How the emulator runs executions. */
export interface StepFunctionsOptions {
  /** The one state machine it serves (StartExecution of any other answers StateMachineDoesNotExist). */
  stateMachineArn: string;
  /** Milliseconds each Wait state really waits. */
  waitMs: number;
  /** Milliseconds before each Retry attempt (instead of IntervalSeconds with backoff). */
  retryMs: number;
  /** When set, Waits and Retries take their ASL seconds times this instead (sandbox/time-model.ts). */
  timeScale?: number;
}

/** The emulator: its awsJson1_0 handler and controls for the sandbox. */
export interface StepFunctions {
  handler: JsonServiceHandler;
  /** Resolves when every execution started so far has ended. */
  idle(): Promise<void>;
  /** Stops every running execution (as StopExecution would) and waits for them to end. */
  stopAll(): Promise<void>;
}

const seconds = (ms: number) => ms / 1000;
const WAIT_FOR_TOKEN = /\.waitForTaskToken$/;

/** Creates the service; register its handler as `states` / `AWSStepFunctions` (JSON 1.0). */
export function createStepFunctions(options: StepFunctionsOptions): StepFunctions {
  const executions = new Map<string, Execution>();
  const tasks = new Map<string, PendingTask>();
  const createdAt = Date.now();

  /** Resource of every Task state: a function ARN, or a service integration's. */
  const resources = new Map(
    [...allStates(localDefinition())]
      .filter(([, state]) => state.Type === "Task")
      .map(([name, state]) => [name, state.Resource ?? ""]),
  );

  /** Appends an event; with `state`, chained to that state's previous event (else to the last). */
  function record(
    exec: Execution,
    type: string,
    details: Record<string, unknown> = {},
    state?: string,
    at = Date.now(),
  ): void {
    const id = exec.history.length + 1;
    const track = state ? exec.states.get(state) : undefined;
    exec.history.push({
      id,
      previousEventId: track?.lastEventId ?? id - 1,
      timestamp: seconds(at),
      type,
      ...details,
    });
    if (state) exec.states.set(state, { lastEventId: id, failed: track?.failed ?? false });
  }

  function setFailed(exec: Execution, state: string, failed: boolean): void {
    const track = exec.states.get(state);
    if (track) track.failed = failed;
  }

  /** One attempt of a Lambda Task begins (its first, or a retry). */
  function scheduleLambda(exec: Execution, name: string, input: unknown, at: number): void {
    record(
      exec,
      "LambdaFunctionScheduled",
      {
        lambdaFunctionScheduledEventDetails: {
          resource: resources.get(name),
          input: JSON.stringify(input ?? null),
        },
      },
      name,
      at,
    );
    record(exec, "LambdaFunctionStarted", {}, name, at);
    setFailed(exec, name, false);
  }

  function recordLog(exec: Execution, event: EventLog): void {
    if (!("state" in event) || !event.state) return;
    const { name, type } = event.state;
    const at = event.timestamp;
    const json = (v: unknown) => JSON.stringify(v ?? null);
    const resource = type === "Task" ? (resources.get(name) ?? "") : undefined;
    const lambda = resource !== undefined && !WAIT_FOR_TOKEN.test(resource);
    const integration = { resourceType: "lambda", resource: "invoke.waitForTaskToken" };
    switch (event.type) {
      case "StateEntered":
        record(
          exec,
          `${type}StateEntered`,
          { stateEnteredEventDetails: { name, input: json(event.state.input) } },
          undefined,
          at,
        );
        exec.states.set(name, { lastEventId: exec.history.length, failed: false });
        if (lambda) scheduleLambda(exec, name, event.state.input, at);
        return;
      case "StateFailed":
        if (resource === undefined) return;
        record(
          exec,
          lambda ? "LambdaFunctionFailed" : "TaskFailed",
          {
            [lambda ? "lambdaFunctionFailedEventDetails" : "taskFailedEventDetails"]: {
              ...(lambda ? {} : integration),
              error: event.Error,
              cause: typeof event.Cause === "string" ? event.Cause : json(event.Cause),
            },
          },
          name,
          at,
        );
        setFailed(exec, name, true);
        return;
      case "StateRetried":
        if (lambda) scheduleLambda(exec, name, event.state.input, at);
        return;
      case "StateExited": {
        const output = json(event.state.output);
        if (resource !== undefined && !exec.states.get(name)?.failed) {
          record(
            exec,
            lambda ? "LambdaFunctionSucceeded" : "TaskSucceeded",
            lambda
              ? { lambdaFunctionSucceededEventDetails: { output } }
              : { taskSucceededEventDetails: { ...integration, output } },
            name,
            at,
          );
        }
        record(exec, `${type}StateExited`, { stateExitedEventDetails: { name, output } }, name, at);
        return;
      }
      default:
        return;
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
      states: new Map(),
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
      ...(options.timeScale !== undefined ? { timeScale: options.timeScale } : {}),
      signal: abort.signal,
      onEvent: (e) => recordLog(exec, e),
      approve: (payload) =>
        new Promise((resolve, reject) => {
          tasks.set(payload.taskToken, { executionArn, resolve, reject });
          const state = [...resources].find(([, r]) => WAIT_FOR_TOKEN.test(r))?.[0];
          record(
            exec,
            "TaskScheduled",
            {
              taskScheduledEventDetails: {
                resourceType: "lambda",
                resource: "invoke.waitForTaskToken",
                region: arn.split(":")[3],
                parameters: JSON.stringify({ Payload: payload }),
              },
            },
            state,
          );
          if (state) setFailed(exec, state, false);
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

  const handler: JsonServiceHandler = (action, input, ctx) => {
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
      case "ListStateMachines":
        // The state machine lives in its ARN's region only.
        return {
          stateMachines:
            regionOfArn(options.stateMachineArn) === ctx.region
              ? [
                  {
                    stateMachineArn: options.stateMachineArn,
                    name: options.stateMachineArn.split(":").at(-1),
                    type: "STANDARD",
                    creationDate: seconds(createdAt),
                  },
                ]
              : [],
        };
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
        requireString(input, "taskToken");
        const text = requireString(input, "output");
        let output: unknown;
        try {
          output = JSON.parse(text);
        } catch {
          // Checked before the token is consumed: the caller can send a valid output again.
          throw new AwsServiceError("InvalidOutput", "Invalid State Machine Output: not JSON");
        }
        task(input).resolve(output);
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
