/**
 * The AWS CLI v2 (Debian `awscli`: an independent client, botocore, speaking each service's
 * protocol as the CLI does — CloudWatch over awsQuery, for one) against the sandbox's AWS
 * emulators: every call the project makes (functions/ and cli/: Step Functions, RDS, Global
 * Accelerator, Route 53, SNS, Secrets Manager, SSM, CloudWatch, DynamoDB) and the read commands
 * an operator runs first, each asserting the answer and, for errors, the error code and exit
 * status. Exit status 254 is "the service returned an error", 252 "invalid parameters" (AWS CLI
 * user guide, "Command line return codes":
 * https://docs.aws.amazon.com/cli/latest/userguide/cli-usage-returncodes.html).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SANDBOX_ACCOUNT } from "../../sandbox/aws/protocol.ts";
import {
  AUDIT_TABLE,
  GLOBAL_CLUSTER,
  LISTENER_ARN,
  PLATFORM,
  type Sandbox,
  startSandbox,
  TOPIC_ARN,
} from "../../sandbox/index.ts";
import { awsCli, type Client, type Run } from "./clients.ts";

let sandbox: Sandbox;
let dir: string;
let cli: Client;
const ZONE = "Z0SANDBOX0000000001";

/** `aws --endpoint-url <sandbox> ...` with only the credentials `sandbox up` prints. */
function aws(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const dynamo = args[0] === "dynamodb";
  return cli.run(
    [
      "--endpoint-url",
      dynamo ? sandbox.aws.dynamo.endpoint : sandbox.aws.endpoint,
      "--output",
      "json",
      ...args,
    ],
    {
      AWS_ACCESS_KEY_ID: sandbox.env.AWS_ACCESS_KEY_ID ?? "",
      AWS_SECRET_ACCESS_KEY: sandbox.env.AWS_SECRET_ACCESS_KEY ?? "",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_REGION: "us-east-1",
      AWS_PAGER: "",
      AWS_MAX_ATTEMPTS: "1",
      AWS_CONFIG_FILE: join(dir, "config"),
      AWS_SHARED_CREDENTIALS_FILE: join(dir, "credentials"),
      ...env,
    },
  );
}

/** The JSON a successful command printed. */
async function ok<T = Record<string, unknown>>(args: string[]): Promise<T> {
  const r = await aws(args);
  if (r.code !== 0) throw new Error(`aws ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return (r.stdout.trim() ? JSON.parse(r.stdout) : {}) as T;
}

/** A refused command: exit 254 and botocore's `An error occurred (<Code>) when calling the <Op> operation`. */
async function refused(args: string[], code: string, operation: string): Promise<string> {
  const r = await aws(args);
  expect(r.code, r.stderr).toBe(254);
  expect(r.stderr).toContain(`An error occurred (${code}) when calling the ${operation} operation`);
  return r.stderr;
}

/** `globalaccelerator update-endpoint-group` of one group, at its only endpoint (us-west-2). */
const updateGroup = (arn: string, ...options: string[]) => [
  "globalaccelerator",
  "update-endpoint-group",
  "--region",
  "us-west-2",
  "--endpoint-group-arn",
  arn,
  ...options,
];

const group = (region: string) =>
  sandbox.topology.regions[region]?.globalAccelerator?.endpointGroupArn ?? "";

beforeAll(async () => {
  cli = await awsCli();
  dir = await mkdtemp(join(tmpdir(), "gf-aws-cli-"));
  sandbox = await startSandbox({ reportDir: join(dir, "report"), promotionDelayMs: 100 });
});

afterAll(async () => {
  await sandbox?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("aws: first commands", () => {
  it("sts get-caller-identity names the sandbox account and user", async () => {
    const id = await ok(["sts", "get-caller-identity"]);
    expect(id).toEqual({
      UserId: expect.stringMatching(/^AIDA/),
      Account: SANDBOX_ACCOUNT,
      Arn: `arn:aws:iam::${SANDBOX_ACCOUNT}:user/sandbox`,
    });
  });

  it("rds describe-db-clusters lists each region's member of the global cluster, the writer's as cluster writer", async () => {
    const west = await ok<{ DBClusters: Record<string, unknown>[] }>([
      "rds",
      "describe-db-clusters",
      "--region",
      "us-west-2",
    ]);
    const east = await ok<{ DBClusters: Record<string, unknown>[] }>([
      "rds",
      "describe-db-clusters",
      "--region",
      "us-east-2",
      "--db-cluster-identifier",
      `${PLATFORM}-use2`,
    ]);
    expect(west.DBClusters).toHaveLength(1);
    expect(west.DBClusters[0]).toMatchObject({
      DBClusterIdentifier: `${PLATFORM}-usw2`,
      DBClusterArn: sandbox.topology.regions["us-west-2"]?.aurora.clusterArn,
      Status: "available",
      Engine: "aurora-postgresql",
      DBClusterMembers: [{ IsClusterWriter: true }],
    });
    expect(east.DBClusters[0]).toMatchObject({ DBClusterMembers: [{ IsClusterWriter: false }] });
    await refused(
      ["rds", "describe-db-clusters", "--region", "us-west-2", "--db-cluster-identifier", "nope"],
      "DBClusterNotFoundFault",
      "DescribeDBClusters",
    );
  });

  it("route53 list-health-checks and get-health-check-status", async () => {
    const checks = await ok<{ HealthChecks: { Id: string }[] }>(["route53", "list-health-checks"]);
    const ids = Object.values(sandbox.topology.regions).map((r) => r.route53.healthCheckId);
    expect(checks.HealthChecks.map((c) => c.Id).sort()).toEqual([...ids].sort());
    const status = await ok<{ HealthCheckObservations: { StatusReport: { Status: string } }[] }>([
      "route53",
      "get-health-check-status",
      "--health-check-id",
      ids[0] ?? "",
    ]);
    expect(status.HealthCheckObservations.length).toBeGreaterThan(0);
    expect(status.HealthCheckObservations[0]?.StatusReport.Status).toMatch(/^Success: HTTP/);
    await refused(
      [
        "route53",
        "get-health-check-status",
        "--health-check-id",
        "00000000-dead-4000-8000-000000000000",
      ],
      "NoSuchHealthCheck",
      "GetHealthCheckStatus",
    );
  });

  it("stepfunctions list-state-machines, sns list-topics, cloudwatch list-metrics", async () => {
    const machines = await ok<{ stateMachines: Record<string, unknown>[] }>([
      "stepfunctions",
      "list-state-machines",
    ]);
    const topics = await ok<{ Topics: { TopicArn: string }[] }>(["sns", "list-topics"]);
    const metrics = await ok<{ Metrics: Record<string, unknown>[] }>([
      "cloudwatch",
      "list-metrics",
      "--region",
      "us-east-2",
      "--namespace",
      "AWS/RDS",
    ]);
    expect(machines.stateMachines).toEqual([
      {
        stateMachineArn: sandbox.stateMachineArn,
        name: sandbox.stateMachineArn.split(":").at(-1),
        type: "STANDARD",
        creationDate: expect.any(String),
      },
    ]);
    expect(topics.Topics).toEqual([{ TopicArn: TOPIC_ARN }]);
    expect(metrics.Metrics).toEqual([
      {
        Namespace: "AWS/RDS",
        MetricName: "AuroraGlobalDBRPOLag",
        Dimensions: [{ Name: "DBClusterIdentifier", Value: `${PLATFORM}-use2` }],
      },
    ]);
  });

  it("globalaccelerator outside us-west-2 fails as a missing endpoint, not a dropped connection", async () => {
    // On AWS the host name globalaccelerator.us-east-1.amazonaws.com does not resolve (the CLI
    // exits 255 with "Could not connect to the endpoint URL"); one reachable sandbox endpoint
    // cannot fail a name lookup, so it answers a non-retryable UnknownEndpoint naming it.
    const stderr = await refused(
      ["globalaccelerator", "list-endpoint-groups", "--listener-arn", LISTENER_ARN],
      "UnknownEndpoint",
      "ListEndpointGroups",
    );
    expect(stderr).toContain("getaddrinfo ENOTFOUND globalaccelerator.us-east-1.amazonaws.com");
    expect(stderr).not.toContain("Connection was closed");
  });
});

describe("aws: the calls the orchestrator makes", () => {
  it("secretsmanager get-secret-value, only in the secret's region", async () => {
    const arn = sandbox.topology.git.credentialsSecretArn;
    const secret = await ok<{ ARN: string; SecretString: string }>([
      "secretsmanager",
      "get-secret-value",
      "--region",
      "us-west-2",
      "--secret-id",
      arn,
    ]);
    expect(secret.ARN).toBe(arn);
    expect(JSON.parse(secret.SecretString)).toEqual({
      username: sandbox.credentials.git.username,
      token: sandbox.credentials.git.password,
    });
    await refused(
      ["secretsmanager", "get-secret-value", "--region", "eu-west-1", "--secret-id", arn],
      "ResourceNotFoundException",
      "GetSecretValue",
    );
  });

  it("ssm get-parameter: the kill switch; ParameterNotFound for another name", async () => {
    const name = sandbox.topology.trigger.killSwitchParameter;
    const p = await ok<{ Parameter: { Name: string; Value: string } }>([
      "ssm",
      "get-parameter",
      "--name",
      name,
    ]);
    expect(p.Parameter).toMatchObject({ Name: name, Value: "off" });
    await refused(
      ["ssm", "get-parameter", "--name", `${name}-x`],
      "ParameterNotFound",
      "GetParameter",
    );
  });

  it("sns publish: a MessageId; NotFound for a topic that does not exist", async () => {
    const sent = await ok<{ MessageId: string }>([
      "sns",
      "publish",
      "--topic-arn",
      TOPIC_ARN,
      "--subject",
      "fidelity",
      "--message",
      "hello from the AWS CLI",
    ]);
    expect(sandbox.aws.sns.messages()).toContainEqual(
      expect.objectContaining({ messageId: sent.MessageId, message: "hello from the AWS CLI" }),
    );
    await refused(
      ["sns", "publish", "--topic-arn", `${TOPIC_ARN}-x`, "--message", "x"],
      "NotFound",
      "Publish",
    );
  });

  it("cloudwatch list-metrics and get-metric-data over awsQuery (the RPO guard's metric)", async () => {
    const listed = await ok<{ Metrics: Record<string, unknown>[] }>([
      "cloudwatch",
      "list-metrics",
      "--region",
      "us-east-2",
      "--namespace",
      "AWS/RDS",
    ]);
    const now = Date.now();
    const data = await ok<{
      MetricDataResults: { Id: string; Values: number[]; Timestamps: string[] }[];
    }>([
      "cloudwatch",
      "get-metric-data",
      "--region",
      "us-east-2",
      "--start-time",
      new Date(now - 10 * 60_000).toISOString(),
      "--end-time",
      new Date(now).toISOString(),
      "--metric-data-queries",
      JSON.stringify([
        {
          Id: "rpo",
          MetricStat: {
            Metric: {
              Namespace: "AWS/RDS",
              MetricName: "AuroraGlobalDBRPOLag",
              Dimensions: [{ Name: "DBClusterIdentifier", Value: `${PLATFORM}-use2` }],
            },
            Period: 60,
            Stat: "Maximum",
          },
        },
      ]),
    ]);
    expect(listed.Metrics).toEqual([
      {
        Namespace: "AWS/RDS",
        MetricName: "AuroraGlobalDBRPOLag",
        Dimensions: [{ Name: "DBClusterIdentifier", Value: `${PLATFORM}-use2` }],
      },
    ]);
    expect(data.MetricDataResults[0]?.Id).toBe("rpo");
    expect(data.MetricDataResults[0]?.Values.length).toBeGreaterThan(0);
    expect(new Set(data.MetricDataResults[0]?.Values)).toEqual(new Set([250]));
  });

  it("globalaccelerator describe/update-endpoint-group; ValidationException for weights and dials out of range", async () => {
    const west = group("us-west-2");
    const east = group("us-east-2");
    const before = await ok<{ EndpointGroup: { EndpointDescriptions: { EndpointId: string }[] } }>([
      "globalaccelerator",
      "describe-endpoint-group",
      "--region",
      "us-west-2",
      "--endpoint-group-arn",
      east,
    ]);
    const endpoint = before.EndpointGroup.EndpointDescriptions[0]?.EndpointId ?? "";
    const updated = await ok<{ EndpointGroup: Record<string, unknown> }>(
      updateGroup(
        east,
        "--traffic-dial-percentage",
        "0",
        "--endpoint-configurations",
        `EndpointId=${endpoint},Weight=200`,
      ),
    );
    expect(updated.EndpointGroup).toMatchObject({
      EndpointGroupArn: east,
      TrafficDialPercentage: 0,
      EndpointDescriptions: [{ EndpointId: endpoint, Weight: 200 }],
    });
    const weight = await refused(
      updateGroup(east, "--endpoint-configurations", `EndpointId=${endpoint},Weight=300`),
      "ValidationException",
      "UpdateEndpointGroup",
    );
    expect(weight).toContain(
      "1 validation error detected: Value '300' at 'endpointConfigurations.1.member.weight' failed to satisfy constraint: Member must have value less than or equal to 255",
    );
    const dial = await refused(
      updateGroup(west, "--traffic-dial-percentage", "150"),
      "ValidationException",
      "UpdateEndpointGroup",
    );
    expect(dial).toContain(
      "Value '150.0' at 'trafficDialPercentage' failed to satisfy constraint: Member must have value less than or equal to 100",
    );
    expect(sandbox.aws.ga.dials()["us-west-2"]).toBe(100);
  });

  it("globalaccelerator ThrottlingException is retried by the CLI as throttling, then reported", async () => {
    sandbox.aws.ga.throttleUpdates(5);
    try {
      const r = await aws(updateGroup(group("us-east-2"), "--traffic-dial-percentage", "0"), {
        AWS_MAX_ATTEMPTS: "2",
        AWS_RETRY_MODE: "standard",
      });
      expect(r.code).toBe(254);
      expect(r.stderr).toContain(
        "An error occurred (ThrottlingException) when calling the UpdateEndpointGroup operation (reached max retries: 1): Rate exceeded",
      );
    } finally {
      sandbox.aws.ga.throttleUpdates(0);
    }
  });

  it("route53 list/change-resource-record-sets; InvalidChangeBatch for a DELETE that does not match", async () => {
    const name = `api.${PLATFORM}.sandbox.local.`;
    sandbox.aws.route53.defineWeightedRecords(ZONE, [
      {
        Name: name,
        Type: "CNAME",
        SetIdentifier: "us-west-2",
        Weight: 100,
        TTL: 60,
        ResourceRecords: [{ Value: "usw2.example.com" }],
      },
      {
        Name: name,
        Type: "CNAME",
        SetIdentifier: "us-east-2",
        Weight: 0,
        TTL: 60,
        ResourceRecords: [{ Value: "use2.example.com" }],
      },
    ]);
    const record = (weight: number, action: string) =>
      JSON.stringify({
        Changes: [
          {
            Action: action,
            ResourceRecordSet: {
              Name: name,
              Type: "CNAME",
              SetIdentifier: "us-east-2",
              Weight: weight,
              TTL: 60,
              ResourceRecords: [{ Value: "use2.example.com" }],
            },
          },
        ],
      });
    const changed = await ok<{ ChangeInfo: { Status: string; Id: string } }>([
      "route53",
      "change-resource-record-sets",
      "--hosted-zone-id",
      ZONE,
      "--change-batch",
      record(50, "UPSERT"),
    ]);
    const listed = await ok<{ ResourceRecordSets: { SetIdentifier: string; Weight: number }[] }>([
      "route53",
      "list-resource-record-sets",
      "--hosted-zone-id",
      ZONE,
    ]);
    expect(changed.ChangeInfo.Status).toBe("PENDING");
    expect(changed.ChangeInfo.Id).toMatch(/^\/change\/C/);
    expect(listed.ResourceRecordSets.map((r) => [r.SetIdentifier, r.Weight])).toEqual([
      ["us-east-2", 50],
      ["us-west-2", 100],
    ]);
    const stderr = await refused(
      [
        "route53",
        "change-resource-record-sets",
        "--hosted-zone-id",
        ZONE,
        "--change-batch",
        record(7, "DELETE"),
      ],
      "InvalidChangeBatch",
      "ChangeResourceRecordSets",
    );
    expect(stderr).toContain("but the values provided do not match the current values");
  });

  it("rds failover-global-cluster (the planned failover of this CLI's API version); InvalidGlobalClusterStateFault while one is in progress", async () => {
    // The Debian CLI (2.9) predates switchover-global-cluster and --allow-data-loss: in its API
    // version FailoverGlobalCluster is the managed planned failover, asked of the writer's region.
    const east = sandbox.topology.regions["us-east-2"]?.aurora.clusterArn ?? "";
    const west = sandbox.topology.regions["us-west-2"]?.aurora.clusterArn ?? "";
    const failover = (region: string, target: string) => [
      "rds",
      "failover-global-cluster",
      "--region",
      region,
      "--global-cluster-identifier",
      GLOBAL_CLUSTER,
      "--target-db-cluster-identifier",
      target,
    ];
    sandbox.aws.rds.setPromotionDelayMs(60_000); // each CLI call takes about a second
    const started = await ok<{
      GlobalCluster: { Status: string; FailoverState: Record<string, unknown> };
    }>(failover("us-west-2", east));
    await refused(
      failover("us-west-2", east),
      "InvalidGlobalClusterStateFault",
      "FailoverGlobalCluster",
    );
    sandbox.aws.rds.setPromotionDelayMs(0);
    let writer = "";
    for (let i = 0; i < 100 && writer !== east; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const d = await ok<{
        GlobalClusters: { GlobalClusterMembers: { DBClusterArn: string; IsWriter: boolean }[] }[];
      }>(["rds", "describe-global-clusters", "--global-cluster-identifier", GLOBAL_CLUSTER]);
      writer =
        d.GlobalClusters[0]?.GlobalClusterMembers.find((m) => m.IsWriter)?.DBClusterArn ?? "";
    }
    await refused(failover("us-east-2", east), "InvalidParameterValue", "FailoverGlobalCluster");
    expect(started.GlobalCluster).toMatchObject({
      Status: "modifying",
      FailoverState: { Status: "switching-over", FromDbClusterArn: west, ToDbClusterArn: east },
    });
    expect(writer).toBe(east);
  });

  it("dynamodb put-item with a condition: ConditionalCheckFailedException the second time; get-item, query, delete-item", async () => {
    const item = JSON.stringify({ pk: { S: "fidelity#1" }, sk: { S: "0001" }, who: { S: "cli" } });
    const put = [
      "dynamodb",
      "put-item",
      "--table-name",
      AUDIT_TABLE,
      "--item",
      item,
      "--condition-expression",
      "attribute_not_exists(pk)",
    ];
    await ok(put);
    await refused(put, "ConditionalCheckFailedException", "PutItem");
    const key = JSON.stringify({ pk: { S: "fidelity#1" }, sk: { S: "0001" } });
    const got = await ok<{ Item: Record<string, { S: string }> }>([
      "dynamodb",
      "get-item",
      "--table-name",
      AUDIT_TABLE,
      "--key",
      key,
    ]);
    const queried = await ok<{ Count: number }>([
      "dynamodb",
      "query",
      "--table-name",
      AUDIT_TABLE,
      "--key-condition-expression",
      "pk = :pk",
      "--expression-attribute-values",
      JSON.stringify({ ":pk": { S: "fidelity#1" } }),
    ]);
    await ok(["dynamodb", "delete-item", "--table-name", AUDIT_TABLE, "--key", key]);
    const gone = await ok(["dynamodb", "get-item", "--table-name", AUDIT_TABLE, "--key", key]);
    expect(got.Item.who).toEqual({ S: "cli" });
    expect(queried.Count).toBe(1);
    expect(gone).toEqual({});
  });

  it("stepfunctions start-execution is idempotent for the same name and input, ExecutionAlreadyExists otherwise; the Approval token through send-task-failure", async () => {
    const input = JSON.stringify({
      targetRegion: "us-east-2",
      reason: "fidelity: the AWS CLI",
      requireApproval: true,
      requestedBy: "aws-cli",
    });
    const start = (body: string) => [
      "stepfunctions",
      "start-execution",
      "--state-machine-arn",
      sandbox.stateMachineArn,
      "--name",
      "fidelity-cli",
      "--input",
      body,
    ];
    const first = await ok<{ executionArn: string }>(start(input));
    const again = await ok<{ executionArn: string }>(start(input));
    await refused(
      start(JSON.stringify({ ...JSON.parse(input), reason: "other" })),
      "ExecutionAlreadyExists",
      "StartExecution",
    );
    expect(again.executionArn).toBe(first.executionArn);
    let token = "";
    for (let i = 0; i < 200 && !token; i++) {
      const history = await ok<{
        events: { type: string; taskScheduledEventDetails?: { parameters: string } }[];
      }>(["stepfunctions", "get-execution-history", "--execution-arn", first.executionArn]);
      const scheduled = history.events.find(
        (e) =>
          e.type === "TaskScheduled" &&
          e.taskScheduledEventDetails?.parameters.includes("taskToken"),
      );
      token = scheduled
        ? (JSON.parse(scheduled.taskScheduledEventDetails?.parameters ?? "{}").Payload?.taskToken ??
          "")
        : "";
      if (!token) await new Promise((r) => setTimeout(r, 25));
    }
    expect(token).not.toBe("");
    await ok([
      "stepfunctions",
      "send-task-failure",
      "--task-token",
      token,
      "--error",
      "ApprovalRejected",
      "--cause",
      "fidelity test",
    ]);
    await refused(
      ["stepfunctions", "send-task-success", "--task-token", token, "--task-output", "{}"],
      "TaskDoesNotExist",
      "SendTaskSuccess",
    );
    let status = "RUNNING";
    for (let i = 0; i < 200 && status === "RUNNING"; i++) {
      await new Promise((r) => setTimeout(r, 25));
      status = (
        await ok<{ status: string }>([
          "stepfunctions",
          "describe-execution",
          "--execution-arn",
          first.executionArn,
        ])
      ).status;
    }
    const listed = await ok<{ executions: { name: string; status: string }[] }>([
      "stepfunctions",
      "list-executions",
      "--state-machine-arn",
      sandbox.stateMachineArn,
    ]);
    expect(status).toBe("FAILED");
    expect(listed.executions).toContainEqual(
      expect.objectContaining({ name: "fidelity-cli", status: "FAILED" }),
    );
  });
});
