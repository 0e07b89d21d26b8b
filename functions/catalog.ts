/**
 * The workflow's Lambda functions: one per ASL Task state, each in functions/<dir>/handler.ts.
 * CDK, the local runner, the IAM test and the bundle bench all read this list, and the ASL
 * names each function's ARN as `${<state>FunctionArn}`.
 */
import type { Topology } from "./lib/config.ts";

/**
 * The kinds of secret in the topology: the Git credentials, the Argo CD hubs' tokens, the spokes'
 * tokens, and the hub clusters' read-only tokens (readiness reads their Velero backups).
 */
export type SecretKind = "git" | "argocd" | "spoke" | "backup" | "git-read";

interface StepFunction {
  state: string;
  dir: string;
  /** Lambda timeout, or its floor for a poller whose worst case depends on the topology (timeoutOf). */
  timeoutSeconds: number;
  /**
   * The secrets the step's code reads (functions/lib/steps.ts, report.ts): its role may read
   * only these. test/infra/iam.test.ts checks the list against what the code reaches.
   */
  secrets: readonly SecretKind[];
}

export const FUNCTIONS = [
  /**
   * Reads Git (the before-snapshot): the Git secret with a fallback, a clone, three AWS services,
   * the lock; and the source's spokes (capacity parity's live figure).
   */
  { state: "Plan", dir: "plan", timeoutSeconds: 120, secrets: ["git", "spoke"] },
  { state: "Approval", dir: "approval", timeoutSeconds: 30, secrets: [] },
  /** A failback's pre-checks too: readiness's checks of the region (its spoke, the Argo CD hubs). */
  { state: "VerifySpoke", dir: "verify-spoke", timeoutSeconds: 60, secrets: ["spoke", "argocd"] },
  { state: "CommitRetarget", dir: "commit-retarget", timeoutSeconds: 120, secrets: ["git"] },
  /** Argo CD, and Git read-only (git.readCredentialsSecretArn) to judge commits on top. */
  {
    state: "AwaitArgoSync",
    dir: "await-argo-sync",
    timeoutSeconds: 120,
    secrets: ["argocd", "git-read"],
  },
  /** Capacity parity's gate: reads the target's Deployments, HPAs and Pending pods. */
  { state: "AwaitCapacity", dir: "await-capacity", timeoutSeconds: 60, secrets: ["spoke"] },
  { state: "PromoteAurora", dir: "promote-aurora", timeoutSeconds: 60, secrets: [] },
  { state: "AwaitAurora", dir: "await-aurora", timeoutSeconds: 30, secrets: [] },
  { state: "ShiftTraffic", dir: "shift-traffic", timeoutSeconds: 60, secrets: [] },
  { state: "VerifyTraffic", dir: "verify-traffic", timeoutSeconds: 30, secrets: [] },
  /** The second commit of a two-phase retarget; reads the dials first. */
  { state: "DemoteSource", dir: "demote-source", timeoutSeconds: 120, secrets: ["git"] },
  /** After DemoteSource: the old region(s) cannot serve or write; one check per poll. */
  { state: "Fence", dir: "fence", timeoutSeconds: 120, secrets: ["spoke", "argocd"] },
  /**
   * After a failure before traffic moved: Aurora, traffic, an Argo CD check, the target's
   * capacity (users never follow the writer onto a target short of its floors) and a Git commit.
   */
  {
    state: "Compensate",
    dir: "compensate",
    timeoutSeconds: 120,
    secrets: ["git", "argocd", "spoke"],
  },
  /** Report and RecordFailure read Git (the after-snapshot, like Plan's), then write the report. */
  { state: "Report", dir: "report", timeoutSeconds: 120, secrets: ["git"] },
  { state: "RecordFailure", dir: "record-failure", timeoutSeconds: 120, secrets: ["git"] },
  { state: "Notify", dir: "notify", timeoutSeconds: 30, secrets: [] },
] as const satisfies readonly StepFunction[];

export type FunctionSpec = (typeof FUNCTIONS)[number];
export type TaskState = FunctionSpec["state"];

/** The ASL placeholder for a function's ARN. */
export function placeholderOf(state: TaskState): string {
  return `${state}FunctionArn`;
}

/**
 * The bounds the functions' code puts on what it waits for; test/infra/timeouts.test.ts reads
 * them back from the code so the two cannot drift apart.
 */
export const CODE_BOUNDS = {
  /** One AWS SDK call (functions/lib/aws.ts): 3 attempts of a 3 s connect plus a 10 s request. */
  awsCallSeconds: 3 * (3 + 10),
  /** One DescribeGlobalClusters per region (aurora.ts): one 10 s abort signal over its attempts. */
  auroraCallSeconds: 10,
  /** middy stops a handler this long before Lambda's timeout (middleware.ts). */
  earlyTimeoutSeconds: 2,
} as const;

/** Lambda's longest timeout. */
export const MAX_LAMBDA_TIMEOUT_SECONDS = 900;

/** A poller's longest invocation, and the step deadline (a topology timeout) it must fit in. */
export interface PollBudget {
  /** Worst case of one invocation, rounded up to 10 s. */
  seconds: number;
  /** What it adds up, for messages. */
  parts: string[];
  /** `timeouts.<key>` in the topology: the step's deadline. */
  deadlineKey: keyof Topology["timeouts"];
}

const roundUp = (s: number) => Math.ceil(s / 10) * 10;

/**
 * The worst case of one invocation of each poller, from the topology: every bounded call it may
 * make runs into its bound. Other functions have none here (their catalog timeout holds).
 *  - AwaitArgoSync, per hub tried in order (a hub that does not answer passes to the next): the
 *    application list, the cluster names, the first poll's refresh phase (bounded as a whole) and,
 *    with argocd.sync, the sync requests; each up to argocd.requestTimeoutSeconds. Before them the
 *    hubs' tokens (in parallel): the replica read, then the primary region's. With
 *    git.readCredentialsSecretArn, then the judgement of commits on top of the retarget: that
 *    token, and its Git reads bounded as a whole by argocd.requestTimeoutSeconds.
 *  - AwaitAurora: DescribeGlobalClusters in each region in turn until one answers.
 *  - VerifyTraffic: one Global Accelerator or Route 53 read.
 * Each also appends one audit event (own-region DynamoDB) and stops early before the timeout.
 */
export function pollBudget(state: TaskState, t: Topology): PollBudget | undefined {
  const { awsCallSeconds: call, auroraCallSeconds, earlyTimeoutSeconds } = CODE_BOUNDS;
  const assumed = assumedRoles(state, t);
  // A role in another account is assumed (one STS call) the first time an execution uses it.
  const common = [
    ...(assumed ? [`${assumed} x ${call} s AssumeRole`] : []),
    `${call} s audit event`,
    `${earlyTimeoutSeconds} s early stop`,
  ];
  const sts = assumed * call;
  const total = (parts: number[]) => roundUp(parts.reduce((a, b) => a + b, 0));
  if (state === "AwaitArgoSync") {
    const hubs = t.argocd.hubs.length;
    const calls = 3 + (t.argocd.sync ? 1 : 0);
    const perCall = t.argocd.requestTimeoutSeconds;
    // Commits on top of the retarget: the read-only Git token, then the Git reads as a whole.
    const judge = t.git.readCredentialsSecretArn ? [2 * call, perCall] : [];
    return {
      seconds: total([sts, 2 * call, hubs * calls * perCall, ...judge, call, earlyTimeoutSeconds]),
      parts: [
        `${2 * call} s hub tokens (replica, then primary region)`,
        `${hubs} hub(s) x ${calls} calls x ${perCall} s argocd.requestTimeoutSeconds`,
        ...(judge.length
          ? [`${2 * call} s Git read token + ${perCall} s Git reads (commits on top)`]
          : []),
        ...common,
      ],
      deadlineKey: "argoSyncSeconds",
    };
  }
  if (state === "AwaitAurora") {
    const regions = Object.keys(t.regions).length;
    return {
      seconds: total([sts, regions * auroraCallSeconds, call, earlyTimeoutSeconds]),
      parts: [`${regions} region(s) x ${auroraCallSeconds} s DescribeGlobalClusters`, ...common],
      deadlineKey: "auroraSeconds",
    };
  }
  if (state === "VerifyTraffic") {
    return {
      seconds: total([sts, call, call, earlyTimeoutSeconds]),
      parts: [`${call} s ${t.traffic.mode} health read`, ...common],
      deadlineKey: "trafficVerifySeconds",
    };
  }
  return undefined;
}

/** How many distinct roles in other accounts a poller may assume in one invocation. */
function assumedRoles(state: TaskState, t: Topology): number {
  const regions = Object.values(t.regions);
  const roles =
    state === "AwaitArgoSync"
      ? [t.secrets?.roleArn]
      : state === "AwaitAurora"
        ? regions.map((r) => r.aurora.roleArn ?? t.aurora.roleArn)
        : state === "VerifyTraffic"
          ? t.traffic.mode === "global-accelerator"
            ? regions.map((r) => r.globalAccelerator?.roleArn)
            : regions.map((r) => r.route53.roleArn)
          : [];
  return new Set(roles.filter((r) => r !== undefined)).size;
}

/**
 * A function's Lambda timeout for this topology: its catalog timeout, raised to its poll budget
 * (capped at Lambda's 900 s). Whether that fits the step's deadline is the synth's check
 * (infra/lib/settings.ts), which refuses a topology where it does not.
 */
export function timeoutOf(spec: FunctionSpec, t: Topology): number {
  const budget = pollBudget(spec.state, t);
  return Math.min(MAX_LAMBDA_TIMEOUT_SECONDS, Math.max(spec.timeoutSeconds, budget?.seconds ?? 0));
}
