/**
 * The approval entry point: a Lambda function URL with AWS_IAM auth, so Lambda has verified the
 * caller's SigV4 signature before this code runs and puts the caller's principal ARN in
 * `requestContext.authorizer.iam`. Only this function may answer an Approval task
 * (states:SendTaskSuccess/Failure); the operators may not, so the answer always carries the
 * principal that really asked, next to the name the operator typed (`--by`). An optional
 * topology list (`approvers`) narrows who may answer at all.
 */
import {
  type HistoryEvent,
  paginateGetExecutionHistory,
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
} from "@aws-sdk/client-sfn";
import { z } from "zod";
import { awsError, regionOfArn, sfnClient } from "./aws.ts";
import { runtimeTopology } from "./config.ts";
import { describe, isFailoverError, UnexpectedError } from "./errors.ts";
import { redact, registerSecret } from "./redact.ts";

/** What `approve` / `reject` send (the function URL's JSON body). */
const DecisionSchema = z.discriminatedUnion("decision", [
  z.strictObject({
    decision: z.literal("approve"),
    executionArn: z.string().min(1),
    by: z.string().trim().min(1).max(200),
  }),
  z.strictObject({
    decision: z.literal("reject"),
    executionArn: z.string().min(1),
    by: z.string().trim().min(1).max(200),
    reason: z.string().trim().min(3).max(500),
  }),
]);
export type Decision = z.infer<typeof DecisionSchema>;

/** The parts of a function URL request (payload format 2.0) this function reads. */
export interface FunctionUrlRequest {
  body?: string;
  isBase64Encoded?: boolean;
  requestContext?: {
    http?: { method?: string };
    authorizer?: { iam?: { userArn?: string; accountId?: string } };
  };
}

/** A function URL response (payload format 2.0). */
export interface FunctionUrlResponse {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

const reply = (statusCode: number, body: unknown): FunctionUrlResponse => ({
  statusCode,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

/** The resource of a Task that waits for a task token (the Approval state's). */
export const WAIT_FOR_TOKEN = /\.waitForTaskToken$/;
const TASK_OUTCOMES =
  /^(Task(Succeeded|Failed|TimedOut|StartFailed|SubmitFailed|StateExited|StateAborted)|Execution[A-Za-z]+)$/;

/** The Approval task token still waiting in a history (oldest first); the CLI's `status` too. */
export function pendingToken(events: HistoryEvent[]): string | undefined {
  const scheduled = events.findLast(
    (e) =>
      e.type === "TaskScheduled" &&
      WAIT_FOR_TOKEN.test(e.taskScheduledEventDetails?.resource ?? ""),
  );
  if (!scheduled) return undefined;
  if (events.some((e) => (e.id ?? 0) > (scheduled.id ?? 0) && TASK_OUTCOMES.test(e.type ?? "")))
    return undefined;
  try {
    const params = JSON.parse(scheduled.taskScheduledEventDetails?.parameters ?? "{}") as {
      Payload?: { taskToken?: unknown };
    };
    const token = params.Payload?.taskToken;
    return typeof token === "string" && token ? token : undefined;
  } catch {
    return undefined;
  }
}

async function tokenOf(arn: string): Promise<string | undefined> {
  const events: HistoryEvent[] = [];
  const pages = paginateGetExecutionHistory(
    { client: sfnClient(regionOfArn(arn)) },
    { executionArn: arn, reverseOrder: true, includeExecutionData: true, maxResults: 1000 },
  );
  for await (const page of pages) events.push(...(page.events ?? []));
  return pendingToken(events.sort((a, b) => (a.id ?? 0) - (b.id ?? 0)));
}

/**
 * Answers one Approval with the verified caller: parses the decision, checks the caller against
 * the topology's `approvers`, finds the execution's pending task token and sends the answer.
 * Every refusal is a 4xx with a message saying what to do; the token is never returned.
 */
export async function answerApproval(request: FunctionUrlRequest): Promise<FunctionUrlResponse> {
  const principal = request.requestContext?.authorizer?.iam?.userArn;
  if (!principal)
    return reply(403, { message: "no verified caller: call this URL signed with SigV4 (AWS_IAM)" });
  const allowed = runtimeTopology().approvers;
  if (allowed && !allowed.includes(principal))
    return reply(403, {
      message: `${principal} may not approve or reject failovers of ${runtimeTopology().platform}: the topology's approvers are ${allowed.join(", ")}`,
    });
  let decision: Decision;
  try {
    const text = request.isBase64Encoded
      ? Buffer.from(request.body ?? "", "base64").toString("utf8")
      : (request.body ?? "");
    const parsed = DecisionSchema.safeParse(JSON.parse(text || "null"));
    if (!parsed.success)
      return reply(400, {
        message: `bad decision: ${parsed.error.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ")}`,
      });
    decision = parsed.data;
  } catch {
    return reply(400, { message: "bad decision: the body is not JSON" });
  }
  const machine = process.env.STATE_MACHINE_ARN ?? "";
  const prefix = `${machine.replace(":stateMachine:", ":execution:")}:`;
  if (!machine || !decision.executionArn.startsWith(prefix))
    return reply(400, {
      message: `${decision.executionArn} is not an execution of this orchestrator's state machine ${machine}`,
    });
  const arn = decision.executionArn;
  try {
    const token = await tokenOf(arn);
    if (!token) return reply(409, { message: `${arn} is not waiting for approval` });
    registerSecret(token);
    const client = sfnClient(regionOfArn(arn));
    if (decision.decision === "approve")
      await client.send(
        new SendTaskSuccessCommand({
          taskToken: token,
          output: JSON.stringify({ approvedBy: decision.by, principal }),
        }),
      );
    else
      await client.send(
        new SendTaskFailureCommand({
          taskToken: token,
          error: "ApprovalRejected",
          cause: `rejected by ${decision.by} (verified principal ${principal}): ${decision.reason}`,
        }),
      );
  } catch (e) {
    const failure = isFailoverError(e) ? e : awsError(e, `answering ${arn}`, UnexpectedError);
    const name = (e as { name?: string }).name;
    if (name === "ExecutionDoesNotExist" || name === "TaskTimedOut" || name === "TaskDoesNotExist")
      return reply(409, { message: redact(`${arn}: ${describe(e)}`) });
    throw failure;
  }
  return reply(200, {
    executionArn: arn,
    decision: decision.decision,
    by: decision.by,
    principal,
  });
}
