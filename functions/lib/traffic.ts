/**
 * Traffic: where user traffic goes, and moving it to the target region in stages. With Global
 * Accelerator a region's share is its endpoint group's traffic dial; with Route 53 it is the
 * Weight of the region's weighted record (the orchestrator writes 0..100, so weight = percent).
 * A stage at `percent` p sets the target to 100 and every other region to 100 - p.
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
import { awsError, globalAcceleratorClient, route53Client } from "./aws.ts";
import { ConfigError, TrafficPreconditionFailed, TrafficShiftFailed } from "./errors.ts";

export interface TrafficTopology {
  mode: "global-accelerator" | "route53";
  hostedZoneId?: string;
  recordName?: string;
  regions: Record<
    string,
    { healthCheckId: string; endpointGroupArn?: string; setIdentifier?: string }
  >;
}

type Dials = Record<string, number>;
interface StageResult {
  skipped: boolean;
  changes: { region: string; from: number; to: number }[];
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

async function describeGroup(region: string, arn: string, step: string): Promise<GroupView> {
  try {
    const out = await globalAcceleratorClient().send(
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
    Object.keys(topo.regions).map((r) => describeGroup(r, groupArn(topo, r), step)),
  );
}

const weightOf = (e: EndpointDescription) => e.Weight ?? GA_DEFAULT_WEIGHT;

/** Every endpoint copied back whole: UpdateEndpointGroup replaces the list, and a missing Weight resets to 128. */
async function writeDial(g: GroupView, to: number, what: string): Promise<void> {
  try {
    await globalAcceleratorClient().send(
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

async function applyGlobalAccelerator(
  topo: TrafficTopology,
  target: string,
  percent: number,
): Promise<StageResult> {
  const step = "[ShiftTraffic]";
  const groups = await readGroups(topo, step);
  const dials: Dials = Object.fromEntries(groups.map((g) => [g.region, g.dial]));
  const dialFor = (region: string) => (region === target ? 100 : 100 - percent);
  const todo = targetFirst(
    groups.filter((g) => g.dial !== dialFor(g.region)),
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
    const to = dialFor(g.region);
    await writeDial(
      g,
      to,
      `${step} UpdateEndpointGroup ${g.arn} (${g.region}) dial ${g.dial}->${to}${changedSoFar(changes)}`,
    );
    changes.push({ region: g.region, from: g.dial, to });
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
      const out: ListResourceRecordSetsCommandOutput = await route53Client().send(
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

async function applyRoute53(
  topo: TrafficTopology,
  target: string,
  percent: number,
): Promise<StageResult> {
  const step = "[ShiftTraffic]";
  const { zone, name } = route53Target(topo);
  const regions = await readRecords(topo, step);
  const dials: Dials = Object.fromEntries(regions.map((r) => [r.region, r.dial]));
  const weightFor = (region: string) => (region === target ? 100 : 100 - percent);
  const todo = targetFirst(
    regions.filter((r) => r.records.some((rr) => rr.Weight !== weightFor(r.region))),
    target,
  );
  if (!todo.length) return { skipped: true, changes: [], after: { dials } };
  const changes = todo.map((r) => ({ region: r.region, from: r.dial, to: weightFor(r.region) }));
  try {
    await route53Client().send(
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

/** Each region's share of traffic now (dial or weight, 0..100): the before/after of a failover. */
export async function readTraffic(topo: TrafficTopology): Promise<{ dials: Dials }> {
  if (topo.mode === "global-accelerator") {
    const groups = await readGroups(topo, "[Traffic]");
    return { dials: Object.fromEntries(groups.map((g) => [g.region, g.dial])) };
  }
  const regions = await readRecords(topo, "[Traffic]");
  return { dials: Object.fromEntries(regions.map((r) => [r.region, r.dial])) };
}

/**
 * Applies one stage: target 100, every other region 100 - percent, the target raised first so
 * capacity is never withdrawn before it is added. Skipped (no write) when already there; refuses
 * (TrafficPreconditionFailed) to move traffic to a GA endpoint group with no endpoint carrying
 * weight, since it would be sent nowhere.
 */
export async function applyStage(
  topo: TrafficTopology,
  req: { targetRegion: string; percent: number },
): Promise<StageResult> {
  if (!Number.isInteger(req.percent) || req.percent < 0 || req.percent > 100) {
    throw new ConfigError(
      `traffic stage ${req.percent} is not a whole percentage between 0 and 100`,
    );
  }
  regionEntry(topo, req.targetRegion);
  return topo.mode === "global-accelerator"
    ? applyGlobalAccelerator(topo, req.targetRegion, req.percent)
    : applyRoute53(topo, req.targetRegion, req.percent);
}

async function gaHealth(topo: TrafficTopology, target: string) {
  const g = await describeGroup(target, groupArn(topo, target), "[VerifyTraffic]");
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
  const id = regionEntry(topo, target).healthCheckId;
  let observations: { region: string; status: string }[];
  try {
    const out = await route53Client().send(new GetHealthCheckStatusCommand({ HealthCheckId: id }));
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
