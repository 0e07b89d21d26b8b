/**
 * Route 53 (restXml, 2013-04-01): health checks as seen from the checker regions (the trigger
 * corroborates a failure with the failing fraction) and weighted record sets (the traffic
 * alternative to Global Accelerator), with Route 53's atomic, validated change batches.
 */
import { randomUUID } from "node:crypto";
import { parseXML } from "@aws-sdk/xml-builder";
import {
  AwsServiceError,
  type RestRequest,
  type RestResponse,
  type RestXmlServiceHandler,
  type XmlObject,
} from "./protocol.ts";

/** The API version every Route 53 path starts with. */
const ROUTE53_VERSION = "2013-04-01";

/** A record set, with the field names of the Route 53 API. */
export interface RecordSet {
  Name: string;
  Type: string;
  SetIdentifier?: string;
  Weight?: number;
  TTL?: number;
  ResourceRecords?: { Value: string }[];
  AliasTarget?: { HostedZoneId: string; DNSName: string; EvaluateTargetHealth: boolean };
  HealthCheckId?: string;
}

/** A health check as the drill defines it. */
export interface HealthCheckDefinition {
  /** Fraction (0..1) of checker regions whose last observation failed. */
  failingFraction: number;
  fqdn?: string;
  resourcePath?: string;
}

/** Control surface of the Route 53 emulator. */
export interface Route53Emulator {
  handler: RestXmlServiceHandler;
  defineHealthCheck(id: string, definition: HealthCheckDefinition): void;
  setFailingFraction(id: string, fraction: number): void;
  /** Creates (or replaces) a hosted zone holding `records`. */
  defineWeightedRecords(zoneId: string, records: RecordSet[]): void;
  records(zoneId: string): RecordSet[];
}

/** The checker regions an observation list covers (one checker each). */
const CHECKERS: [region: string, ip: string][] = [
  ["us-east-1", "15.177.2.9"],
  ["us-west-1", "15.177.10.9"],
  ["us-west-2", "15.177.14.9"],
  ["eu-west-1", "15.177.62.9"],
  ["ap-southeast-1", "15.177.42.9"],
  ["ap-southeast-2", "15.177.54.9"],
  ["ap-northeast-1", "15.177.34.9"],
  ["sa-east-1", "15.177.50.9"],
];

const ACTIONS = new Set(["CREATE", "DELETE", "UPSERT"]);
const DEFAULT_MAX_ITEMS = 300;

function invalidInput(message: string): AwsServiceError {
  return new AwsServiceError("InvalidInput", `Invalid request: ${message}`);
}

function normalizeZoneId(id: string): string {
  return id.replace(/^\/?hostedzone\//, "");
}

function fqdn(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower : `${lower}.`;
}

function keyOf(r: RecordSet): string {
  return `${r.Name}|${r.Type}|${r.SetIdentifier ?? ""}`;
}

function describeKey(r: RecordSet): string {
  const id = r.SetIdentifier !== undefined ? `, set-identifier='${r.SetIdentifier}'` : "";
  return `[name='${r.Name}', type='${r.Type}'${id}]`;
}

/** Route 53 lists by name with its labels reversed, then type, then set identifier. */
function sortKey(r: { Name: string; Type: string; SetIdentifier?: string }): string {
  return `${r.Name.split(".").reverse().join(".")}\n${r.Type}\n${r.SetIdentifier ?? ""}`;
}

function asArray(v: unknown): unknown[] {
  if (v === undefined || v === "") return [];
  return Array.isArray(v) ? v : [v];
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : {};
}

function text(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

function integer(v: unknown, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isInteger(n))
    throw invalidInput(`${what} is not an integer`);
  return n;
}

function normalizeRecord(r: RecordSet): RecordSet {
  return {
    ...r,
    Name: fqdn(r.Name),
    ...(r.AliasTarget
      ? { AliasTarget: { ...r.AliasTarget, DNSName: fqdn(r.AliasTarget.DNSName) } }
      : {}),
  };
}

/** Reads one `<ResourceRecordSet>` from the parsed request and checks what Route 53 checks. */
function parseRecordSet(raw: unknown, action: string): RecordSet {
  const x = obj(raw);
  const name = text(x.Name);
  const type = text(x.Type);
  if (!name || !type) throw invalidInput("a ResourceRecordSet needs Name and Type");
  const alias = obj(x.AliasTarget);
  const r: RecordSet = { Name: fqdn(name), Type: type };
  const setId = text(x.SetIdentifier);
  const weight = integer(x.Weight, "Weight");
  const ttl = integer(x.TTL, "TTL");
  const values = asArray(obj(x.ResourceRecords).ResourceRecord).map((v) => ({
    Value: text(obj(v).Value) ?? "",
  }));
  if (setId !== undefined) r.SetIdentifier = setId;
  if (weight !== undefined) r.Weight = weight;
  if (ttl !== undefined) r.TTL = ttl;
  if (values.length > 0) r.ResourceRecords = values;
  if (x.AliasTarget !== undefined) {
    r.AliasTarget = {
      HostedZoneId: text(alias.HostedZoneId) ?? "",
      DNSName: fqdn(text(alias.DNSName) ?? ""),
      EvaluateTargetHealth: alias.EvaluateTargetHealth === "true",
    };
  }
  const healthCheck = text(x.HealthCheckId);
  if (healthCheck !== undefined) r.HealthCheckId = healthCheck;
  const where = `in Change with [Action=${action}, Name=${r.Name}, Type=${r.Type}${setId !== undefined ? `, SetIdentifier=${setId}` : ""}]`;
  const hasAlias = r.AliasTarget !== undefined;
  const hasValues = r.TTL !== undefined || r.ResourceRecords !== undefined;
  if (hasAlias === hasValues || (hasValues && (r.TTL === undefined || !r.ResourceRecords))) {
    throw invalidInput(
      `Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found ${hasAlias && hasValues ? "more than one" : "none"} ${where}`,
    );
  }
  if ((r.SetIdentifier === undefined) !== (r.Weight === undefined)) {
    throw invalidInput(`a weighted record needs both SetIdentifier and Weight ${where}`);
  }
  if (r.Weight !== undefined && (r.Weight < 0 || r.Weight > 255)) {
    throw invalidInput(`Weight must be from 0 to 255 ${where}`);
  }
  return r;
}

/** Whether a DELETE names the record exactly as it is (Route 53 compares every value). */
function sameRecord(a: RecordSet, b: RecordSet): boolean {
  const canonical = (r: RecordSet) =>
    JSON.stringify([
      r.Name,
      r.Type,
      r.SetIdentifier,
      r.Weight,
      r.TTL,
      r.ResourceRecords?.map((v) => v.Value).sort(),
      r.AliasTarget && [
        r.AliasTarget.HostedZoneId,
        r.AliasTarget.DNSName,
        r.AliasTarget.EvaluateTargetHealth,
      ],
      r.HealthCheckId,
    ]);
  return canonical(a) === canonical(b);
}

function xmlRecord(r: RecordSet): XmlObject {
  return {
    Name: r.Name,
    Type: r.Type,
    SetIdentifier: r.SetIdentifier,
    Weight: r.Weight,
    TTL: r.TTL,
    ResourceRecords: r.ResourceRecords
      ? { ResourceRecord: r.ResourceRecords.map((v) => ({ Value: v.Value })) }
      : undefined,
    AliasTarget: r.AliasTarget ? { ...r.AliasTarget } : undefined,
    HealthCheckId: r.HealthCheckId,
  };
}

/** Creates the emulator; `handler` serves the `route53` credential scope. */
export function createRoute53(): Route53Emulator {
  const checks = new Map<string, HealthCheckDefinition>();
  const zones = new Map<string, RecordSet[]>();
  const changes = new Map<string, Date>();

  function check(id: string): HealthCheckDefinition {
    const c = checks.get(id);
    if (!c) {
      throw new AwsServiceError(
        "NoSuchHealthCheck",
        `No health check exists with the specified ID ${id}.`,
        404,
      );
    }
    return c;
  }

  function zone(id: string): RecordSet[] {
    const z = zones.get(normalizeZoneId(id));
    if (!z) {
      throw new AwsServiceError("NoSuchHostedZone", `No hosted zone found with ID: ${id}`, 404);
    }
    return z;
  }

  function healthCheckStatus(id: string): RestResponse {
    const c = check(id);
    const failing = Math.round(c.failingFraction * CHECKERS.length);
    const now = new Date();
    return {
      root: "GetHealthCheckStatusResponse",
      body: {
        HealthCheckObservations: {
          HealthCheckObservation: CHECKERS.map(([region, ip], i) => ({
            Region: region,
            IPAddress: ip,
            StatusReport: {
              Status:
                i < failing
                  ? "Failure: HTTP Status Code 503, Service Unavailable. Resolved IP: 192.0.2.10"
                  : "Success: HTTP Status Code 200, OK",
              CheckedTime: now,
            },
          })),
        },
      },
    };
  }

  function healthCheck(id: string): RestResponse {
    return { root: "GetHealthCheckResponse", body: { HealthCheck: healthCheckXml(id) } };
  }

  /** ListHealthChecks: every check, by ID, in pages of maxitems (default 100, at most 1000: Route 53 API reference, ListHealthChecks). */
  function listHealthChecks(query: URLSearchParams): RestResponse {
    const max = Number(query.get("maxitems") ?? "100");
    if (!Number.isInteger(max) || max < 1 || max > 1000) {
      throw invalidInput("maxitems must be an integer from 1 to 1000.");
    }
    const marker = query.get("marker");
    const ids = [...checks.keys()].sort().filter((id) => !marker || id >= marker);
    const page = ids.slice(0, max);
    return {
      root: "ListHealthChecksResponse",
      body: {
        HealthChecks: { HealthCheck: page.map(healthCheckXml) },
        Marker: marker ?? "",
        IsTruncated: ids.length > max,
        ...(ids.length > max ? { NextMarker: ids[max] } : {}),
        MaxItems: String(max),
      },
    };
  }

  function healthCheckXml(id: string): XmlObject {
    const c = check(id);
    return {
      Id: id,
      CallerReference: `sandbox-${id}`,
      HealthCheckConfig: {
        Port: 443,
        Type: "HTTPS",
        ResourcePath: c.resourcePath ?? "/healthz",
        FullyQualifiedDomainName: c.fqdn ?? `${id}.sandbox.internal`,
        RequestInterval: 30,
        FailureThreshold: 3,
        MeasureLatency: false,
        Inverted: false,
        Disabled: false,
        EnableSNI: true,
      },
      HealthCheckVersion: 1,
    };
  }

  function listRecords(zoneId: string, query: URLSearchParams): RestResponse {
    const all = [...zone(zoneId)].sort((a, b) => sortKey(a).localeCompare(sortKey(b)));
    const name = query.get("name");
    const type = query.get("type");
    if (type && !name) throw invalidInput("a record type needs a record name");
    const maxItems = Number(query.get("maxitems") ?? DEFAULT_MAX_ITEMS);
    if (!Number.isInteger(maxItems) || maxItems < 1) throw invalidInput("maxitems must be >= 1");
    const from = name
      ? sortKey({
          Name: fqdn(name),
          Type: type ?? "",
          SetIdentifier: query.get("identifier") ?? "",
        })
      : "";
    const rest = all.filter((r) => sortKey(r).localeCompare(from) >= 0);
    const page = rest.slice(0, maxItems);
    const next = rest[maxItems];
    return {
      root: "ListResourceRecordSetsResponse",
      body: {
        ResourceRecordSets: { ResourceRecordSet: page.map(xmlRecord) },
        IsTruncated: next !== undefined,
        NextRecordName: next?.Name,
        NextRecordType: next?.Type,
        NextRecordIdentifier: next?.SetIdentifier,
        MaxItems: maxItems,
      },
    };
  }

  function changeRecords(zoneId: string, body: string): RestResponse {
    const records = zone(zoneId);
    let parsed: unknown;
    try {
      parsed = parseXML(body);
    } catch {
      throw invalidInput("the request body is not well-formed XML");
    }
    const batch = obj(obj(obj(parsed).ChangeResourceRecordSetsRequest).ChangeBatch);
    const list = asArray(obj(batch.Changes).Change).map(obj);
    if (list.length === 0) throw invalidInput("a ChangeBatch needs at least one Change");
    const next = new Map(records.map((r) => [keyOf(r), r]));
    const touched = new Set<string>();
    const problems: string[] = [];
    for (const c of list) {
      const action = text(c.Action) ?? "";
      if (!ACTIONS.has(action)) throw invalidInput(`unknown change action '${action}'`);
      const r = parseRecordSet(c.ResourceRecordSet, action);
      const key = keyOf(r);
      if (touched.has(key)) {
        problems.push(
          `The request contains an invalid set of changes for a resource record set ${describeKey(r)}`,
        );
        continue;
      }
      touched.add(key);
      const existing = next.get(key);
      if (action === "CREATE" && existing) {
        problems.push(
          `Tried to create resource record set ${describeKey(r)} but it already exists`,
        );
      } else if (action === "DELETE" && !existing) {
        problems.push(`Tried to delete resource record set ${describeKey(r)} but it was not found`);
      } else if (action === "DELETE" && existing && !sameRecord(existing, r)) {
        problems.push(
          `Tried to delete resource record set ${describeKey(r)} but the values provided do not match the current values`,
        );
      } else if (action === "DELETE") {
        next.delete(key);
      } else {
        next.set(key, r);
      }
    }
    const weighted = new Map<string, boolean>();
    for (const r of next.values()) {
      const group = `${r.Name} type ${r.Type}`;
      const isWeighted = r.SetIdentifier !== undefined;
      if (weighted.get(group) === !isWeighted) {
        problems.push(`RRSet with DNS name ${group} cannot mix weighted and non-weighted sets`);
      }
      weighted.set(group, isWeighted);
    }
    if (problems.length > 0) {
      throw new AwsServiceError("InvalidChangeBatch", `[${[...new Set(problems)].join(", ")}]`);
    }
    records.splice(0, records.length, ...next.values());
    const id = `C${randomUUID().replace(/-/g, "").slice(0, 20).toUpperCase()}`;
    const submitted = new Date();
    changes.set(id, submitted);
    const comment = text(batch.Comment);
    return {
      root: "ChangeResourceRecordSetsResponse",
      body: {
        ChangeInfo: {
          Id: `/change/${id}`,
          Status: "PENDING",
          SubmittedAt: submitted,
          Comment: comment,
        },
      },
    };
  }

  function getChange(id: string): RestResponse {
    const plain = id.replace(/^\/?change\//, "");
    const submitted = changes.get(plain);
    if (!submitted) {
      throw new AwsServiceError(
        "NoSuchChange",
        `A change with the specified change ID does not exist.`,
        404,
      );
    }
    return {
      root: "GetChangeResponse",
      body: { ChangeInfo: { Id: `/change/${plain}`, Status: "INSYNC", SubmittedAt: submitted } },
    };
  }

  const handler: RestXmlServiceHandler = (req: RestRequest) => {
    const parts = req.path.split("/").filter(Boolean).map(decodeURIComponent);
    const [version, kind, id, sub, ...rest] = parts;
    if (version === ROUTE53_VERSION && kind === "healthcheck" && id === undefined) {
      if (req.method === "GET") return listHealthChecks(req.query);
    }
    if (version === ROUTE53_VERSION && id !== undefined && rest.length === 0) {
      if (kind === "healthcheck" && req.method === "GET" && sub === "status") {
        return healthCheckStatus(id);
      }
      if (kind === "healthcheck" && req.method === "GET" && sub === undefined) {
        return healthCheck(id);
      }
      if (kind === "hostedzone" && sub === "rrset" && req.method === "GET") {
        return listRecords(id, req.query);
      }
      if (kind === "hostedzone" && sub === "rrset" && req.method === "POST") {
        return changeRecords(id, req.body);
      }
      if (kind === "change" && req.method === "GET" && sub === undefined) {
        return getChange(id);
      }
    }
    throw new AwsServiceError(
      "UnknownOperationException",
      `The sandbox does not serve ${req.method} ${req.path}`,
      404,
    );
  };

  return {
    handler,
    defineHealthCheck(id, definition) {
      checks.set(id, { ...definition });
    },
    setFailingFraction(id, fraction) {
      const c = checks.get(id);
      if (!c) throw new Error(`no health check ${id}`);
      c.failingFraction = fraction;
    },
    defineWeightedRecords(zoneId, records) {
      zones.set(normalizeZoneId(zoneId), records.map(normalizeRecord));
    },
    records(zoneId) {
      const z = zones.get(normalizeZoneId(zoneId));
      if (!z) throw new Error(`no hosted zone ${zoneId}`);
      return z.map((r) => structuredClone(r));
    },
  };
}
