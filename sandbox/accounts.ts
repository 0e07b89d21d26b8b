/**
 * The sandbox's AWS accounts. By default everything is in one account (SANDBOX_ACCOUNT), as in
 * a single-account platform. `drill --accounts split` lays the platform out the way
 * organizations do: the orchestrator in its own account, Global Accelerator and Route 53 in a
 * network account, Aurora (and its CloudWatch metrics) in a data account, the secrets in a
 * secrets account. Each of those three offers one role that trusts the orchestrator's account
 * with an external id, and the topology names it on the resource blocks it owns.
 */
import type { RoleAccess } from "../functions/lib/config.ts";
import { SANDBOX_ACCOUNT } from "./aws/protocol.ts";
import type { ResourceAccounts } from "./aws/server.ts";

/** How the sandbox's resources are spread over accounts (`drill --accounts <layout>`). */
export const ACCOUNT_LAYOUTS = {
  single: "every resource in the orchestrator's account (no role is assumed)",
  split:
    "orchestrator, network (Global Accelerator, Route 53), data (Aurora) and secrets in four accounts, each reached through a role",
} as const;
/** The name of an account layout. */
export type AccountLayout = keyof typeof ACCOUNT_LAYOUTS;

/** Which account owns each kind of resource. */
export interface SandboxAccounts {
  orchestrator: string;
  network: string;
  data: string;
  secrets: string;
  /** The role to assume per owning account; absent in the single layout. */
  roles?: { network: RoleAccess; data: RoleAccess; secrets: RoleAccess };
}

const role = (account: string, name: string): RoleAccess => ({
  roleArn: `arn:aws:iam::${account}:role/gitops-failover-${name}`,
  externalId: `gitops-failover-${name}-sandbox`,
});

/** The accounts of a layout. */
export function accountsOf(layout: AccountLayout): SandboxAccounts {
  if (layout === "single") {
    return {
      orchestrator: SANDBOX_ACCOUNT,
      network: SANDBOX_ACCOUNT,
      data: SANDBOX_ACCOUNT,
      secrets: SANDBOX_ACCOUNT,
    };
  }
  const network = "111111111111";
  const data = "222222222222";
  const secrets = "333333333333";
  return {
    orchestrator: SANDBOX_ACCOUNT,
    network,
    data,
    secrets,
    roles: {
      network: role(network, "network"),
      data: role(data, "data"),
      secrets: role(secrets, "secrets"),
    },
  };
}

/** The owning account per emulated service, for the account-aware AWS emulators. */
export function resourceAccounts(a: SandboxAccounts): ResourceAccounts {
  if (!a.roles) return {};
  return {
    globalaccelerator: a.network,
    route53: a.network,
    rds: a.data,
    monitoring: a.data,
    secretsmanager: a.secrets,
  };
}
