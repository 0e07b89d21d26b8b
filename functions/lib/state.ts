/**
 * The shape of the execution state as it flows through statemachine/failover.asl.json.
 * Each step writes one key (its ASL `ResultPath`); the state stays small (well under the
 * 256 KiB Step Functions limit) because steps store summaries, never whole API answers.
 */
import type { FailoverInput } from "./config.ts";
import type { ErrorData } from "./errors.ts";

import type { TargetReadiness } from "./readiness.ts";

export type StepStatus = "SUCCEEDED" | "IN_PROGRESS" | "FAILED";

export interface ExecutionRef {
  id: string;
  name: string;
  startTime: string;
}

/** What the platform looks like at one moment: the before/after of a failover. */
export interface PlatformSnapshot {
  /** The region Git says is active (every retarget edit rendered for it matches), if any. */
  activeRegion: string | null;
  gitHead: string;
  auroraWriterRegion: string | null;
  trafficDials: Record<string, number>;
}

export interface Plan {
  sourceRegion: string | null;
  targetRegion: string;
  before: PlatformSnapshot;
  /** Which parts still need work; all false means already on target. */
  needs: { retarget: boolean; aurora: boolean; traffic: boolean };
  noop: boolean;
  approvalTimeoutSeconds: number;
  /** What would happen, in order, for the dry-run output and the report. */
  actions: string[];
  /** The target's latest readiness evaluation and its age, when one is stored. */
  readiness?: TargetReadiness;
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
}

export interface SpokeResult {
  status: "SUCCEEDED";
  spokes: { spoke: string; readyNodes: number; checks: number }[];
}

export interface RetargetResultState {
  status: "SUCCEEDED";
  skipped: boolean;
  sha: string;
  previousSha: string;
  attempts: number;
  changes: { file: string; path: string; from: unknown; to: unknown }[];
  subject: string;
}

export interface ArgoProgress extends PollProgress {
  hub?: string;
  revision?: string;
  total?: number;
  done?: number;
  pending?: { name: string; reason: string }[];
}

export interface PromotionState {
  status: "SUCCEEDED";
  skipped: boolean;
  action: "none" | "switchover" | "failover";
  calledIn?: string;
  rpoLagSeconds?: number;
  writerBefore: string | null;
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
  changes: { region: string; from: number; to: number }[];
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

export interface FailoverState {
  execution: ExecutionRef;
  input: FailoverInput;
  plan: Plan;
  approval?: { approvedBy?: string };
  spoke?: SpokeResult;
  retarget?: RetargetResultState;
  argo?: ArgoProgress;
  promotion?: PromotionState;
  aurora?: AuroraProgress;
  converge?: {
    retarget: RetargetResultState;
    argo: ArgoProgress;
    promotion: PromotionState;
    aurora: AuroraProgress;
  };
  traffic?: TrafficProgress;
  trafficHealth?: TrafficHealthProgress;
  error?: CaughtError;
}
