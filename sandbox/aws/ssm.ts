/**
 * SSM Parameter Store (awsJson1_1): operator switches such as the failover kill switch.
 * Parameters are regional as on AWS.
 */
import {
  AwsServiceError,
  type JsonServiceHandler,
  optionalString,
  type RequestContext,
  requireString,
  SANDBOX_ACCOUNT,
} from "./protocol.ts";

/** Control surface of the SSM emulator. */
export interface SsmEmulator {
  handler: JsonServiceHandler;
  /** Sets a String parameter in `region` (the sandbox's home region by default). */
  set(name: string, value: string, region?: string): void;
}

interface Parameter {
  name: string;
  type: string;
  value: string;
  version: number;
  modified: number;
}

const TYPES = new Set(["String", "StringList", "SecureString"]);

/** Creates the emulator; `handler` serves the `ssm` credential scope. */
export function createSsm(homeRegion: string): SsmEmulator {
  const parameters = new Map<string, Parameter>();
  const key = (region: string, name: string) => `${region}\n${name}`;

  function getParameter(input: Record<string, unknown>, ctx: RequestContext) {
    const name = requireString(input, "Name");
    const p = parameters.get(key(ctx.region, name));
    if (!p) throw new AwsServiceError("ParameterNotFound", `Parameter ${name} not found.`);
    const path = name.startsWith("/") ? name : `/${name}`;
    return {
      Parameter: {
        Name: p.name,
        Type: p.type,
        Value: p.value,
        Version: p.version,
        LastModifiedDate: p.modified / 1000,
        ARN: `arn:aws:ssm:${ctx.region}:${SANDBOX_ACCOUNT}:parameter${path}`,
        DataType: "text",
      },
    };
  }

  function putParameter(input: Record<string, unknown>, ctx: RequestContext) {
    const name = requireString(input, "Name");
    const value = requireString(input, "Value");
    const type = optionalString(input, "Type");
    if (type !== undefined && !TYPES.has(type)) {
      throw new AwsServiceError(
        "ValidationException",
        `1 validation error detected: Value '${type}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]`,
      );
    }
    const existing = parameters.get(key(ctx.region, name));
    if (existing && input.Overwrite !== true) {
      throw new AwsServiceError(
        "ParameterAlreadyExists",
        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
      );
    }
    if (!existing && type === undefined) {
      throw new AwsServiceError(
        "ValidationException",
        "A parameter type is required when you create a parameter.",
      );
    }
    const p: Parameter = {
      name,
      type: type ?? existing?.type ?? "String",
      value,
      version: (existing?.version ?? 0) + 1,
      modified: Date.now(),
    };
    parameters.set(key(ctx.region, name), p);
    return { Version: p.version, Tier: "Standard" };
  }

  const handler: JsonServiceHandler = (action, input, ctx) => {
    switch (action) {
      case "GetParameter":
        return getParameter(input, ctx);
      case "PutParameter":
        return putParameter(input, ctx);
      default:
        throw new AwsServiceError("UnknownOperationException", `Unknown operation ${action}`);
    }
  };

  return {
    handler,
    set(name, value, region = homeRegion) {
      const existing = parameters.get(key(region, name));
      parameters.set(key(region, name), {
        name,
        type: existing?.type ?? "String",
        value,
        version: (existing?.version ?? 0) + 1,
        modified: Date.now(),
      });
    },
  };
}
