/**
 * The workflow's Lambda functions: one per ASL Task state, each in functions/<dir>/handler.ts.
 * CDK, the local runner, the IAM test and the bundle bench all read this list, and the ASL
 * names each function's ARN as `${<state>FunctionArn}`.
 */
export const FUNCTIONS = [
  { state: "Plan", dir: "plan", timeoutSeconds: 60 },
  { state: "Approval", dir: "approval", timeoutSeconds: 30 },
  { state: "VerifySpoke", dir: "verify-spoke", timeoutSeconds: 60 },
  { state: "CommitRetarget", dir: "commit-retarget", timeoutSeconds: 120 },
  { state: "AwaitArgoSync", dir: "await-argo-sync", timeoutSeconds: 120 },
  { state: "PromoteAurora", dir: "promote-aurora", timeoutSeconds: 60 },
  { state: "AwaitAurora", dir: "await-aurora", timeoutSeconds: 30 },
  { state: "ShiftTraffic", dir: "shift-traffic", timeoutSeconds: 60 },
  { state: "VerifyTraffic", dir: "verify-traffic", timeoutSeconds: 30 },
  { state: "Report", dir: "report", timeoutSeconds: 60 },
  { state: "RecordFailure", dir: "record-failure", timeoutSeconds: 60 },
  { state: "Notify", dir: "notify", timeoutSeconds: 30 },
] as const;

export type FunctionSpec = (typeof FUNCTIONS)[number];
export type TaskState = FunctionSpec["state"];

/** The ASL placeholder for a function's ARN. */
export function placeholderOf(state: TaskState): string {
  return `${state}FunctionArn`;
}
