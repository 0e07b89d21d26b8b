/**
 * Capacity parity's Aurora part in IAM: rds:ModifyDBCluster (raise and give back a member's
 * MinCapacity) is granted only when the topology says `capacity.aurora.mode: raise`, on exactly
 * the member clusters, through the role that owns each (the data account's in split accounts).
 */
import { readFileSync } from "node:fs";
import { App, Stack } from "aws-cdk-lib";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { parseTopology, type Topology } from "../../functions/lib/config.ts";
import { type AccessTargets, accessPlan, memberGrants } from "../../infra/lib/access.ts";

const SINGLE = "config/topology.example.yaml";
const SPLIT = "config/topology.split-accounts.example.yaml";

function topology(file: string, mode?: "off" | "report" | "raise"): Topology {
  const doc = parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  doc.capacity = {
    apps: [
      {
        deployment: "api",
        namespace: "payments",
        file: "values.yaml",
        path: "regions.{{targetRegion}}.minReplicas.api",
      },
    ],
    ...(mode ? { aurora: { mode } } : {}),
  };
  return parseTopology(doc, file);
}

function targets(t: Topology): AccessTargets {
  const stack = new Stack(new App(), "Access", {
    env: { account: "111122223333", region: "us-west-2" },
  });
  return {
    stack,
    topology: t,
    tableArn: "arn:aws:dynamodb:us-west-2:111122223333:table/audit",
    keyArn: "arn:aws:kms:us-west-2:111122223333:key/data",
    signingKeyArn: "arn:aws:kms:us-west-2:111122223333:key/sign",
    bucketArn: "arn:aws:s3:::reports",
    topicArn: "arn:aws:sns:us-west-2:111122223333:topic",
    stateMachineName: "gitops-failover-payments",
    killSwitchParameterArn: "arn:aws:ssm:us-west-2:111122223333:parameter/kill",
    orchestratorRegions: ["us-west-2"],
  };
}

/** Each statement's actions and resources, resolved. */
function statements(t: Topology, actions: string[]) {
  const tg = targets(t);
  return accessPlan(actions, tg).grants.map((g) => {
    const json = tg.stack.resolve(g.statement.toStatementJson()) as {
      Action: string | string[];
      Resource: string | string[];
    };
    return { actions: [json.Action].flat(), resources: [json.Resource].flat() };
  });
}

describe("rds:ModifyDBCluster (capacity.aurora)", () => {
  it("is granted with mode raise on exactly the member clusters", () => {
    const t = topology(SINGLE, "raise");
    const clusters = Object.values(t.regions).map((r) => r.aurora.clusterArn);
    const plan = accessPlan(["rds:ModifyDBCluster"], targets(t));
    expect(plan.omitted).toEqual([]);
    const [grant] = statements(t, ["rds:ModifyDBCluster"]);
    expect(grant?.actions).toEqual(["rds:ModifyDBCluster"]);
    expect(grant?.resources.sort()).toEqual(clusters.sort());
  });

  it.each([["report" as const], ["off" as const], [undefined]])(
    "is not granted with mode %s (report is the default: nothing is modified)",
    (mode) => {
      const plan = accessPlan(["rds:ModifyDBCluster"], targets(topology(SINGLE, mode)));
      expect(plan.omitted).toEqual(["rds:ModifyDBCluster"]);
      expect(plan.grants).toEqual([]);
    },
  );

  it("in split accounts, goes to the data account's role, on its clusters only", () => {
    const t = topology(SPLIT, "raise");
    const clusters = Object.values(t.regions).map((r) => r.aurora.clusterArn);
    const byRole = memberGrants(["rds:ModifyDBCluster"], targets(t));
    expect(byRole.size).toBe(1);
    const [role, grants] = [...byRole.entries()][0] ?? ["", []];
    expect(role).toMatch(/^arn:aws:iam::333344445555:role\//);
    expect(grants.map((g) => g.resources.sort())).toEqual([clusters.sort()]);
    expect(accessPlan(["rds:ModifyDBCluster"], targets(t)).omitted).toEqual([
      "rds:ModifyDBCluster",
    ]);
  });
});
