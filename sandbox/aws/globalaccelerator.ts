/**
 * Global Accelerator control plane (awsJson1_1): endpoint groups with their traffic dials and
 * endpoint weights, UpdateEndpointGroup's replace-the-whole-list semantics (an omitted Weight
 * becomes 128, as on AWS), health per endpoint, and the faults the drill needs (throttled
 * updates, updates refused). The server only routes us-west-2 here: the API has no other endpoint.
 */
import { AwsServiceError, type JsonServiceHandler, requireString } from "./protocol.ts";

/** The only region serving the Global Accelerator API. */
export const GA_REGION = "us-west-2";

/** The weight AWS gives an endpoint configuration sent without one. */
const DEFAULT_WEIGHT = 128;

/** An endpoint group as the drill defines it (one per region). */
export interface EndpointGroupDefinition {
  arn: string;
  region: string;
  dial: number;
  endpoints: { id: string; weight: number; healthy: boolean }[];
}

/** One call the emulator answered (or refused). */
export interface GaCall {
  action: string;
  endpointGroupArn?: string;
  /** `ok`, or the error code it was answered with (`ThrottlingException`, ...). */
  outcome: string;
}

/** Control surface of the Global Accelerator emulator. */
export interface GaEmulator {
  handler: JsonServiceHandler;
  defineEndpointGroup(definition: EndpointGroupDefinition): void;
  /** Sets the health of every endpoint of a group (new endpoints get it too). */
  setHealthy(arn: string, healthy: boolean): void;
  /**
   * Fault ga-throttled: the next `n` UpdateEndpointGroup calls answer ThrottlingException
   * (reads are served: a throttled write is what the retries must absorb).
   */
  throttleUpdates(n: number): void;
  /** Fault ga-update-fails: UpdateEndpointGroup answers AccessDeniedException. */
  setUpdatesFail(fail: boolean): void;
  /** Traffic dial per endpoint-group region. */
  dials(): Record<string, number>;
  /** Current endpoint weights of a group. */
  weights(arn: string): Record<string, number>;
  calls(): GaCall[];
  /** How long traffic takes to follow an accepted update (time model; default 0). */
  setConvergenceMs(ms: number): void;
  /** Every accepted UpdateEndpointGroup with its own event times (ms epoch). */
  updates(): GaUpdateEvent[];
}

/** One accepted dial change: when it was made and when traffic follows it. */
export interface GaUpdateEvent {
  region: string;
  dial: number;
  at: number;
  convergedAt: number;
}

interface Endpoint {
  id: string;
  weight: number;
  healthy: boolean;
  clientIpPreservation: boolean;
}

interface EndpointGroup {
  arn: string;
  region: string;
  dial: number;
  healthy: boolean;
  endpoints: Endpoint[];
}

function invalidArgument(message: string): AwsServiceError {
  return new AwsServiceError("InvalidArgumentException", message);
}

/**
 * A range constraint of the API model, checked by the service front end before the operation
 * runs: AWS answers ValidationException with the "N validation error(s) detected" wording,
 * 1-based `<list>.<n>.member.<field>` paths and Java's number rendering (a Float dial of 150 is
 * '150.0'). Model: EndpointWeight 0-255, TrafficDialPercentage 0-100 (Global Accelerator API
 * reference, EndpointConfiguration and UpdateEndpointGroup).
 */
function rangeProblem(
  value: number,
  path: string,
  min: number,
  max: number,
  float: boolean,
): string | undefined {
  const shown = float && Number.isInteger(value) ? value.toFixed(1) : String(value);
  if (value > max) {
    return `Value '${shown}' at '${path}' failed to satisfy constraint: Member must have value less than or equal to ${max}`;
  }
  if (value < min) {
    return `Value '${shown}' at '${path}' failed to satisfy constraint: Member must have value greater than or equal to ${min}`;
  }
  return undefined;
}

function validationError(problems: string[]): AwsServiceError {
  const n = problems.length;
  return new AwsServiceError(
    "ValidationException",
    `${n} validation error${n === 1 ? "" : "s"} detected: ${problems.join("; ")}`,
  );
}

/** The model's range constraints on UpdateEndpointGroup's input, all reported at once. */
function updateProblems(input: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const dial = input.TrafficDialPercentage;
  if (typeof dial === "number") {
    const p = rangeProblem(dial, "trafficDialPercentage", 0, 100, true);
    if (p) problems.push(p);
  }
  const configs = Array.isArray(input.EndpointConfigurations) ? input.EndpointConfigurations : [];
  configs.forEach((raw, i) => {
    const weight = (raw as Record<string, unknown> | null)?.Weight;
    if (typeof weight === "number") {
      const p = rangeProblem(
        weight,
        `endpointConfigurations.${i + 1}.member.weight`,
        0,
        255,
        false,
      );
      if (p) problems.push(p);
    }
  });
  return problems;
}

function listenerOf(groupArn: string): string {
  return groupArn.split("/endpoint-group/")[0] ?? groupArn;
}

function describe(g: EndpointGroup) {
  return {
    EndpointGroupArn: g.arn,
    EndpointGroupRegion: g.region,
    EndpointDescriptions: g.endpoints.map((e) => ({
      EndpointId: e.id,
      Weight: e.weight,
      HealthState: e.healthy ? "HEALTHY" : "UNHEALTHY",
      ...(e.healthy ? {} : { HealthReason: "Health checks failed" }),
      ClientIPPreservationEnabled: e.clientIpPreservation,
    })),
    TrafficDialPercentage: g.dial,
    HealthCheckPort: 443,
    HealthCheckProtocol: "HTTPS",
    HealthCheckPath: "/healthz",
    HealthCheckIntervalSeconds: 10,
    ThresholdCount: 3,
  };
}

function endpointConfigurations(value: unknown, old: EndpointGroup): Endpoint[] {
  if (!Array.isArray(value)) throw invalidArgument("EndpointConfigurations must be a list.");
  const seen = new Set<string>();
  return value.map((raw) => {
    const c = (typeof raw === "object" && raw !== null ? raw : {}) as Record<string, unknown>;
    const id = requireString(c, "EndpointId");
    if (seen.has(id)) throw invalidArgument(`Duplicate endpoint ${id}.`);
    seen.add(id);
    const weight = c.Weight ?? DEFAULT_WEIGHT;
    if (typeof weight !== "number" || !Number.isInteger(weight)) {
      throw new AwsServiceError("SerializationException", `Weight for ${id} must be an integer.`);
    }
    const previous = old.endpoints.find((e) => e.id === id);
    return {
      id,
      weight,
      healthy: previous?.healthy ?? old.healthy,
      clientIpPreservation: c.ClientIPPreservationEnabled === true,
    };
  });
}

/** Creates the emulator; `handler` serves the `globalaccelerator` credential scope. */
export function createGlobalAccelerator(): GaEmulator {
  const groups = new Map<string, EndpointGroup>();
  const log: GaCall[] = [];
  let throttle = 0;
  let updatesFail = false;
  let convergenceMs = 0;
  const updates: GaUpdateEvent[] = [];

  function find(input: Record<string, unknown>): EndpointGroup {
    const arn = requireString(input, "EndpointGroupArn");
    const g = groups.get(arn);
    if (!g) throw new AwsServiceError("EndpointGroupNotFoundException", `${arn} not found.`);
    return g;
  }

  function update(input: Record<string, unknown>) {
    const problems = updateProblems(input);
    if (problems.length) throw validationError(problems);
    const g = find(input);
    if (updatesFail) {
      throw new AwsServiceError(
        "AccessDeniedException",
        "User is not authorized to perform: globalaccelerator:UpdateEndpointGroup",
      );
    }
    const dial = input.TrafficDialPercentage;
    if (dial !== undefined && typeof dial !== "number") {
      throw new AwsServiceError(
        "SerializationException",
        "TrafficDialPercentage must be a number.",
      );
    }
    const endpoints =
      input.EndpointConfigurations === undefined
        ? g.endpoints
        : endpointConfigurations(input.EndpointConfigurations, g);
    g.endpoints = endpoints;
    if (typeof dial === "number") g.dial = dial;
    const at = Date.now();
    updates.push({ region: g.region, dial: g.dial, at, convergedAt: at + convergenceMs });
    return { EndpointGroup: describe(g) };
  }

  function listEndpointGroups(input: Record<string, unknown>) {
    const listener = requireString(input, "ListenerArn");
    const found = [...groups.values()].filter((g) => listenerOf(g.arn) === listener);
    if (found.length === 0) {
      throw new AwsServiceError("ListenerNotFoundException", `${listener} not found.`);
    }
    return { EndpointGroups: found.map(describe) };
  }

  function serve(action: string, input: Record<string, unknown>) {
    if (action === "UpdateEndpointGroup" && throttle > 0) {
      throttle--;
      throw new AwsServiceError("ThrottlingException", "Rate exceeded");
    }
    switch (action) {
      case "DescribeEndpointGroup":
        return { EndpointGroup: describe(find(input)) };
      case "UpdateEndpointGroup":
        return update(input);
      case "ListEndpointGroups":
        return listEndpointGroups(input);
      default:
        throw new AwsServiceError("UnknownOperationException", `Unknown operation ${action}`);
    }
  }

  const handler: JsonServiceHandler = (action, input) => {
    const arn = input.EndpointGroupArn;
    const call: GaCall = {
      action,
      ...(typeof arn === "string" ? { endpointGroupArn: arn } : {}),
      outcome: "ok",
    };
    log.push(call);
    try {
      return serve(action, input);
    } catch (e) {
      call.outcome = e instanceof AwsServiceError ? e.code : "InternalFailure";
      throw e;
    }
  };

  return {
    handler,
    defineEndpointGroup({ arn, region, dial, endpoints }) {
      groups.set(arn, {
        arn,
        region,
        dial,
        healthy: endpoints.every((e) => e.healthy),
        endpoints: endpoints.map((e) => ({ ...e, clientIpPreservation: false })),
      });
    },
    setHealthy(arn, healthy) {
      const g = groups.get(arn);
      if (!g) throw new Error(`no endpoint group ${arn}`);
      g.healthy = healthy;
      for (const e of g.endpoints) e.healthy = healthy;
    },
    throttleUpdates(n) {
      throttle = n;
    },
    setUpdatesFail(fail) {
      updatesFail = fail;
    },
    dials: () => Object.fromEntries([...groups.values()].map((g) => [g.region, g.dial])),
    weights(arn) {
      const g = groups.get(arn);
      if (!g) throw new Error(`no endpoint group ${arn}`);
      return Object.fromEntries(g.endpoints.map((e) => [e.id, e.weight]));
    },
    calls: () => log.map((c) => ({ ...c })),
    setConvergenceMs(ms) {
      convergenceMs = ms;
    },
    updates: () => updates.map((u) => ({ ...u })),
  };
}
