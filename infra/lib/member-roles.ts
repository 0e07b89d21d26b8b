/**
 * What a member account (network, data, secrets) deploys so the orchestrator can act on its
 * resources: one IAM role per role ARN the topology names in that account, trusting only the
 * orchestrator's function roles that assume it (by ARN, with the external id when the topology
 * sets one), and allowing only the actions those functions' code makes on that account's
 * resources, on exactly those resources (derived like the functions' own grants, access.ts).
 */
import { Stack, type StackProps } from "aws-cdk-lib";
import {
  AccountPrincipal,
  Effect,
  PolicyDocument,
  PolicyStatement,
  Role,
} from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";
import type { RoleAccess } from "../../functions/lib/config.ts";
import { acknowledgeWildcards, type Grant, type MemberGrant, wildcardReasonOf } from "./access.ts";

/** One role of a member account, as the orchestrator needs it. */
export interface MemberRole {
  role: RoleAccess;
  /** The orchestrator's function roles that assume it (their ARNs). */
  trusted: string[];
  /** The actions they make through it, each on its resources. */
  grants: MemberGrant[];
}

export interface MemberAccountRolesProps {
  /** The account the orchestrator runs in. */
  orchestratorAccount: string;
  roles: MemberRole[];
}

/** Role path and name from `arn:aws:iam::<account>:role/<path/>name`. */
function pathAndName(roleArn: string): { path: string; name: string } {
  const resource = roleArn.split(":role/")[1] ?? "";
  const parts = resource.split("/");
  const name = parts.pop() ?? resource;
  return { path: parts.length ? `/${parts.join("/")}/` : "/", name };
}

/** The member-account roles, as a construct (for a stack of your own) ... */
export class MemberAccountRoles extends Construct {
  readonly roles: Role[];

  constructor(scope: Construct, id: string, props: MemberAccountRolesProps) {
    super(scope, id);
    this.roles = props.roles.map(({ role, trusted, grants }) => {
      const { path, name } = pathAndName(role.roleArn);
      const statements: Grant[] = [];
      // One statement per distinct set of resources and conditions, as the functions' grants.
      const groups = new Map<string, { actions: string[]; grant: MemberGrant }>();
      for (const g of grants) {
        const key = JSON.stringify([g.resources, g.conditions ?? null]);
        const group = groups.get(key);
        if (group) group.actions.push(g.action);
        else groups.set(key, { actions: [g.action], grant: g });
      }
      for (const { actions, grant } of groups.values()) {
        statements.push({
          statement: new PolicyStatement({
            effect: Effect.ALLOW,
            actions,
            resources: grant.resources,
            ...(grant.conditions ? { conditions: grant.conditions } : {}),
          }),
          wildcardReasons: actions.flatMap((a) => {
            const why = wildcardReasonOf(a);
            return why ? [why] : [];
          }),
        });
      }
      const conditions: Record<string, Record<string, string | string[]>> = {
        ArnEquals: { "aws:PrincipalArn": [...trusted].sort() },
      };
      if (role.externalId) conditions.StringEquals = { "sts:ExternalId": role.externalId };
      const created = new Role(this, name, {
        roleName: name,
        path,
        assumedBy: new AccountPrincipal(props.orchestratorAccount).withConditions(conditions),
        description: `gitops-failover: what the orchestrator in ${props.orchestratorAccount} does on this account's resources`,
        inlinePolicies: {
          Orchestrator: new PolicyDocument({ statements: statements.map((s) => s.statement) }),
        },
      });
      acknowledgeWildcards(created, name, statements);
      return created;
    });
  }
}

export interface MemberAccountRolesStackProps extends StackProps, MemberAccountRolesProps {}

/** ... or as a stack of their own, deployed in the member account. */
export class MemberAccountRolesStack extends Stack {
  readonly roles: MemberAccountRoles;

  constructor(scope: Construct, id: string, props: MemberAccountRolesStackProps) {
    super(scope, id, props);
    this.roles = new MemberAccountRoles(this, "MemberAccountRoles", props);
  }
}
