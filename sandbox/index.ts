/**
 * The embedded sandbox: a whole platform on 127.0.0.1 — a real Git server, one strict HTTPS
 * Kubernetes API per spoke, an Argo CD emulator with a primary and a standby hub, protocol-level
 * AWS emulators and DynamoDB, and Step Functions running the real ASL with the real handlers.
 * The functions reach all of it only through the topology and the standard
 * `AWS_ENDPOINT_URL_<SERVICE>` variables, exactly as on AWS.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import { UpdateEndpointGroupCommand } from "@aws-sdk/client-global-accelerator";
import { parse, parseDocument } from "yaml";
import { SIGNING_KEY_FILE } from "../functions/lib/anchor.ts";
import { exportPublicKey } from "../functions/lib/anchor-verify.ts";
import { dynamoClient, globalAcceleratorClient, resetClients } from "../functions/lib/aws.ts";
import {
  defaultOrchestratorRegions,
  parseTopology,
  resetRuntimeTopology,
  type Topology,
} from "../functions/lib/config.ts";
import { revisionRepoDir } from "../functions/lib/gitops.ts";
import { logger } from "../functions/lib/middleware.ts";
import { clearSecretCache } from "../functions/lib/secrets.ts";
import {
  type AccountLayout,
  accountsOf,
  resourceAccounts,
  type SandboxAccounts,
} from "./accounts.ts";
import { type ArgoEmulator, startArgoCd } from "./argocd.ts";
import { type FunctionUrlServer, startFunctionUrl, type UrlResponse } from "./aws/function-url.ts";
import { SANDBOX_ACCOUNT, SANDBOX_REGION } from "./aws/protocol.ts";
import {
  type AwsSandbox,
  SANDBOX_ACCESS_KEY_ID,
  SANDBOX_SECRET_ACCESS_KEY,
  startAwsSandbox,
} from "./aws/server.ts";
import { createStepFunctions, type StepFunctions } from "./aws/stepfunctions.ts";
import { SANDBOX_USER_ARN } from "./aws/sts.ts";
import { type Ca, reuseCa } from "./ca.ts";
import { type FaultName, SANDBOX_REGIONS, sizeProblems } from "./faults.ts";
import { clearFunctionLogs } from "./function-logs.ts";
import { type GitServer, startGitServer } from "./git.ts";
import {
  componentNames,
  DEFAULT_REPLICAS,
  gitopsLayout,
  HPA_COMPONENT,
  HPA_MAX_REPLICAS,
  VALUES_FILE,
} from "./gitops-layout.ts";
import { invokeApprover, LOCAL_STATE_MACHINE_ARN } from "./runner.ts";
import { type FakeSpoke, type FakeVeleroBackup, startSpoke } from "./spoke.ts";
import { sandboxMs, type TimeModel } from "./time-model.ts";
import { createWorkDir, sweepAbandonedWorkDirs } from "./workdir.ts";

/** The platform the sandbox runs (topology `platform`, Argo CD app selector, namespace). */
export const PLATFORM = "payments";
/** The DynamoDB table of the audit trail, locks and failover markers. */
export const AUDIT_TABLE = "gitops-failover-audit";
/** The SNS topic Notify and the trigger publish to. */
export const TOPIC_ARN = `arn:aws:sns:${SANDBOX_REGION}:${SANDBOX_ACCOUNT}:gitops-failover`;
/** The Aurora global cluster whose writer moves. */
export const GLOBAL_CLUSTER = "payments-global";
/** The Global Accelerator listener holding one endpoint group per region. */
export const LISTENER_ARN = listenerArn(SANDBOX_ACCOUNT);

/** The listener's ARN in the account that owns the accelerator. */
function listenerArn(account: string): string {
  return `arn:aws:globalaccelerator::${account}:accelerator/00000000-0000-4000-8000-000000000001/listener/0000abcd`;
}
const SHORT: Record<string, string> = {
  "us-west-2": "usw2",
  "us-east-2": "use2",
  "eu-west-1": "euw1",
};

/**
 * Who the approval entry point knows: the sandbox's operator (the credentials every client
 * here uses, STS's GetCallerIdentity answers its ARN) and an auditor the topology's approvers
 * leave out.
 */
export const SANDBOX_PRINCIPALS = [
  {
    accessKeyId: SANDBOX_ACCESS_KEY_ID,
    secretAccessKey: SANDBOX_SECRET_ACCESS_KEY,
    arn: SANDBOX_USER_ARN,
    accountId: SANDBOX_ACCOUNT,
    userId: "AIDASANDBOX00000000001",
  },
  {
    accessKeyId: "AKIASANDBOXAUDITOR01",
    secretAccessKey: "sandbox-auditor-secret-key-not-a-real-one",
    arn: `arn:aws:iam::${SANDBOX_ACCOUNT}:user/auditor`,
    accountId: SANDBOX_ACCOUNT,
    userId: "AIDASANDBOXAUDITOR001",
  },
];

/** What to start; the size must pass {@link sizeProblems}. */
export interface SandboxOptions {
  /** Total spokes, spread round-robin over the three regions (default 3: one per region). */
  spokes?: number;
  /** Total Argo CD Applications, a multiple of `spokes` (default 2 per spoke). */
  apps?: number;
  activeRegion?: string;
  /** Where Report writes report.md, report.json and audit.jsonl. */
  reportDir: string;
  /** Milliseconds each ASL Wait state really waits (time is compressed). */
  waitMs?: number;
  /** Milliseconds an Aurora promotion takes in the emulator. */
  promotionDelayMs?: number;
  /** How the resources are spread over AWS accounts (default single: one account). */
  accounts?: AccountLayout;
  /**
   * Realistic service delays scaled by one factor (sandbox/time-model.ts): replaces `waitMs`
   * and `promotionDelayMs`; the ASL's Waits and Retries run at the same scale.
   */
  timeModel?: TimeModel;
  /** The topology's capacity.whenSourceUnknown (default baseline). */
  capacityWhenSourceUnknown?: "baseline" | "refuse";
  /** The HPAs' maxReplicas per region in the seeded values (default HPA_MAX_REPLICAS everywhere). */
  hpaMaxReplicas?: Record<string, number>;
}

/** One region's Deployments, summed over its spokes. */
export interface RegionWorkloads {
  deployments: number;
  /** Desired replicas (spec.replicas), summed. */
  replicas: number;
  /** Ready replicas, summed. */
  ready: number;
  /** The fewest ready replicas of any one Deployment (0 when there is none). */
  minReady: number;
}

/** The platform as the sandbox sees it, read from the stand-ins themselves (not via the functions). */
export interface SandboxState {
  /** The one region Git makes active, or null while none or several are. */
  activeRegion: string | null;
  /** Every region whose `regions.<region>.active` is true in Git. */
  activeRegions: string[];
  gitHead: string;
  /** The branch history, newest first: SHA, subject and the rest of the message. */
  gitLog: { sha: string; subject: string; body: string }[];
  auroraWriterRegion: string | null;
  trafficDials: Record<string, number>;
  /** Per region, from the spokes' Deployments. */
  workloads: Record<string, RegionWorkloads>;
}

/** What the stand-ins saw of the orchestrator's calls (for drills that must prove a path was taken). */
export interface SandboxCalls {
  /** receive-pack POSTs the Git server served. */
  gitPushes: number;
  /** Per Argo CD hub: API requests answered and connections refused while it was down. */
  argocd: Record<string, { served: number; refused: number }>;
  /** Every Global Accelerator call with its outcome (`ok` or the error code). */
  globalAccelerator: { action: string; outcome: string }[];
}

/** A running sandbox: every stand-in, its endpoints and credentials, and its controls. */
export interface Sandbox {
  topology: Topology;
  /** Which account owns what, and the roles of the other accounts. */
  accounts: SandboxAccounts;
  stateMachineArn: string;
  /** Environment the functions and the CLI need (endpoints, credentials, table, report dir). */
  env: Record<string, string>;
  /** Credentials for poking at the stand-ins with ordinary tools. */
  credentials: {
    git: { username: string; password: string };
    /** The read-only Git credentials (git.readCredentialsSecretArn): fetch, never push. */
    gitReader: { username: string; password: string };
    argocdToken: string;
    /** Argo CD's local admin, for POST /api/v1/session. */
    argocdAdmin: { username: string; password: string };
    spokeToken: string;
    /** The read-only token of the hub clusters' Kubernetes API (Velero backups). */
    hubClusterToken: string;
  };
  /** The temporary directory holding the CA (removed by stop()). */
  dir: string;
  ca: Ca;
  /** The CA certificate file every HTTPS stand-in's certificate chains to. */
  caFile: string;
  git: GitServer;
  spokes: FakeSpoke[];
  /** Per Argo CD hub, its cluster's Kubernetes API (serving the Velero backups of `argocd`). */
  hubClusters: Record<string, FakeSpoke>;
  argo: ArgoEmulator;
  aws: AwsSandbox;
  sfn: StepFunctions;
  /** The approval entry point: a function URL that verifies SigV4 with the principals' keys. */
  approvalUrl: FunctionUrlServer;
  /** The region the seed makes active (the source of a drill's failover). */
  activeRegion: string;
  /** Injects a fault for a failover to `targetRegion` (see FAULTS). */
  injectFault(fault: FaultName, targetRegion: string): void;
  /** Reads the platform from the stand-ins. */
  state(): Promise<SandboxState>;
  /** One Argo CD reconcile pass now: the spokes then run what Git says (unless a fault stops it). */
  settle(): Promise<void>;
  /** What the stand-ins saw of the orchestrator's calls so far. */
  calls(): SandboxCalls;
  /** Stops every stand-in and removes every temporary file. */
  stop(): Promise<void>;
}

const secret = () => randomBytes(18).toString("base64url");
const secretArnIn = (region: string, name: string, account = SANDBOX_ACCOUNT) =>
  `arn:aws:secretsmanager:${region}:${account}:secret:sandbox/${name}-AbCdEf`;
const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** Spreads `count` spokes over the regions, round-robin (at least one each: see sizeProblems). */
function spokeNames(count: number): { region: string; name: string }[] {
  return Array.from({ length: count }, (_, i) => {
    const region = SANDBOX_REGIONS[i % SANDBOX_REGIONS.length] as string;
    return { region, name: `spoke-${SHORT[region]}-${Math.floor(i / SANDBOX_REGIONS.length) + 1}` };
  });
}

/** The AuroraGlobalDBRPOLag a passive region publishes when nothing is wrong (ms). */
export const PASSIVE_RPO_LAG_MS = 250;

/**
 * Aurora Serverless v2 in the sandbox: each member's ServerlessV2ScalingConfiguration (the active
 * writer's minimum above the standbys'), and the ACUs the writer's workload needs.
 */
export const AURORA_ACU = {
  active: { min: 2, max: 64 },
  standby: { min: 0.5, max: 64 },
  writerLoad: 12,
} as const;

/** The Velero namespace on the hub clusters, and how old a hub backup may be. */
export const HUB_BACKUP = { namespace: "velero", argocdNamespace: "argocd", maxAgeHours: 25 };

/** What a healthy hub cluster holds: the daily Argo CD backup, completed 2 hours ago. */
export function freshHubBackups(now = Date.now()): FakeVeleroBackup[] {
  const at = (hoursAgo: number) => new Date(now - hoursAgo * 3_600_000).toISOString();
  return [
    {
      name: "argocd-daily-previous",
      includedNamespaces: [HUB_BACKUP.argocdNamespace],
      phase: "Completed",
      startedAt: at(26.1),
      completedAt: at(26),
    },
    {
      name: "argocd-daily-latest",
      includedNamespaces: [HUB_BACKUP.argocdNamespace],
      phase: "Completed",
      startedAt: at(2.1),
      completedAt: at(2),
    },
  ];
}

function buildTopology(
  git: GitServer,
  argo: ArgoEmulator,
  spokes: FakeSpoke[],
  hubClusters: Record<string, FakeSpoke>,
  caPem: string,
  accounts: SandboxAccounts,
  capacity: { components: number; whenSourceUnknown: "baseline" | "refuse" },
): Topology {
  const { roles } = accounts;
  const secretArn = (region: string, name: string) => secretArnIn(region, name, accounts.secrets);
  const regions = Object.fromEntries(
    SANDBOX_REGIONS.map((region, i) => [
      region,
      {
        priority: i,
        endpoint: `api-${SHORT[region]}.${PLATFORM}.sandbox.local`,
        spokes: spokes
          .filter((s) => s.region === region)
          .map((s) => ({
            name: s.name,
            argocdCluster: s.name,
            apiServer: s.url,
            caData: caPem,
            tokenSecretArn: secretArn(region, s.name),
            minReadyNodes: 3,
            namespaces: [PLATFORM, "external-secrets"],
            secretOperators: { externalSecrets: { namespaces: [PLATFORM] } },
          })),
        aurora: {
          clusterArn: `arn:aws:rds:${region}:${accounts.data}:cluster:${PLATFORM}-${SHORT[region]}`,
        },
        globalAccelerator: {
          endpointGroupArn: `${listenerArn(accounts.network)}/endpoint-group/${SHORT[region]}${hex(i + 1, 12)}`,
          ...roles?.network,
        },
        route53: {
          healthCheckId: `${hex(i + 1, 8)}-0000-4000-8000-${hex(i + 1, 12)}`,
          ...roles?.network,
        },
      },
    ]),
  );
  return parseTopology(
    {
      apiVersion: "gitops-failover/v1",
      platform: PLATFORM,
      // Only the sandbox's operator may answer an approval: the auditor's key is refused.
      approvers: [SANDBOX_USER_ARN],
      git: {
        url: git.url,
        // git http-backend behind a plain HTTP server on 127.0.0.1: the one cleartext endpoint.
        insecure: true,
        branch: "main",
        credentialsSecretArn: secretArn("us-west-2", "git"),
        readCredentialsSecretArn: secretArn("us-west-2", "git-read"),
        author: { name: "gitops-failover", email: "gitops-failover@sandbox.local" },
        retarget: [{ file: VALUES_FILE, path: "regions.{{targetRegion}}.active", value: true }],
        demote: [{ file: VALUES_FILE, path: "regions.{{region}}.active", value: false }],
      },
      argocd: {
        hubs: Object.entries(argo.urls).map(([name, url]) => ({
          name,
          url,
          tokenSecretArn: secretArn("us-west-2", `argocd-${name}`),
          caData: caPem,
          backup: {
            apiServer: hubClusters[name]?.url,
            caData: caPem,
            tokenSecretArn: secretArn("us-west-2", `velero-${name}`),
            ...HUB_BACKUP,
          },
        })),
        appSelector: `app.kubernetes.io/part-of=${PLATFORM}`,
        requestTimeoutSeconds: 10,
        // One Git webhook delivery on the first poll instead of a refresh per app: the web URL
        // of the repository the ApplicationSets name (gitops-layout.ts).
        refresh: "webhook",
        webhookRepoUrl: `https://git.sandbox.local/${PLATFORM}/gitops`,
      },
      aurora: { globalClusterIdentifier: GLOBAL_CLUSTER, maxRpoSeconds: 5, ...roles?.data },
      ...(roles ? { secrets: roles.secrets, orchestratorAccount: accounts.orchestrator } : {}),
      traffic: { mode: "global-accelerator", stages: [100] },
      // Capacity parity: every component's floor, from the source's observed capacity.
      capacity: {
        whenSourceUnknown: capacity.whenSourceUnknown,
        // The target's Aurora MinCapacity raised to the writer's 24-hour peak ACUs.
        aurora: { mode: "raise", min: 0.5, max: AURORA_ACU.active.max },
        // Pods Pending for want of nodes show at once here; on AWS, give node autoscaling time.
        gateSeconds: 120,
        apps: componentNames(capacity.components).map((c) => ({
          deployment: c,
          namespace: PLATFORM,
          file: VALUES_FILE,
          path: `regions.{{targetRegion}}.minReplicas.${c}`,
          min: 1,
          // The HPA's floor is capped at its maxReplicas in the target's values (read from Git).
          ...(c === HPA_COMPONENT
            ? { hpa: c, maxReplicasPath: `regions.{{targetRegion}}.maxReplicas.${c}` }
            : { max: HPA_MAX_REPLICAS }),
        })),
      },
      trigger: {
        mode: "auto",
        corroborationThreshold: 0.5,
        cooldownMinutes: 30,
        killSwitchParameter: "/gitops-failover/payments/kill-switch",
      },
      regions,
    },
    "sandbox topology",
  );
}

/**
 * The one line a drill prints about the sandbox's cleartext endpoints (those its topology marks
 * `insecure: true`), so nobody copies that into a real topology unawares; undefined when none.
 */
export function cleartextNotice(t: Topology): string | undefined {
  const insecure = [
    ...(t.git.insecure ? [`git.url ${t.git.url}`] : []),
    ...t.argocd.hubs.filter((h) => h.insecure).map((h) => `Argo CD hub ${h.name} ${h.url}`),
  ];
  if (!insecure.length) return undefined;
  return `note: plain http on 127.0.0.1, marked insecure: true in the sandbox's topology: ${insecure.join(", ")}; a real topology uses https:// (its tokens would otherwise cross the network in clear)`;
}

/** What the functions cache per container: dropped whenever the sandbox points them elsewhere. */
function forgetRuntimeState(): void {
  resetRuntimeTopology();
  clearSecretCache();
  resetClients();
}

/** Starts every stand-in, seeds it, and points this process's functions at it. */
export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const spokeCount = options.spokes ?? SANDBOX_REGIONS.length;
  const appCount = options.apps ?? spokeCount * 2;
  const problems = sizeProblems(spokeCount, appCount);
  if (problems.length) throw new Error(`sandbox size: ${problems.join("; ")}`);
  // A sandbox killed before its stop() left its CA keys behind: gone before a new one starts.
  await sweepAbandonedWorkDirs();
  const dir = await createWorkDir("ca");
  const activeRegion = options.activeRegion ?? "us-west-2";
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const ca = await reuseCa(join(dir, "ca"));
    const gitCredentials = { username: "failover", password: secret() };
    const gitReader = { username: "failover-read", password: secret() };
    const spokeToken = secret();
    const argocdToken = secret();
    const argocdAdmin = { username: "admin", password: secret() };

    const accounts = accountsOf(options.accounts ?? "single");
    const aws = await startAwsSandbox({ accounts: resourceAccounts(accounts) });
    if (accounts.roles) {
      // Each member account's role trusts the orchestrator's account, with its external id.
      for (const role of Object.values(accounts.roles)) {
        aws.sts.defineRole({
          roleArn: role.roleArn,
          trusted: [`arn:aws:iam::${accounts.orchestrator}:root`],
          ...(role.externalId ? { externalId: role.externalId } : {}),
        });
      }
    }
    stops.push(() => aws.stop());

    const names = spokeNames(spokeCount);
    const spokes = await Promise.all(
      names.map(({ region, name }) =>
        startSpoke({
          name,
          region,
          token: spokeToken,
          ca,
          nodes: 3,
          namespaces: [PLATFORM, "external-secrets", "kube-system"],
          externalSecrets: [{ namespace: PLATFORM, name: "db-credentials" }],
        }),
      ),
    );
    stops.push(async () => {
      await Promise.all(spokes.map((s) => s.stop()));
    });

    const components = appCount / spokeCount;
    const git = await startGitServer({
      ...gitCredentials,
      reader: gitReader,
      files: gitopsLayout({
        platform: PLATFORM,
        regions: SANDBOX_REGIONS.map((region) => ({
          region,
          clusters: spokes.filter((s) => s.region === region).map((s) => s.name),
        })),
        activeRegion,
        components,
        replicas: DEFAULT_REPLICAS,
        ...(options.hpaMaxReplicas ? { hpaMaxReplicas: options.hpaMaxReplicas } : {}),
      }),
    });
    stops.push(async () => {
      await git.stop();
      await rm(revisionRepoDir({ url: git.url, branch: "main" }), { recursive: true, force: true });
    });

    const argo = await startArgoCd({
      gitRepoDir: git.repoDir,
      branch: "main",
      clusters: spokes.map((s) => ({
        name: s.name,
        server: s.url,
        labels: { environment: "production", region: s.region },
        token: spokeToken,
        caPem: ca.caPem,
      })),
      apiToken: argocdToken,
      admin: argocdAdmin,
      tls: await ca.issue("argocd"),
      ...(options.timeModel
        ? {
            // Passes every 2 AWS seconds: an app sees its Git poll tick that late at most.
            pollIntervalMs: Math.max(10, sandboxMs(options.timeModel, 2)),
            timing: {
              syncMs: sandboxMs(options.timeModel, options.timeModel.argocd.syncSeconds),
              gitPollMs: sandboxMs(options.timeModel, options.timeModel.argocd.gitPollSeconds),
              gitPollJitterMs: sandboxMs(
                options.timeModel,
                options.timeModel.argocd.gitPollJitterSeconds,
              ),
            },
          }
        : { pollIntervalMs: 100 }),
    });
    stops.push(() => argo.stop());
    await argo.reconcileNow();

    const hubClusterToken = secret();
    const hubClusters = Object.fromEntries(
      await Promise.all(
        Object.keys(argo.urls).map(
          async (hub) =>
            [
              hub,
              await startSpoke({
                name: `${hub}-cluster`,
                region: SANDBOX_REGION,
                token: hubClusterToken,
                ca,
                namespaces: [HUB_BACKUP.argocdNamespace],
                velero: { namespace: HUB_BACKUP.namespace },
              }),
            ] as const,
        ),
      ),
    );
    stops.push(async () => {
      await Promise.all(Object.values(hubClusters).map((c) => c.stop()));
    });
    for (const cluster of Object.values(hubClusters)) cluster.setVeleroBackups(freshHubBackups());

    const topology = buildTopology(git, argo, spokes, hubClusters, ca.caPem, accounts, {
      components,
      whenSourceUnknown: options.capacityWhenSourceUnknown ?? "baseline",
    });
    const waitMs = options.waitMs ?? 20;
    const sfn = createStepFunctions({
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      waitMs,
      retryMs: waitMs,
      ...(options.timeModel ? { timeScale: options.timeModel.scale } : {}),
    });
    aws.register("states", "json1.0", sfn.handler);
    stops.push(() => sfn.stopAll());

    const approvalUrl = await startFunctionUrl({
      region: SANDBOX_REGION,
      principals: SANDBOX_PRINCIPALS,
      invoke: (event) => invokeApprover(event) as Promise<UrlResponse>,
    });
    stops.push(() => approvalUrl.stop());

    clearFunctionLogs(options.reportDir);
    const env: Record<string, string> = {
      ...aws.env,
      AWS_REGION: SANDBOX_REGION,
      TOPOLOGY: JSON.stringify(topology),
      AUDIT_TABLE,
      TOPIC_ARN,
      METRICS_NAMESPACE: "GitopsFailover",
      REPORT_DIR: options.reportDir,
      AUDIT_SIGNING_KEY: aws.kms.signingKeyArn,
      GITOPS_FAILOVER_APPROVAL_URL: approvalUrl.url,
      STATE_MACHINE_ARN: LOCAL_STATE_MACHINE_ARN,
      ORCHESTRATOR_REGIONS: defaultOrchestratorRegions(topology).join(","),
      POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? "SILENT",
    };
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
    Object.assign(process.env, env);
    logger.setLogLevel(env.POWERTOOLS_LOG_LEVEL as Parameters<typeof logger.setLogLevel>[0]);
    stops.push(async () => {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      forgetRuntimeState();
    });
    forgetRuntimeState();

    await seedAws(aws, topology, activeRegion, {
      git: gitCredentials,
      gitReader,
      spokeToken,
      argocdToken,
      hubClusterToken,
      promotionDelayMs: options.promotionDelayMs ?? 150,
    });
    const model = options.timeModel;
    if (model) {
      aws.rds.setPromotionDurationsMs({
        switchover: sandboxMs(model, model.aurora.switchoverSeconds),
        failover: sandboxMs(model, model.aurora.failoverSeconds),
      });
      aws.ga.setConvergenceMs(sandboxMs(model, model.globalAccelerator.convergeSeconds));
    }

    // The key that signs this sandbox's anchors lives as long as the sandbox: its public key,
    // exported the way an operator would (kms:GetPublicKey), lets `audit verify` check a
    // report offline once the sandbox is gone.
    await mkdir(options.reportDir, { recursive: true });
    await writeFile(
      join(options.reportDir, SIGNING_KEY_FILE),
      await exportPublicKey(aws.kms.signingKeyArn),
    );

    // What the functions' Global Accelerator client will try before giving up (functions/lib/aws.ts).
    const limits = { gaSdkAttempts: await globalAcceleratorClient().config.maxAttempts() };
    const sandbox: Sandbox = {
      topology,
      accounts,
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      env,
      credentials: {
        git: gitCredentials,
        gitReader,
        argocdToken,
        argocdAdmin,
        spokeToken,
        hubClusterToken,
      },
      dir,
      ca,
      caFile: join(ca.dir, "ca.crt"),
      git,
      spokes,
      hubClusters,
      argo,
      aws,
      sfn,
      approvalUrl,
      activeRegion,
      injectFault: (fault, target) => injectFault(sandbox, fault, target, limits),
      state: () => readState(sandbox),
      settle: () => argo.reconcileNow(),
      calls: () => ({
        gitPushes: git.stats().pushes,
        argocd: argo.requests(),
        globalAccelerator: aws.ga.calls().map(({ action, outcome }) => ({ action, outcome })),
      }),
      stop: stopAll,
    };
    return sandbox;
  } catch (e) {
    await stopAll();
    throw e;
  }
}

async function seedAws(
  aws: AwsSandbox,
  t: Topology,
  activeRegion: string,
  s: {
    git: { username: string; password: string };
    gitReader: { username: string; password: string };
    spokeToken: string;
    argocdToken: string;
    hubClusterToken: string;
    promotionDelayMs: number;
  },
): Promise<void> {
  const token = (value: string) => JSON.stringify({ token: value });
  const secrets: [arn: string, value: string][] = [
    [
      t.git.credentialsSecretArn,
      JSON.stringify({ username: s.git.username, token: s.git.password }),
    ],
    ...(t.git.readCredentialsSecretArn
      ? [
          [
            t.git.readCredentialsSecretArn,
            JSON.stringify({ username: s.gitReader.username, token: s.gitReader.password }),
          ] as [string, string],
        ]
      : []),
    ...t.argocd.hubs.flatMap((hub): [string, string][] => [
      [hub.tokenSecretArn, token(s.argocdToken)],
      ...(hub.backup
        ? [[hub.backup.tokenSecretArn, token(s.hubClusterToken)] as [string, string]]
        : []),
    ]),
    ...Object.values(t.regions).flatMap((r) =>
      r.spokes.map((spoke): [string, string] => [spoke.tokenSecretArn, token(s.spokeToken)]),
    ),
  ];
  // The replica rule (README): every secret in every orchestrator region.
  for (const [arn, value] of secrets) {
    aws.secrets.put(arn, value);
    for (const region of defaultOrchestratorRegions(t)) aws.secrets.replicate(arn, region);
  }
  for (const [region, r] of Object.entries(t.regions)) {
    aws.ga.defineEndpointGroup({
      arn: r.globalAccelerator?.endpointGroupArn ?? "",
      region,
      dial: region === activeRegion ? 100 : 0,
      endpoints: [
        {
          id: `arn:aws:elasticloadbalancing:${region}:${SANDBOX_ACCOUNT}:loadbalancer/app/${PLATFORM}/${SHORT[region]}0123456789`,
          weight: 128,
          healthy: true,
        },
      ],
    });
    aws.route53.defineHealthCheck(r.route53.healthCheckId, { failingFraction: 0 });
    aws.cloudwatch.setRpoLagMs(
      region,
      region === activeRegion ? null : PASSIVE_RPO_LAG_MS,
      r.aurora.clusterArn.split(":cluster:")[1],
    );
  }
  aws.rds.defineGlobalCluster({
    identifier: t.aurora.globalClusterIdentifier,
    members: Object.fromEntries(
      Object.entries(t.regions).map(([region, r]) => [region, r.aurora.clusterArn]),
    ),
    writerRegion: activeRegion,
    // Aurora Serverless v2 everywhere: the writer runs well above the standbys' minimum, so
    // capacity parity raises the target's MinCapacity before the promotion (and a failback
    // restores it).
    serverless: Object.fromEntries(
      Object.keys(t.regions).map((region) => [
        region,
        region === activeRegion ? AURORA_ACU.active : AURORA_ACU.standby,
      ]),
    ),
    writerLoadAcu: AURORA_ACU.writerLoad,
  });
  aws.rds.setPromotionDelayMs(s.promotionDelayMs);
  aws.sns.createTopic(TOPIC_ARN);
  aws.ssm.set(t.trigger.killSwitchParameter, "off");
  await dynamoClient().send(
    new CreateTableCommand({
      TableName: AUDIT_TABLE,
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
      ],
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
  );
}

function injectFault(
  s: Sandbox,
  fault: FaultName,
  target: string,
  limits: { gaSdkAttempts: number },
): void {
  const targetSpokes = s.spokes.filter((spoke) => spoke.region === target);
  switch (fault) {
    case "spoke-unreachable":
      for (const spoke of targetSpokes) spoke.setReachable(false);
      return;
    case "spoke-nodes-not-ready":
      for (const spoke of targetSpokes) spoke.setReadyNodes(1);
      return;
    case "git-auth-failure":
      s.git.setPassword(secret());
      return;
    case "git-push-conflict":
      s.git.injectConflictOnNextPush();
      return;
    case "argocd-hub-down":
      s.argo.setHubReachable(Object.keys(s.argo.urls)[0] ?? "", false);
      return;
    case "argocd-degraded":
      for (const spoke of targetSpokes) spoke.setRolloutsFail(true);
      return;
    case "argocd-sync-timeout":
      s.argo.setSyncStalled(true);
      return;
    case "aurora-failover-stuck":
      s.aws.rds.setStuck(true);
      return;
    case "ga-throttled":
      // One more than the SDK's own attempts: the first ShiftTraffic fails with AwsThrottled and
      // only the ASL's Retry gets the update through.
      s.aws.ga.throttleUpdates(limits.gaSdkAttempts + 1);
      return;
    case "ga-update-fails":
      s.aws.ga.setUpdatesFail(true);
      return;
    case "commit-on-top":
    case "commit-undoes-retarget":
      commitOnTopOfNextPush(s, fault === "commit-on-top" ? imageBump : undoRetarget(target));
      return;
    case "assume-role-denied": {
      // The data account's role no longer trusts the orchestrator: every AssumeRole is refused.
      const role = s.accounts.roles?.data;
      if (!role)
        throw new Error("assume-role-denied needs --accounts split (no role is assumed otherwise)");
      s.aws.sts.setTrusted(role.roleArn, []);
      return;
    }
    case "old-region-returns-active": {
      const old = oldRegionOf(s, target);
      // The second push of a failover is DemoteSource's, made after it checked the old dial is 0.
      s.git.beforePush(async (push) => {
        if (push === 2) await raiseDialByHand(s, old, 50);
      });
      return;
    }
    case "aurora-not-rejoined":
      // The old primary of the ungraceful failover stays pending-resync (recovery.ts skips it too).
      s.aws.rds.setRejoinHeld(true);
      return;
    case "old-region-unreachable":
      for (const spoke of s.spokes.filter((sp) => sp.region === oldRegionOf(s, target)))
        spoke.setReachable(false);
      return;
    case "target-capacity-short": {
      // Room for every committed replica but two: the last Deployment's two stay Pending.
      const needed = (s.topology.capacity?.apps.length ?? 0) * DEFAULT_REPLICAS.active;
      for (const spoke of targetSpokes) spoke.setPodCapacity(Math.max(0, needed - 2));
      return;
    }
    case "source-capacity-unknown":
      for (const spoke of s.spokes.filter((x) => x.region === s.activeRegion))
        spoke.setReachable(false);
      return;
  }
}

/** A commit someone else pushes: its message and files, from the branch as it is. */
type OnTop = (git: GitServer) => Promise<{ message: string; files: Record<string, string> }>;

/** What an image updater writes back: a new tag of the first component's image. */
const imageBump: OnTop = async (git) => {
  const component = componentNames(1)[0] ?? "api";
  const file = `apps/${component}/deployment.yaml`;
  const text = await git.readFile(file);
  return {
    message: `build: automatic update of ${component} to 1.0.1\n\nArgo CD Image Updater write-back.`,
    files: { [file]: text.replace(/:1\.0\.0$/m, ":1.0.1") },
  };
};

/** A commit that sets the target's flag back to false (a stale branch merged, a bad revert). */
function undoRetarget(target: string): OnTop {
  return async (git) => {
    const doc = parseDocument(await git.readFile(VALUES_FILE));
    doc.setIn(["regions", target, "active"], false);
    return {
      message: `chore: sync production values from staging\n\nMakes ${target} passive again.`,
      files: { [VALUES_FILE]: doc.toString() },
    };
  };
}

/**
 * Right after the next push moves the branch (the retarget commit), `commit` lands on top of it
 * before the pusher hears back, and Argo CD's Git polls are held from the push until then: Argo
 * CD never sees the retarget commit as the head, only the commit on top (as a hub polling every
 * 3 minutes would, however quickly AwaitArgoSync asks).
 */
function commitOnTopOfNextPush(s: Sandbox, commit: OnTop): void {
  let release: (() => void) | undefined;
  s.git.onNextPush({
    prepare: () => {
      release = s.argo.holdGitPolls();
    },
    done: async ({ from, to }) => {
      try {
        if (from === to) return commitOnTopOfNextPush(s, commit);
        const { message, files } = await commit(s.git);
        await s.git.commitDirect(files, message);
      } finally {
        release?.();
      }
    },
  });
}

/** The region serving now (the top dial), which a failover to `target` moves away from. */
function oldRegionOf(s: Sandbox, target: string): string {
  const [old] = Object.entries(s.aws.ga.dials())
    .filter(([r]) => r !== target)
    .sort(([, a], [, b]) => b - a)[0] ?? [""];
  return old;
}

/** An operator's `aws globalaccelerator update-endpoint-group --traffic-dial-percentage`. */
export async function raiseDialByHand(s: Sandbox, region: string, dial: number): Promise<void> {
  await globalAcceleratorClient().send(
    new UpdateEndpointGroupCommand({
      EndpointGroupArn: s.topology.regions[region]?.globalAccelerator?.endpointGroupArn,
      TrafficDialPercentage: dial,
    }),
  );
}

async function readState(s: Sandbox): Promise<SandboxState> {
  const values = parse(await s.git.readFile(VALUES_FILE)) as {
    regions?: Record<string, { active?: unknown }>;
  };
  const active = SANDBOX_REGIONS.filter((r) => values.regions?.[r]?.active === true);
  const workloads: Record<string, RegionWorkloads> = {};
  for (const region of SANDBOX_REGIONS) {
    const deployments = s.spokes
      .filter((spoke) => spoke.region === region)
      .flatMap((spoke) => spoke.deployments());
    workloads[region] = {
      deployments: deployments.length,
      replicas: deployments.reduce((n, d) => n + d.replicas, 0),
      ready: deployments.reduce((n, d) => n + d.readyReplicas, 0),
      minReady: deployments.length ? Math.min(...deployments.map((d) => d.readyReplicas)) : 0,
    };
  }
  const log = await s.git.log();
  return {
    activeRegion: active.length === 1 ? (active[0] ?? null) : null,
    activeRegions: active,
    gitHead: log[0]?.sha ?? (await s.git.head()),
    gitLog: log.map((c) => {
      const [subject = "", ...rest] = c.message.split("\n");
      return { sha: c.sha, subject, body: rest.join("\n").trim() };
    }),
    auroraWriterRegion: s.aws.rds.writerRegion(GLOBAL_CLUSTER),
    trafficDials: s.aws.ga.dials(),
    workloads,
  };
}
