/**
 * The embedded sandbox: a whole platform on 127.0.0.1 — a real Git server, one strict HTTPS
 * Kubernetes API per spoke, an Argo CD emulator with a primary and a standby hub, protocol-level
 * AWS emulators and DynamoDB, and Step Functions running the real ASL with the real handlers.
 * The functions reach all of it only through the topology and the standard
 * `AWS_ENDPOINT_URL_<SERVICE>` variables, exactly as on AWS.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import { dynamoClient, resetClients } from "../functions/lib/aws.ts";
import { parseTopology, resetRuntimeTopology, type Topology } from "../functions/lib/config.ts";
import { logger } from "../functions/lib/middleware.ts";
import { clearSecretCache } from "../functions/lib/secrets.ts";
import { type ArgoEmulator, startArgoCd } from "./argocd.ts";
import { type AwsSandbox, startAwsSandbox } from "./aws/server.ts";
import { createStepFunctions, type StepFunctions } from "./aws/stepfunctions.ts";
import { createCa } from "./ca.ts";
import { type FaultName, SANDBOX_REGIONS } from "./faults.ts";
import { type GitServer, startGitServer } from "./git.ts";
import { gitopsLayout, VALUES_FILE } from "./gitops-layout.ts";
import { LOCAL_ACCOUNT, LOCAL_REGION, LOCAL_STATE_MACHINE_ARN } from "./runner.ts";
import { type FakeSpoke, startSpoke } from "./spoke.ts";

export const PLATFORM = "payments";
export const AUDIT_TABLE = "gitops-failover-audit";
export const TOPIC_ARN = `arn:aws:sns:${LOCAL_REGION}:${LOCAL_ACCOUNT}:gitops-failover`;
const GLOBAL_CLUSTER = "payments-global";
const SHORT: Record<string, string> = {
  "us-west-2": "usw2",
  "us-east-2": "use2",
  "eu-west-1": "euw1",
};

export interface SandboxOptions {
  /** Total spokes, spread over the three regions (default 3: one per region). */
  spokes?: number;
  /** Total Argo CD Applications across the spokes (default 2 per spoke). */
  apps?: number;
  activeRegion?: string;
  /** Where Report writes report.md, report.json and audit.jsonl. */
  reportDir: string;
  /** Milliseconds each ASL Wait state really waits (time is compressed). */
  waitMs?: number;
  /** Milliseconds an Aurora promotion takes in the emulator. */
  promotionDelayMs?: number;
}

/** The platform as the sandbox sees it, read from the stand-ins themselves (not via the functions). */
export interface SandboxState {
  activeRegion: string | null;
  gitHead: string;
  auroraWriterRegion: string | null;
  trafficDials: Record<string, number>;
  /** Running replicas per region, from the spokes' Deployments. */
  replicas: Record<string, number>;
}

export interface Sandbox {
  topology: Topology;
  stateMachineArn: string;
  /** Environment the functions and the CLI need (endpoints, credentials, table, report dir). */
  env: Record<string, string>;
  /** Credentials for poking at the stand-ins with ordinary tools. */
  credentials: {
    git: { username: string; password: string };
    argocdToken: string;
    spokeToken: string;
  };
  dir: string;
  ca: { caPem: string };
  git: GitServer;
  spokes: FakeSpoke[];
  argo: ArgoEmulator;
  aws: AwsSandbox;
  sfn: StepFunctions;
  injectFault(fault: FaultName, targetRegion: string): void;
  state(): Promise<SandboxState>;
  stop(): Promise<void>;
}

const secret = () => randomBytes(18).toString("base64url");
const secretArn = (region: string, name: string) =>
  `arn:aws:secretsmanager:${region}:${LOCAL_ACCOUNT}:secret:sandbox/${name}-AbCdEf`;
const hex = (n: number, width: number) => n.toString(16).padStart(width, "0");

/** Spreads `count` spokes over the regions, round-robin, so each region has at least one. */
function spokeNames(count: number): { region: string; name: string }[] {
  return Array.from({ length: Math.max(count, SANDBOX_REGIONS.length) }, (_, i) => {
    const region = SANDBOX_REGIONS[i % SANDBOX_REGIONS.length] as string;
    return { region, name: `spoke-${SHORT[region]}-${Math.floor(i / SANDBOX_REGIONS.length) + 1}` };
  });
}

function buildTopology(
  git: GitServer,
  argo: ArgoEmulator,
  spokes: FakeSpoke[],
  caPem: string,
): Topology {
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
          clusterArn: `arn:aws:rds:${region}:${LOCAL_ACCOUNT}:cluster:${PLATFORM}-${SHORT[region]}`,
        },
        globalAccelerator: {
          endpointGroupArn: `arn:aws:globalaccelerator::${LOCAL_ACCOUNT}:accelerator/00000000-0000-4000-8000-000000000001/listener/0000abcd/endpoint-group/${SHORT[region]}${hex(i + 1, 12)}`,
        },
        route53: { healthCheckId: `${hex(i + 1, 8)}-0000-4000-8000-${hex(i + 1, 12)}` },
      },
    ]),
  );
  return parseTopology(
    {
      apiVersion: "gitops-failover/v1",
      platform: PLATFORM,
      git: {
        url: git.url,
        branch: "main",
        credentialsSecretArn: secretArn("us-west-2", "git"),
        author: { name: "gitops-failover", email: "gitops-failover@sandbox.local" },
        retarget: [{ file: VALUES_FILE, path: "global.activeRegion", value: "{{targetRegion}}" }],
      },
      argocd: {
        hubs: Object.entries(argo.urls).map(([name, url]) => ({
          name,
          url,
          tokenSecretArn: secretArn("us-west-2", `argocd-${name}`),
          caData: caPem,
        })),
        appSelector: `app.kubernetes.io/part-of=${PLATFORM}`,
        requestTimeoutSeconds: 10,
      },
      aurora: { globalClusterIdentifier: GLOBAL_CLUSTER, maxRpoSeconds: 5 },
      traffic: { mode: "global-accelerator", stages: [100] },
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

/** What the functions cache per container: dropped whenever the sandbox points them elsewhere. */
function forgetRuntimeState(): void {
  resetRuntimeTopology();
  clearSecretCache();
  resetClients();
}

/** Starts every stand-in, seeds it, and points this process's functions at it. */
export async function startSandbox(options: SandboxOptions): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), "gitops-failover-sandbox-"));
  const activeRegion = options.activeRegion ?? "us-west-2";
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const ca = await createCa(join(dir, "ca"));
    const gitCredentials = { username: "failover", password: secret() };
    const spokeToken = secret();
    const argocdToken = secret();

    const aws = await startAwsSandbox();
    stops.push(() => aws.stop());

    const names = spokeNames(options.spokes ?? SANDBOX_REGIONS.length);
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

    const components = Math.max(1, Math.ceil((options.apps ?? spokes.length * 2) / spokes.length));
    const git = await startGitServer({
      ...gitCredentials,
      files: gitopsLayout({
        platform: PLATFORM,
        regions: SANDBOX_REGIONS.map((region) => ({
          region,
          clusters: spokes.filter((s) => s.region === region).map((s) => s.name),
        })),
        activeRegion,
        components,
      }),
    });
    stops.push(() => git.stop());

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
      tls: await ca.issue("argocd"),
      pollIntervalMs: 100,
    });
    stops.push(() => argo.stop());
    await argo.reconcileNow();

    const topology = buildTopology(git, argo, spokes, ca.caPem);
    const waitMs = options.waitMs ?? 20;
    const sfn = createStepFunctions({
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      waitMs,
      retryMs: waitMs,
    });
    aws.register("states", "json1.0", sfn.handler);
    stops.push(() => sfn.stopAll());

    const env: Record<string, string> = {
      ...aws.env,
      AWS_REGION: LOCAL_REGION,
      TOPOLOGY: JSON.stringify(topology),
      AUDIT_TABLE,
      TOPIC_ARN,
      METRICS_NAMESPACE: "GitopsFailover",
      REPORT_DIR: options.reportDir,
      STATE_MACHINE_ARN: LOCAL_STATE_MACHINE_ARN,
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
      spokeToken,
      argocdToken,
      promotionDelayMs: options.promotionDelayMs ?? 150,
    });

    const sandbox: Sandbox = {
      topology,
      stateMachineArn: LOCAL_STATE_MACHINE_ARN,
      env,
      credentials: { git: gitCredentials, argocdToken, spokeToken },
      dir,
      ca,
      git,
      spokes,
      argo,
      aws,
      sfn,
      injectFault: (fault, target) => injectFault(sandbox, fault, target),
      state: () => readState(sandbox),
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
    spokeToken: string;
    argocdToken: string;
    promotionDelayMs: number;
  },
): Promise<void> {
  aws.secrets.put(
    t.git.credentialsSecretArn,
    JSON.stringify({ username: s.git.username, token: s.git.password }),
  );
  for (const hub of t.argocd.hubs)
    aws.secrets.put(hub.tokenSecretArn, JSON.stringify({ token: s.argocdToken }));
  for (const [region, r] of Object.entries(t.regions)) {
    for (const spoke of r.spokes)
      aws.secrets.put(spoke.tokenSecretArn, JSON.stringify({ token: s.spokeToken }));
    aws.ga.defineEndpointGroup({
      arn: r.globalAccelerator?.endpointGroupArn ?? "",
      region,
      dial: region === activeRegion ? 100 : 0,
      endpoints: [
        {
          id: `arn:aws:elasticloadbalancing:${region}:${LOCAL_ACCOUNT}:loadbalancer/app/${PLATFORM}/${SHORT[region]}0123456789`,
          weight: 128,
          healthy: true,
        },
      ],
    });
    aws.route53.defineHealthCheck(r.route53.healthCheckId, { failingFraction: 0 });
    aws.cloudwatch.setRpoLagMs(region, region === activeRegion ? null : 250);
  }
  aws.rds.defineGlobalCluster({
    identifier: t.aurora.globalClusterIdentifier,
    members: Object.fromEntries(
      Object.entries(t.regions).map(([region, r]) => [region, r.aurora.clusterArn]),
    ),
    writerRegion: activeRegion,
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

function injectFault(s: Sandbox, fault: FaultName, target: string): void {
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
      s.aws.ga.throttleNext(4);
      return;
    case "ga-update-fails":
      s.aws.ga.setUpdatesFail(true);
      return;
  }
}

async function readState(s: Sandbox): Promise<SandboxState> {
  const values = await s.git.readFile(VALUES_FILE);
  const active = /^\s*activeRegion:\s*"?([a-z0-9-]+)"?/m.exec(values)?.[1] ?? null;
  const replicas: Record<string, number> = Object.fromEntries(SANDBOX_REGIONS.map((r) => [r, 0]));
  for (const spoke of s.spokes) {
    for (const d of spoke.deployments())
      replicas[spoke.region] = (replicas[spoke.region] ?? 0) + d.replicas;
  }
  return {
    activeRegion: active,
    gitHead: await s.git.head(),
    auroraWriterRegion: s.aws.rds.writerRegion(GLOBAL_CLUSTER),
    trafficDials: s.aws.ga.dials(),
    replicas,
  };
}
