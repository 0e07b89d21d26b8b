/**
 * The topology and the execution input: one zod schema each, used by the Lambdas at run time,
 * by the CDK app at synth time and by the CLI's validators, so the three can never disagree.
 */
import { readFileSync, statSync } from "node:fs";
import { LineCounter, parseDocument, visit } from "yaml";
import { z } from "zod";
import { accountOfArn, type RoleAccess } from "./arn.ts";
import { ConfigError, InputValidationError } from "./errors.ts";

/** Files larger than this are refused before parsing: a topology is a few KiB. */
const MAX_CONFIG_BYTES = 1024 * 1024;
/** How many nodes aliases may expand to in all: a topology needs a handful, a bomb billions. */
const MAX_ALIAS_EXPANSION = 100;

const REGION_PATTERN = /^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$/;

const REGION_MESSAGE = "must be an AWS region name such as us-east-2 (not a URL or an ARN)";

/** An AWS region name such as `us-east-2`; never an endpoint or an ARN. */
export const RegionName = z.string().regex(REGION_PATTERN, REGION_MESSAGE);

const SecretArn = z
  .string()
  .regex(
    /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$/,
    "must be a complete Secrets Manager secret ARN, with the 6-character suffix AWS appends (arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf); IAM grants on a partial ARN do not match the secret",
  );

const WebUrl = z
  .url({ protocol: /^https?$/ })
  .refine((u) => !new URL(u).username && !new URL(u).password, {
    message: "must not embed credentials; put them in Secrets Manager and name the secret ARN",
  });

/** Spokes are only ever reached over verified TLS: no opt-out. */
const HttpsUrl = WebUrl.refine((u) => u.startsWith("https://"), {
  message: "must be an https:// URL: the spoke's token would otherwise go out in plain text",
});

/**
 * An endpoint the orchestrator sends a token to: https:// unless the topology says, next to
 * the URL, that this one endpoint may be plain http (`insecure: true`, a lab or the sandbox).
 */
const TokenEndpoint = {
  url: WebUrl,
  /** Allows an http:// url for this endpoint only: its token then crosses the network in clear. */
  insecure: z.boolean().default(false),
};

/** The issue an http:// endpoint without `insecure: true` gets, at its `url`. */
function refuseCleartext(
  endpoint: { url: string; insecure: boolean },
  ctx: z.RefinementCtx,
  what: string,
): void {
  if (endpoint.url.startsWith("https://") || endpoint.insecure) return;
  ctx.addIssue({
    code: "custom",
    path: ["url"],
    message: `must be an https:// URL: ${what} would otherwise go out in plain text; for a lab endpoint that cannot do TLS, set insecure: true next to this url`,
  });
}

/**
 * `git check-ref-format --branch` rules, so a branch name cannot be read as an option, a
 * revision expression (`@{`, `..`, `^`, `~`), another namespace (`refs/...`, `HEAD`) or a lock file.
 */
function refNameProblem(name: string): string | undefined {
  if (/[\p{Cc} ~^:?*[\\]/u.test(name))
    return "may not contain spaces, control characters or any of ~ ^ : ? * [ \\";
  if (name.startsWith("-")) return "may not begin with '-' (it would read as an option)";
  if (name.includes("..")) return "may not contain '..'";
  if (name.includes("@{") || name === "@") return "may not contain '@{' or be '@'";
  if (name.startsWith("/") || name.endsWith("/") || name.includes("//"))
    return "may not begin or end with '/' or contain '//'";
  if (name.endsWith(".")) return "may not end with '.'";
  if (name.split("/").some((c) => c.startsWith(".") || c.endsWith(".lock")))
    return "no '/'-separated part may begin with '.' or end with '.lock'";
  if (name === "HEAD" || name.startsWith("refs/"))
    return "must be the short branch name (main), not HEAD or a full ref such as refs/heads/main";
  return undefined;
}

const BranchName = z
  .string()
  .min(1)
  .max(255)
  .superRefine((name, ctx) => {
    const problem = refNameProblem(name);
    if (problem)
      ctx.addIssue({ code: "custom", message: `is not a valid Git branch name: ${problem}` });
  });

/**
 * The author's name goes into the commit's `author` line: one line, no `<` or `>` that would
 * forge the address after it. (`z.email()` already refuses both in the email.)
 */
const AuthorName = z
  .string()
  .min(1)
  .max(200)
  .refine((v) => !/[\p{Cc}<>]/u.test(v), {
    message:
      "must be one line without '<' or '>' (it is written into the commit's author line before the email)",
  });

const Name = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/,
    "must be a DNS-1123 name (lowercase, digits, '-', '.')",
  );

/**
 * A YAML edit of the GitOps repository: `retarget` edits make `{{targetRegion}}` active, `demote`
 * edits make `{{region}}` passive; the placeholder is replaced in `path` and `value`.
 */
export const RetargetEdit = z.strictObject({
  file: z
    .string()
    .min(1)
    .refine((f) => !f.startsWith("/") && !f.split("/").includes(".."), {
      message: "must be a relative path inside the repository (no leading '/' or '..')",
    })
    // Git itself treats `.git` case-insensitively (core.protectNTFS/HFS): `.GIT/config` too.
    .refine((f) => !f.split("/").some((s) => s.toLowerCase() === ".git"), {
      message:
        "may not be inside .git/: that is the repository's own machinery, not a tracked file",
    })
    // One spelling per file: the edits of a file are applied together, grouped by this string.
    .refine((f) => f.startsWith("/") || f.split("/").every((s) => s !== "" && s !== "."), {
      message:
        "must name the file one way: no './' or '.' segments, '//' or trailing '/' (envs/prod/values.yaml)",
    }),
  path: z
    .string()
    .regex(
      /^[A-Za-z0-9_{}-]+(\.[A-Za-z0-9_{}-]+)*$/,
      "must be a dotted key path such as global.activeRegion",
    ),
  value: z.union([z.string(), z.number(), z.boolean()]),
});
export type RetargetEdit = z.infer<typeof RetargetEdit>;

/**
 * An IAM role in the account that owns a resource, assumed (STS AssumeRole) for every call on
 * that resource. A role ARN names one role: no wildcard, no path tricks, a 12-digit account.
 */
const RoleArn = z
  .string()
  .regex(
    /^arn:aws[a-z-]*:iam::\d{12}:role\/(?:[\w+=,.@-]+\/)*[\w+=,.@-]{1,64}$/,
    "must be an IAM role ARN such as arn:aws:iam::222233334444:role/gitops-failover-network (12-digit account, no wildcard)",
  );

/** The `sts:ExternalId` the role's trust policy requires (AssumeRole's ExternalId rules). */
const ExternalId = z
  .string()
  .regex(/^[\w+=,.@:/-]{2,1224}$/, "must be 2 to 1224 characters of letters, digits and +=,.@:/-");

/**
 * What a resource block may say about its account: the role to assume there (omitted: the
 * function's own role, as in a single-account platform) and the external id its trust requires.
 */
const CrossAccount = {
  roleArn: RoleArn.optional(),
  externalId: ExternalId.optional(),
};

export { accountOfArn, type RoleAccess };

/** The role of a resource block, when it names one. */
export function roleOf(block: { roleArn?: string; externalId?: string } | undefined) {
  if (!block?.roleArn) return undefined;
  const role: RoleAccess = { roleArn: block.roleArn };
  if (block.externalId) role.externalId = block.externalId;
  return role;
}

/** An externalId means nothing without the role it is passed to. */
function externalIdNeedsRole(
  block: { roleArn?: string | undefined; externalId?: string | undefined },
  ctx: z.RefinementCtx,
): void {
  if (block.externalId && !block.roleArn)
    ctx.addIssue({
      code: "custom",
      path: ["externalId"],
      message: "is only passed to AssumeRole: set roleArn (the role in the resource's account) too",
    });
}

/** The role must be in the account the resource's ARN names: AssumeRole elsewhere cannot reach it. */
function sameAccount(
  block: { roleArn?: string | undefined },
  arn: string,
  what: string,
  ctx: z.RefinementCtx,
  path: string[] = ["roleArn"],
): void {
  const roleAccount = block.roleArn && accountOfArn(block.roleArn);
  const resourceAccount = accountOfArn(arn);
  if (roleAccount && resourceAccount && roleAccount !== resourceAccount)
    ctx.addIssue({
      code: "custom",
      path,
      message: `is in account ${roleAccount} but ${what} ${arn} is in account ${resourceAccount}: name the role in the account that owns it`,
    });
}

const SpokeSchema = z.strictObject({
  name: Name,
  /** The cluster name Argo CD knows this spoke by (the cluster Secret's `name`). */
  argocdCluster: z.string().min(1),
  apiServer: HttpsUrl,
  /** PEM of the cluster CA (public); TLS is always verified against it. */
  caData: z.string().includes("-----BEGIN CERTIFICATE-----", {
    message: "must be a PEM certificate (the cluster CA)",
  }),
  tokenSecretArn: SecretArn,
  minReadyNodes: z.int().min(1).default(1),
  namespaces: z.array(Name).default([]),
  secretOperators: z
    .strictObject({
      externalSecrets: z
        .strictObject({ namespaces: z.array(Name).min(1) })
        .optional()
        .describe("ExternalSecrets in these namespaces must all be Ready"),
      sealedSecrets: z
        .strictObject({
          namespace: Name.default("kube-system"),
          deployment: Name.default("sealed-secrets-controller"),
        })
        .optional(),
    })
    .default({}),
});
export type Spoke = z.infer<typeof SpokeSchema>;

const RegionSchema = z.strictObject({
  /** Lower numbers are preferred as failover targets. */
  priority: z.int().min(0),
  spokes: z.array(SpokeSchema).min(1),
  aurora: z
    .strictObject({
      clusterArn: z
        .string()
        .regex(
          /^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:cluster:[A-Za-z0-9-]+$/,
          "must be an RDS DB cluster ARN",
        ),
      /** The role in the cluster's account; absent: `aurora.roleArn`, else the function's own. */
      ...CrossAccount,
    })
    .superRefine((a, ctx) => {
      externalIdNeedsRole(a, ctx);
      sameAccount(a, a.clusterArn, "the cluster", ctx);
    }),
  globalAccelerator: z
    .strictObject({
      endpointGroupArn: z
        .string()
        .regex(
          /^arn:aws[a-z-]*:globalaccelerator::\d{12}:accelerator\/[a-z0-9-]+\/listener\/[a-z0-9]+\/endpoint-group\/[a-z0-9]+$/,
          "must be a Global Accelerator endpoint group ARN",
        ),
      /** The role in the accelerator's account (a network account). */
      ...CrossAccount,
    })
    .superRefine((g, ctx) => {
      externalIdNeedsRole(g, ctx);
      sameAccount(g, g.endpointGroupArn, "the endpoint group", ctx);
    })
    .optional(),
  route53: z
    .strictObject({
      healthCheckId: z
        .string()
        .regex(/^[a-f0-9-]{36}$/, "must be a Route 53 health check id (UUID)"),
      /** `SetIdentifier` of this region's weighted record, when traffic.mode is route53. */
      setIdentifier: z.string().min(1).optional(),
      /** The role in the account that owns the health check (a network account). */
      ...CrossAccount,
    })
    .superRefine(externalIdNeedsRole),
  /** The regional endpoint the health check probes (hostname only). */
  endpoint: z.string().regex(/^[a-z0-9.-]+$/, "must be a hostname"),
});
export type Region = z.infer<typeof RegionSchema>;

/**
 * Where readiness reads a hub's Velero backups: the hub cluster's own Kubernetes API, with a
 * read-only token (`get, list` on backups.velero.io in `namespace`).
 */
const HubBackupSchema = z.strictObject({
  apiServer: HttpsUrl,
  /** PEM of the hub cluster's CA (public); TLS is always verified against it. */
  caData: z.string().includes("-----BEGIN CERTIFICATE-----", {
    message: "must be a PEM certificate (the hub cluster CA)",
  }),
  tokenSecretArn: SecretArn,
  /** The Velero server's namespace, where its Backup objects live. */
  namespace: Name.default("velero"),
  /** The Argo CD namespace a backup must include to count. */
  argocdNamespace: Name.default("argocd"),
  /** The newest Completed backup of the Argo CD namespace must be younger than this. */
  maxAgeHours: z
    .number()
    .positive()
    .max(24 * 31)
    .default(25),
});
export type HubBackup = z.infer<typeof HubBackupSchema>;

const HubSchema = z
  .strictObject({
    name: Name,
    ...TokenEndpoint,
    tokenSecretArn: SecretArn,
    /** PEM CA for a hub with a private certificate; public CAs need nothing. */
    caData: z.string().includes("-----BEGIN CERTIFICATE-----").optional(),
    /** The hub's own recoverability (readiness reads its Velero backups); absent: not checked. */
    backup: HubBackupSchema.optional(),
  })
  .superRefine((hub, ctx) => refuseCleartext(hub, ctx, "the Argo CD token"));
export type Hub = z.infer<typeof HubSchema>;

/**
 * The regions by name. YAML and JSON parsers make `__proto__` an own key, and zod's record
 * skips it without an issue (so it must not replace the output's prototype): checked on the raw
 * map first, so such a region is refused instead of silently dropped.
 */
const RegionMap = z
  .unknown()
  .superRefine((raw, ctx) => {
    if (raw && typeof raw === "object" && Object.hasOwn(raw, "__proto__"))
      ctx.addIssue({
        code: "custom",
        path: ["__proto__"],
        message: REGION_MESSAGE,
      });
  })
  .pipe(
    z.record(RegionName, RegionSchema).refine((r) => Object.keys(r).length >= 2, {
      message: "needs at least two regions",
    }),
  );

/** The state machine's TimeoutSeconds: every deadline in a topology must fit inside it. */
export const EXECUTION_TIMEOUT_SECONDS = 7200;

/** Time left for Plan, VerifySpoke, the stage Waits, Report and retries. */
const MARGIN_SECONDS = 600;

interface TimeoutBudget {
  timeouts: {
    approvalSeconds: number;
    argoSyncSeconds: number;
    auroraSeconds: number;
    trafficVerifySeconds: number;
  };
  traffic: { stages: number[] };
  capacity?: { gateSeconds: number } | undefined;
}

/** The longest an execution can run when every loop uses its whole deadline. */
function worstCaseSeconds(t: TimeoutBudget): number {
  const o = t.timeouts;
  return (
    o.approvalSeconds +
    Math.max(o.argoSyncSeconds + (t.capacity?.gateSeconds ?? 0), o.auroraSeconds) +
    o.trafficVerifySeconds * t.traffic.stages.length +
    MARGIN_SECONDS
  );
}

/**
 * One application's committed capacity (capacity parity): where its floor is written in Git and
 * how it follows the source's observed capacity. `path` names the target with `{{targetRegion}}`.
 */
const CapacityAppSchema = z
  .strictObject({
    /** The Deployment on every spoke (the component an ApplicationSet generates per spoke). */
    deployment: Name,
    namespace: Name,
    /** Its HorizontalPodAutoscaler, when one scales it (its current/desired replicas count too). */
    hpa: Name.optional(),
    file: RetargetEdit.shape.file,
    path: RetargetEdit.shape.path.refine((p) => p.includes("{{targetRegion}}"), {
      message: "must name the target region with {{targetRegion}} (the floor is per region)",
    }),
    /** Percent of the source's observed replicas to commit; the platform default when absent. */
    targetPercent: z.int().min(1).max(1000).optional(),
    /** The floor is never set below `min` nor above `max` replicas per spoke. */
    min: z.int().min(0).default(1),
    max: z.int().min(1).max(10_000).default(1000),
    /**
     * Where the target region's HPA `maxReplicas` is set, in the same file as `path`: a floor
     * (the HPA's `minReplicas`) above it makes the HPA invalid (kube-apiserver refuses
     * maxReplicas below minReplicas), so Plan reads it from Git and acts on `aboveMaxReplicas`.
     */
    maxReplicasPath: RetargetEdit.shape.path
      .refine((p) => p.includes("{{targetRegion}}"), {
        message: "must name the target region with {{targetRegion}} (maxReplicas is per region)",
      })
      .optional(),
    /**
     * A floor above that maxReplicas: `cap` (the default) commits maxReplicas as the floor and
     * says so; `raise` also commits maxReplicas = the floor, in the same commit.
     */
    aboveMaxReplicas: z.enum(["cap", "raise"]).optional(),
  })
  .refine((a) => a.min <= a.max, { message: "min must not be above max", path: ["min"] })
  .refine((a) => !a.aboveMaxReplicas || a.maxReplicasPath, {
    message: "aboveMaxReplicas needs maxReplicasPath (where the region's HPA maxReplicas is set)",
    path: ["aboveMaxReplicas"],
  });
export type CapacityApp = z.infer<typeof CapacityAppSchema>;

/** Aurora capacity units: half steps up to 256, as ServerlessV2ScalingConfiguration takes them. */
const Acu = z
  .number()
  .max(256)
  .refine((n) => Number.isInteger(n * 2), { message: "must be a multiple of 0.5 ACU" });

/**
 * Capacity parity: the target comes up sized for the load it is about to take, by a floor
 * committed in the retarget commit (never by scaling behind Argo CD's back), and a gate that
 * waits for those replicas to be Ready before traffic moves.
 */
const CapacitySchema = z.strictObject({
  /** Percent of the source's observed replicas each app's floor is set to (per app: targetPercent). */
  targetPercent: z.int().min(1).max(1000).default(100),
  /** Percent of the committed replicas that must be Ready before traffic moves. */
  minimumSuccessPercent: z
    .strictObject({
      graceful: z.int().min(1).max(100).default(100),
      /** Lower: the source is down, so a partly sized target is better than none. */
      ungraceful: z.int().min(1).max(100).default(60),
    })
    .default({ graceful: 100, ungraceful: 60 }),
  /**
   * The source's capacity is neither readable live nor stored by readiness: `baseline` commits no
   * floor (the target runs its Git baseline, said loudly in the plan), `refuse` stops in Plan.
   */
  whenSourceUnknown: z.enum(["baseline", "refuse"]).default("baseline"),
  /**
   * The capacity gate's deadlines (polled in Argo CD's loop): pods still Pending this long after
   * its first poll, or floors not Ready this long after Argo CD reported the commit Synced and
   * Healthy, fail it; never later than Argo CD's own deadline.
   */
  gateSeconds: z.int().min(30).max(3600).default(120),
  apps: z.array(CapacityAppSchema).min(1),
  /**
   * Aurora Serverless v2: the source writer's ACUs (CloudWatch ServerlessDatabaseCapacity, its
   * 24-hour maximum) against the target cluster's range. `report` (the default, also when the
   * key is absent) reads and shows
   * them and never modifies a cluster; `raise` also raises the target's MinCapacity to
   * `ceil(targetPercent x observed)` (half-ACU steps, within `min`..`max` and the cluster's
   * MaxCapacity) before the switchover/failover, and a failback restores it; `off` does neither.
   */
  aurora: z
    .strictObject({
      mode: z.enum(["off", "report", "raise"]).default("report"),
      /** Percent of the source's observed ACUs; capacity.targetPercent when absent. */
      targetPercent: z.int().min(1).max(1000).optional(),
      /** The raised MinCapacity is never below `min` nor above `max` ACUs. */
      min: Acu.min(0.5).default(0.5),
      max: Acu.min(1).default(256),
    })
    .refine((a) => a.min <= a.max, { message: "min must not be above max", path: ["min"] })
    .optional(),
});
export type CapacityConfig = z.infer<typeof CapacitySchema>;

const TopologySchema = z
  .strictObject({
    apiVersion: z.literal("gitops-failover/v1"),
    platform: Name,
    git: z
      .strictObject({
        ...TokenEndpoint,
        branch: BranchName.default("main"),
        credentialsSecretArn: SecretArn,
        author: z
          .strictObject({ name: AuthorName, email: z.email() })
          .default({ name: "gitops-failover", email: "gitops-failover@noreply.local" }),
        retarget: z.array(RetargetEdit).min(1),
        /**
         * Two-phase retarget: the edits that make a region passive, committed only once traffic
         * has left it. Absent: the retarget edits themselves demote every other region (one commit).
         */
        demote: z.array(RetargetEdit).min(1).optional(),
        pushAttempts: z.int().min(1).max(10).default(5),
        /**
         * A read-only Git token (same shape as credentialsSecretArn) AwaitArgoSync reads the branch
         * with, to judge commits pushed on top of the retarget commit: the Argo CD poller never
         * holds the push token. Absent: only the retarget commit itself counts as synced.
         */
        readCredentialsSecretArn: SecretArn.optional(),
      })
      .superRefine((git, ctx) => refuseCleartext(git, ctx, "the Git token")),
    argocd: z.strictObject({
      /** Primary first; the rest are standby hubs tried when the one before is unreachable. */
      hubs: z.array(HubSchema).min(1),
      appSelector: z.string().min(1),
      appNamespace: z.string().optional(),
      refresh: z.enum(["hard", "normal", "none", "webhook"]).default("hard"),
      sync: z.boolean().default(false),
      requestTimeoutSeconds: z.int().min(1).max(60).default(20),
      /**
       * `refresh: webhook`: the repository's web URL as the Applications' repoURL names it
       * (argocd-server matches them by host and path); default git.url.
       */
      webhookRepoUrl: z.url({ protocol: /^https?$/ }).optional(),
    }),
    aurora: z
      .strictObject({
        globalClusterIdentifier: z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,62}$/),
        maxRpoSeconds: z.number().min(0).default(5),
        /** The role in the global cluster's account (a data account), for every member without its own. */
        ...CrossAccount,
      })
      .superRefine(externalIdNeedsRole),
    traffic: z
      .strictObject({
        mode: z.enum(["global-accelerator", "route53"]).default("global-accelerator"),
        /** Percent of traffic moved off the other regions per stage; the last must be 100. */
        stages: z
          .array(z.int().min(1).max(100))
          .min(1)
          .default([100])
          .refine((s) => s.at(-1) === 100 && s.every((v, i) => i === 0 || v > (s[i - 1] ?? 0)), {
            message: "must be strictly increasing and end at 100",
          }),
        hostedZoneId: z.string().optional(),
        recordName: z.string().optional(),
        /** The role in the hosted zone's account (traffic.mode route53). */
        ...CrossAccount,
      })
      .superRefine(externalIdNeedsRole),
    timeouts: z
      .strictObject({
        argoSyncSeconds: z.int().min(30).max(3600).default(600),
        auroraSeconds: z.int().min(30).max(3600).default(600),
        trafficVerifySeconds: z.int().min(30).max(1800).default(300),
        approvalSeconds: z.int().min(60).max(3600).default(3600),
      })
      .default({
        argoSyncSeconds: 600,
        auroraSeconds: 600,
        trafficVerifySeconds: 300,
        approvalSeconds: 3600,
      }),
    trigger: z
      .strictObject({
        /** auto: start the failover; approval: start it with the approval gate; notify: SNS only. */
        mode: z.enum(["auto", "approval", "notify"]).default("approval"),
        /** Fraction of Route 53 checkers that must report the region failing to act. */
        corroborationThreshold: z.number().gt(0).max(1).default(0.5),
        /** No automatic failover within this many minutes of the last one. */
        cooldownMinutes: z.int().min(0).default(60),
        /** SSM parameter operators set to "on" to stop automatic failovers without a deploy. */
        killSwitchParameter: z
          .string()
          .regex(
            /^\/[A-Za-z0-9_./-]+$/,
            "must be an SSM parameter name such as /gitops-failover/kill-switch",
          )
          .default("/gitops-failover/kill-switch"),
      })
      .default({
        mode: "approval",
        corroborationThreshold: 0.5,
        cooldownMinutes: 60,
        killSwitchParameter: "/gitops-failover/kill-switch",
      }),
    readiness: z
      .strictObject({
        /** How often each orchestrator region evaluates every failover target. */
        rateMinutes: z.int().min(1).max(1440).default(15),
        /** Bound on one evaluation: a check still running then is UNKNOWN. */
        timeoutSeconds: z.int().min(10).max(600).default(60),
      })
      .default({ rateMinutes: 15, timeoutSeconds: 60 }),
    capacity: CapacitySchema.optional(),
    regions: RegionMap,
    /**
     * The role in the account that holds the platform's secrets: every secret whose ARN names
     * that account is read through it; secrets in other accounts with the function's own role.
     */
    secrets: z.strictObject(CrossAccount).superRefine(externalIdNeedsRole).optional(),
    /**
     * The account the orchestrator is deployed to: the member accounts' roles trust its function
     * roles. Required when any resource names a roleArn.
     */
    orchestratorAccount: z
      .string()
      .regex(/^\d{12}$/, "must be a 12-digit AWS account id")
      .optional(),
    /**
     * Who may approve or reject through the approval entry point: IAM principal ARNs exactly as
     * Lambda reports the verified caller (a role session is `arn:aws:sts::<account>:assumed-role/<role>/<session>`).
     * Absent: anyone the entry point's IAM policy lets call it.
     */
    approvers: z
      .array(
        z
          .string()
          .regex(
            /^arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/-]+$/,
            "must be an IAM principal ARN such as arn:aws:iam::111122223333:user/jane",
          ),
      )
      .min(1, "must name at least one principal (or leave approvers out)")
      .optional(),
  })
  .superRefine((t, ctx) => {
    const named = [
      t.aurora,
      t.traffic,
      t.secrets,
      ...Object.values(t.regions).flatMap((r) => [r.aurora, r.globalAccelerator, r.route53]),
    ].some((block) => block?.roleArn);
    if (named && !t.orchestratorAccount) {
      ctx.addIssue({
        code: "custom",
        path: ["orchestratorAccount"],
        message:
          "is required when a resource names a roleArn: the roles in the other accounts trust the function roles of this account (12 digits)",
      });
    }
    const secretsAccount = t.secrets?.roleArn && accountOfArn(t.secrets.roleArn);
    if (secretsAccount && !secretArns(t).some((arn) => accountOfArn(arn) === secretsAccount)) {
      ctx.addIssue({
        code: "custom",
        path: ["secrets", "roleArn"],
        message: `is in account ${secretsAccount}, but no secret ARN of the topology is: it would never be used`,
      });
    }
    crossAccountProblems(t, ctx);
    const regions = Object.entries(t.regions);
    if (t.traffic.mode === "global-accelerator") {
      for (const [name, r] of regions) {
        if (!r.globalAccelerator) {
          ctx.addIssue({
            code: "custom",
            path: ["regions", name, "globalAccelerator"],
            message: "is required when traffic.mode is global-accelerator",
          });
        }
      }
    } else {
      for (const key of ["hostedZoneId", "recordName"] as const) {
        if (!t.traffic[key]) {
          ctx.addIssue({
            code: "custom",
            path: ["traffic", key],
            message: "is required when traffic.mode is route53",
          });
        }
      }
      for (const [name, r] of regions) {
        if (!r.route53.setIdentifier) {
          ctx.addIssue({
            code: "custom",
            path: ["regions", name, "route53", "setIdentifier"],
            message: "is required when traffic.mode is route53",
          });
        }
      }
    }
    const clusters = regions.flatMap(([, r]) => r.spokes.map((s) => s.argocdCluster));
    const duplicate = clusters.find((c, i) => clusters.indexOf(c) !== i);
    if (duplicate) {
      ctx.addIssue({
        code: "custom",
        path: ["regions"],
        message: `argocdCluster "${duplicate}" is used by two spokes`,
      });
    }
    const budget = worstCaseSeconds(t);
    if (budget > EXECUTION_TIMEOUT_SECONDS) {
      ctx.addIssue({
        code: "custom",
        path: ["timeouts"],
        message: `approval + max(capacity gate + argoSync, aurora) + trafficVerify per stage + margin add up to ${budget}s, over the execution's ${EXECUTION_TIMEOUT_SECONDS}s limit: the execution would time out with no report and no notification; lower them`,
      });
    }
    if (!t.git.retarget.some((e) => `${e.path}${e.value}`.includes("{{targetRegion}}"))) {
      ctx.addIssue({
        code: "custom",
        path: ["git", "retarget"],
        message: "no edit mentions {{targetRegion}}: the commit could not tell regions apart",
      });
    }
    if (t.git.demote && !t.git.demote.some((e) => `${e.path}${e.value}`.includes("{{region}}"))) {
      ctx.addIssue({
        code: "custom",
        path: ["git", "demote"],
        message:
          "no edit mentions {{region}} (the region made passive): the commit could not tell regions apart",
      });
    }
  });
export type Topology = z.infer<typeof TopologySchema>;

/** The small console / CLI input. Region names only, so it cannot point anywhere new. */
export const FailoverInputSchema = z.strictObject({
  targetRegion: RegionName,
  reason: z.string().trim().min(3, "must say why (at least 3 characters)").max(500),
  mode: z.enum(["graceful", "ungraceful"]).default("graceful"),
  dryRun: z.boolean().default(false),
  allowDataLoss: z.boolean().default(false),
  requestedBy: z.string().trim().min(1).max(128).default("console"),
  requireApproval: z.boolean().default(false),
  /** When the failure was detected (the alarm's time): RTO is measured from it. */
  detectedAt: z.iso.datetime({ offset: true }).optional(),
  /** The region an alarm saw fail: Plan does nothing unless it is the one serving traffic. */
  failedRegion: RegionName.optional(),
  /**
   * A failback: a graceful failover back to the region an earlier failover left, behind the
   * failback pre-checks in VerifySpoke (spoke ready, apps Synced and Healthy while passive, Aurora member rejoined
   * and caught up, health check passing).
   */
  failback: z.boolean().optional(),
});
export type FailoverInput = z.infer<typeof FailoverInputSchema>;

/** One line per problem: `path: message`. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => {
    const where = i.path.length ? i.path.join(".") : "(root)";
    // A bad record key (a region name) carries the key schema's own message inside.
    const message =
      i.code === "invalid_key" ? i.issues.map((k) => k.message).join("; ") : i.message;
    return `${where}: ${message}`;
  });
}

/** Parses YAML or JSON text strictly: duplicate keys, aliases bombs and syntax errors are refused. */
export function parseDocumentText(text: string, source: string): unknown {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    throw new ConfigError(`${source}: file is larger than ${MAX_CONFIG_BYTES} bytes`);
  }
  if (!text.trim()) throw new ConfigError(`${source}: file is empty`);
  const lines = new LineCounter();
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, lineCounter: lines });
  const problem = doc.errors[0];
  if (problem) {
    const at = problem.linePos?.[0];
    throw new ConfigError(
      `${source}${at ? `:${at.line}:${at.col}` : ""}: ${problem.message.split("\n")[0]}`,
    );
  }
  // An alias that expands too far (a "billion laughs" bomb) or names no anchor throws while the
  // document is turned into data: each alias is wrapped so the error names its own line.
  visit(doc, {
    Alias(_key, alias) {
      const resolve = alias.toJSON.bind(alias);
      alias.toJSON = (arg, ctx) => {
        try {
          return resolve(arg, ctx);
        } catch (e) {
          if (e instanceof ConfigError) throw e;
          const at = lines.linePos(alias.range?.[0] ?? 0);
          const limit = /excessive/i.test(String(e))
            ? `; aliases may expand to ${MAX_ALIAS_EXPANSION} nodes in all: write the values out`
            : "";
          throw new ConfigError(
            `${source}:${at.line}:${at.col}: alias *${alias.source}: ${e instanceof Error ? e.message : String(e)}${limit}`,
            [],
            { cause: e },
          );
        }
      };
    },
  });
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSION });
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(
      `${source}: cannot be read as data: ${e instanceof Error ? e.message : String(e)}`,
      [],
      { cause: e },
    );
  }
}

/** Reads a file with the size check done before reading it. */
export function readConfigFile(path: string): string {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(path);
  } catch (e) {
    throw new ConfigError(`${path}: cannot read the file (does it exist?)`, [], { cause: e });
  }
  if (!stat.isFile()) throw new ConfigError(`${path}: not a file; name the YAML or JSON file`);
  const size = stat.size;
  if (size > MAX_CONFIG_BYTES)
    throw new ConfigError(`${path}: file is larger than ${MAX_CONFIG_BYTES} bytes`);
  return readFileSync(path, "utf8");
}

/** Every Secrets Manager ARN the topology names. */
function secretArns(t: Pick<Topology, "git" | "argocd" | "regions">): string[] {
  return [
    t.git.credentialsSecretArn,
    ...t.argocd.hubs.flatMap((h) => [
      h.tokenSecretArn,
      ...(h.backup ? [h.backup.tokenSecretArn] : []),
    ]),
    ...Object.values(t.regions).flatMap((r) => r.spokes.map((s) => s.tokenSecretArn)),
  ];
}

/**
 * Roles that would never be assumed, or assumed two ways: a top-level aurora role every region
 * overrides, a traffic role Global Accelerator mode never uses (its roles are per region), one
 * role with two external ids (its trust can require only one); and a top-level aurora role in
 * another account than a cluster that relies on it.
 */
interface RoleBlock {
  roleArn?: string | undefined;
  externalId?: string | undefined;
}
function crossAccountProblems(
  t: {
    aurora: RoleBlock;
    traffic: RoleBlock & { mode: string };
    secrets?: RoleBlock | undefined;
    regions: Record<
      string,
      {
        aurora: RoleBlock & { clusterArn: string };
        globalAccelerator?: RoleBlock | undefined;
        route53?: RoleBlock | undefined;
      }
    >;
  },
  ctx: z.RefinementCtx,
): void {
  const regions = Object.entries(t.regions);
  if (t.aurora.roleArn && regions.every(([, r]) => r.aurora.roleArn))
    ctx.addIssue({
      code: "custom",
      path: ["aurora", "roleArn"],
      message:
        "is never used: every region names its own regions.<region>.aurora.roleArn; remove it",
    });
  for (const [name, r] of regions)
    if (t.aurora.roleArn && !r.aurora.roleArn)
      sameAccount(t.aurora, r.aurora.clusterArn, `the cluster of ${name}`, ctx, [
        "aurora",
        "roleArn",
      ]);
  if (t.traffic.roleArn && t.traffic.mode !== "route53")
    ctx.addIssue({
      code: "custom",
      path: ["traffic", "roleArn"],
      message:
        "is used only with traffic.mode route53 (the hosted zone's account); with global-accelerator set regions.<region>.globalAccelerator.roleArn instead",
    });
  const blocks: [string[], RoleBlock | undefined][] = [
    [["aurora"], t.aurora],
    [["traffic"], t.traffic],
    [["secrets"], t.secrets],
    ...regions.flatMap(([name, r]) =>
      (["aurora", "globalAccelerator", "route53"] as const).map(
        (k): [string[], RoleBlock | undefined] => [["regions", name, k], r[k]],
      ),
    ),
  ];
  const idOf = new Map<string, string>();
  for (const [path, block] of blocks) {
    if (!block?.roleArn) continue;
    const id = block.externalId ?? "";
    const first = idOf.get(block.roleArn);
    if (first === undefined) idOf.set(block.roleArn, id);
    else if (first !== id)
      ctx.addIssue({
        code: "custom",
        path: [...path, "externalId"],
        message: `differs from the externalId another block gives ${block.roleArn}: one role's trust requires one external id; use the same value everywhere the role is named`,
      });
  }
}

/** The role to read `arn` with: `secrets.roleArn` when the secret is in that role's account. */
export function secretRole(t: Pick<Topology, "secrets">, arn: string): RoleAccess | undefined {
  const role = roleOf(t.secrets);
  return role && accountOfArn(role.roleArn) === accountOfArn(arn) ? role : undefined;
}

/** The role for the global cluster's calls in `region`: the member's own, else `aurora.roleArn`. */
export function auroraRole(t: Pick<Topology, "aurora" | "regions">, region: string) {
  return roleOf(t.regions[region]?.aurora) ?? roleOf(t.aurora);
}

/** Validates a parsed topology, throwing ConfigError with one line per problem. */
export function parseTopology(data: unknown, source = "topology"): Topology {
  const result = TopologySchema.safeParse(data);
  if (!result.success) throw new ConfigError(`${source} is invalid`, formatIssues(result.error));
  return result.data;
}

/** Loads and validates a topology file (YAML or JSON). */
export function loadTopology(path: string): Topology {
  return parseTopology(parseDocumentText(readConfigFile(path), path), path);
}

/** Validates the execution input against the schema and the topology's regions. */
export function parseInput(data: unknown, topology: Topology): FailoverInput {
  const result = FailoverInputSchema.safeParse(data);
  if (!result.success)
    throw new InputValidationError("execution input is invalid", formatIssues(result.error));
  const input = result.data;
  const known = Object.keys(topology.regions).join(", ");
  const problems: string[] = [];
  if (!topology.regions[input.targetRegion]) {
    problems.push(`targetRegion: "${input.targetRegion}" is not in the topology (known: ${known})`);
  }
  if (input.failedRegion !== undefined) {
    if (!topology.regions[input.failedRegion]) {
      problems.push(
        `failedRegion: "${input.failedRegion}" is not in the topology (known: ${known})`,
      );
    } else if (input.failedRegion === input.targetRegion) {
      problems.push("failedRegion: is the same as targetRegion; fail over to another region");
    }
  }
  if (input.allowDataLoss && input.mode !== "ungraceful") {
    problems.push(
      'allowDataLoss: only applies to mode "ungraceful" (a graceful switchover loses no data); remove it or set mode',
    );
  }
  if (input.failback && input.mode !== "graceful") {
    problems.push(
      'failback: a failback is a graceful failover (the region it returns to is healthy again); remove mode "ungraceful"',
    );
  }
  if (problems.length) throw new InputValidationError("execution input is invalid", problems);
  return input;
}

let cached: Topology | undefined;

/**
 * The topology a Lambda runs with: the `TOPOLOGY` environment variable holds it as JSON
 * (written by CDK at synth time, already validated); parsed once per container.
 */
export function runtimeTopology(): Topology {
  if (cached) return cached;
  const raw = process.env.TOPOLOGY;
  if (!raw)
    throw new ConfigError("TOPOLOGY is not set: the function was deployed without its topology");
  cached = parseTopology(parseDocumentText(raw, "TOPOLOGY"), "TOPOLOGY");
  return cached;
}

/** Forgets the cached topology (tests and the sandbox swap topologies between runs). */
export function resetRuntimeTopology(): void {
  cached = undefined;
}

/** Renders an edit for a region: `{{targetRegion}}` (retarget) or `{{region}}` (demote) in path and value. */
export function renderEdit(edit: RetargetEdit, region: string): RetargetEdit {
  const sub = (s: string) =>
    s.replaceAll("{{targetRegion}}", region).replaceAll("{{region}}", region);
  return {
    file: edit.file,
    path: sub(edit.path),
    value: typeof edit.value === "string" ? sub(edit.value) : edit.value,
  };
}

/** Regions other than `region`, ordered by priority then name. */
export function otherRegions(topology: Topology, region: string): string[] {
  return Object.entries(topology.regions)
    .filter(([name]) => name !== region)
    .sort(([a, ra], [b, rb]) => ra.priority - rb.priority || a.localeCompare(b))
    .map(([name]) => name);
}

/**
 * The regions that run an orchestrator when none are named: the two most preferred (lowest
 * `priority`). CDK deploys there by default and readiness checks the secret replicas there.
 */
export function defaultOrchestratorRegions(topology: Topology): string[] {
  return Object.entries(topology.regions)
    .sort(([a, ra], [b, rb]) => ra.priority - rb.priority || a.localeCompare(b))
    .slice(0, 2)
    .map(([name]) => name);
}

/** The region entry, or a ConfigError naming the known ones. */
export function regionOf(topology: Topology, region: string): Region {
  const r = topology.regions[region];
  if (!r)
    throw new ConfigError(
      `region "${region}" is not in the topology (known: ${Object.keys(topology.regions).join(", ")})`,
    );
  return r;
}
