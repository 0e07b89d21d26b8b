/**
 * Operator notifications over SNS (`TOPIC_ARN`): the outcome of every failover, and the
 * approval request. The approval's task token is never sent or logged: `gitops-failover
 * approve <execution>` reads it from the execution history, which needs states:* rights.
 */
import { PublishCommand } from "@aws-sdk/client-sns";
import { awsError, snsClient } from "./aws.ts";
import type { FailoverInput } from "./config.ts";
import { UnexpectedError } from "./errors.ts";
import { registerSecret } from "./redact.ts";
import type { ReportSummary } from "./report.ts";
import type { ExecutionRef, FailoverState, Plan } from "./state.ts";

async function publish(subject: string, message: string): Promise<boolean> {
  const topic = process.env.TOPIC_ARN;
  if (!topic) return false;
  try {
    await snsClient().send(
      new PublishCommand({ TopicArn: topic, Subject: subject.slice(0, 99), Message: message }),
    );
  } catch (e) {
    throw awsError(e, `publishing to ${topic}`, UnexpectedError);
  }
  return true;
}

/** Notify: one message saying how the failover ended and where the report is. */
export async function notifyStep(
  state: Partial<FailoverState> & { report?: ReportSummary },
): Promise<{ published: boolean }> {
  const target = state.plan?.targetRegion ?? state.input?.targetRegion ?? "?";
  const r = state.report;
  const failed = r?.status === "FAILED" || !!state.error;
  const outcome = state.input?.dryRun
    ? "dry run (nothing changed)"
    : failed
      ? "FAILED"
      : "succeeded";
  const subject = `[gitops-failover] failover to ${target} ${outcome}`;
  const lines = [
    subject,
    `Execution: ${state.execution?.id ?? "?"}`,
    ...(r?.failedStep
      ? [`Failed step: ${r.failedStep}: ${r.error?.name}: ${r.error?.message}`]
      : []),
    ...(r?.rtoSeconds != null ? [`RTO: ${r.rtoSeconds}s`] : []),
    ...(r?.changed.length ? ["Changed:", ...r.changed.map((c) => `- ${c}`)] : ["Changed: nothing"]),
    `Report: ${r?.location ?? "not written"}`,
  ];
  return { published: await publish(subject, lines.join("\n")) };
}

/** Approval: asks operators to approve or reject; Step Functions waits for the task token. */
export async function approvalStep(event: {
  taskToken: string;
  execution: ExecutionRef;
  input: FailoverInput;
  plan: Plan;
}): Promise<{ requested: boolean }> {
  registerSecret(event.taskToken);
  const subject = `[gitops-failover] approve failover to ${event.plan.targetRegion}?`;
  const message = [
    subject,
    `Requested by ${event.input.requestedBy}: ${event.input.reason}`,
    `Mode: ${event.input.mode}${event.input.allowDataLoss ? " (data loss allowed)" : ""}`,
    "Plan:",
    ...event.plan.actions.map((a) => `- ${a}`),
    "",
    // The execution ARN names its state machine and region: these commands work as pasted.
    `Approve: npx gitops-failover approve ${event.execution.id}`,
    `Reject:  npx gitops-failover reject ${event.execution.id} --reason "..."`,
    `Unanswered, the failover fails after ${Math.round(event.plan.approvalTimeoutSeconds / 60)} min and nothing is changed.`,
  ].join("\n");
  return { requested: await publish(subject, message) };
}
