/**
 * The shape of the execution state as it flows through statemachine/failover.asl.json.
 * Each step writes one key (its ASL `ResultPath`); the state stays small (well under the
 * 256 KiB Step Functions limit) because steps store summaries, never whole API answers.
 */
import type { AuroraCapacityPlan, AuroraRaise, AuroraRestoreResult } from "./aurora-capacity.ts";
import type { AwsActor } from "./aws.ts";
import type { AppReadiness, CapacityPlan } from "./capacity.ts";
import type { FailoverInput } from "./config.ts";
import type { ErrorData } from "./errors.ts";
import type { FloorRestore } from "./failback.ts";

import type { TargetReadiness } from "./readiness.ts";

export type StepStatus = "SUCCEEDED" | "IN_PROGRESS" | "FAILED";

export interface ExecutionRef {
  id: string;
  name: string;
  startTime: string;
}

/** What the platform looks like at one moment: the before/after of a failover. */
export interface PlatformSnapshot {
  /** The one region Git says is active (every retarget edit rendered for it matches), if exactly one is. */
  activeRegion: string | null;
  /**
   * Every region Git makes active, and of the others those it has not made passive yet (a
   * two-phase retarget has both the target and the source active until traffic has moved).
   */
  activeRegions: string[];
  /**
   * Regions Git makes passive: every demote edit holds (two-phase retarget), or — with one-commit
   * retarget edits — every region that is not active.
   */
  passiveRegions: string[];
  gitHead: string;
  auroraWriterRegion: string | null;
  /** Aurora's FailoverState while a promotion is under way (absent or null when idle). */
  auroraFailoverState?: string | null;
  trafficDials: Record<string, number>;
}

export interface Plan {
  sourceRegion: string | null;
  targetRegion: string;
  before: PlatformSnapshot;
  /**
   * Which parts still need work; all false means already on target. `demote`: the second commit
   * of a two-phase retarget (the old regions made passive once traffic has left them).
   */
  needs: { retarget: boolean; aurora: boolean; traffic: boolean; demote: boolean };
  /**
   * `sequential` (graceful): the Aurora switchover starts only once the target's apps are Synced
   * and Healthy, so the writer leaves the serving region only when traffic can follow at once.
   * `parallel` (ungraceful): the source is down, so apps and data converge at the same time.
   */
  order: "sequential" | "parallel";
  /** The regions DemoteSource makes passive once traffic is on the target (two-phase only). */
  demoteRegions: string[];
  /** `two-phase` when the topology has demote edits; `one-commit` when the retarget also demotes. */
  retarget: "two-phase" | "one-commit";
  noop: boolean;
  approvalTimeoutSeconds: number;
  /** What would happen, in order, for the dry-run output and the report. */
  actions: string[];
  /** The target's latest readiness evaluation and its age, when one is stored. */
  readiness?: TargetReadiness;
  /**
   * A failback: the failover it undoes (the execution ARN of the newest failover commit, when
   * that failover moved to the region this one leaves). Its pre-checks run in VerifySpoke.
   */
  failback?: {
    undoes: string | null;
    /**
     * The undone failover's capacity values in the region this failback leaves, back to their
     * Git baseline in the commit that makes it passive (DemoteSource; CommitRetarget one-commit).
     */
    floors?: FloorRestore;
  };
  /** Capacity parity: the source's observed capacity (live or stored) and the floors to commit. */
  capacity?: CapacityPlan;
  /** Capacity parity for Aurora: the source writer's ACUs, the target's range, a failback's restore. */
  auroraCapacity?: AuroraCapacityPlan;
}

/** The capacity gate's progress: per app observed, committed and Ready on the target. */
export interface CapacityProgress extends PollProgress {
  skipped?: boolean;
  apps?: AppReadiness[];
  /** When Argo CD first reported the commit Synced and Healthy: the gate's last `gateSeconds` start. */
  settleStartedAt?: string;
  /** Polls of the gate since then. */
  settlePolls?: number;
  /** Seconds of Wait the loop asked for since then. */
  settlePacedSeconds?: number;
}

/** A polling step's memory between invocations: when it began and when it must give up. */
export interface PollProgress {
  status?: StepStatus;
  startedAt?: string;
  deadline?: string;
  polls?: number;
  checkedAt?: string;
  /** Set when the poll window belongs to one traffic stage (a new stage gets a new window). */
  stage?: number;
  error?: ErrorData;
  /** Seconds the loop's Wait waits before the next poll (functions/lib/pace.ts). */
  nextWaitSeconds?: number;
  /** Seconds of Wait asked for in this window so far. */
  pacedSeconds?: number;
}

export interface SpokeResult {
  status: "SUCCEEDED";
  spokes: { spoke: string; readyNodes: number; checks: number }[];
  /** A failback's pre-checks, each `<check>: <what was found>` (all READY, or it was refused). */
  failbackChecks?: string[];
}

export interface RetargetResultState {
  status: "SUCCEEDED";
  skipped: boolean;
  sha: string;
  previousSha: string;
  attempts: number;
  changes: { file: string; path: string; from: unknown; to: unknown }[];
  /** Capacity parity's floors the same commit wrote (old and new per app's value path). */
  floors?: { file: string; path: string; from: unknown; to: unknown }[];
  subject: string;
}

export interface ArgoProgress extends PollProgress {
  hub?: string;
  revision?: string;
  total?: number;
  done?: number;
  pending?: { name: string; reason: string }[];
  /** Commits on top of the retarget commit that apps were accepted at (see gitops judgeRevisions). */
  acceptedRevisions?: string[];
  /** The first poll's Git webhook delivery (`argocd.refresh: webhook`): "delivered" or why not. */
  webhook?: string;
  /** Apps counted done while Progressing (an ungraceful run's capacity parity): a few, and how many. */
  progressing?: string[];
  progressingCount?: number;
}

export interface PromotionState {
  /** DEFERRED: a graceful failover's first Converge pass, before the apps were ready. */
  status: "SUCCEEDED" | "DEFERRED";
  skipped: boolean;
  action: "none" | "switchover" | "failover";
  calledIn?: string;
  rpoLagSeconds?: number;
  writerBefore: string | null;
  /** Who sent the promotion: its account and, in another account, the assumed role's session. */
  actor?: AwsActor;
  /** Capacity parity: the target's MinCapacity before and after the raise (or why it was not). */
  auroraCapacity?: AuroraRaise;
  /** A failback: the MinCapacity the undone failover raised, given back. */
  auroraRestore?: AuroraRestoreResult;
}

export interface AuroraProgress extends PollProgress {
  writerRegion?: string | null;
  failoverState?: string | null;
}

export interface TrafficProgress {
  status: StepStatus;
  skipped: boolean;
  stage: number;
  percent: number;
  complete: boolean;
  /** Each write, with who made it (account, and the assumed role's session when assumed). */
  changes: { region: string; from: number; to: number; actor?: AwsActor }[];
  dials: Record<string, number>;
}

export interface TrafficHealthProgress extends PollProgress {
  healthy?: boolean;
  detail?: string[];
}

/** The error a Catch puts at `$.error`: `Cause` is a message, or Lambda's JSON error document. */
export interface CaughtError {
  Error: string;
  Cause?: string;
}

/** The second commit of a two-phase retarget: the old region(s) made passive. */
export interface DemotionState {
  status: "SUCCEEDED";
  skipped: boolean;
  /** Why there was nothing to commit, when skipped. */
  reason?: string;
  regions: string[];
  sha: string;
  previousSha: string;
  changes: { file: string; path: string; from: unknown; to: unknown }[];
  subject?: string;
}

/** One thing compensation did (or found it could not do), in order. */
export interface CompensationAction {
  at: string;
  action: "move-traffic" | "switch-writer-back" | "revert-commit" | "wait" | "none";
  outcome: "DONE" | "STARTED" | "FAILED" | "NOT_NEEDED";
  detail: string;
}

/** The compensation poller's memory: what it did so far, and what it is waiting for. */
export interface CompensationProgress extends PollProgress {
  actions: CompensationAction[];
  /** Where users and the writer are, as the last poll saw them. */
  servingRegion?: string | null;
  writerRegion?: string | null;
  /** Set once a switchover back was asked for, so it is asked once. */
  switchBackRequested?: boolean;
  /** The commit that undid the first phase, when compensation made one. */
  revertCommit?: { sha: string; subject: string };
}

/** One old region's fence, as the Fence step reports it. */
export interface RegionFenceState {
  region: string;
  fence: "verified" | "pending (unreachable)" | "not fenced";
  detail: string;
  /** What is still live there and the commands that fence it (empty when fenced). */
  live: string[];
  commands: string[];
}

/** The Fence poller: every old region verified, pending (unreachable) or not fenced. */
export interface FenceProgress extends PollProgress {
  skipped: boolean;
  /** The commit whose passive values the old regions' apps must be Synced at. */
  revision: string;
  regions: RegionFenceState[];
}

export interface FailoverState {
  execution: ExecutionRef;
  input: FailoverInput;
  plan: Plan;
  /** The answer an operator sent through SendTaskSuccess, as recorded by the first step after it. */
  /** The Approval answer: the typed name, and the caller the approval entry point verified. */
  approval?: { approvedBy?: string; approvedAt?: string; principal?: string };
  /** Set on the second pass through Converge of a graceful failover: the data branch runs. */
  convergePhase?: "data";
  spoke?: SpokeResult;
  retarget?: RetargetResultState;
  argo?: ArgoProgress;
  capacityGate?: CapacityProgress;
  promotion?: PromotionState;
  aurora?: AuroraProgress;
  converge?: {
    retarget: RetargetResultState;
    argo: ArgoProgress;
    capacityGate?: CapacityProgress;
    promotion: PromotionState;
    aurora: AuroraProgress;
  };
  traffic?: TrafficProgress;
  trafficHealth?: TrafficHealthProgress;
  demotion?: DemotionState;
  fence?: FenceProgress;
  compensation?: CompensationProgress;
  error?: CaughtError;
}
