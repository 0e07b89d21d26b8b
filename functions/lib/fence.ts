/**
 * Fencing: after a failover, the region(s) it moved away from must neither serve nor write.
 * Fenced means: its traffic dial (or weight) is 0, it is not Aurora's writer, and — where its
 * spokes answer — its selected Argo CD applications are Synced at the failover's last commit
 * (which made it passive) and Healthy, so its workloads run their passive values. A region whose
 * spokes do not answer cannot be verified: its fence is `pending (unreachable)`, kept in the
 * table, and re-checked by the readiness function until it answers (then verified, or alarmed).
 *
 * One code path for the Fence step and readiness: the traffic read of VerifyTraffic, Aurora's
 * describe of AwaitAurora, the spoke's /readyz of VerifySpoke and AwaitArgoSync's Argo CD check.
 */
import { DynamoDBDocumentClient, GetCommand, PutCommand } from "@aws-sdk/lib-dynamodb";
import { type ArgoHubConnection, checkSync, type SyncCheckRequest } from "./argocd.ts";
import { describeAurora } from "./aurora.ts";
import { awsError, dynamoClient } from "./aws.ts";
import { otherRegions, regionOf, secretRole, type Topology } from "./config.ts";
import { describe, SpokeUnreachable, UnexpectedError } from "./errors.ts";
import { getSecret } from "./secrets.ts";
import { inspectSpoke } from "./spoke.ts";
import { argoHubs, auroraTopology, trafficTopology } from "./steps.ts";
import { readTraffic } from "./traffic.ts";

/** The Global Accelerator API is in us-west-2 only. */
const GA_API_REGION = "us-west-2";

/** One old region's fence as one check found it. */
export interface RegionFence {
  region: string;
  /** `verified`; `pending`: its spokes did not answer; `live`: it can still serve or write. */
  fence: "verified" | "pending" | "live";
  /** What is still live there (empty when verified), one line each. */
  live: string[];
  /**
   * Live parts that only the platform's own controllers can clear (Argo CD syncing the passive
   * values): a poller waits for these; the others (a dial, the writer) need a person.
   */
  converging: boolean;
  /** The commands that fence it, in order. */
  commands: string[];
  /** One line: what was found. */
  detail: string;
}

/** What a fence check needs beyond the topology. */
export interface FenceRequest {
  /** The region the failover moved to (the writer's and traffic's home now). */
  targetRegion: string;
  /** The old regions. */
  regions: string[];
  /** The commit that made them passive: their apps must be Synced at it. */
  revision: string;
  spokeTimeoutMs: number;
  /**
   * The first check of a Fence window asks Argo CD to look at Git now (the topology's refresh:
   * one webhook delivery, or a refresh of each app not at the commit), as AwaitArgoSync does;
   * readiness's re-checks never do.
   */
  firstPoll?: boolean;
  /**
   * Judges revisions other than `revision` the region's apps report (commits pushed on top):
   * accepted when they keep the region passive (see gitops judgeRevisions).
   */
  judge?: (region: string) => SyncCheckRequest["judgeRevisions"];
}

/** Whether any spoke of the region answers its API server (an answer refusing our token counts). */
async function regionAnswers(t: Topology, region: string, timeoutMs: number): Promise<boolean> {
  const answers = await Promise.all(
    regionOf(t, region).spokes.map(async (s) => {
      const { token } = await getSecret(s.tokenSecretArn, secretRole(t, s.tokenSecretArn));
      try {
        await inspectSpoke(
          { name: s.name, apiServer: s.apiServer, caData: s.caData, token },
          { minReadyNodes: 0, namespaces: [] },
          { timeoutMs },
        );
        return true;
      } catch (e) {
        return !(e instanceof SpokeUnreachable);
      }
    }),
  );
  return answers.some(Boolean);
}

/**
 * Checks the fence of each old region: traffic and Aurora read once for all of them, then per
 * region its spokes and, when they answer, Argo CD at `revision` (no refresh, no sync).
 */
export async function checkFence(t: Topology, req: FenceRequest): Promise<RegionFence[]> {
  const target = req.targetRegion;
  const [{ dials }, aurora] = await Promise.all([
    readTraffic(trafficTopology(t)),
    describeAurora(auroraTopology(t), [target, ...otherRegions(t, target)]),
  ]);
  const hubs = await argoHubs(t);
  const sha = req.revision.slice(0, 7);
  return Promise.all(
    req.regions.map(async (region): Promise<RegionFence> => {
      const live: string[] = [];
      const commands: string[] = [];
      const dial = dials[region] ?? 0;
      if (dial > 0) {
        live.push(`${t.traffic.mode === "route53" ? "weight" : "traffic dial"} ${dial}%`);
        commands.push(trafficCommand(t, region));
      }
      if (aurora.writerRegion === region) {
        live.push(`Aurora's writer (${t.aurora.globalClusterIdentifier})`);
        commands.push(
          `aws rds switchover-global-cluster --region ${region} --global-cluster-identifier ${t.aurora.globalClusterIdentifier} --target-db-cluster-identifier ${regionOf(t, target).aurora.clusterArn}`,
        );
      }
      const answers = await regionAnswers(t, region, req.spokeTimeoutMs);
      let converging = false;
      if (answers) {
        const apps = await appsPassive(t, hubs, region, req);
        if (apps) {
          live.push(apps.reason);
          converging = !apps.final;
          commands.push(
            `argocd app sync -l ${t.argocd.appSelector} (syncs the apps on ${clusterNames(t, region).join(", ")} to the branch head, whose values make ${region} passive; see why they are not with argocd app get <app>)`,
          );
        }
      }
      const fence = live.length ? "live" : answers ? "verified" : "pending";
      const detail =
        fence === "verified"
          ? `dial 0, not the writer, apps Synced at ${sha} (passive) and Healthy`
          : fence === "pending"
            ? `dial 0, not the writer; its spokes (${spokeNames(t, region)}) do not answer: workloads not verified`
            : `still live: ${live.join("; ")}${answers ? "" : `; its spokes (${spokeNames(t, region)}) do not answer`}`;
      return {
        region,
        fence,
        live,
        converging: converging && live.length === 1,
        commands,
        detail,
      };
    }),
  );
}

/**
 * Why the region's apps are not passive at `revision`, or null when they are; `final` when
 * waiting cannot help (they run a commit pushed on top that makes the region active again).
 */
async function appsPassive(
  t: Topology,
  hubs: ArgoHubConnection[],
  region: string,
  req: FenceRequest,
): Promise<{ reason: string; final: boolean } | null> {
  const { revision } = req;
  try {
    const check = await checkSync({
      hubs,
      selector: t.argocd.appSelector,
      ...(t.argocd.appNamespace ? { appNamespace: t.argocd.appNamespace } : {}),
      clusters: clusterNames(t, region),
      revision,
      refresh: req.firstPoll ? t.argocd.refresh : "none",
      webhook: { repoUrl: t.argocd.webhookRepoUrl ?? t.git.url, branch: t.git.branch },
      sync: false,
      firstPoll: req.firstPoll ?? false,
      timeoutMs: t.argocd.requestTimeoutSeconds * 1000,
      ...(req.judge ? { judgeRevisions: req.judge(region) } : {}),
    });
    if (check.status === "SUCCEEDED") return null;
    // A commit on top that makes the region active again: waiting cannot fence it. Other
    // failures (a sync that failed, Git unreadable) may still clear: keep checking.
    if (check.status === "FAILED" && check.error)
      return {
        reason: `its apps are not passive: ${check.error.message}`,
        final: check.error.name === "RetargetUndone",
      };
    const pending = check.pending.slice(0, 3).map((p) => `${p.name}: ${p.reason}`);
    return {
      reason: `${check.total - check.done} of ${check.total} apps not Synced at ${revision.slice(0, 7)} (passive) and Healthy (${pending.join("; ")})`,
      final: false,
    };
  } catch (e) {
    return { reason: `its apps could not be checked: ${describe(e)}`, final: false };
  }
}

const clusterNames = (t: Topology, region: string) =>
  regionOf(t, region).spokes.map((s) => s.argocdCluster);
const spokeNames = (t: Topology, region: string) =>
  regionOf(t, region)
    .spokes.map((s) => s.name)
    .join(", ");

function trafficCommand(t: Topology, region: string): string {
  const r = regionOf(t, region);
  if (t.traffic.mode === "route53")
    return `aws route53 change-resource-record-sets --hosted-zone-id ${t.traffic.hostedZoneId ?? "?"} (UPSERT ${t.traffic.recordName ?? "?"} set ${r.route53.setIdentifier ?? "?"} with Weight 0)`;
  return `aws globalaccelerator update-endpoint-group --region ${GA_API_REGION} --endpoint-group-arn ${r.globalAccelerator?.endpointGroupArn ?? "?"} --traffic-dial-percentage 0`;
}

// ------------------------------------------------------------------ pending fences (table)

/**
 * A fence the Fence step could not verify (`pending`), until readiness finds the region answering
 * and verifies it (`verified`) or alarms. One item per old region, overwritten (never deleted:
 * the table's delete grant is kept to the lock and the incident claims).
 */
export interface FenceRecord {
  region: string;
  status: "pending" | "verified";
  targetRegion: string;
  /** The commit whose passive values the region's apps must be Synced at (or a later head). */
  revision: string;
  execution: string;
  since: string;
}

const fenceKey = (platform: string, region: string) => ({
  pk: `fence#${platform}`,
  sk: region,
});

function db(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient());
}

/** Stores a region's fence record (no table: nothing kept). */
export async function recordFence(platform: string, r: FenceRecord): Promise<void> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return;
  try {
    await db().send(
      new PutCommand({ TableName: table, Item: { ...fenceKey(platform, r.region), ...r } }),
    );
  } catch (e) {
    throw awsError(e, `recording the fence of ${r.region} in ${table}`, UnexpectedError);
  }
}

/** A region's fence record, or undefined when no failover left one. */
export async function fenceRecord(
  platform: string,
  region: string,
): Promise<FenceRecord | undefined> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return undefined;
  try {
    const out = await db().send(
      new GetCommand({ TableName: table, Key: fenceKey(platform, region) }),
    );
    const i = out.Item;
    if (!i || (i.status !== "pending" && i.status !== "verified")) return undefined;
    return {
      region,
      status: i.status,
      targetRegion: String(i.targetRegion),
      revision: String(i.revision),
      execution: String(i.execution),
      since: String(i.since),
    };
  } catch (e) {
    throw awsError(e, `reading the fence of ${region} from ${table}`, UnexpectedError);
  }
}
