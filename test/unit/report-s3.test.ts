/**
 * Report's AWS path: the report objects go to a versioned, Object-Locked bucket served by a real
 * S3-protocol server (moto_server, when the machine has it), and the signed anchor names the
 * VersionId each PutObject returned; the signature verifies with the key's exported public key.
 * The sandbox writes to a directory (no versions), so only this test sees real version ids.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { CreateTableCommand } from "@aws-sdk/client-dynamodb";
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectLockConfigurationCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkSignedAnchor, exportPublicKey } from "../../functions/lib/anchor-verify.ts";
import { dynamoClient, resetClients, s3Client } from "../../functions/lib/aws.ts";
import { loadTopology, resetRuntimeTopology } from "../../functions/lib/config.ts";
import { type FailoverReport, reportStep } from "../../functions/lib/report.ts";
import type { FailoverState } from "../../functions/lib/state.ts";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";

const moto = spawnSync("moto_server", ["--help"], { stdio: "ignore" }).status === 0;
const BUCKET = "gitops-failover-reports";
const saved = { ...process.env };
let aws: AwsSandbox;
let server: ChildProcess | undefined;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

beforeAll(async () => {
  if (!moto) return;
  aws = await startAwsSandbox();
  const port = await freePort();
  server = spawn("moto_server", ["-H", "127.0.0.1", "-p", String(port)], { stdio: "ignore" });
  const endpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (
      await fetch(endpoint).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 50));
  }
  Object.assign(process.env, aws.env, {
    TOPOLOGY: JSON.stringify(loadTopology("config/topology.example.yaml")),
    // The after-snapshot's APIs are unreachable: the report still gets written.
    AWS_ENDPOINT_URL: "http://127.0.0.1:9",
    AWS_ENDPOINT_URL_S3: endpoint,
    AUDIT_TABLE: "audit",
    REPORT_BUCKET: BUCKET,
    AUDIT_SIGNING_KEY: aws.kms.signingKeyArn,
  });
  delete process.env.REPORT_DIR;
  resetRuntimeTopology();
  resetClients();
  await dynamoClient().send(
    new CreateTableCommand({
      TableName: "audit",
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "S" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
  );
  await s3Client().send(
    new CreateBucketCommand({ Bucket: BUCKET, ObjectLockEnabledForBucket: true }),
  );
  await s3Client().send(
    new PutObjectLockConfigurationCommand({
      Bucket: BUCKET,
      ObjectLockConfiguration: {
        ObjectLockEnabled: "Enabled",
        Rule: { DefaultRetention: { Mode: "GOVERNANCE", Days: 1 } },
      },
    }),
  );
}, 60_000);

afterAll(async () => {
  server?.kill();
  await aws?.stop();
  for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
  Object.assign(process.env, saved);
  resetRuntimeTopology();
  resetClients();
});

describe.skipIf(!moto)("Report to a versioned, Object-Locked bucket (moto_server)", () => {
  it("signs the VersionId of report.md, report.html and audit.jsonl, each kept under GOVERNANCE retention", async () => {
    const execution = {
      id: "arn:aws:states:us-east-1:000000000000:execution:sm:to-s3",
      name: "to-s3",
      startTime: new Date().toISOString(),
    };
    const state = {
      execution,
      input: {
        targetRegion: "us-east-2",
        reason: "region move",
        mode: "graceful",
        dryRun: true,
        allowDataLoss: false,
        requestedBy: "jane",
        requireApproval: false,
      },
    } as unknown as FailoverState;

    const summary = await reportStep(state);

    const prefix = "reports/to-s3/";
    const versions = await s3Client().send(
      new ListObjectVersionsCommand({ Bucket: BUCKET, Prefix: prefix }),
    );
    const versionOf = (name: string) =>
      versions.Versions?.find((v) => v.Key === `${prefix}${name}`)?.VersionId;
    const json = await s3Client().send(
      new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}report.json` }),
    );
    const report = JSON.parse((await json.Body?.transformToString()) ?? "{}") as FailoverReport;
    // HeadObject: moto's GetObjectRetention answer is not one the SDK parses.
    const locked = await s3Client().send(
      new HeadObjectCommand({ Bucket: BUCKET, Key: `${prefix}audit.jsonl` }),
    );
    const pem = await exportPublicKey(aws.kms.signingKeyArn);
    const verdict = await checkSignedAnchor(
      report,
      { execution: execution.id, events: report.audit.events, head: report.audit.head },
      "report.json",
      { kind: "publicKey", pem, source: "the exported key" },
    );

    expect(summary.location).toBe(`s3://${BUCKET}/${prefix}`);
    expect(summary.audit.signed).toEqual(report.audit.signed);
    const objects = report.audit.signed?.payload.objects ?? {};
    expect(Object.keys(objects).sort()).toEqual(["audit.jsonl", "report.html", "report.md"]);
    for (const name of Object.keys(objects)) {
      expect(objects[name], name).toMatch(/\S/);
      expect(objects[name], name).toBe(versionOf(name));
    }
    expect(report.audit.signed?.payload.location).toBe(`s3://${BUCKET}/${prefix}`);
    expect(locked.ObjectLockMode).toBe("GOVERNANCE");
    expect(locked.VersionId).toBe(objects["audit.jsonl"]);
    expect(verdict).toEqual({ ok: true, how: "signature verified offline with the exported key" });
  }, 60_000);
});
