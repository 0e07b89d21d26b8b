/**
 * The sandbox's time model: how long each service takes on AWS, in AWS seconds, and one scale
 * factor that turns AWS seconds into the milliseconds the sandbox really waits (`scale` 0.01:
 * 100 s on AWS take 1 s here). The emulators run their delays through it, the local Step
 * Functions runner scales the ASL's Wait states and Retry intervals by the same factor, and the
 * handlers' own compute is not scaled: it is real. Without a time model the sandbox keeps its
 * compressed defaults (drills in seconds).
 *
 * Defaults come from /work/shared/reference/cloud-facts.md; each one can be overridden.
 */

/** Service durations in AWS seconds, and the factor that maps them to sandbox time. */
export interface TimeModel {
  /** Sandbox seconds per AWS second (0 < scale <= 1). */
  scale: number;
  argocd: {
    /**
     * From the moment Argo CD compares an app with the new commit to Synced and Healthy: the
     * sync operation and the rollout. Not in cloud-facts (it depends on the workloads); 20 s is
     * a small stateless Deployment's rollout.
     */
    syncSeconds: number;
    /** The controller's Git poll (`timeout.reconciliation`, default 120 s) ... */
    gitPollSeconds: number;
    /** ... plus up to this jitter (`timeout.reconciliation.jitter`, default 60 s), per app. */
    gitPollJitterSeconds: number;
  };
  aurora: {
    /** SwitchoverGlobalCluster: "promotion usually completes in under a minute". */
    switchoverSeconds: number;
    /** FailoverGlobalCluster with AllowDataLoss. */
    failoverSeconds: number;
  };
  globalAccelerator: {
    /** Traffic follows a dial change in roughly 30 s. */
    convergeSeconds: number;
  };
  route53: {
    /** Standard health checkers probe every 30 s ... */
    checkerIntervalSeconds: number;
    /** ... and a check is unhealthy after 3 failures ... */
    failureThreshold: number;
    /** ... which the CloudWatch alarm sees after its period (60 s) ... */
    alarmPeriodSeconds: number;
    /** ... and EventBridge delivers to the trigger. */
    eventDeliverySeconds: number;
  };
  stepFunctions: {
    /**
     * Modelled per state transition of a Standard workflow (not measured here: the local engine
     * has none): used by bench/rto.ts to charge each transition's overhead.
     */
    transitionSeconds: number;
    /** Modelled per Lambda invoke of a Task state (a warm invoke's round trip). */
    lambdaInvokeSeconds: number;
  };
}

/** The facts of cloud-facts.md at a scale of 0.01 (100 s on AWS are 1 s in the sandbox). */
export const DEFAULT_TIME_MODEL: TimeModel = {
  scale: 0.01,
  argocd: { syncSeconds: 20, gitPollSeconds: 120, gitPollJitterSeconds: 60 },
  aurora: { switchoverSeconds: 60, failoverSeconds: 60 },
  globalAccelerator: { convergeSeconds: 30 },
  route53: {
    checkerIntervalSeconds: 30,
    failureThreshold: 3,
    alarmPeriodSeconds: 60,
    eventDeliverySeconds: 1,
  },
  stepFunctions: { transitionSeconds: 0.05, lambdaInvokeSeconds: 0.03 },
};

/** Sandbox milliseconds for `awsSeconds` under `model`. */
export function sandboxMs(model: TimeModel, awsSeconds: number): number {
  return awsSeconds * 1000 * model.scale;
}

/** AWS seconds for `sandboxMs` of sandbox time under `model`. */
export function awsSeconds(model: TimeModel, ms: number): number {
  return ms / 1000 / model.scale;
}

/** Failure to alarm-triggered StartExecution: checker interval x threshold + alarm period + delivery. */
export function detectionSeconds(model: TimeModel): number {
  const r = model.route53;
  return (
    r.checkerIntervalSeconds * r.failureThreshold + r.alarmPeriodSeconds + r.eventDeliverySeconds
  );
}

/**
 * A model with `overrides` applied: `scale` and `<group>.<field>=<seconds>` pairs
 * (`aurora.switchoverSeconds=90`). Throws a RangeError naming the bad key or value.
 */
export function timeModel(
  scale: number = DEFAULT_TIME_MODEL.scale,
  overrides: Record<string, number> = {},
): TimeModel {
  if (!(scale > 0 && scale <= 1))
    throw new RangeError(`time scale must be > 0 and <= 1, got ${scale}`);
  const model = structuredClone(DEFAULT_TIME_MODEL);
  model.scale = scale;
  for (const [key, value] of Object.entries(overrides)) {
    const [group, field] = key.split(".");
    const section = (model as unknown as Record<string, Record<string, number>>)[group ?? ""];
    if (!section || !field || !(field in section))
      throw new RangeError(
        `unknown time model key "${key}"; known: ${Object.entries(DEFAULT_TIME_MODEL)
          .filter(([, v]) => typeof v === "object")
          .flatMap(([g, v]) => Object.keys(v as object).map((f) => `${g}.${f}`))
          .join(", ")}`,
      );
    if (!(Number.isFinite(value) && value >= 0))
      throw new RangeError(`time model ${key} must be a number of seconds >= 0, got ${value}`);
    section[field] = value;
  }
  return model;
}
