/**
 * STS (awsQuery, 2011-06-15): GetCallerIdentity, the first command an operator runs to see
 * which account and identity the configured credentials are, and AssumeRole, how the
 * orchestrator reaches the resources of other accounts. The sandbox's long-term access key
 * belongs to an IAM user of the sandbox account (STS API reference, GetCallerIdentity: UserId
 * is the user's unique ID, AIDA...); AssumeRole hands out temporary credentials (ASIA... with a
 * session token) of `arn:aws:sts::<account>:assumed-role/<role>/<session>`, which the server
 * then authenticates as that role's account.
 *
 * AssumeRole is as strict as STS: the role must exist and its trust policy must name the
 * caller's account (or the caller's role), with the external id it requires; otherwise
 * AccessDenied, 403, "User: <caller> is not authorized to perform: sts:AssumeRole on resource:
 * <role>" (STS does not say which of the three failed). RoleSessionName is 2-64 of [\w+=,.@-],
 * DurationSeconds 900 up to the role's maximum session (1 hour by default), ExternalId 2-1224.
 */
import { randomBytes } from "node:crypto";
import { AwsServiceError, type QueryServiceHandler, SANDBOX_ACCOUNT } from "./protocol.ts";

/** The IAM user the sandbox credentials belong to. */
export const SANDBOX_USER_ARN = `arn:aws:iam::${SANDBOX_ACCOUNT}:user/sandbox`;

/** Who a request's credentials are. */
export interface CallerIdentity {
  account: string;
  /** The user's ARN, or `arn:aws:sts::<account>:assumed-role/<role>/<session>`. */
  arn: string;
  userId: string;
  /** The session token temporary credentials must be sent with. */
  sessionToken?: string;
  /** When temporary credentials stop working (ms since the epoch). */
  expiresAt?: number;
}

/** A role a sandbox account offers: who may assume it, and with which external id. */
export interface SandboxRole {
  roleArn: string;
  /** Accounts (or role ARNs, `arn:aws:iam::<account>:role/<name>`) the trust policy names. */
  trusted: string[];
  /** The `sts:ExternalId` the trust policy's condition requires, if any. */
  externalId?: string;
  maxSessionSeconds?: number;
}

/** The STS emulator and its controls. */
export interface StsEmulator {
  handler: QueryServiceHandler;
  /** Creates (or replaces) a role and its trust policy. */
  defineRole(role: SandboxRole): void;
  /** Replaces whom a role trusts (a fault: the trust no longer names the orchestrator). */
  setTrusted(roleArn: string, trusted: string[]): void;
  /** The identity behind an access key id, if the sandbox issued it. */
  identity(accessKeyId: string): CallerIdentity | undefined;
  /** Every AssumeRole the emulator answered: role, session and outcome. */
  assumed(): { roleArn: string; sessionName: string; outcome: string }[];
}

/** The long-term access key the sandbox accepts (a fake one, never a real credential). */
export const SANDBOX_ACCESS_KEY_ID = "AKIASANDBOX000000001";

const ROLE_ARN = /^arn:aws:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;

function validation(field: string, value: string, constraint: string): AwsServiceError {
  return new AwsServiceError(
    "ValidationError",
    `1 validation error detected: Value '${value}' at '${field}' failed to satisfy constraint: ${constraint}`,
  );
}

const id = (prefix: string) =>
  `${prefix}${randomBytes(10)
    .toString("base64url")
    .toUpperCase()
    .replace(/[^A-Z0-9]/g, "X")
    .slice(0, 16)}`;

/** Creates the STS emulator; the sandbox user's identity is known from the start. */
export function createSts(): StsEmulator {
  const roles = new Map<string, Required<Omit<SandboxRole, "externalId">> & SandboxRole>();
  const identities = new Map<string, CallerIdentity>([
    [
      SANDBOX_ACCESS_KEY_ID,
      { account: SANDBOX_ACCOUNT, arn: SANDBOX_USER_ARN, userId: "AIDASANDBOX00000000001" },
    ],
  ]);
  const calls: { roleArn: string; sessionName: string; outcome: string }[] = [];

  const trusts = (role: SandboxRole, caller: CallerIdentity): boolean => {
    const callerRole = caller.arn.replace(
      /^arn:aws:sts::(\d{12}):assumed-role\/([^/]+)\/.*$/,
      "arn:aws:iam::$1:role/$2",
    );
    return role.trusted.some(
      (t) =>
        t === caller.account || t === `arn:aws:iam::${caller.account}:root` || t === callerRole,
    );
  };

  const assumeRole = (params: Record<string, string>, caller: CallerIdentity) => {
    const roleArn = params.RoleArn;
    const sessionName = params.RoleSessionName;
    if (!roleArn)
      throw new AwsServiceError(
        "MissingParameter",
        "The request must contain the parameter RoleArn",
      );
    if (!sessionName)
      throw new AwsServiceError(
        "MissingParameter",
        "The request must contain the parameter RoleSessionName",
      );
    if (roleArn.length < 20 || !/^arn:/.test(roleArn))
      throw validation("roleArn", roleArn, "Member must have length greater than or equal to 20");
    if (sessionName.length < 2 || sessionName.length > 64 || !/^[\w+=,.@-]+$/.test(sessionName))
      throw validation(
        "roleSessionName",
        sessionName,
        "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
      );
    const externalId = params.ExternalId;
    if (externalId !== undefined && !/^[\w+=,.@:/-]{2,1224}$/.test(externalId))
      throw validation(
        "externalId",
        externalId,
        "Member must satisfy regular expression pattern: [\\w+=,.@:/-]*",
      );
    const role = roles.get(roleArn);
    const denied = () => {
      calls.push({ roleArn, sessionName, outcome: "AccessDenied" });
      return new AwsServiceError(
        "AccessDenied",
        `User: ${caller.arn} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
        403,
      );
    };
    // One refusal for a missing role, an untrusted caller and a wrong external id, as STS gives.
    if (
      !role ||
      !trusts(role, caller) ||
      (role.externalId !== undefined && role.externalId !== externalId)
    ) {
      throw denied();
    }
    const duration = params.DurationSeconds ? Number(params.DurationSeconds) : 3600;
    if (!Number.isInteger(duration) || duration < 900)
      throw validation(
        "durationSeconds",
        String(params.DurationSeconds),
        "Member must have value greater than or equal to 900",
      );
    if (duration > role.maxSessionSeconds)
      throw new AwsServiceError(
        "ValidationError",
        `The requested DurationSeconds exceeds the MaxSessionDuration set for this role.`,
      );
    const m = ROLE_ARN.exec(roleArn);
    const account = m?.[1] ?? SANDBOX_ACCOUNT;
    const roleName = m?.[2] ?? "role";
    const accessKeyId = id("ASIA");
    const sessionToken = randomBytes(32).toString("base64");
    const expiresAt = Date.now() + duration * 1000;
    const roleId = `AROA${account.slice(-4)}${roleName
      .replace(/[^A-Za-z0-9]/g, "")
      .toUpperCase()
      .slice(0, 12)}`;
    const arn = `arn:aws:sts::${account}:assumed-role/${roleName}/${sessionName}`;
    identities.set(accessKeyId, {
      account,
      arn,
      userId: `${roleId}:${sessionName}`,
      sessionToken,
      expiresAt,
    });
    calls.push({ roleArn, sessionName, outcome: "ok" });
    return {
      Credentials: {
        AccessKeyId: accessKeyId,
        SecretAccessKey: randomBytes(30).toString("base64"),
        SessionToken: sessionToken,
        Expiration: new Date(expiresAt),
      },
      AssumedRoleUser: { AssumedRoleId: `${roleId}:${sessionName}`, Arn: arn },
      PackedPolicySize: 0,
    };
  };

  const handler: QueryServiceHandler = (action, params, ctx) => {
    const caller =
      (ctx.accessKeyId && identities.get(ctx.accessKeyId)) || identities.get(SANDBOX_ACCESS_KEY_ID);
    if (!caller)
      throw new AwsServiceError(
        "InvalidClientTokenId",
        "The security token included in the request is invalid.",
        403,
      );
    if (action === "GetCallerIdentity") {
      return { UserId: caller.userId, Account: caller.account, Arn: caller.arn };
    }
    if (action === "AssumeRole") return assumeRole(params, caller);
    throw new AwsServiceError(
      "InvalidAction",
      `Could not find operation ${action} for version 2011-06-15`,
    );
  };

  return {
    handler,
    defineRole(role) {
      roles.set(role.roleArn, { maxSessionSeconds: 3600, ...role });
    },
    setTrusted(roleArn, trusted) {
      const role = roles.get(roleArn);
      if (!role) throw new Error(`sandbox STS: no role ${roleArn}`);
      role.trusted = trusted;
    },
    identity: (accessKeyId) => identities.get(accessKeyId),
    assumed: () => [...calls],
  };
}
