/**
 * Cross-account access end to end through the real SDK clients: the topology's role fields
 * (validated by the one schema), the client factories assuming them over the sandbox's STS
 * AssumeRole, and the account-aware emulators refusing credentials of the wrong account with
 * AWS's error shapes.
 */
import { DescribeEndpointGroupCommand } from "@aws-sdk/client-global-accelerator";
import { DescribeGlobalClustersCommand } from "@aws-sdk/client-rds";
import { GetHealthCheckStatusCommand } from "@aws-sdk/client-route-53";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import { CODE_BOUNDS, pollBudget } from "../../functions/catalog.ts";
import {
  globalAcceleratorClient,
  rdsClient,
  resetClients,
  route53Client,
  sessionNameOf,
  withSessionName,
} from "../../functions/lib/aws.ts";
import { loadTopology, parseTopology } from "../../functions/lib/config.ts";
import { AssumeRoleRefused, AwsUnavailable } from "../../functions/lib/errors.ts";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";

const ORCHESTRATOR = "000000000000";
const NETWORK = "111111111111";
const DATA = "222222222222";
const NETWORK_ROLE = {
  roleArn: `arn:aws:iam::${NETWORK}:role/gitops-failover-network`,
  externalId: "net-ext-id",
};
const DATA_ROLE = { roleArn: `arn:aws:iam::${DATA}:role/gitops-failover-data` };
const GROUP = `arn:aws:globalaccelerator::${NETWORK}:accelerator/a1/listener/l1/endpoint-group/east`;
const HEALTH_CHECK = "11111111-1111-4111-8111-111111111111";

let sandbox: AwsSandbox;
const savedEnv: Record<string, string | undefined> = {};

async function failure(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    return e as Error & Record<string, unknown>;
  }
  throw new Error("expected the call to fail");
}
const status = (e: Record<string, unknown>) =>
  (e.$metadata as { httpStatusCode?: number } | undefined)?.httpStatusCode;

beforeAll(async () => {
  sandbox = await startAwsSandbox({
    accounts: { globalaccelerator: NETWORK, route53: NETWORK, rds: DATA, monitoring: DATA },
  });
  for (const [k, v] of Object.entries(sandbox.env)) {
    savedEnv[k] = process.env[k];
    process.env[k] = v;
  }
  sandbox.sts.defineRole({ ...NETWORK_ROLE, trusted: [`arn:aws:iam::${ORCHESTRATOR}:root`] });
  sandbox.sts.defineRole({ ...DATA_ROLE, trusted: [ORCHESTRATOR] });
  sandbox.ga.defineEndpointGroup({
    arn: GROUP,
    region: "us-east-1",
    dial: 100,
    endpoints: [{ id: "lb-1", weight: 128, healthy: true }],
  });
  sandbox.route53.defineHealthCheck(HEALTH_CHECK, { failingFraction: 0 });
  sandbox.rds.defineGlobalCluster({
    identifier: "g1",
    members: { "us-east-1": `arn:aws:rds:us-east-1:${DATA}:cluster:c1` },
    writerRegion: "us-east-1",
  });
});

beforeEach(() => resetClients());

afterAll(async () => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  resetClients();
  await sandbox?.stop();
});

describe("client factories with a resource's role", () => {
  it("assume the role once per session (ExternalId sent, session = execution name) and reach the other account", async () => {
    const before = sandbox.sts.assumed().length;
    const out = await withSessionName("drill-20260101-1", async () => {
      const ga = globalAcceleratorClient(NETWORK_ROLE);
      const first = await ga.send(new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP }));
      await route53Client(NETWORK_ROLE).send(
        new GetHealthCheckStatusCommand({ HealthCheckId: HEALTH_CHECK }),
      );
      return first;
    });
    expect(out.EndpointGroup?.TrafficDialPercentage).toBe(100);
    // One AssumeRole served both clients of the role in that session.
    expect(sandbox.sts.assumed().slice(before)).toEqual([
      { roleArn: NETWORK_ROLE.roleArn, sessionName: "drill-20260101-1", outcome: "ok" },
    ]);
    // Another execution assumes the role again, under its own name.
    await withSessionName("drill-20260101-2", () =>
      globalAcceleratorClient(NETWORK_ROLE).send(
        new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP }),
      ),
    );
    expect(sandbox.sts.assumed().at(-1)?.sessionName).toBe("drill-20260101-2");
  });

  it("a role without an external id reaches its account (RDS over awsQuery)", async () => {
    const out = await rdsClient("us-east-1", DATA_ROLE).send(
      new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: "g1" }),
    );
    expect(out.GlobalClusters?.[0]?.GlobalClusterIdentifier).toBe("g1");
    expect(sandbox.sts.assumed().at(-1)).toMatchObject({ sessionName: "gitops-failover" });
  });

  it("a wrong external id is AssumeRoleRefused naming the role, its account, the caller and the trust it lacks; asked once", async () => {
    const before = sandbox.sts.assumed().length;
    const e = await failure(
      globalAcceleratorClient({ ...NETWORK_ROLE, externalId: "wrong-id" }).send(
        new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP }),
      ),
    );
    expect(e).toBeInstanceOf(AssumeRoleRefused);
    expect(e.name).toBe("AssumeRoleRefused");
    expect((e as unknown as AssumeRoleRefused).retryable).toBe(false);
    expect(e.message).toContain(
      `cannot assume ${NETWORK_ROLE.roleArn} (account ${NETWORK}) from arn:aws:iam::${ORCHESTRATOR}:user/sandbox (account ${ORCHESTRATOR})`,
    );
    // The external id (the confused-deputy token) is named by its topology key, never echoed.
    expect(e.message).toContain(
      "StringEquals sts:ExternalId = the externalId the topology gives this role",
    );
    expect(e.message).not.toContain("wrong-id");
    expect(sandbox.sts.assumed().slice(before)).toEqual([
      { roleArn: NETWORK_ROLE.roleArn, sessionName: "gitops-failover", outcome: "AccessDenied" },
    ]);
  });

  it("an STS that does not answer is AwsUnavailable (retryable), naming the role", async () => {
    const saved = process.env.AWS_ENDPOINT_URL_STS;
    process.env.AWS_ENDPOINT_URL_STS = "http://127.0.0.1:9";
    try {
      const e = await failure(
        globalAcceleratorClient(NETWORK_ROLE).send(
          new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP }),
        ),
      );
      expect(e).toBeInstanceOf(AwsUnavailable);
      expect(e.message).toContain(`AssumeRole ${NETWORK_ROLE.roleArn}: STS did not answer`);
    } finally {
      process.env.AWS_ENDPOINT_URL_STS = saved;
    }
  });

  it("session names are what AssumeRole accepts (2-64 of [\\w+=,.@-])", () => {
    expect(sessionNameOf("x".repeat(80))).toHaveLength(64);
    expect(sessionNameOf("drill 1/2")).toBe("drill-1-2");
    expect(sessionNameOf("a")).toBe("gitops-failover");
  });
});

describe("account-aware emulators", () => {
  it("refuse the orchestrator's own credentials on another account's resources, in each protocol's shape", async () => {
    const ga = await failure(
      globalAcceleratorClient().send(new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP })),
    );
    expect(ga.name).toBe("AccessDeniedException");
    expect(status(ga)).toBe(400);
    expect(ga.message).toBe(
      `User: arn:aws:iam::${ORCHESTRATOR}:user/sandbox is not authorized to perform: globalaccelerator:DescribeEndpointGroup on resource: ${GROUP} because no resource-based policy allows the globalaccelerator:DescribeEndpointGroup action`,
    );
    const r53 = await failure(
      route53Client().send(new GetHealthCheckStatusCommand({ HealthCheckId: HEALTH_CHECK })),
    );
    expect([r53.name, status(r53)]).toEqual(["AccessDenied", 403]);
    expect(r53.message).toContain(`on resource: arn:aws:route53:::healthcheck/${HEALTH_CHECK}`);
    const rds = await failure(
      rdsClient("us-east-1").send(
        new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: "g1" }),
      ),
    );
    expect([rds.name, status(rds)]).toEqual(["AccessDenied", 403]);
    expect(rds.message).toContain(`on resource: arn:aws:rds::${DATA}:global-cluster:g1`);
  });

  it("refuse a role of the wrong account (the data role on the network account's accelerator)", async () => {
    const e = await failure(
      globalAcceleratorClient(DATA_ROLE).send(
        new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP }),
      ),
    );
    expect(e.name).toBe("AccessDeniedException");
    expect(e.message).toMatch(
      /^User: arn:aws:sts::222222222222:assumed-role\/gitops-failover-data\//,
    );
  });

  it("STS answers who the assumed credentials are; without their session token they are refused", async () => {
    const creds = await withSessionName("who-am-i", async () => {
      const client = globalAcceleratorClient(NETWORK_ROLE);
      return client.config.credentials();
    });
    const me = await new STSClient({ region: "us-east-1", credentials: creds }).send(
      new GetCallerIdentityCommand({}),
    );
    expect(me).toMatchObject({
      Account: NETWORK,
      Arn: `arn:aws:sts::${NETWORK}:assumed-role/gitops-failover-network/who-am-i`,
    });
    const { sessionToken: _, ...withoutToken } = creds;
    const e = await failure(
      new STSClient({ region: "us-east-1", credentials: withoutToken }).send(
        new GetCallerIdentityCommand({}),
      ),
    );
    expect([e.name, status(e)]).toEqual(["InvalidClientTokenId", 403]);
  });
});

describe("topology: roleArn and externalId", () => {
  const example = () => ({
    ...loadTopology("config/topology.example.yaml"),
    orchestratorAccount: "111122223333",
  });
  const withRegion = (patch: (r: Record<string, unknown>) => void) => {
    const t = structuredClone(example()) as unknown as {
      regions: Record<string, Record<string, unknown>>;
    };
    patch(t.regions["us-west-2"] as Record<string, unknown>);
    return t;
  };
  const problems = (data: unknown) => {
    try {
      parseTopology(data);
      return [];
    } catch (e) {
      return (e as { details: string[] }).details;
    }
  };

  it("refuses a wildcard, a malformed account and a role in another account than the resource", () => {
    const wildcard = withRegion((r) => {
      r.globalAccelerator = {
        ...(r.globalAccelerator as object),
        roleArn: "arn:aws:iam::111122223333:role/*",
      };
    });
    expect(problems(wildcard)[0]).toMatch(
      /^regions\.us-west-2\.globalAccelerator\.roleArn: must be an IAM role ARN/,
    );
    const shortAccount = withRegion((r) => {
      r.route53 = { ...(r.route53 as object), roleArn: "arn:aws:iam::1234:role/x" };
    });
    expect(problems(shortAccount)[0]).toMatch(/^regions\.us-west-2\.route53\.roleArn: /);
    const elsewhere = withRegion((r) => {
      r.aurora = { ...(r.aurora as object), roleArn: `arn:aws:iam::${DATA}:role/data` };
    });
    expect(problems(elsewhere)).toEqual([
      `regions.us-west-2.aurora.roleArn: is in account ${DATA} but the cluster arn:aws:rds:us-west-2:111122223333:cluster:payments-usw2 is in account 111122223333: name the role in the account that owns it`,
    ]);
  });

  it("refuses an externalId without a role and a secrets role no secret is in", () => {
    const t = { ...example(), aurora: { ...example().aurora, externalId: "abc" } };
    expect(problems(t)).toEqual([
      "aurora.externalId: is only passed to AssumeRole: set roleArn (the role in the resource's account) too",
    ]);
    const secrets = { ...example(), secrets: { roleArn: `arn:aws:iam::${DATA}:role/secrets` } };
    expect(problems(secrets)[0]).toMatch(
      /^secrets\.roleArn: is in account 222222222222, but no secret ARN of the topology is/,
    );
  });

  it("requires the orchestrator's account once a role is named (the roles trust its function roles)", () => {
    const { orchestratorAccount: _, ...t } = {
      ...example(),
      secrets: { roleArn: "arn:aws:iam::111122223333:role/secrets" },
    };
    expect(problems(t)).toEqual([
      "orchestratorAccount: is required when a resource names a roleArn: the roles in the other accounts trust the function roles of this account (12 digits)",
    ]);
  });

  it("budgets one AssumeRole per role a poller uses on top of the single-account worst case", () => {
    const single = loadTopology("config/topology.example.yaml");
    const split = loadTopology("config/topology.split-accounts.example.yaml");
    for (const state of ["AwaitArgoSync", "AwaitAurora", "VerifyTraffic"] as const) {
      const one = pollBudget(state, single);
      const more = pollBudget(state, split);
      expect(one?.parts.join()).not.toContain("AssumeRole");
      expect(more?.parts, state).toContain(`1 x ${CODE_BOUNDS.awsCallSeconds} s AssumeRole`);
      expect(more?.seconds, state).toBeGreaterThanOrEqual(
        (one?.seconds ?? 0) + CODE_BOUNDS.awsCallSeconds - 10,
      );
    }
  });

  it("refuses roles that would never be assumed, one role with two external ids, and a shared aurora role in another account than a cluster", () => {
    const split = () =>
      structuredClone(loadTopology("config/topology.split-accounts.example.yaml"));
    const ga = split().regions["us-west-2"]?.globalAccelerator;
    const network = ga?.roleArn as string;
    // Prepare
    const unusedTraffic = {
      ...split(),
      traffic: { ...split().traffic, roleArn: network, externalId: ga?.externalId },
    };
    const twoIds = split();
    const east = twoIds.regions["us-east-2"]?.route53;
    if (east) east.externalId = "another-id";
    const overridden = split();
    for (const r of Object.values(overridden.regions))
      r.aurora = {
        ...r.aurora,
        roleArn: overridden.aurora.roleArn,
        externalId: overridden.aurora.externalId,
      };
    const elsewhere = {
      ...example(),
      aurora: { ...example().aurora, roleArn: `arn:aws:iam::${DATA}:role/data` },
    };

    // Act + Assess
    expect(problems(unusedTraffic)).toEqual([
      "traffic.roleArn: is used only with traffic.mode route53 (the hosted zone's account); with global-accelerator set regions.<region>.globalAccelerator.roleArn instead",
    ]);
    expect(problems(twoIds)).toEqual([
      `regions.us-east-2.route53.externalId: differs from the externalId another block gives ${network}: one role's trust requires one external id; use the same value everywhere the role is named`,
    ]);
    expect(problems(overridden)).toEqual([
      "aurora.roleArn: is never used: every region names its own regions.<region>.aurora.roleArn; remove it",
    ]);
    expect(problems(elsewhere)).toContain(
      `aurora.roleArn: is in account ${DATA} but the cluster of us-west-2 arn:aws:rds:us-west-2:111122223333:cluster:payments-usw2 is in account 111122223333: name the role in the account that owns it`,
    );
  });

  it("accepts the split-account example", () => {
    const t = loadTopology("config/topology.split-accounts.example.yaml");
    expect(t.regions["us-west-2"]?.globalAccelerator?.roleArn).toMatch(/:role\//);
  });
});

describe("drill --accounts", () => {
  async function cli(...args: string[]): Promise<{ code: number; stderr: string }> {
    const err: string[] = [];
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    const stderr = vi
      .spyOn(process.stderr, "write")
      .mockImplementation((chunk) => err.push(String(chunk)) > 0);
    try {
      return { code: await main(["node", "gitops-failover", ...args]), stderr: err.join("") };
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
  }

  it("exits 2, starting nothing, for assume-role-denied with --accounts single and for an unknown layout", async () => {
    const single = await cli("drill", "--accounts", "single", "--fault", "assume-role-denied");
    expect(single.code).toBe(2);
    expect(single.stderr).toContain(
      "--fault assume-role-denied: with --accounts single no role is assumed; add --accounts split",
    );
    const unknown = await cli("drill", "--accounts", "many");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/argument 'many' is invalid. Allowed choices are single, split/);
  });
});
