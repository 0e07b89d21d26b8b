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
  { state: "Fence", dir: "fence", timeoutSeconds: 120, secrets: ["spoke", "argocd", "git-read"] },
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
  /** One spoke API call (steps.ts SPOKE_TIMEOUT_MS, capacity.ts GATE_TIMEOUT_MS). */
  spokeCallSeconds: 10,
  /** Fence's window (steps.ts FENCE_SECONDS): fixed, not a topology timeout. */
  fenceWindowSeconds: 120,
  /** A Git commit and push (CommitRetarget's catalog timeout): what Compensate's revert may take. */
  gitCommitSeconds: 120,
} as const;

/** Lambda's longest timeout. */
export const MAX_LAMBDA_TIMEOUT_SECONDS = 900;

/** A poller's longest invocation, and the step deadline (a topology timeout) it must fit in. */
export interface PollBudget {
  /** Worst case of one invocation, rounded up to 10 s. */
  seconds: number;
  /** What it adds up, for messages. */
  parts: string[];
  /**
   * The step's deadline: `timeouts.<key>` in the topology, `capacity.gateSeconds` (the capacity
   * gate), or `FENCE_SECONDS` (Fence's fixed window, steps.ts).
   */
  deadlineKey: keyof Topology["timeouts"] | "capacity.gateSeconds" | "FENCE_SECONDS";
  /** That deadline for this topology, in seconds. */
  deadlineSeconds: number;
}

/** Where a budget's deadline is set, for messages: `timeouts.argoSyncSeconds`, `capacity.gateSeconds`, ... */
export function deadlineName(b: Pick<PollBudget, "deadlineKey">): string {
  return b.deadlineKey.includes(".") || b.deadlineKey === "FENCE_SECONDS"
    ? b.deadlineKey
    : `timeouts.${b.deadlineKey}`;
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
 *  - AwaitCapacity (with capacity in the topology): the target spokes' tokens, then on every
 *    spoke at once, per namespace of capacity.apps, the Deployment list and (with an HPA there)
 *    the HPA list, then the Pending-pod lookups (at once, capacity.ts PENDING_LOOKUPS per spoke).
 *  - Fence: traffic and Aurora at once; the hubs' tokens; per old region at once its spokes'
 *    tokens, their API servers (checks at once) and Argo CD (its first poll refreshes; with
 *    git.readCredentialsSecretArn, commits on top of the demote commit judged as AwaitArgoSync
 *    does); a fence record per old region in turn.
 *  - Compensate, its longest decision: Aurora and traffic at once, the retarget commit from the
 *    audit trail, Argo CD on the writer's region (and commits on top: the Git token and reads),
 *    its capacity (as AwaitCapacity's check), a traffic move refused, its health check, then the
 *    writer switched back (DescribeGlobalClusters per region, the switchover call); or its other
 *    long path, reverting the first commit (the Git token and a commit, CommitRetarget's timeout).
 * Each also appends one audit event (own-region DynamoDB) and stops early before the timeout.
 */
export function pollBudget(state: TaskState, t: Topology): PollBudget | undefined {
  const {
    awsCallSeconds: call,
    auroraCallSeconds,
    earlyTimeoutSeconds,
    spokeCallSeconds: spoke,
  } = CODE_BOUNDS;
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
      deadlineSeconds: t.timeouts.argoSyncSeconds,
    };
  }
  if (state === "AwaitAurora") {
    const regions = Object.keys(t.regions).length;
    return {
      seconds: total([sts, regions * auroraCallSeconds, call, earlyTimeoutSeconds]),
      parts: [`${regions} region(s) x ${auroraCallSeconds} s DescribeGlobalClusters`, ...common],
      deadlineKey: "auroraSeconds",
      deadlineSeconds: t.timeouts.auroraSeconds,
    };
  }
  if (state === "VerifyTraffic") {
    return {
      seconds: total([sts, call, call, earlyTimeoutSeconds]),
      parts: [`${call} s ${t.traffic.mode} health read`, ...common],
      deadlineKey: "trafficVerifySeconds",
      deadlineSeconds: t.timeouts.trafficVerifySeconds,
    };
  }
  const regions = Object.keys(t.regions).length;
  const hubs = t.argocd.hubs.length;
  const perCall = t.argocd.requestTimeoutSeconds;
  // Aurora (each region in turn) and traffic (one read), read at once.
  const auroraAndTraffic = Math.max(regions * auroraCallSeconds, call);
  const capacity = capacityCheck(t, call, spoke);
  if (state === "AwaitCapacity") {
    if (!t.capacity) return undefined;
    return {
      seconds: total([sts, capacity.seconds, call, earlyTimeoutSeconds]),
      parts: [capacity.part, ...common],
      deadlineKey: "capacity.gateSeconds",
      deadlineSeconds: t.capacity.gateSeconds,
    };
  }
  if (state === "Fence") {
    const argo = hubs * 3 * perCall;
    // Commits on top of the demote commit: the read-only Git token, then the Git reads as a whole.
    const judge = t.git.readCredentialsSecretArn ? [2 * call, perCall] : [];
    return {
      seconds: total([
        sts,
        auroraAndTraffic,
        2 * call,
        2 * call + spoke,
        argo,
        ...judge,
        (regions - 1) * call,
        call,
        earlyTimeoutSeconds,
      ]),
      parts: [
        `${auroraAndTraffic} s Aurora (${regions} region(s) x ${auroraCallSeconds} s) and traffic at once`,
        `${2 * call} s hub tokens`,
        `${2 * call} s spoke tokens + ${spoke} s API servers (old regions at once)`,
        `${hubs} hub(s) x 3 calls x ${perCall} s argocd.requestTimeoutSeconds`,
        ...(judge.length
          ? [`${2 * call} s Git read token + ${perCall} s Git reads (commits on top)`]
          : []),
        `${regions - 1} x ${call} s fence records`,
        ...common,
      ],
      deadlineKey: "FENCE_SECONDS",
      deadlineSeconds: CODE_BOUNDS.fenceWindowSeconds,
    };
  }
  if (state === "Compensate") {
    const judge = 2 * call + perCall;
    // Argo CD read live (no refresh, no sync): the application list and the cluster names.
    const switchBack = [
      call,
      2 * call + hubs * 2 * perCall + judge,
      ...(t.capacity ? [capacity.seconds] : []),
      call,
      regions * auroraCallSeconds + call,
    ];
    const revert = [2 * call, CODE_BOUNDS.gitCommitSeconds];
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const longest = sum(switchBack) >= sum(revert);
    return {
      seconds: total([
        sts,
        auroraAndTraffic,
        ...(longest ? switchBack : revert),
        call,
        earlyTimeoutSeconds,
      ]),
      parts: [
        `${auroraAndTraffic} s Aurora and traffic at once`,
        ...(longest
          ? [
              `${call} s audit trail read (the retarget commit)`,
              `${2 * call} s hub tokens + ${hubs} hub(s) x 2 calls x ${perCall} s + ${judge} s commits on top (Git token and reads)`,
              ...(t.capacity ? [capacity.part] : []),
              `${call} s health check`,
              `${regions} region(s) x ${auroraCallSeconds} s DescribeGlobalClusters + ${call} s switchover`,
            ]
          : [`${2 * call} s Git token + ${CODE_BOUNDS.gitCommitSeconds} s revert commit`]),
        ...common,
      ],
      deadlineKey: "auroraSeconds",
      deadlineSeconds: t.timeouts.auroraSeconds,
    };
  }
  return undefined;
}

/** One check of the target's capacity (capacity.ts checkCapacity): its worst case and its line. */
function capacityCheck(
  t: Topology,
  call: number,
  spoke: number,
): { seconds: number; part: string } {
  const apps = t.capacity?.apps ?? [];
  const namespaces = new Set(apps.map((a) => a.namespace)).size;
  const withHpa = new Set(apps.filter((a) => a.hpa).map((a) => a.namespace)).size;
  const lists = namespaces + withHpa;
  return {
    seconds: 2 * call + lists * spoke + spoke,
    part: `${2 * call} s spoke tokens + ${lists} list(s) x ${spoke} s (Deployments, HPAs per namespace) + ${spoke} s Pending-pod lookups (spokes at once)`,
  };
}

/** How many distinct roles in other accounts a poller may assume in one invocation. */
function assumedRoles(state: TaskState, t: Topology): number {
  const regions = Object.values(t.regions);
  const aurora = regions.map((r) => r.aurora.roleArn ?? t.aurora.roleArn);
  const traffic =
    t.traffic.mode === "global-accelerator"
      ? regions.map((r) => r.globalAccelerator?.roleArn)
      : regions.map((r) => r.route53.roleArn);
  const roles =
    state === "AwaitArgoSync" || state === "AwaitCapacity"
      ? [t.secrets?.roleArn]
      : state === "AwaitAurora"
        ? aurora
        : state === "VerifyTraffic"
          ? traffic
          : state === "Fence"
            ? [t.secrets?.roleArn, ...aurora, ...traffic]
            : state === "Compensate"
              ? [
                  t.secrets?.roleArn,
                  ...aurora,
                  ...traffic,
                  ...regions.map((r) => r.route53.roleArn),
                ]
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
