/**
 * The sandbox's AWS emulators through the real SDK v3 clients over HTTP, configured only by the
 * env the sandbox hands out (AWS_ENDPOINT_URL_<SERVICE>, credentials, region), as production is.
 */

import { createHash, createPublicKey, verify } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CloudWatchClient,
  GetMetricDataCommand,
  GetMetricStatisticsCommand,
} from "@aws-sdk/client-cloudwatch";
import {
  CreateTableCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from "@aws-sdk/client-dynamodb";
import {
  DescribeEndpointGroupCommand,
  GlobalAcceleratorClient,
  ListEndpointGroupsCommand,
  UpdateEndpointGroupCommand,
} from "@aws-sdk/client-global-accelerator";
import {
  DescribeKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  KMSInvalidSignatureException,
  SignCommand,
  VerifyCommand,
} from "@aws-sdk/client-kms";
import {
  DescribeDBClustersCommand,
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  RDSClient,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import {
  ChangeResourceRecordSetsCommand,
  GetChangeCommand,
  GetHealthCheckCommand,
  GetHealthCheckStatusCommand,
  ListResourceRecordSetsCommand,
  Route53Client,
} from "@aws-sdk/client-route-53";
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { CreateTopicCommand, PublishCommand, SNSClient } from "@aws-sdk/client-sns";
import { GetParameterCommand, PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";
import { createStepFunctions } from "../../sandbox/aws/stepfunctions.ts";
import { type Sandbox, startSandbox } from "../../sandbox/index.ts";

const EAST = "us-east-1";
const WEST = "us-east-2";
const EAST_ARN = "arn:aws:rds:us-east-1:000000000000:cluster:platform-east";
const WEST_ARN = "arn:aws:rds:us-east-2:000000000000:cluster:platform-west";
const GROUP_EAST =
  "arn:aws:globalaccelerator::000000000000:accelerator/a1/listener/l1/endpoint-group/east";
const GROUP_WEST =
  "arn:aws:globalaccelerator::000000000000:accelerator/a1/listener/l1/endpoint-group/west";
const SDK = { maxAttempts: 1 } as const;

let sandbox: AwsSandbox;
const savedEnv: Record<string, string | undefined> = {};

/** The error a promise rejects with (fails the test if it resolves). */
async function failure(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    return e as Error & Record<string, unknown>;
  }
  throw new Error("expected the call to fail");
}

function status(e: Record<string, unknown>): number | undefined {
  return (e.$metadata as { httpStatusCode?: number } | undefined)?.httpStatusCode;
}

/** A well-formed SigV4 header for raw requests (the sandbox checks form and key, not the MAC). */
function rawHeaders(service: string, extra: Record<string, string>): Record<string, string> {
  return {
    authorization: `AWS4-HMAC-SHA256 Credential=${sandbox.env.AWS_ACCESS_KEY_ID}/20250101/us-east-1/${service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=${"0".repeat(64)}`,
    "x-amz-date": "20250101T000000Z",
    ...extra,
  };
}

beforeAll(async () => {
  sandbox = await startAwsSandbox();
  for (const [k, v] of Object.entries(sandbox.env)) {
    savedEnv[k] = process.env[k];
    process.env[k] = v;
  }
});

afterAll(async () => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await sandbox?.stop();
});

describe("sandbox env", () => {
  it("names an endpoint for every service the orchestrator uses", () => {
    // Assess
    for (const service of [
      "RDS",
      "CLOUDWATCH",
      "GLOBAL_ACCELERATOR",
      "SECRETS_MANAGER",
      "ROUTE_53",
      "SNS",
      "SSM",
      "SFN",
      "KMS",
    ]) {
      expect(sandbox.env[`AWS_ENDPOINT_URL_${service}`]).toBe(sandbox.endpoint);
    }
    expect(sandbox.env.AWS_ENDPOINT_URL_DYNAMODB).toBe(sandbox.dynamo.endpoint);
    expect(sandbox.env.AWS_REGION).toBe("us-east-1");
  });
});

describe("RDS Aurora Global Database", () => {
  const rds = (region: string) => new RDSClient({ region, ...SDK });

  beforeEach(() => {
    sandbox.rds.defineGlobalCluster({
      identifier: "platform",
      members: { [EAST]: EAST_ARN, [WEST]: WEST_ARN },
      writerRegion: EAST,
    });
    sandbox.rds.setPromotionDelayMs(60_000);
  });

  afterEach(() => {
    sandbox.rds.setStuck(false);
    sandbox.rds.setRegionDown(EAST, false);
  });

  it("describes a member cluster only in its own region, with the status set", async () => {
    // Prepare
    sandbox.rds.setMemberStatus(WEST, "backing-up");
    // Act
    const west = await rds(WEST).send(
      new DescribeDBClustersCommand({ DBClusterIdentifier: WEST_ARN }),
    );
    const east = await rds(EAST).send(
      new DescribeDBClustersCommand({ DBClusterIdentifier: "platform-east" }),
    );
    const elsewhere = await failure(
      rds(EAST).send(new DescribeDBClustersCommand({ DBClusterIdentifier: WEST_ARN })),
    );
    sandbox.rds.setMemberStatus(WEST, "available");
    // Assess
    expect(west.DBClusters?.[0]).toMatchObject({
      DBClusterArn: WEST_ARN,
      Status: "backing-up",
      GlobalClusterIdentifier: "platform",
    });
    expect(east.DBClusters?.[0]).toMatchObject({
      DBClusterIdentifier: "platform-east",
      Status: "available",
    });
    expect(elsewhere.name).toBe("DBClusterNotFoundFault");
  });

  it("describes the global cluster with its writer", async () => {
    // Act
    const out = await rds(WEST).send(
      new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: "platform" }),
    );
    // Assess
    const members = out.GlobalClusters?.[0]?.GlobalClusterMembers ?? [];
    expect(out.GlobalClusters?.[0]?.Status).toBe("available");
    expect(members.map((m) => [m.DBClusterArn, m.IsWriter])).toEqual([
      [EAST_ARN, true],
      [WEST_ARN, false],
    ]);
    expect(members[0]?.Readers).toEqual([WEST_ARN]);
    expect(out.GlobalClusters?.[0]?.FailoverState).toBeUndefined();
  });

  it("answers GlobalClusterNotFoundFault (404) for an unknown cluster", async () => {
    // Act
    const e = await failure(
      rds(EAST).send(new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: "nope" })),
    );
    // Assess
    expect(e.name).toBe("GlobalClusterNotFoundFault");
    expect(status(e)).toBe(404);
  });

  it("refuses a switchover requested outside the writer's region", async () => {
    // Act
    const e = await failure(
      rds(WEST).send(
        new SwitchoverGlobalClusterCommand({
          GlobalClusterIdentifier: "platform",
          TargetDbClusterIdentifier: WEST_ARN,
        }),
      ),
    );
    // Assess
    expect(e.name).toBe("InvalidGlobalClusterStateFault");
    expect(sandbox.rds.writerRegion("platform")).toBe(EAST);
  });

  it("answers MissingParameter when the target is not given", async () => {
    // Act
    const e = await failure(
      rds(EAST).send(
        new SwitchoverGlobalClusterCommand({
          GlobalClusterIdentifier: "platform",
        } as never),
      ),
    );
    // Assess
    expect(e.name).toBe("MissingParameter");
  });

  it("shows a switchover as FailoverState until the promotion completes", async () => {
    // Prepare
    const client = rds(EAST);
    const describe = async () =>
      (
        await client.send(
          new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: "platform" }),
        )
      ).GlobalClusters?.[0];
    // Act
    const started = await client.send(
      new SwitchoverGlobalClusterCommand({
        GlobalClusterIdentifier: "platform",
        TargetDbClusterIdentifier: WEST_ARN,
      }),
    );
    const during = await describe();
    sandbox.rds.setPromotionDelayMs(0);
    const after = await describe();
    // Assess
    expect(started.GlobalCluster?.FailoverState?.Status).toBe("switching-over");
    expect(during?.Status).toBe("modifying");
    expect(during?.FailoverState).toEqual({
      Status: "switching-over",
      FromDbClusterArn: EAST_ARN,
      ToDbClusterArn: WEST_ARN,
      IsDataLossAllowed: false,
    });
    expect(after?.Status).toBe("available");
    expect(after?.FailoverState).toBeUndefined();
    expect(after?.GlobalClusterMembers?.find((m) => m.IsWriter)?.DBClusterArn).toBe(WEST_ARN);
    expect(sandbox.rds.writerRegion("platform")).toBe(WEST);
  });

  it("runs a failover with data loss only from the target's region", async () => {
    // Prepare
    const input = {
      GlobalClusterIdentifier: "platform",
      TargetDbClusterIdentifier: WEST_ARN,
      AllowDataLoss: true,
    };
    // Act
    const wrong = await failure(rds(EAST).send(new FailoverGlobalClusterCommand(input)));
    const right = await rds(WEST).send(new FailoverGlobalClusterCommand(input));
    // Assess
    expect(wrong.name).toBe("InvalidGlobalClusterStateFault");
    expect(right.GlobalCluster?.FailoverState).toMatchObject({
      Status: "failing-over",
      IsDataLossAllowed: true,
    });
  });

  it("keeps FailoverState forever when the promotion is stuck", async () => {
    // Prepare
    sandbox.rds.setStuck(true);
    sandbox.rds.setPromotionDelayMs(0);
    // Act
    await rds(EAST).send(
      new FailoverGlobalClusterCommand({
        GlobalClusterIdentifier: "platform",
        TargetDbClusterIdentifier: WEST_ARN,
      }),
    );
    const out = await rds(EAST).send(new DescribeGlobalClustersCommand({}));
    // Assess
    expect(out.GlobalClusters?.[0]?.FailoverState?.Status).toBe("switching-over");
    expect(sandbox.rds.writerRegion("platform")).toBe(EAST);
  });

  it("answers 5xx to calls signed for a region that is down, and logs calls by region", async () => {
    // Prepare
    sandbox.rds.setRegionDown(EAST, true);
    const before = sandbox.rds.calls().length;
    // Act
    const e = await failure(rds(EAST).send(new DescribeGlobalClustersCommand({})));
    await rds(WEST).send(new DescribeGlobalClustersCommand({}));
    // Assess
    expect(status(e)).toBe(503);
    expect(sandbox.rds.calls().slice(before)).toEqual([
      { action: "DescribeGlobalClusters", region: EAST },
      { action: "DescribeGlobalClusters", region: WEST },
    ]);
  });
});

describe("CloudWatch", () => {
  const cw = (region: string) => new CloudWatchClient({ region, ...SDK });
  const window = { StartTime: new Date(Date.now() - 600_000), EndTime: new Date() };
  const rpoQuery = {
    Id: "rpo",
    MetricStat: {
      Metric: {
        Namespace: "AWS/RDS",
        MetricName: "AuroraGlobalDBRPOLag",
        Dimensions: [{ Name: "DBClusterIdentifier", Value: "platform-west" }],
      },
      Period: 60,
      Stat: "Maximum",
    },
  };

  it("serves the RPO lag set for a secondary region, and none elsewhere", async () => {
    // Prepare
    sandbox.cloudwatch.setRpoLagMs(WEST, 1500);
    sandbox.cloudwatch.setRpoLagMs(EAST, null);
    const input = { MetricDataQueries: [rpoQuery], ...window };
    // Act
    const west = await cw(WEST).send(new GetMetricDataCommand(input));
    const east = await cw(EAST).send(new GetMetricDataCommand(input));
    // Assess
    const result = west.MetricDataResults?.[0];
    expect(result?.Id).toBe("rpo");
    expect(result?.StatusCode).toBe("Complete");
    expect(result?.Values?.length).toBeGreaterThan(0);
    expect(new Set(result?.Values)).toEqual(new Set([1500]));
    expect(result?.Timestamps?.[0]).toBeInstanceOf(Date);
    expect(east.MetricDataResults?.[0]?.Values).toEqual([]);
  });

  it("serves the RPO lag through GetMetricStatistics", async () => {
    // Prepare
    sandbox.cloudwatch.setRpoLagMs(WEST, 250);
    // Act
    const out = await cw(WEST).send(
      new GetMetricStatisticsCommand({
        Namespace: "AWS/RDS",
        MetricName: "AuroraGlobalDBRPOLag",
        Period: 60,
        Statistics: ["Maximum"],
        ...window,
      }),
    );
    // Assess
    expect(out.Datapoints?.[0]?.Maximum).toBe(250);
    expect(out.Datapoints?.[0]?.Unit).toBe("Milliseconds");
  });

  it("answers the modeled exceptions for a missing or invalid parameter", async () => {
    // Act
    const noQueries = await failure(
      cw(WEST).send(new GetMetricDataCommand({ MetricDataQueries: [], ...window })),
    );
    // Assess
    expect(noQueries.name).toBe("MissingRequiredParameterException");
  });
});

describe("Global Accelerator", () => {
  const ga = (region = "us-west-2") => new GlobalAcceleratorClient({ region, ...SDK });

  afterEach(() => {
    sandbox.ga.throttleUpdates(0);
    sandbox.ga.setUpdatesFail(false);
  });

  beforeEach(() => {
    sandbox.ga.defineEndpointGroup({
      arn: GROUP_EAST,
      region: EAST,
      dial: 100,
      endpoints: [{ id: "alb-east", weight: 200, healthy: true }],
    });
    sandbox.ga.defineEndpointGroup({
      arn: GROUP_WEST,
      region: WEST,
      dial: 0,
      endpoints: [{ id: "alb-west", weight: 0, healthy: false }],
    });
  });

  it("describes and lists endpoint groups with health", async () => {
    // Act
    const one = await ga().send(new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP_WEST }));
    const all = await ga().send(
      new ListEndpointGroupsCommand({
        ListenerArn: "arn:aws:globalaccelerator::000000000000:accelerator/a1/listener/l1",
      }),
    );
    // Assess
    expect(one.EndpointGroup?.TrafficDialPercentage).toBe(0);
    expect(one.EndpointGroup?.EndpointDescriptions?.[0]).toMatchObject({
      EndpointId: "alb-west",
      Weight: 0,
      HealthState: "UNHEALTHY",
    });
    expect(all.EndpointGroups?.map((g) => g.EndpointGroupRegion)).toEqual([EAST, WEST]);
  });

  it("replaces the endpoint list on update; an omitted Weight becomes 128", async () => {
    // Prepare
    sandbox.ga.setHealthy(GROUP_WEST, true);
    // Act
    const out = await ga().send(
      new UpdateEndpointGroupCommand({
        EndpointGroupArn: GROUP_WEST,
        TrafficDialPercentage: 100,
        EndpointConfigurations: [{ EndpointId: "alb-west" }, { EndpointId: "nlb-west", Weight: 5 }],
      }),
    );
    // Assess
    expect(out.EndpointGroup?.EndpointDescriptions?.map((e) => [e.EndpointId, e.Weight])).toEqual([
      ["alb-west", 128],
      ["nlb-west", 5],
    ]);
    expect(out.EndpointGroup?.EndpointDescriptions?.[0]?.HealthState).toBe("HEALTHY");
    expect(sandbox.ga.dials()).toEqual({ [EAST]: 100, [WEST]: 100 });
    expect(sandbox.ga.weights(GROUP_WEST)).toEqual({ "alb-west": 128, "nlb-west": 5 });
  });

  it("throttles the next n UpdateEndpointGroup calls only, and logs each call's outcome", async () => {
    // Prepare
    sandbox.ga.throttleUpdates(2);
    const before = sandbox.ga.calls().length;
    const update = () =>
      ga().send(
        new UpdateEndpointGroupCommand({ EndpointGroupArn: GROUP_EAST, TrafficDialPercentage: 50 }),
      );
    // Act
    const read = await ga().send(
      new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP_EAST }),
    );
    const first = await failure(update());
    const second = await failure(update());
    const third = await update();
    // Assess
    expect(read.EndpointGroup?.TrafficDialPercentage).toBe(100);
    expect([first.name, second.name]).toEqual(["ThrottlingException", "ThrottlingException"]);
    expect(status(first)).toBe(400);
    expect(third.EndpointGroup?.TrafficDialPercentage).toBe(50);
    expect(sandbox.ga.calls().slice(before)).toEqual([
      { action: "DescribeEndpointGroup", endpointGroupArn: GROUP_EAST, outcome: "ok" },
      {
        action: "UpdateEndpointGroup",
        endpointGroupArn: GROUP_EAST,
        outcome: "ThrottlingException",
      },
      {
        action: "UpdateEndpointGroup",
        endpointGroupArn: GROUP_EAST,
        outcome: "ThrottlingException",
      },
      { action: "UpdateEndpointGroup", endpointGroupArn: GROUP_EAST, outcome: "ok" },
    ]);
  });

  it("refuses updates with AccessDeniedException when updates fail", async () => {
    // Prepare
    sandbox.ga.setUpdatesFail(true);
    // Act
    const e = await failure(
      ga().send(
        new UpdateEndpointGroupCommand({ EndpointGroupArn: GROUP_EAST, TrafficDialPercentage: 0 }),
      ),
    );
    // Assess
    expect(e.name).toBe("AccessDeniedException");
    expect(sandbox.ga.dials()[EAST]).toBe(100);
  });

  it("answers EndpointGroupNotFoundException, and ValidationException in AWS's wording for values outside the model's ranges", async () => {
    // Act
    const missing = await failure(
      ga().send(new DescribeEndpointGroupCommand({ EndpointGroupArn: `${GROUP_EAST}x` })),
    );
    const badWeight = await failure(
      ga().send(
        new UpdateEndpointGroupCommand({
          EndpointGroupArn: GROUP_EAST,
          EndpointConfigurations: [{ EndpointId: "alb-east", Weight: 256 }],
        }),
      ),
    );
    const badBoth = await failure(
      ga().send(
        new UpdateEndpointGroupCommand({
          EndpointGroupArn: GROUP_EAST,
          TrafficDialPercentage: 101,
          EndpointConfigurations: [
            { EndpointId: "alb-east", Weight: 1 },
            { EndpointId: "alb-east-2", Weight: -1 },
          ],
        }),
      ),
    );
    // Assess
    expect(missing.name).toBe("EndpointGroupNotFoundException");
    expect(badWeight.name).toBe("ValidationException");
    expect(badWeight.message).toBe(
      "1 validation error detected: Value '256' at 'endpointConfigurations.1.member.weight' failed to satisfy constraint: Member must have value less than or equal to 255",
    );
    expect(badBoth.message).toBe(
      "2 validation errors detected: Value '101.0' at 'trafficDialPercentage' failed to satisfy constraint: Member must have value less than or equal to 100; Value '-1' at 'endpointConfigurations.2.member.weight' failed to satisfy constraint: Member must have value greater than or equal to 0",
    );
    expect(sandbox.ga.dials()[EAST]).not.toBe(101);
  });

  it("has no endpoint outside us-west-2: a non-retryable error naming the failed name lookup", async () => {
    // Prepare
    const before = sandbox.ga.calls().length;
    // Act
    const e = await failure(
      ga(EAST).send(new DescribeEndpointGroupCommand({ EndpointGroupArn: GROUP_EAST })),
    );
    // Assess
    expect(e.name).toBe("UnknownEndpoint");
    expect(e.message).toContain("getaddrinfo ENOTFOUND globalaccelerator.us-east-1.amazonaws.com");
    expect(status(e)).toBe(400);
    expect(sandbox.ga.calls().length).toBe(before);
  });
});

describe("Secrets Manager", () => {
  const sm = (region: string) => new SecretsManagerClient({ region, ...SDK });
  const ARN = "arn:aws:secretsmanager:us-east-1:000000000000:secret:gitops/git-token-AbC123";

  it("reads a secret by ARN or name, only in its region", async () => {
    // Prepare
    sandbox.secrets.put(ARN, '{"token":"s3cr3t"}');
    // Act
    const byArn = await sm(EAST).send(new GetSecretValueCommand({ SecretId: ARN }));
    const byName = await sm(EAST).send(new GetSecretValueCommand({ SecretId: "gitops/git-token" }));
    const elsewhere = await failure(sm(WEST).send(new GetSecretValueCommand({ SecretId: ARN })));
    // Assess
    expect(byArn.SecretString).toBe('{"token":"s3cr3t"}');
    expect(byArn.VersionStages).toEqual(["AWSCURRENT"]);
    expect(byArn.CreatedDate).toBeInstanceOf(Date);
    expect(byName.ARN).toBe(ARN);
    expect(elsewhere.name).toBe("ResourceNotFoundException");
  });

  it("creates a secret and stores a new current version", async () => {
    // Prepare
    const client = sm(WEST);
    // Act
    const created = await client.send(
      new CreateSecretCommand({ Name: "argocd-token", SecretString: "one" }),
    );
    const duplicate = await failure(
      client.send(new CreateSecretCommand({ Name: "argocd-token", SecretString: "again" })),
    );
    await client.send(new PutSecretValueCommand({ SecretId: "argocd-token", SecretString: "two" }));
    const current = await client.send(new GetSecretValueCommand({ SecretId: created.ARN }));
    const previous = await client.send(
      new GetSecretValueCommand({ SecretId: created.ARN, VersionStage: "AWSPREVIOUS" }),
    );
    // Assess
    expect(created.ARN).toMatch(
      /^arn:aws:secretsmanager:us-east-2:000000000000:secret:argocd-token-\w{6}$/,
    );
    expect(duplicate.name).toBe("ResourceExistsException");
    expect(current.SecretString).toBe("two");
    expect(previous.SecretString).toBe("one");
  });

  it("serves a replica under the same name and suffix in its region only, following the primary, refusing writes", async () => {
    // Prepare
    const primary = "arn:aws:secretsmanager:us-east-1:000000000000:secret:gitops/replicated-AbC123";
    const replica = primary.replace(":us-east-1:", ":us-east-2:");
    sandbox.secrets.put(primary, "v1");
    sandbox.secrets.replicate(primary, WEST);
    sandbox.secrets.put(primary, "v2");
    // Act
    const read = await sm(WEST).send(new GetSecretValueCommand({ SecretId: replica }));
    const described = await sm(WEST).send(new DescribeSecretCommand({ SecretId: replica }));
    const status = await sm(EAST).send(new DescribeSecretCommand({ SecretId: primary }));
    const write = await failure(
      sm(WEST).send(new PutSecretValueCommand({ SecretId: replica, SecretString: "x" })),
    );
    sandbox.secrets.removeReplica(primary, WEST);
    const gone = await failure(sm(WEST).send(new DescribeSecretCommand({ SecretId: replica })));
    // Assess
    expect(read).toMatchObject({ ARN: replica, SecretString: "v2" });
    expect(described).toMatchObject({ ARN: replica, PrimaryRegion: EAST });
    expect(status.ReplicationStatus).toEqual([
      { Region: WEST, Status: "InSync", StatusMessage: "Replication succeeded" },
    ]);
    expect(write.name).toBe("InvalidRequestException");
    expect(gone.name).toBe("ResourceNotFoundException");
  });

  it("answers ValidationException when SecretId is missing", async () => {
    // Act
    const e = await failure(sm(EAST).send(new GetSecretValueCommand({} as never)));
    // Assess
    expect(e.name).toBe("ValidationException");
  });
});

describe("Route 53", () => {
  const r53 = () => new Route53Client({ region: "us-east-1", ...SDK });
  const ZONE = "Z0SANDBOX";
  const weighted = (id: string, weight: number, ip: string) => ({
    Name: "app.example.com",
    Type: "A" as const,
    SetIdentifier: id,
    Weight: weight,
    TTL: 60,
    ResourceRecords: [{ Value: ip }],
  });

  beforeEach(() => {
    sandbox.route53.defineWeightedRecords(ZONE, [
      weighted("east", 100, "192.0.2.1"),
      weighted("west", 0, "192.0.2.2"),
    ]);
  });

  it("reports health check observations per checker region", async () => {
    // Prepare
    sandbox.route53.defineHealthCheck("hc-east", { failingFraction: 0, fqdn: "east.example.com" });
    sandbox.route53.setFailingFraction("hc-east", 0.5);
    // Act
    const out = await r53().send(new GetHealthCheckStatusCommand({ HealthCheckId: "hc-east" }));
    const config = await r53().send(new GetHealthCheckCommand({ HealthCheckId: "hc-east" }));
    // Assess
    const statuses = out.HealthCheckObservations?.map((o) => o.StatusReport?.Status ?? "") ?? [];
    expect(statuses).toHaveLength(8);
    expect(statuses.filter((s) => s.startsWith("Failure"))).toHaveLength(4);
    expect(statuses).toContain("Success: HTTP Status Code 200, OK");
    expect(out.HealthCheckObservations?.[0]?.StatusReport?.CheckedTime).toBeInstanceOf(Date);
    expect(config.HealthCheck?.HealthCheckConfig?.FullyQualifiedDomainName).toBe(
      "east.example.com",
    );
  });

  it("answers NoSuchHealthCheck (404) for an unknown check", async () => {
    // Act
    const e = await failure(r53().send(new GetHealthCheckStatusCommand({ HealthCheckId: "nope" })));
    // Assess
    expect(e.name).toBe("NoSuchHealthCheck");
    expect(status(e)).toBe(404);
  });

  it("lists and upserts weighted records atomically", async () => {
    // Act
    const change = await r53().send(
      new ChangeResourceRecordSetsCommand({
        HostedZoneId: `/hostedzone/${ZONE}`,
        ChangeBatch: {
          Changes: [
            { Action: "UPSERT", ResourceRecordSet: weighted("east", 0, "192.0.2.1") },
            { Action: "UPSERT", ResourceRecordSet: weighted("west", 100, "192.0.2.2") },
          ],
        },
      }),
    );
    const listed = await r53().send(new ListResourceRecordSetsCommand({ HostedZoneId: ZONE }));
    const synced = await r53().send(new GetChangeCommand({ Id: change.ChangeInfo?.Id }));
    // Assess
    expect(change.ChangeInfo?.Status).toBe("PENDING");
    expect(synced.ChangeInfo?.Status).toBe("INSYNC");
    expect(listed.ResourceRecordSets?.map((r) => [r.Name, r.SetIdentifier, r.Weight])).toEqual([
      ["app.example.com.", "east", 0],
      ["app.example.com.", "west", 100],
    ]);
    expect(listed.ResourceRecordSets?.[1]?.ResourceRecords).toEqual([{ Value: "192.0.2.2" }]);
  });

  it("rejects an invalid batch with InvalidChangeBatch and changes nothing", async () => {
    // Act
    const e = await failure(
      r53().send(
        new ChangeResourceRecordSetsCommand({
          HostedZoneId: ZONE,
          ChangeBatch: {
            Changes: [
              { Action: "UPSERT", ResourceRecordSet: weighted("east", 0, "192.0.2.1") },
              { Action: "CREATE", ResourceRecordSet: weighted("west", 100, "192.0.2.2") },
              { Action: "DELETE", ResourceRecordSet: weighted("south", 1, "192.0.2.3") },
            ],
          },
        }),
      ),
    );
    // Assess
    expect(e.name).toBe("InvalidChangeBatch");
    expect(e.message).toContain("but it already exists");
    expect(e.message).toContain("but it was not found");
    expect(sandbox.route53.records(ZONE).map((r) => r.Weight)).toEqual([100, 0]);
  });

  it("deletes a record only when every value matches", async () => {
    // Prepare
    const remove = (record: ReturnType<typeof weighted>) =>
      r53().send(
        new ChangeResourceRecordSetsCommand({
          HostedZoneId: ZONE,
          ChangeBatch: { Changes: [{ Action: "DELETE", ResourceRecordSet: record }] },
        }),
      );
    // Act
    const mismatch = await failure(remove({ ...weighted("east", 100, "192.0.2.1"), TTL: 300 }));
    await remove(weighted("west", 0, "192.0.2.2"));
    // Assess
    expect(mismatch.name).toBe("InvalidChangeBatch");
    expect(mismatch.message).toContain("do not match");
    expect(sandbox.route53.records(ZONE).map((r) => r.SetIdentifier)).toEqual(["east"]);
  });

  it("answers InvalidInput for a record without values", async () => {
    // Act
    const e = await failure(
      r53().send(
        new ChangeResourceRecordSetsCommand({
          HostedZoneId: ZONE,
          ChangeBatch: {
            Changes: [
              {
                Action: "UPSERT",
                ResourceRecordSet: {
                  Name: "x.example.com",
                  Type: "A",
                  SetIdentifier: "x",
                  Weight: 1,
                },
              },
            ],
          },
        }),
      ),
    );
    // Assess
    expect(e.name).toBe("InvalidInput");
  });
});

describe("SNS", () => {
  const sns = (region: string) => new SNSClient({ region, ...SDK });

  it("publishes to a created topic and keeps the message", async () => {
    // Prepare
    const { TopicArn } = await sns(EAST).send(new CreateTopicCommand({ Name: "failover" }));
    // Act
    const out = await sns(EAST).send(
      new PublishCommand({ TopicArn, Subject: "Failover done", Message: "us-east-2 is primary" }),
    );
    // Assess
    expect(TopicArn).toBe("arn:aws:sns:us-east-1:000000000000:failover");
    expect(sandbox.sns.messages()).toContainEqual({
      messageId: out.MessageId,
      topicArn: TopicArn,
      region: EAST,
      subject: "Failover done",
      message: "us-east-2 is primary",
    });
  });

  it("answers NotFound for an unknown topic and InvalidParameter without one", async () => {
    // Act
    const unknown = await failure(
      sns(EAST).send(
        new PublishCommand({ TopicArn: "arn:aws:sns:us-east-1:000000000000:nope", Message: "m" }),
      ),
    );
    const none = await failure(sns(EAST).send(new PublishCommand({ Message: "m" })));
    // Assess
    expect(unknown.name).toBe("NotFoundException");
    expect(status(unknown)).toBe(404);
    expect(none.name).toBe("InvalidParameterException");
  });
});

describe("SSM", () => {
  const ssm = (region: string) => new SSMClient({ region, ...SDK });

  it("reads a parameter set through the control and one put through the API", async () => {
    // Prepare
    sandbox.ssm.set("/gitops-failover/kill-switch", "off");
    // Act
    const first = await ssm(EAST).send(
      new GetParameterCommand({ Name: "/gitops-failover/kill-switch" }),
    );
    const put = await ssm(EAST).send(
      new PutParameterCommand({
        Name: "/gitops-failover/kill-switch",
        Value: "on",
        Overwrite: true,
      }),
    );
    const second = await ssm(EAST).send(
      new GetParameterCommand({ Name: "/gitops-failover/kill-switch" }),
    );
    // Assess
    expect(first.Parameter?.Value).toBe("off");
    expect(put.Version).toBe(2);
    expect(second.Parameter).toMatchObject({ Value: "on", Version: 2, Type: "String" });
    expect(second.Parameter?.LastModifiedDate).toBeInstanceOf(Date);
  });

  it("answers ParameterNotFound, ParameterAlreadyExists and ValidationException", async () => {
    // Prepare
    sandbox.ssm.set("/p", "v");
    // Act
    const otherRegion = await failure(ssm(WEST).send(new GetParameterCommand({ Name: "/p" })));
    const exists = await failure(
      ssm(EAST).send(new PutParameterCommand({ Name: "/p", Value: "w", Type: "String" })),
    );
    const untyped = await failure(
      ssm(EAST).send(new PutParameterCommand({ Name: "/new", Value: "w" })),
    );
    // Assess
    expect(otherRegion.name).toBe("ParameterNotFound");
    expect(exists.name).toBe("ParameterAlreadyExists");
    expect(untyped.name).toBe("ValidationException");
  });
});

describe("DynamoDB (dynalite)", () => {
  it("serves tables and conditional writes at the env endpoint", async () => {
    // Prepare
    const ddb = new DynamoDBClient({ region: EAST, ...SDK });
    await ddb.send(
      new CreateTableCommand({
        TableName: "audit",
        AttributeDefinitions: [{ AttributeName: "pk", AttributeType: "S" }],
        KeySchema: [{ AttributeName: "pk", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST",
      }),
    );
    const lock = {
      TableName: "audit",
      Item: { pk: { S: "lock" } },
      ConditionExpression: "attribute_not_exists(pk)",
    };
    // Act
    await ddb.send(new PutItemCommand(lock));
    const second = await failure(ddb.send(new PutItemCommand(lock)));
    const item = await ddb.send(
      new GetItemCommand({ TableName: "audit", Key: { pk: { S: "lock" } } }),
    );
    // Assess
    expect(second.name).toBe("ConditionalCheckFailedException");
    expect(item.Item).toEqual({ pk: { S: "lock" } });
  });
});

describe("protocol checks", () => {
  it("refuses a request without Authorization with 403 in the service's shape", async () => {
    // Act
    const res = await fetch(sandbox.endpoint, {
      method: "POST",
      headers: {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "secretsmanager.GetSecretValue",
      },
      body: "{}",
    });
    // Assess
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({
      __type: "MissingAuthenticationTokenException",
      message: "Request is missing Authentication Token",
    });
  });

  it("refuses an unknown access key through the SDK", async () => {
    // Prepare
    const client = new SSMClient({
      region: EAST,
      ...SDK,
      credentials: { accessKeyId: "AKIAOTHER00000000000", secretAccessKey: "x" },
    });
    // Act
    const e = await failure(client.send(new GetParameterCommand({ Name: "/p" })));
    // Assess
    expect(e.name).toBe("UnrecognizedClientException");
    expect(status(e)).toBe(403);
  });

  it("refuses an unknown X-Amz-Target with UnknownOperationException", async () => {
    // Act
    const res = await fetch(sandbox.endpoint, {
      method: "POST",
      headers: rawHeaders("ssm", {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "AmazonSSM.DeleteEverything",
      }),
      body: "{}",
    });
    // Assess
    expect(res.status).toBe(400);
    expect(res.headers.get("x-amzn-errortype")).toBe("UnknownOperationException");
  });

  it("refuses an unknown awsQuery Action with InvalidAction", async () => {
    // Act
    const res = await fetch(sandbox.endpoint, {
      method: "POST",
      headers: rawHeaders("rds", { "content-type": "application/x-www-form-urlencoded" }),
      body: "Action=DeleteGlobalCluster&Version=2014-10-31&GlobalClusterIdentifier=platform",
    });
    // Assess
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("<Code>InvalidAction</Code>");
  });
});

describe("registered services", () => {
  it("serves Step Functions registered as states / json1.0", async () => {
    // Prepare
    const arn = "arn:aws:states:us-east-1:000000000000:stateMachine:gitops-failover";
    sandbox.register(
      "states",
      "json1.0",
      createStepFunctions({ stateMachineArn: arn, waitMs: 0, retryMs: 0 }).handler,
    );
    const sfn = new SFNClient({ region: EAST, ...SDK });
    // Act
    const e = await failure(
      sfn.send(
        new DescribeExecutionCommand({
          executionArn: "arn:aws:states:us-east-1:000000000000:execution:gitops-failover:none",
        }),
      ),
    );
    // Assess
    expect(e.name).toBe("ExecutionDoesNotExist");
    expect(status(e)).toBe(400);
  });
});

describe("Step Functions emulator running the real ASL in the whole sandbox", () => {
  let whole: Sandbox;
  let dir: string;
  const sfn = () => new SFNClient({ region: "us-east-1", ...SDK });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "gf-sfn-"));
    whole = await startSandbox({ reportDir: dir, waitMs: 5 });
  });

  afterEach(async () => {
    await whole.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(name: string, input: Record<string, unknown> = {}): Promise<string> {
    const out = await sfn().send(
      new StartExecutionCommand({
        stateMachineArn: whole.stateMachineArn,
        name,
        input: JSON.stringify({ targetRegion: "us-east-2", reason: "emulator test", ...input }),
      }),
    );
    return out.executionArn ?? "";
  }

  async function history(executionArn: string): Promise<HistoryEvent[]> {
    return (await sfn().send(new GetExecutionHistoryCommand({ executionArn }))).events ?? [];
  }

  /** Polls the history until `found` picks something out of it. */
  async function until<T>(
    executionArn: string,
    found: (events: HistoryEvent[]) => T | undefined,
  ): Promise<T> {
    for (let i = 0; i < 400; i++) {
      const hit = found(await history(executionArn));
      if (hit !== undefined) return hit;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error("the history never showed what was awaited");
  }

  const ended = (events: HistoryEvent[]) =>
    events.find((e) => /^Execution(Succeeded|Failed|Aborted)$/.test(e.type ?? ""))?.type;

  it("answers InvalidOutput to SendTaskSuccess with output that is not JSON, and keeps the token", async () => {
    // Prepare
    const arn = await start("approval-1", { requireApproval: true });
    const token = await until(arn, (events) => {
      const scheduled = events.find((e) => e.type === "TaskScheduled");
      const params = scheduled?.taskScheduledEventDetails?.parameters;
      return params
        ? (JSON.parse(params) as { Payload: { taskToken: string } }).Payload.taskToken
        : undefined;
    });
    // Act
    const invalid = await failure(
      sfn().send(new SendTaskSuccessCommand({ taskToken: token, output: "{not json" })),
    );
    await sfn().send(
      new SendTaskSuccessCommand({ taskToken: token, output: JSON.stringify({ approvedBy: "t" }) }),
    );
    const end = await until(arn, ended);
    // Assess
    expect(invalid.name).toBe("InvalidOutput");
    expect(status(invalid)).toBe(400);
    expect(end).toBe("ExecutionSucceeded");
    const types = (await history(arn)).map((e) => e.type);
    expect(types.slice(types.indexOf("TaskScheduled"), types.indexOf("TaskScheduled") + 2)).toEqual(
      ["TaskScheduled", "TaskSucceeded"],
    );
  });

  it("records a retry as AWS does: LambdaFunctionFailed with the real error, then a new attempt", async () => {
    // Prepare
    whole.injectFault("ga-throttled", "us-east-2");
    // Act
    const arn = await start("throttled-1");
    const end = await until(arn, ended);
    // Assess
    expect(end).toBe("ExecutionSucceeded");
    const events = await history(arn);
    const byId = new Map(events.map((e) => [e.id, e]));
    const entered = events.find((e) => e.stateEnteredEventDetails?.name === "ShiftTraffic");
    const chain: string[] = [];
    for (const e of events) {
      if (e.stateEnteredEventDetails) continue;
      let p = byId.get(e.previousEventId);
      while (p && p !== entered && !p.stateEnteredEventDetails) p = byId.get(p.previousEventId);
      if (p === entered && e !== entered) chain.push(e.type ?? "");
    }
    expect(chain).toEqual([
      "LambdaFunctionScheduled",
      "LambdaFunctionStarted",
      "LambdaFunctionFailed",
      "LambdaFunctionScheduled",
      "LambdaFunctionStarted",
      "LambdaFunctionSucceeded",
      "TaskStateExited",
    ]);
    const failed = events.filter((e) => e.type === "LambdaFunctionFailed");
    expect(failed.map((e) => e.lambdaFunctionFailedEventDetails?.error)).toEqual(["AwsThrottled"]);
    expect(JSON.stringify(events)).not.toContain("States.TaskFailed");
    expect(
      whole.aws.ga
        .calls()
        .filter((c) => c.outcome === "ThrottlingException")
        .map((c) => c.action),
    ).toEqual(Array(4).fill("UpdateEndpointGroup"));
  });

  it("answers a missing required member as AWS does", async () => {
    // Act
    const e = await failure(sfn().send(new DescribeExecutionCommand({ executionArn: undefined })));
    // Assess
    expect(e.name).toBe("ValidationException");
    expect(e.message).toBe(
      "1 validation error detected: Value null at 'executionArn' failed to satisfy constraint: Member must not be null",
    );
  });
});

describe("KMS", () => {
  const kms = (region: string) => new KMSClient({ region, ...SDK });
  const message = Buffer.from('{"events":3,"head":"ab"}');
  const digest = createHash("sha256").update(message).digest();
  const ecdsa = {
    KeyId: "alias/gitops-failover-audit",
    SigningAlgorithm: "ECDSA_SHA_256",
  } as const;

  it("signs RAW and DIGEST with ECDSA P-256: DER signatures that node:crypto verifies with GetPublicKey's key", async () => {
    // Act
    const raw = await kms(EAST).send(new SignCommand({ ...ecdsa, Message: message }));
    const pre = await kms(EAST).send(
      new SignCommand({ ...ecdsa, Message: digest, MessageType: "DIGEST" }),
    );
    const pub = await kms(EAST).send(new GetPublicKeyCommand({ KeyId: sandbox.kms.signingKeyArn }));
    const key = createPublicKey({
      key: Buffer.from(pub.PublicKey ?? []),
      format: "der",
      type: "spki",
    });
    // A message and its digest are the same message: each signature verifies against the other form.
    const crossed = await kms(EAST).send(
      new VerifyCommand({ ...ecdsa, Message: message, Signature: pre.Signature }),
    );
    const crossedDigest = await kms(EAST).send(
      new VerifyCommand({
        ...ecdsa,
        Message: digest,
        MessageType: "DIGEST",
        Signature: raw.Signature,
      }),
    );
    // Assess
    expect(raw).toMatchObject({
      KeyId: sandbox.kms.signingKeyArn,
      SigningAlgorithm: "ECDSA_SHA_256",
    });
    expect(Buffer.from(raw.Signature ?? [])[0]).toBe(0x30);
    expect(verify("sha256", message, key, Buffer.from(raw.Signature ?? []))).toBe(true);
    expect(verify("sha256", message, key, Buffer.from(pre.Signature ?? []))).toBe(true);
    expect(pub).toMatchObject({
      KeySpec: "ECC_NIST_P256",
      KeyUsage: "SIGN_VERIFY",
      SigningAlgorithms: ["ECDSA_SHA_256"],
    });
    expect(crossed.SignatureValid).toBe(true);
    expect(crossedDigest.SignatureValid).toBe(true);
  });

  it("resolves a key by id, key ARN, alias and alias ARN in its own region only", async () => {
    // Prepare
    const arn = sandbox.kms.signingKeyArn;
    const id = arn.split("/").at(-1) ?? "";
    const aliasArn = `arn:aws:kms:${EAST}:000000000000:alias/gitops-failover-audit`;
    // Act
    const found = await Promise.all(
      [id, arn, "alias/gitops-failover-audit", aliasArn].map((KeyId) =>
        kms(EAST).send(new DescribeKeyCommand({ KeyId })),
      ),
    );
    const elsewhere = await failure(kms(WEST).send(new DescribeKeyCommand({ KeyId: id })));
    // Assess
    expect(found.map((f) => f.KeyMetadata?.Arn)).toEqual([arn, arn, arn, arn]);
    expect(elsewhere.name).toBe("NotFoundException");
    expect(elsewhere.message).toBe(
      `Key 'arn:aws:kms:${WEST}:000000000000:key/${id}' is not found.`,
    );
  });

  it("refuses a bad signature, a wrong-length digest, a long RAW message, another algorithm and a symmetric key", async () => {
    // Prepare
    const sig = Buffer.from(
      (await kms(EAST).send(new SignCommand({ ...ecdsa, Message: message }))).Signature ?? [],
    );
    const flipped = Buffer.from(sig);
    flipped[10] = (flipped[10] ?? 0) ^ 1;
    // Act
    const bad = await failure(
      kms(EAST).send(
        new VerifyCommand({ ...ecdsa, Message: Buffer.from("other"), Signature: sig }),
      ),
    );
    const mangled = await failure(
      kms(EAST).send(new VerifyCommand({ ...ecdsa, Message: message, Signature: flipped })),
    );
    const shortDigest = await failure(
      kms(EAST).send(
        new SignCommand({ ...ecdsa, Message: digest.subarray(0, 20), MessageType: "DIGEST" }),
      ),
    );
    const long = await failure(
      kms(EAST).send(new SignCommand({ ...ecdsa, Message: Buffer.alloc(4097, 1) })),
    );
    const p384 = await failure(
      kms(EAST).send(
        new SignCommand({ ...ecdsa, Message: message, SigningAlgorithm: "ECDSA_SHA_384" }),
      ),
    );
    const symmetric = { KeyId: "alias/sandbox-symmetric" };
    const wrongKey = await failure(
      kms(EAST).send(new SignCommand({ ...ecdsa, ...symmetric, Message: message })),
    );
    const noPublicKey = await failure(kms(EAST).send(new GetPublicKeyCommand(symmetric)));
    // Assess
    expect(bad).toBeInstanceOf(KMSInvalidSignatureException);
    expect(mangled).toBeInstanceOf(KMSInvalidSignatureException);
    expect(status(bad)).toBe(400);
    expect(shortDigest.name).toBe("ValidationException");
    expect(shortDigest.message).toContain("20 bytes, expected 32");
    expect(long.name).toBe("ValidationException");
    expect(long.message).toContain("less than or equal to 4096");
    expect(p384.name).toBe("InvalidKeyUsageException");
    expect(wrongKey.name).toBe("InvalidKeyUsageException");
    expect(wrongKey.message).toMatch(/key usage is ENCRYPT_DECRYPT which is not valid for Sign\.$/);
    expect(noPublicKey.name).toBe("UnsupportedOperationException");
  });
});
