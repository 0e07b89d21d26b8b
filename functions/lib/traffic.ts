/**
 * Traffic: where user traffic goes, and moving it to the target region in stages. A stage at
 * `percent` p moves p% of the traffic to the target; only the regions serving before the shift
 * (dial or weight > 0) give it up, a region at 0 (passive) stays at 0, and nothing moves back:
 * the target is never lowered, no other region is ever raised. Since nothing is ever raised, the
 * regions above 0 at a later stage are the ones that were serving when the shift began: each
 * stage works from a live read, and a new execution resumes where the dials are.
 *
 * Global Accelerator: a region's share is governed by its endpoint group's traffic dial, which
 * limits what the group takes of the traffic routed to it; what a group turns away goes to the
 * other groups that can take it. So the target's dial is 100 from the first stage (it takes what
 * the sources turn away) and each serving region's dial goes down to 100 - p (never up); a
 * passive region's dial stays 0, or it would take part of what the sources turn away.
 *
 * Route 53: weights are relative (a record's share is its weight over the sum of weights). A
 * stage writes the target p and splits 100 - p over the serving regions in proportion to their
 * weights, everyone else 0: weights then sum to 100, so weight = percent. All weights 0 means
 * equal shares to Route 53, so all-zero is read as equal and never written.
 */
import {
  DescribeEndpointGroupCommand,
  type EndpointDescription,
  UpdateEndpointGroupCommand,
} from "@aws-sdk/client-global-accelerator";
import {
  ChangeResourceRecordSetsCommand,
  GetHealthCheckStatusCommand,
  ListResourceRecordSetsCommand,
  type ListResourceRecordSetsCommandOutput,
  type ResourceRecordSet,
  type RRType,
} from "@aws-sdk/client-route-53";
import {
  type AwsActor,
  actorFor,
  awsError,
  globalAcceleratorClient,
  type RoleAccess,
  route53Client,
} from "./aws.ts";
import { ConfigError, TrafficPreconditionFailed, TrafficShiftFailed } from "./errors.ts";

export interface TrafficTopology {
  mode: "global-accelerator" | "route53";
  hostedZoneId?: string;
  recordName?: string;
  /** The role in the hosted zone's account (route53 mode); absent: the function's own. */
  zoneRole?: RoleAccess;
  regions: Record<
    string,
    {
      healthCheckId: string;
      endpointGroupArn?: string;
      setIdentifier?: string;
      /** The role in the endpoint group's account. */
      gaRole?: RoleAccess;
      /** The role in the health check's account. */
      healthCheckRole?: RoleAccess;
    }
  >;
}

type Dials = Record<string, number>;
export interface StageResult {
  skipped: boolean;
  /** Each write, with the identity it was made with (account, assumed role and session). */
  changes: { region: string; from: number; to: number; actor?: AwsActor }[];
  after: { dials: Dials };
}

/** What Global Accelerator gives an endpoint whose Weight is not set. */
const GA_DEFAULT_WEIGHT = 128;
/** A traffic dial that is not set is 100. */
const GA_DEFAULT_DIAL = 100;

interface GroupView {
  region: string;
  arn: string;
  dial: number;
  endpoints: EndpointDescription[];
  role?: RoleAccess;
}

function regionEntry(topo: TrafficTopology, region: string) {
  const entry = topo.regions[region];
  if (!entry) {
    throw new ConfigError(
      `region "${region}" is not in the traffic topology (known: ${Object.keys(topo.regions).join(", ")})`,
    );
  }
  return entry;
}

/** Target first, then the others: raising before lowering never leaves every dial low. */
function targetFirst<T extends { region: string }>(items: T[], target: string): T[] {
  return [...items.filter((i) => i.region === target), ...items.filter((i) => i.region !== target)];
}

async function describeGroup(
  region: string,
  arn: string,
  step: string,
  role: RoleAccess | undefined,
): Promise<GroupView> {
  try {
    const out = await globalAcceleratorClient(role).send(
      new DescribeEndpointGroupCommand({ EndpointGroupArn: arn }),
    );
    const group = out.EndpointGroup;
    if (!group)
      throw new TrafficShiftFailed(
        `${step} DescribeEndpointGroup ${arn} (${region}) returned no endpoint group`,
      );
    return {
      region,
      arn,
      dial: group.TrafficDialPercentage ?? GA_DEFAULT_DIAL,
      endpoints: group.EndpointDescriptions ?? [],
      ...(role ? { role } : {}),
    };
  } catch (e) {
    throw awsError(e, `${step} DescribeEndpointGroup ${arn} (${region})`, TrafficShiftFailed);
  }
}

function groupArn(topo: TrafficTopology, region: string): string {
  const arn = regionEntry(topo, region).endpointGroupArn;
  if (!arn) {
    throw new ConfigError(
      `regions.${region}.globalAccelerator.endpointGroupArn is missing: traffic.mode is global-accelerator`,
    );
  }
  return arn;
}

async function readGroups(topo: TrafficTopology, step: string): Promise<GroupView[]> {
  return Promise.all(
    Object.keys(topo.regions).map((r) =>
      describeGroup(r, groupArn(topo, r), step, regionEntry(topo, r).gaRole),
    ),
  );
}

const weightOf = (e: EndpointDescription) => e.Weight ?? GA_DEFAULT_WEIGHT;

/** Every endpoint copied back whole: UpdateEndpointGroup replaces the list, and a missing Weight resets to 128. */
async function writeDial(g: GroupView, to: number, what: string): Promise<void> {
  try {
    await globalAcceleratorClient(g.role).send(
      new UpdateEndpointGroupCommand({
        EndpointGroupArn: g.arn,
        TrafficDialPercentage: to,
        EndpointConfigurations: g.endpoints.map((e) => ({
          EndpointId: e.EndpointId,
          Weight: weightOf(e),
          ...(e.ClientIPPreservationEnabled !== undefined
            ? { ClientIPPreservationEnabled: e.ClientIPPreservationEnabled }
            : {}),
        })),
      }),
    );
  } catch (e) {
    throw awsError(e, what, TrafficShiftFailed);
  }
}

function changedSoFar(changes: StageResult["changes"]): string {
  return changes.length
    ? ` (already changed: ${changes.map((c) => `${c.region} ${c.from}->${c.to}`).join(", ")})`
    : "";
}

/** GA dials at stage p: the target 100, every other region down to 100 - p if above it (0 stays 0). */
function gaDials(dials: Dials, target: string, percent: number): Dials {
  return Object.fromEntries(
    Object.entries(dials).map(([r, d]) => [r, r === target ? 100 : Math.min(d, 100 - percent)]),
  );
}

async function applyGlobalAccelerator(
  groups: GroupView[],
  target: string,
  percent: number,
): Promise<StageResult> {
  const step = "[ShiftTraffic]";
  const dials: Dials = Object.fromEntries(groups.map((g) => [g.region, g.dial]));
  const want = gaDials(dials, target, percent);
  const todo = targetFirst(
    groups.filter((g) => g.dial !== want[g.region]),
    target,
  );
  if (!todo.length) return { skipped: true, changes: [], after: { dials } };
  const targetGroup = groups.find((g) => g.region === target);
  if (!targetGroup?.endpoints.some((e) => weightOf(e) > 0)) {
    throw new TrafficPreconditionFailed(
      `${step} endpoint group of ${target} has no endpoint with Weight > 0: moving traffic there would send it nowhere; nothing was changed`,
      [
        `endpoints: ${targetGroup?.endpoints.map((e) => `${e.EndpointId} weight ${weightOf(e)}`).join(", ") || "none"}`,
        `add an endpoint or give one a Weight in ${targetGroup?.arn ?? target}, then re-run`,
      ],
    );
  }
  const changes: StageResult["changes"] = [];
  for (const g of todo) {
    const to = want[g.region] ?? g.dial;
    await writeDial(
      g,
      to,
      `${step} UpdateEndpointGroup ${g.arn} (${g.region}) dial ${g.dial}->${to}${changedSoFar(changes)}`,
    );
    const actor = actorFor(g.role);
    changes.push({ region: g.region, from: g.dial, to, ...(actor ? { actor } : {}) });
    dials[g.region] = to;
  }
  return { skipped: false, changes, after: { dials } };
}

function route53Target(topo: TrafficTopology): { zone: string; name: string } {
  if (!topo.hostedZoneId || !topo.recordName) {
    throw new ConfigError(
      "traffic.hostedZoneId and traffic.recordName are required when traffic.mode is route53",
    );
  }
  return { zone: topo.hostedZoneId, name: topo.recordName };
}

/** Route 53 answers `\052.example.com.` for `*.example.com`: compare names the way it does. */
function normalName(name: string): string {
  const decoded = name.replace(/\\(\d{3})/g, (_, octal: string) =>
    String.fromCharCode(Number.parseInt(octal, 8)),
  );
  const lower = decoded.toLowerCase();
  return lower.endsWith(".") ? lower : `${lower}.`;
}

interface RegionRecords {
  region: string;
  /** One per record type (A and AAAA may share a SetIdentifier). */
  records: ResourceRecordSet[];
  dial: number;
}

async function readRecords(topo: TrafficTopology, step: string): Promise<RegionRecords[]> {
  const { zone, name } = route53Target(topo);
  const wanted = normalName(name);
  const found: ResourceRecordSet[] = [];
  type Page = { name: string; type?: RRType; id?: string };
  let next: Page | undefined = { name };
  while (next) {
    const page: Page = next;
    try {
      const out: ListResourceRecordSetsCommandOutput = await route53Client(topo.zoneRole).send(
        new ListResourceRecordSetsCommand({
          HostedZoneId: zone,
          StartRecordName: page.name,
          ...(page.type ? { StartRecordType: page.type } : {}),
          ...(page.id ? { StartRecordIdentifier: page.id } : {}),
        }),
      );
      found.push(
        ...(out.ResourceRecordSets ?? []).filter((rr) => rr.Name && normalName(rr.Name) === wanted),
      );
      next =
        out.IsTruncated && out.NextRecordName && normalName(out.NextRecordName) === wanted
          ? {
              name: out.NextRecordName,
              ...(out.NextRecordType ? { type: out.NextRecordType } : {}),
              ...(out.NextRecordIdentifier ? { id: out.NextRecordIdentifier } : {}),
            }
          : undefined;
    } catch (e) {
      throw awsError(
        e,
        `${step} ListResourceRecordSets ${name} in hosted zone ${zone}`,
        TrafficShiftFailed,
      );
    }
  }
  return Object.entries(topo.regions).map(([region, entry]) => {
    if (!entry.setIdentifier) {
      throw new ConfigError(
        `regions.${region}.route53.setIdentifier is missing: traffic.mode is route53`,
      );
    }
    const records = found.filter(
      (rr) => rr.SetIdentifier === entry.setIdentifier && rr.Weight !== undefined,
    );
    const first = records[0];
    if (!first) {
      throw new TrafficPreconditionFailed(
        `${step} no weighted record ${name} with SetIdentifier "${entry.setIdentifier}" (region ${region}) in hosted zone ${zone}`,
        [
          `check traffic.recordName and regions.${region}.route53.setIdentifier against the hosted zone`,
        ],
      );
    }
    return { region, records, dial: first.Weight ?? 0 };
  });
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

/** Route 53 gives every record an equal share when all weights are 0. */
function effectiveWeights(weights: Dials): Dials {
  return Object.values(weights).every((w) => w === 0)
    ? Object.fromEntries(Object.keys(weights).map((r) => [r, 1]))
    : weights;
}

/**
 * Route 53 weights at stage p, summing to 100: the target p; the regions serving now (weight > 0,
 * or all of them when every weight is 0) share 100 - p in proportion to their weights (largest
 * remainder, so the sum is exact); every other region 0. With no other region serving, target 100.
 */
function route53Weights(weights: Dials, target: string, percent: number): Dials {
  const sources = Object.entries(effectiveWeights(weights)).filter(
    ([r, w]) => r !== target && w > 0,
  );
  const out: Dials = Object.fromEntries(Object.keys(weights).map((r) => [r, 0]));
  if (!sources.length) return { ...out, [target]: 100 };
  const pool = 100 - percent;
  const total = sum(sources.map(([, w]) => w));
  const exact = sources.map(([region, w]) => ({ region, x: (pool * w) / total }));
  let left = pool;
  for (const e of exact) {
    out[e.region] = Math.floor(e.x);
    left -= Math.floor(e.x);
  }
  for (const e of [...exact].sort((a, b) => (b.x % 1) - (a.x % 1)).slice(0, left)) {
    out[e.region] = (out[e.region] ?? 0) + 1;
  }
  return { ...out, [target]: percent };
}

/**
 * The target's share of the traffic now, 0..100. GA: its dial bounds what it takes, the other
 * regions' dials what they turn away. Route 53: its weight over the sum of weights.
 */
function targetShare(mode: TrafficTopology["mode"], dials: Dials, target: string): number {
  if (mode === "global-accelerator") {
    const others = Object.entries(dials)
      .filter(([r]) => r !== target)
      .map(([, d]) => d);
    return Math.max(0, Math.min(dials[target] ?? 0, 100 - Math.max(0, ...others)));
  }
  const weights = effectiveWeights(dials);
  return (100 * (weights[target] ?? 0)) / sum(Object.values(weights));
}

async function applyRoute53(
  topo: TrafficTopology,
  regions: RegionRecords[],
  target: string,
  percent: number,
): Promise<StageResult> {
  const step = "[ShiftTraffic]";
  const { zone, name } = route53Target(topo);
  const dials: Dials = Object.fromEntries(regions.map((r) => [r.region, r.dial]));
  // The target already has this share or more: writing the stage would move traffic back.
  if (targetShare("route53", dials, target) >= percent) {
    return { skipped: true, changes: [], after: { dials } };
  }
  const want = route53Weights(dials, target, percent);
  const weightFor = (region: string) => want[region] ?? 0;
  const todo = targetFirst(
    regions.filter((r) => r.records.some((rr) => rr.Weight !== weightFor(r.region))),
    target,
  );
  if (!todo.length) return { skipped: true, changes: [], after: { dials } };
  const actor = actorFor(topo.zoneRole);
  const changes = todo.map((r) => ({
    region: r.region,
    from: r.dial,
    to: weightFor(r.region),
    ...(actor ? { actor } : {}),
  }));
  try {
    await route53Client(topo.zoneRole).send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: zone,
        ChangeBatch: {
          Comment: `gitops-failover: ${percent}% of traffic to ${target}`,
          Changes: todo.flatMap((r) =>
            r.records
              .filter((rr) => rr.Weight !== weightFor(r.region))
              .map((rr) => ({
                Action: "UPSERT" as const,
                ResourceRecordSet: { ...rr, Weight: weightFor(r.region) },
              })),
          ),
        },
      }),
    );
  } catch (e) {
    throw awsError(
      e,
      `${step} ChangeResourceRecordSets ${name} in hosted zone ${zone}`,
      TrafficShiftFailed,
    );
  }
  for (const c of changes) dials[c.region] = c.to;
  return { skipped: false, changes, after: { dials } };
}

/** What a stage works from: every region read live, in the mode's own terms. */
type Live =
  | { mode: "global-accelerator"; groups: GroupView[] }
  | { mode: "route53"; regions: RegionRecords[] };

async function readLive(topo: TrafficTopology, step: string): Promise<Live> {
  return topo.mode === "global-accelerator"
    ? { mode: topo.mode, groups: await readGroups(topo, step) }
    : { mode: topo.mode, regions: await readRecords(topo, step) };
}

function dialsOf(live: Live): Dials {
  const views = live.mode === "global-accelerator" ? live.groups : live.regions;
  return Object.fromEntries(views.map((v) => [v.region, v.dial]));
}

function applyLive(
  topo: TrafficTopology,
  live: Live,
  target: string,
  percent: number,
): Promise<StageResult> {
  return live.mode === "global-accelerator"
    ? applyGlobalAccelerator(live.groups, target, percent)
    : applyRoute53(topo, live.regions, target, percent);
}

function checkPercent(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0 || percent > 100) {
    throw new ConfigError(`traffic stage ${percent} is not a whole percentage between 0 and 100`);
  }
}

/** Each region's share of traffic now (dial or weight, 0..100): the before/after of a failover. */
export async function readTraffic(topo: TrafficTopology): Promise<{ dials: Dials }> {
  return { dials: dialsOf(await readLive(topo, "[Traffic]")) };
}

/**
 * Which stage to apply: `next` (the one after the last this execution applied), or a later one
 * when the target already has more than that stage's share, so a new execution after a half-done
 * one resumes where traffic is instead of starting over, and nothing moves back. A stage the
 * target already has exactly is applied again (a no-op write-wise) so that its health is verified
 * before the next one — the case of a retry after a write whose answer was lost.
 */
export function stageFor(
  stages: readonly number[],
  next: number,
  share: number,
): { stage: number; percent: number } {
  const last = stages.length - 1;
  let stage = Math.min(Math.max(next, 0), last);
  while (stage < last && (stages[stage] ?? 100) < share) stage++;
  return { stage, percent: stages[stage] ?? 100 };
}

/**
 * Reads traffic live, picks the stage with {@link stageFor} and applies it as the file header
 * describes, the target raised first so capacity is never withdrawn before it is added. Skipped
 * (no write) when already there, or (Route 53) when the target already has that share or more;
 * refuses (TrafficPreconditionFailed) to move traffic to a GA endpoint group with no endpoint
 * carrying weight, since it would be sent nowhere.
 */
export async function applyNextStage(
  topo: TrafficTopology,
  req: { targetRegion: string; stages: readonly number[]; next: number },
): Promise<StageResult & { stage: number; percent: number }> {
  if (!req.stages.length) throw new ConfigError("traffic.stages is empty");
  for (const p of req.stages) checkPercent(p);
  regionEntry(topo, req.targetRegion);
  const live = await readLive(topo, "[ShiftTraffic]");
  const share = targetShare(topo.mode, dialsOf(live), req.targetRegion);
  const { stage, percent } = stageFor(req.stages, req.next, share);
  return { ...(await applyLive(topo, live, req.targetRegion, percent)), stage, percent };
}

async function gaHealth(topo: TrafficTopology, target: string) {
  const g = await describeGroup(
    target,
    groupArn(topo, target),
    "[VerifyTraffic]",
    regionEntry(topo, target).gaRole,
  );
  if (!g.endpoints.length)
    return { healthy: false, detail: [`endpoint group ${g.arn} (${target}) has no endpoints`] };
  const weighted = g.endpoints.filter((e) => weightOf(e) > 0);
  if (!weighted.length) {
    return {
      healthy: false,
      detail: [`every endpoint of ${g.arn} (${target}) has Weight 0: none takes traffic`],
    };
  }
  const sick = weighted.filter((e) => e.HealthState !== "HEALTHY");
  if (!sick.length)
    return { healthy: true, detail: [`${weighted.length} endpoint(s) HEALTHY in ${target}`] };
  return {
    healthy: false,
    detail: sick.map(
      (e) =>
        `${e.EndpointId ?? "?"}: ${e.HealthState ?? "UNKNOWN"}${e.HealthReason ? ` (${e.HealthReason})` : ""}`,
    ),
  };
}

async function route53Health(topo: TrafficTopology, target: string) {
  const { healthCheckId: id, healthCheckRole } = regionEntry(topo, target);
  let observations: { region: string; status: string }[];
  try {
    const out = await route53Client(healthCheckRole).send(
      new GetHealthCheckStatusCommand({ HealthCheckId: id }),
    );
    observations = (out.HealthCheckObservations ?? []).map((o) => ({
      region: o.Region ?? o.IPAddress ?? "?",
      status: o.StatusReport?.Status ?? "no report",
    }));
  } catch (e) {
    throw awsError(e, `[VerifyTraffic] GetHealthCheckStatus ${id} (${target})`, TrafficShiftFailed);
  }
  const ok = observations.filter((o) => o.status.startsWith("Success")).length;
  const fraction = observations.length ? ok / observations.length : 0;
  return {
    healthy: observations.length > 0 && fraction >= 0.5,
    detail: [
      `${ok}/${observations.length} Route 53 checkers report Success for health check ${id} (${target}): ${fraction.toFixed(2)}`,
      ...observations
        .filter((o) => !o.status.startsWith("Success"))
        .map((o) => `${o.region}: ${o.status}`),
    ],
  };
}

/**
 * Whether the target's endpoints can take traffic. GA: at least one endpoint with weight and
 * every weighted endpoint HEALTHY. Route 53: at least half of the checkers report Success.
 */
export async function checkTargetHealth(
  topo: TrafficTopology,
  targetRegion: string,
): Promise<{ healthy: boolean; detail: string[] }> {
  return topo.mode === "global-accelerator"
    ? gaHealth(topo, targetRegion)
    : route53Health(topo, targetRegion);
}
