/**
 * The account part of ARNs and the role a resource is reached through: shared by the client
 * factories (aws.ts) and the schema (config.ts) without either pulling in the other.
 */

/** A role in the account that owns a resource (topology `roleArn`, `externalId`). */
export interface RoleAccess {
  roleArn: string;
  externalId?: string;
}

/** The 12-digit account of an ARN (`arn:<partition>:<service>:<region>:<account>:...`), if any. */
export function accountOfArn(arn: string): string | undefined {
  const account = arn.split(":")[4];
  return account && /^\d{12}$/.test(account) ? account : undefined;
}
