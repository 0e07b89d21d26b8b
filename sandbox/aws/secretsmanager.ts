/**
 * Secrets Manager (awsJson1_1): the tokens the handlers read (Git, Argo CD, spokes). Secrets
 * are regional as on AWS: a secret is found only by calls signed for its ARN's region, or for the
 * region of one of its replicas. A replica keeps the primary's name and suffix (only the ARN's
 * region differs), follows the primary's values, and refuses writes
 * (https://docs.aws.amazon.com/secretsmanager/latest/userguide/create-manage-multi-region-secrets.html).
 */
import { randomBytes, randomUUID } from "node:crypto";
import {
  AwsServiceError,
  type JsonServiceHandler,
  optionalString,
  type RequestContext,
  regionOfArn,
  requireString,
  SANDBOX_ACCOUNT,
} from "./protocol.ts";

/** Control surface of the Secrets Manager emulator. */
export interface SecretsEmulator {
  handler: JsonServiceHandler;
  /** Creates the secret at `arn` or stores `value` as its new AWSCURRENT version. */
  put(arn: string, value: string): void;
  /** Adds a replica of the secret at `arn` in `region` (replicate-secret-to-regions). */
  replicate(arn: string, region: string): void;
  /** Removes that replica (remove-regions-from-replication). */
  removeReplica(arn: string, region: string): void;
}

interface Version {
  id: string;
  value: string;
  created: number;
  stages: string[];
}

interface Secret {
  arn: string;
  name: string;
  region: string;
  /** Shared with the primary for a replica, so the replica follows every new value. */
  versions: Version[];
  /** For a replica: the primary's region. */
  primaryRegion?: string;
  /** For a primary: the regions it is replicated to. */
  replicaRegions: string[];
}

const NOT_FOUND = "Secrets Manager can't find the specified secret.";

/** The secret name of an ARN: its resource part without the 6-character suffix AWS adds. */
function nameOfArn(arn: string): string {
  const resource = arn.split(":").slice(6).join(":");
  return /^(.+)-[A-Za-z0-9]{6}$/.exec(resource)?.[1] ?? resource;
}

function describeVersion(s: Secret, v: Version) {
  return { ARN: s.arn, Name: s.name, VersionId: v.id, VersionStages: [...v.stages] };
}

/** Creates the emulator; `handler` serves the `secretsmanager` credential scope. */
export function createSecretsManager(): SecretsEmulator {
  const secrets = new Map<string, Secret>();

  function addVersion(s: Secret, value: string): Version {
    for (const v of s.versions) {
      v.stages = v.stages.includes("AWSCURRENT") ? ["AWSPREVIOUS"] : [];
    }
    const version = { id: randomUUID(), value, created: Date.now(), stages: ["AWSCURRENT"] };
    s.versions.push(version);
    return version;
  }

  function create(arn: string, name: string, region: string, value?: string): Secret {
    const s: Secret = { arn, name, region, versions: [], replicaRegions: [] };
    secrets.set(arn, s);
    if (value !== undefined) addVersion(s, value);
    return s;
  }

  function find(id: string, ctx: RequestContext): Secret {
    const s =
      secrets.get(id) ??
      [...secrets.values()].find(
        (c) => c.region === ctx.region && (c.name === id || c.arn.endsWith(`:secret:${id}`)),
      );
    if (!s || s.region !== ctx.region) {
      throw new AwsServiceError("ResourceNotFoundException", NOT_FOUND);
    }
    return s;
  }

  function describeSecret(input: Record<string, unknown>, ctx: RequestContext) {
    const s = find(requireString(input, "SecretId"), ctx);
    return {
      ARN: s.arn,
      Name: s.name,
      VersionIdsToStages: Object.fromEntries(s.versions.map((v) => [v.id, [...v.stages]])),
      ...(s.primaryRegion
        ? { PrimaryRegion: s.primaryRegion }
        : s.replicaRegions.length
          ? {
              ReplicationStatus: s.replicaRegions.map((Region) => ({
                Region,
                Status: "InSync",
                StatusMessage: "Replication succeeded",
              })),
            }
          : {}),
    };
  }

  function secretString(input: Record<string, unknown>): string | undefined {
    if (input.SecretBinary !== undefined) {
      throw new AwsServiceError(
        "InvalidParameterException",
        "The sandbox stores SecretString values only.",
      );
    }
    return optionalString(input, "SecretString");
  }

  function getSecretValue(input: Record<string, unknown>, ctx: RequestContext) {
    const s = find(requireString(input, "SecretId"), ctx);
    const versionId = optionalString(input, "VersionId");
    const stage = optionalString(input, "VersionStage") ?? (versionId ? undefined : "AWSCURRENT");
    const v = s.versions.find(
      (c) => (!versionId || c.id === versionId) && (!stage || c.stages.includes(stage)),
    );
    if (!v) {
      throw new AwsServiceError(
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for the requested version.",
      );
    }
    return { ...describeVersion(s, v), SecretString: v.value, CreatedDate: v.created / 1000 };
  }

  function createSecret(input: Record<string, unknown>, ctx: RequestContext) {
    const name = requireString(input, "Name");
    if ([...secrets.values()].some((s) => s.region === ctx.region && s.name === name)) {
      throw new AwsServiceError(
        "ResourceExistsException",
        `The operation failed because the secret ${name} already exists.`,
      );
    }
    const suffix = randomBytes(4).toString("base64url").replace(/[-_]/g, "x").slice(0, 6);
    const arn = `arn:aws:secretsmanager:${ctx.region}:${SANDBOX_ACCOUNT}:secret:${name}-${suffix}`;
    const s = create(arn, name, ctx.region, secretString(input));
    const v = s.versions[0];
    return { ARN: s.arn, Name: s.name, ...(v ? { VersionId: v.id } : {}) };
  }

  function putSecretValue(input: Record<string, unknown>, ctx: RequestContext) {
    const s = find(requireString(input, "SecretId"), ctx);
    if (s.primaryRegion) {
      throw new AwsServiceError(
        "InvalidRequestException",
        `Operation not permitted on a replica secret. Call must be made in primary secret's region ${s.primaryRegion}.`,
      );
    }
    const value = secretString(input);
    if (value === undefined) {
      throw new AwsServiceError(
        "InvalidRequestException",
        "You must provide either SecretString or SecretBinary.",
      );
    }
    return describeVersion(s, addVersion(s, value));
  }

  const handler: JsonServiceHandler = (action, input, ctx) => {
    switch (action) {
      case "GetSecretValue":
        return getSecretValue(input, ctx);
      case "DescribeSecret":
        return describeSecret(input, ctx);
      case "CreateSecret":
        return createSecret(input, ctx);
      case "PutSecretValue":
        return putSecretValue(input, ctx);
      default:
        throw new AwsServiceError("UnknownOperationException", `Unknown operation ${action}`);
    }
  };

  return {
    handler,
    put(arn, value) {
      const region = regionOfArn(arn);
      if (!arn.startsWith("arn:aws:secretsmanager:") || !region) {
        throw new Error(`not a Secrets Manager ARN: ${arn}`);
      }
      const s = secrets.get(arn);
      if (s) addVersion(s, value);
      else create(arn, nameOfArn(arn), region, value);
    },
    replicate(arn, region) {
      const primary = secrets.get(arn);
      if (!primary || primary.primaryRegion) throw new Error(`no primary secret ${arn}`);
      if (region === primary.region || primary.replicaRegions.includes(region)) return;
      const parts = arn.split(":");
      parts[3] = region;
      const replica = parts.join(":");
      secrets.set(replica, {
        arn: replica,
        name: primary.name,
        region,
        versions: primary.versions,
        primaryRegion: primary.region,
        replicaRegions: [],
      });
      primary.replicaRegions.push(region);
    },
    removeReplica(arn, region) {
      const primary = secrets.get(arn);
      if (!primary) throw new Error(`no primary secret ${arn}`);
      const parts = arn.split(":");
      parts[3] = region;
      secrets.delete(parts.join(":"));
      primary.replicaRegions = primary.replicaRegions.filter((r) => r !== region);
    },
  };
}
