/**
 * The RDS emulator after an unplanned failover, through the real SDK: the old primary is listed
 * `pending-resync` and cannot be promoted until Aurora has rebuilt it as a secondary — by itself a
 * moment later while its region answers, never while that is held (fault aurora-not-rejoined).
 */
import {
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  RDSClient,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AwsSandbox, startAwsSandbox } from "../../sandbox/aws/server.ts";

const EAST = "us-east-1";
const WEST = "us-east-2";
const EAST_ARN = "arn:aws:rds:us-east-1:000000000000:cluster:rejoin-east";
const WEST_ARN = "arn:aws:rds:us-east-2:000000000000:cluster:rejoin-west";
const ID = "rejoin";

let sandbox: AwsSandbox;
const saved: Record<string, string | undefined> = {};
beforeAll(async () => {
  sandbox = await startAwsSandbox();
  for (const [k, v] of Object.entries(sandbox.env)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
});
afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await sandbox?.stop();
});

const rds = (region: string) => new RDSClient({ region, maxAttempts: 1 });

async function members() {
  const out = await rds(WEST).send(
    new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: ID }),
  );
  return Object.fromEntries(
    (out.GlobalClusters?.[0]?.GlobalClusterMembers ?? []).map((m) => [
      m.DBClusterArn,
      { writer: m.IsWriter, sync: m.SynchronizationStatus },
    ]),
  );
}

const switchBack = () =>
  rds(WEST).send(
    new SwitchoverGlobalClusterCommand({
      GlobalClusterIdentifier: ID,
      TargetDbClusterIdentifier: EAST_ARN,
    }),
  );

describe("RDS emulator: the old primary of an unplanned failover", () => {
  it("is pending-resync and cannot be promoted while held; rejoins by itself once released", async () => {
    sandbox.rds.defineGlobalCluster({
      identifier: ID,
      members: { [EAST]: EAST_ARN, [WEST]: WEST_ARN },
      writerRegion: EAST,
    });
    // Promotions (and Aurora rebuilding an old primary) complete at the next call: no waiting.
    sandbox.rds.setPromotionDelayMs(0);
    sandbox.rds.setRejoinHeld(true);
    await rds(WEST).send(
      new FailoverGlobalClusterCommand({
        GlobalClusterIdentifier: ID,
        TargetDbClusterIdentifier: WEST_ARN,
        AllowDataLoss: true,
      }),
    );
    expect(await members()).toEqual({
      [WEST_ARN]: { writer: true, sync: "connected" },
      [EAST_ARN]: { writer: false, sync: "pending-resync" },
    });
    const refused = await switchBack().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(refused?.name).toBe("InvalidGlobalClusterStateFault");
    expect(refused?.message).toMatch(
      /pending-resync\): it cannot be promoted until it has rejoined/,
    );
    expect(sandbox.rds.writerRegion(ID)).toBe(WEST);

    sandbox.rds.setRejoinHeld(false);
    expect((await members())[EAST_ARN]).toEqual({ writer: false, sync: "connected" });
    await switchBack();
    expect(sandbox.rds.writerRegion(ID)).toBe(EAST);
    expect((await members())[WEST_ARN]).toEqual({ writer: false, sync: "connected" });
  });
});
