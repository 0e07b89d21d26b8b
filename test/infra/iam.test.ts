/**
 * IAM sufficiency: every function's role allows exactly the AWS calls its code makes — derived
 * now, from the code as it is (esbuild bundle + our modules' imports) — on the topology's
 * resources, plus only what the runtime needs (its log group, the key its table and topic use).
 * The derivation itself is checked against an independent scan of the handlers' source.
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, normalize } from "node:path";
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
} from "@aws-sdk/lib-dynamodb";
import type { CfnElement, Stack } from "aws-cdk-lib";
import { mockClient } from "aws-sdk-client-mock";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { FUNCTIONS, type SecretKind } from "../../functions/catalog.ts";
import { loadTopology, type Topology } from "../../functions/lib/config.ts";
import {
  acquireLock,
  claimIncident,
  releaseLock,
  unclaimIncident,
} from "../../functions/lib/lock.ts";
import { deletablePartitionKeys, topologyRoles } from "../../infra/lib/access.ts";
import { FUNCTION_ENTRIES } from "../../infra/lib/app.ts";
import { APPROVER, type OrchestratorStack, TRIGGER } from "../../infra/lib/orchestrator-stack.ts";
import { READINESS } from "../../infra/lib/readiness.ts";
import { DEFAULT_TOPOLOGY } from "../../infra/lib/settings.ts";
import { deriveAll, type Synthesized, synthesize } from "./synth.ts";

type Json = Record<string, unknown>;
interface Statement {
  Action: string | string[];
  Resource: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

/** Calls the Lambda service makes with a role (not the code): the trigger's failure destination. */
const SERVICE_ACTIONS: Record<string, string[]> = { Trigger: ["sns:Publish"] };
/** The actions AWS gives no resource-level permissions (granted on "*"). */
const NO_RESOURCE_LEVEL = [
  "cloudwatch:GetMetricData",
  "states:SendTaskFailure",
  "states:SendTaskSuccess",
  "xray:PutTelemetryRecords",
  "xray:PutTraceSegments",
];

const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v]);

/** The kinds of secret functions/catalog.ts declares for a function (the trigger reads none). */
function kindsOf(name: string): readonly SecretKind[] {
  if (name === TRIGGER.name) return TRIGGER.secrets;
  if (name === READINESS.name) return READINESS.secrets;
  if (name === APPROVER.name) return APPROVER.secrets;
  const spec = FUNCTIONS.find((f) => f.state === name);
  if (!spec) throw new Error(`no catalog entry for ${name}`);
  return spec.secrets;
}

/**
 * What a function of the us-west-2 orchestrator may read, worked out here on its own: the
 * topology's ARNs of its kinds, and for each in another region the replica in us-west-2 (same
 * name and suffix).
 */
function expectedSecrets(t: Topology, kinds: readonly SecretKind[]): string[] {
  const arns = [
    ...(kinds.includes("git") ? [t.git.credentialsSecretArn] : []),
    ...(kinds.includes("git-read") && t.git.readCredentialsSecretArn
      ? [t.git.readCredentialsSecretArn]
      : []),
    ...(kinds.includes("argocd") ? t.argocd.hubs.map((h) => h.tokenSecretArn) : []),
    ...(kinds.includes("spoke")
      ? Object.values(t.regions).flatMap((r) => r.spokes.map((x) => x.tokenSecretArn))
      : []),
    ...(kinds.includes("backup")
      ? t.argocd.hubs.flatMap((h) => (h.backup ? [h.backup.tokenSecretArn] : []))
      : []),
  ];
  const inWest = (arn: string) =>
    arn.replace(/^(arn:aws:secretsmanager:)[a-z0-9-]+:/, "$1us-west-2:");
  return [...new Set(arns.flatMap((a) => [a, inWest(a)]))].sort();
}
const logicalId = (s: Stack, c: { node: { defaultChild?: unknown } }) =>
  s.getLogicalId(c.node.defaultChild as CfnElement);

let gaSynth: Synthesized;
let r53Synth: Synthesized;
let splitSynth: Synthesized;

/** The example topology moved to Route 53 weighted records (no Global Accelerator). */
function route53Topology(): string {
  const doc = parse(readFileSync(DEFAULT_TOPOLOGY, "utf8")) as Topology;
  doc.traffic = {
    ...doc.traffic,
    mode: "route53",
    hostedZoneId: "Z0123456789ABCDEFGHIJ",
    recordName: "API.payments.example.com.",
  };
  for (const [name, region] of Object.entries(doc.regions)) {
    delete region.globalAccelerator;
    region.route53.setIdentifier = name;
  }
  const file = join(mkdtempSync(join(tmpdir(), "gf-topology-")), "route53.json");
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

beforeAll(async () => {
  const access = await deriveAll();
  gaSynth = synthesize({}, access);
  r53Synth = synthesize({ topology: route53Topology(), orchestratorRegions: "us-west-2" }, access);
  splitSynth = synthesize({ topology: SPLIT }, access);
});

/** Statements of each function's role, from the synthesized template. */
function rolesOf(
  synth: Synthesized,
): Map<string, { stack: OrchestratorStack; statements: Statement[]; logGroup: string }> {
  const roles = new Map<
    string,
    { stack: OrchestratorStack; statements: Statement[]; logGroup: string }
  >();
  const stack = synth.deployment.orchestrators[0];
  if (!stack) throw new Error("no orchestrator");
  const resources = synth.template(stack).toJSON().Resources as Record<string, Json>;
  for (const [name, f] of stack.functions) {
    const role = resources[logicalId(stack, f.role)]?.Properties as {
      Policies: { PolicyDocument: { Statement: Statement[] } }[];
    };
    const fn = resources[logicalId(stack, f.function)]?.Properties as {
      LoggingConfig: { LogGroup: { Ref: string } };
    };
    roles.set(name, {
      stack,
      statements: role.Policies.flatMap((p) => p.PolicyDocument.Statement),
      logGroup: fn.LoggingConfig.LogGroup.Ref,
    });
  }
  return roles;
}

const granted = (statements: Statement[], filter: (a: string) => boolean = () => true) =>
  [...new Set(statements.flatMap((s) => list(s.Action)).filter(filter))].sort();
/** The data key's use implied by DynamoDB and SNS calls (kms:Sign is the code's own call). */
const isKeyUse = (a: string) => ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"].includes(a);
const isCodeAction = (a: string) =>
  !a.startsWith("logs:") && !isKeyUse(a) && !a.startsWith("xray:");

describe.each([
  [
    "Global Accelerator topology",
    () => gaSynth,
    // rds:ModifyDBCluster: only with capacity.aurora.mode raise (aurora-capacity.test.ts).
    ["route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets", "rds:ModifyDBCluster"],
  ],
  [
    "Route 53 topology",
    () => r53Synth,
    [
      "globalaccelerator:DescribeEndpointGroup",
      "globalaccelerator:UpdateEndpointGroup",
      "rds:ModifyDBCluster",
    ],
  ],
])("%s", (_, synth, nothingToActOn) => {
  it("grants each function exactly the actions its code sends (derived now), less those the topology gives nothing to act on", () => {
    const s = synth();
    for (const [name, role] of rolesOf(s)) {
      const derived = s.access.get(name)?.actions ?? [];
      const expected = [...new Set([...derived, ...(SERVICE_ACTIONS[name] ?? [])])]
        .filter((a) => !nothingToActOn.includes(a))
        .sort();
      expect(granted(role.statements, isCodeAction), name).toEqual(expected);
    }
  });

  it("grants the runtime only its own log group, and the key only through the services that use it", () => {
    const s = synth();
    for (const [name, role] of rolesOf(s)) {
      const logs = role.statements.filter((st) =>
        list(st.Action).some((a) => a.startsWith("logs:")),
      );
      expect(logs, name).toEqual([
        {
          Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
          Effect: "Allow",
          Resource: { "Fn::GetAtt": [role.logGroup, "Arn"] },
        },
      ]);
      const code = granted(role.statements, isCodeAction);
      const keyUse = role.statements.filter((st) => list(st.Action).some(isKeyUse));
      const services = keyUse
        .map((st) => String(st.Condition?.StringEquals?.["kms:ViaService"]))
        .sort();
      const expectedServices = ["dynamodb", "sns"]
        .filter((svc) => code.some((a) => a.startsWith(`${svc}:`)))
        .map((svc) => `${svc}.us-west-2.amazonaws.com`);
      expect(services, name).toEqual(expectedServices);
      for (const st of keyUse) {
        expect(JSON.stringify(st.Resource), name).toMatch(
          /"Fn::GetAtt":\["DataKey[0-9A-F]+","Arn"\]/,
        );
        for (const a of list(st.Action))
          expect(["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], name).toContain(a);
      }
    }
  });

  it("scopes every action to the topology's and the stack's own resources", () => {
    const s = synth();
    const t = s.settings.topology;
    const regions = Object.values(t.regions);
    const secrets = (name: string) => expectedSecrets(t, kindsOf(name));
    const everywhere = expectedSecrets(t, ["git", "argocd", "spoke", "backup"]).flatMap((arn) =>
      s.settings.orchestratorRegions.map((region) =>
        arn.replace(/^(arn:aws:secretsmanager:)[a-z0-9-]+:/, `$1${region}:`),
      ),
    );
    const clusters = [
      "arn:aws:rds::111122223333:global-cluster:payments-global",
      ...regions.map((r) => r.aurora.clusterArn),
    ];
    const groups = regions.flatMap((r) =>
      r.globalAccelerator ? [r.globalAccelerator.endpointGroupArn] : [],
    );
    const route53 = [
      ...regions.map((r) => `arn:aws:route53:::healthcheck/${r.route53.healthCheckId}`),
      "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ",
    ];
    for (const [name, role] of rolesOf(s)) {
      const stack = role.stack;
      const own = (c: { node: { defaultChild?: unknown } }) => logicalId(stack, c);
      for (const st of role.statements) {
        const resources = list(st.Resource).map((r) =>
          typeof r === "string" ? r : JSON.stringify(r),
        );
        for (const action of list(st.Action)) {
          const [service] = action.split(":");
          const where = `${name} ${action}`;
          expect(action, where).not.toContain("*");
          if (resources.includes("*")) {
            expect(NO_RESOURCE_LEVEL, where).toContain(action);
            continue;
          }
          const allowed: Record<string, (r: string) => boolean> = {
            // DescribeSecret (readiness, metadata only): every secret in every orchestrator region.
            secretsmanager: (r) =>
              action === "secretsmanager:DescribeSecret"
                ? everywhere.includes(r)
                : secrets(name).includes(r),
            rds: (r) =>
              clusters.includes(r) ||
              // A provisioned member's writer instance (capacity parity): the members' db:*.
              (action === "rds:DescribeDBInstances" &&
                regions.some((x) => r === x.aurora.clusterArn.replace(/:cluster:.+$/, ":db:*"))),
            globalaccelerator: (r) => groups.includes(r),
            route53: (r) => route53.includes(r),
            dynamodb: (r) => r === JSON.stringify({ "Fn::GetAtt": [own(stack.table), "Arn"] }),
            s3: (r) =>
              r.includes(`"Fn::GetAtt":["${own(stack.bucket)}","Arn"]`) &&
              r.endsWith(`"/reports/*"]]}`),
            sns: (r) => r === JSON.stringify({ Ref: own(stack.topic) }),
            states: (r) =>
              /:states:us-west-2:.*:(stateMachine|execution):gitops-failover-payments(:\*)?"\]\]\}$/.test(
                r,
              ),
            ssm: (r) => r.includes(":parameter") && r.includes("KillSwitch"),
            logs: (r) => r === JSON.stringify({ "Fn::GetAtt": [role.logGroup, "Arn"] }),
            kms: (r) =>
              action === "kms:Sign"
                ? r === JSON.stringify({ "Fn::GetAtt": [own(stack.signingKey), "Arn"] })
                : r.includes("DataKey"),
          };
          const check = allowed[service ?? ""];
          expect(check, `${where}: no expectation for this service`).toBeDefined();
          for (const r of resources) expect(check?.(r), `${where} on ${r}`).toBe(true);
        }
      }
    }
  });

  it("lets every function send its X-Ray traces (no resource-level permission exists) and no metrics by API (they are EMF log lines)", () => {
    for (const [name, role] of rolesOf(synth())) {
      const xray = role.statements.filter((st) =>
        list(st.Action).some((a) => a.startsWith("xray:")),
      );
      expect(
        granted(xray, (a) => a.startsWith("xray:")),
        name,
      ).toEqual(["xray:PutTelemetryRecords", "xray:PutTraceSegments"]);
      for (const st of xray) expect(st.Resource, name).toBe("*");
      expect(granted(role.statements), name).not.toContain("cloudwatch:PutMetricData");
    }
  });
});

describe("the Route 53 topology", () => {
  it("lets ShiftTraffic change only the platform's record (UPSERT) in its hosted zone", () => {
    const role = rolesOf(r53Synth).get("ShiftTraffic");
    const change = role?.statements.find((st) =>
      list(st.Action).includes("route53:ChangeResourceRecordSets"),
    );
    expect(change?.Resource).toBe("arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ");
    expect(change?.Condition).toEqual({
      "ForAllValues:StringEquals": {
        "route53:ChangeResourceRecordSetsNormalizedRecordNames": ["api.payments.example.com"],
        "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
      },
    });
  });
});

describe("no wildcard action anywhere", () => {
  it("in any identity policy of any stack (roles' inline policies, attached and managed policies)", () => {
    for (const s of [gaSynth, r53Synth]) {
      for (const stack of [...s.deployment.orchestrators, s.deployment.health]) {
        const resources = Object.values(
          s.template(stack).toJSON().Resources as Record<string, Json>,
        );
        const documents = resources.flatMap((r) => {
          const props = (r.Properties ?? {}) as Json;
          if (r.Type === "AWS::IAM::Policy" || r.Type === "AWS::IAM::ManagedPolicy")
            return [props.PolicyDocument as { Statement: Statement[] }];
          if (r.Type === "AWS::IAM::Role")
            return ((props.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]).map(
              (p) => p.PolicyDocument,
            );
          return [];
        });
        const actions = documents.flatMap((d) => d.Statement.flatMap((st) => list(st.Action)));
        expect(actions.length, stack.stackName).toBeGreaterThan(0);
        for (const a of actions) expect(a, stack.stackName).not.toContain("*");
      }
    }
  });
});

describe("secrets", () => {
  const secretResources = (statements: Statement[]) =>
    statements
      .filter((st) => list(st.Action).includes("secretsmanager:GetSecretValue"))
      .flatMap((st) => list(st.Resource) as string[])
      .sort();

  it("each function reads only the kinds of secret its catalog entry names, each also as its replica in the stack's region", () => {
    const t = gaSynth.settings.topology;
    for (const [name, role] of rolesOf(gaSynth)) {
      expect(secretResources(role.statements), name).toEqual(expectedSecrets(t, kindsOf(name)));
    }
  });

  it("reads the Git and primary Argo CD secrets (us-west-2) from their us-east-2 replica in the us-east-2 orchestrator", () => {
    const east = gaSynth.deployment.orchestrators[1];
    if (!east) throw new Error("no second orchestrator");
    const t = gaSynth.settings.topology;
    const resources = gaSynth.template(east).toJSON().Resources as Record<string, Json>;
    const grants = (name: string) => {
      const f = east.functions.get(name);
      if (!f) throw new Error(name);
      const role = resources[logicalId(east, f.role)]?.Properties as {
        Policies: { PolicyDocument: { Statement: Statement[] } }[];
      };
      return secretResources(role.Policies.flatMap((p) => p.PolicyDocument.Statement));
    };
    const git = t.git.credentialsSecretArn;
    // Plan also reads the spokes' tokens (capacity parity's live read of the source), as
    // VerifySpoke does (which also reads the hubs' tokens for a failback's pre-checks).
    const spokeTokens = grants("VerifySpoke").filter((arn) =>
      /:secret:gitops-failover\/spoke-/.test(arn),
    );
    expect(spokeTokens.length).toBeGreaterThan(0);
    expect(grants("Plan")).toEqual(
      [git, git.replace(":us-west-2:", ":us-east-2:"), ...spokeTokens].sort(),
    );
    const primaryHub = t.argocd.hubs[0]?.tokenSecretArn ?? "";
    expect(grants("AwaitArgoSync")).toContain(primaryHub.replace(":us-west-2:", ":us-east-2:"));
  });

  it("keeps the Git credentials from the Argo CD and spoke readers, and the tokens from the Git writer", () => {
    const t = gaSynth.settings.topology;
    const roles = rolesOf(gaSynth);
    const reads = (name: string) => secretResources(roles.get(name)?.statements ?? []).join(" ");
    const gitName = "gitops-failover/git-";
    expect(reads("AwaitArgoSync")).not.toContain(gitName);
    expect(reads("VerifySpoke")).not.toContain(gitName);
    expect(reads("CommitRetarget")).not.toContain("argocd");
    expect(reads("CommitRetarget")).not.toContain("spoke");
    for (const name of ["Approval", "PromoteAurora", "ShiftTraffic", "Notify", "Trigger"])
      expect(reads(name), name).toBe("");
    expect(reads("VerifySpoke")).toContain(t.regions["eu-west-1"]?.spokes[0]?.tokenSecretArn);
  });

  it("the catalog names exactly the kinds each handler's code reaches (an independent reading of the source)", () => {
    for (const { name, entry } of FUNCTION_ENTRIES) {
      expect([...secretKindsReached(entry)].sort(), name).toEqual([...kindsOf(name)].sort());
    }
  });
});

describe("the audit trail", () => {
  const documents = mockClient(DynamoDBDocumentClient);
  afterAll(() => documents.restore());

  it("lets a function delete only the lock and the incident claims (dynamodb:LeadingKeys), never an audit event", () => {
    for (const s of [gaSynth, r53Synth]) {
      const keys = deletablePartitionKeys(s.settings.topology.platform);
      expect(keys).toEqual(["lock#payments", "incident#payments"]);
      const deleters: string[] = [];
      for (const [name, role] of rolesOf(s)) {
        const deletes = role.statements.filter((st) =>
          list(st.Action).includes("dynamodb:DeleteItem"),
        );
        if (!deletes.length) continue;
        deleters.push(name);
        expect(deletes, name).toHaveLength(1);
        expect(list(deletes[0]?.Action ?? []), name).toEqual(["dynamodb:DeleteItem"]);
        expect(deletes[0]?.Condition, name).toEqual({
          "ForAllValues:StringEquals": { "dynamodb:LeadingKeys": keys },
        });
      }
      expect(deleters.sort()).toEqual(["RecordFailure", "Report", "Trigger"]);
    }
  });

  it("the condition's keys are the ones functions/lib/lock.ts deletes, and the audit trail's are not among them", async () => {
    process.env.AUDIT_TABLE = "audit";
    documents.reset();
    documents.on(PutCommand).resolves({});
    documents.on(GetCommand).resolves({});
    documents.on(DeleteCommand).resolves({});
    try {
      await acquireLock("payments", { name: "incident-1", arn: "arn:x" }, 60);
      await releaseLock("payments", "incident-1");
      await claimIncident("payments", "incident-1");
      await unclaimIncident("payments", "incident-1");
    } finally {
      delete process.env.AUDIT_TABLE;
    }
    const deleted = documents
      .commandCalls(DeleteCommand)
      .map((c) => String(c.args[0].input.Key?.pk));
    expect(deleted).toEqual(deletablePartitionKeys("payments"));
    const audit = readFileSync("functions/lib/audit.ts", "utf8");
    expect(audit).toMatch(/`exec#\$\{execution\}`/);
    for (const key of deletablePartitionKeys("payments")) expect(key).not.toMatch(/^exec#/);
  });
});

/**
 * The kinds of secret a handler's code can read, from its source alone: the top-level functions
 * reachable from the handler (through identifiers and relative imports), and in them each
 * `getSecret(...)` call, classified by its argument (`.git.credentialsSecretArn`) or, for a
 * `.tokenSecretArn`, by what the enclosing function iterates (`argocd.hubs` or `.spokes`).
 */
function secretKindsReached(entry: string): Set<SecretKind> {
  interface Module {
    decls: Map<string, ts.Node>;
    imports: Map<string, { file: string; name: string }>;
    statements: readonly ts.Statement[];
  }
  const modules = new Map<string, Module>();
  const load = (file: string): Module => {
    const cached = modules.get(file);
    if (cached) return cached;
    const sf = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
    const m: Module = { decls: new Map(), imports: new Map(), statements: sf.statements };
    for (const st of sf.statements) {
      if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st)) && st.name)
        m.decls.set(st.name.text, st);
      if (ts.isVariableStatement(st))
        for (const d of st.declarationList.declarations)
          if (ts.isIdentifier(d.name)) m.decls.set(d.name.text, d);
      if (
        ts.isImportDeclaration(st) &&
        ts.isStringLiteral(st.moduleSpecifier) &&
        st.moduleSpecifier.text.startsWith(".") &&
        !st.importClause?.isTypeOnly
      ) {
        const target = normalize(join(dirname(file), st.moduleSpecifier.text));
        const bindings = st.importClause?.namedBindings;
        if (bindings && ts.isNamedImports(bindings))
          for (const el of bindings.elements)
            if (!el.isTypeOnly)
              m.imports.set(el.name.text, {
                file: target,
                name: (el.propertyName ?? el.name).text,
              });
      }
    }
    modules.set(file, m);
    return m;
  };
  const kinds = new Set<SecretKind>();
  const seen = new Set<string>();
  const classify = (arg: string, scope: string, where: string): SecretKind => {
    if (/\.git\.readCredentialsSecretArn$/.test(arg)) return "git-read";
    if (/\.git\.credentialsSecretArn$/.test(arg)) return "git";
    if (/(^|\.)backup\.tokenSecretArn$/.test(arg)) return "backup";
    if (/^hub\.tokenSecretArn$/.test(arg) && /\(hub: Hub\)/.test(scope)) return "argocd";
    if (/\.tokenSecretArn$/.test(arg)) {
      const hubs = scope.includes("argocd.hubs");
      const spokes = /\.spokes\b/.test(scope);
      if (hubs !== spokes) return hubs ? "argocd" : "spoke";
    }
    throw new Error(`${where}: cannot tell which secret getSecret(${arg}) reads`);
  };
  const visit = (file: string, node: ts.Node, scope: string) => {
    const m = load(file);
    const walk = (n: ts.Node): void => {
      if (
        ts.isCallExpression(n) &&
        ts.isIdentifier(n.expression) &&
        m.imports.get(n.expression.text)?.name === "getSecret" &&
        n.arguments[0]
      ) {
        kinds.add(classify(n.arguments[0].getText(), scope, file));
      }
      if (ts.isIdentifier(n)) {
        const p = n.parent;
        const isMemberName =
          (ts.isPropertyAccessExpression(p) && p.name === n) ||
          (ts.isPropertyAssignment(p) && p.name === n);
        if (!isMemberName) {
          const imported = m.imports.get(n.text);
          if (m.decls.has(n.text)) reach(file, n.text);
          else if (imported) reach(imported.file, imported.name);
        }
      }
      ts.forEachChild(n, walk);
    };
    walk(node);
  };
  const reach = (file: string, name: string) => {
    const key = `${file}#${name}`;
    if (seen.has(key)) return;
    seen.add(key);
    const decl = load(file).decls.get(name);
    if (decl) visit(file, decl, decl.getText());
  };
  for (const st of load(entry).statements) visit(entry, st, st.getText());
  return kinds;
}

/**
 * An independent reading of the code: follow each handler's relative imports and collect the
 * SDK commands its modules construct (`new XCommand(`, `paginateX(`), by their import source.
 */
function scanSource(entry: string): Set<string> {
  const seen = new Set<string>();
  const commands = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    const origin = new Map<string, string>();
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"(@aws-sdk\/[^"]+)"/g)) {
      for (const part of (m[1] ?? "").split(",")) {
        const name = part
          .replace(/^\s*type\s+/, "")
          .split(/\s+as\s+/)[0]
          ?.trim();
        if (name) origin.set(name, m[2] ?? "");
      }
    }
    for (const m of text.matchAll(/new\s+(\w+Command)\s*\(/g)) {
      const pkg = origin.get(m[1] ?? "");
      if (pkg) commands.add(`${pkg}|${m[1]}`);
    }
    for (const m of text.matchAll(/\bpaginate(\w+)\s*\(/g)) {
      const pkg = origin.get(`paginate${m[1]}`);
      if (pkg) commands.add(`${pkg}|${m[1]}Command`);
    }
    for (const m of text.matchAll(/from\s+"(\.{1,2}\/[^"]+\.ts)"/g))
      visit(normalize(join(dirname(file), m[1] ?? "")));
  };
  visit(entry);
  return commands;
}

describe("the derivation", () => {
  it("never finds a call the handler's own source does not make, and misses none that any handler makes", () => {
    const union = new Set<string>();
    const scanned = new Set<string>();
    for (const { name, entry } of FUNCTION_ENTRIES) {
      const source = scanSource(entry);
      for (const c of source) scanned.add(c);
      const calls = gaSynth.access.get(name)?.calls ?? [];
      expect(calls.length, name).toBeGreaterThan(0);
      for (const call of calls) {
        expect(
          source.has(`${call.pkg}|${call.command}`),
          `${name}: ${call.command} from ${call.module}`,
        ).toBe(true);
        union.add(`${call.pkg}|${call.command}`);
      }
    }
    expect([...union].sort()).toEqual([...scanned].sort());
  });
});

/**
 * Cross-account IAM, both sides, from a synth of the split-account example (cdk-nag on): each
 * function role may assume exactly the member roles its code needs (never "*"), keeps none of
 * the permissions those roles carry, and each member account's stack creates its role trusting
 * exactly those function roles (with the external id) and allowing exactly what they do there.
 */
const SPLIT = "config/topology.split-accounts.example.yaml";
const NETWORK = "arn:aws:iam::222233334444:role/gitops-failover-network";
const DATA = "arn:aws:iam::333344445555:role/gitops-failover-data";
const SECRETS = "arn:aws:iam::444455556666:role/gitops-failover-secrets";

interface RoleProps {
  RoleName?: string;
  AssumeRolePolicyDocument: { Statement: (Statement & { Principal: unknown })[] };
  Policies?: { PolicyDocument: { Statement: Statement[] } }[];
}

const resourcesOf = (s: Statement) => list(s.Resource as string | string[]);
function memberRolesOf(stackName: string): RoleProps[] {
  const stack = splitSynth.assembly.getStackByName(stackName).template as {
    Resources: Record<string, Json>;
  };
  return Object.values(stack.Resources)
    .filter((r) => r.Type === "AWS::IAM::Role")
    .map((r) => r.Properties as unknown as RoleProps);
}
const roleStatements = (r: RoleProps) =>
  (r.Policies ?? []).flatMap((p) => p.PolicyDocument.Statement);
const roleActions = (r: RoleProps) =>
  roleStatements(r)
    .flatMap((s) => list(s.Action))
    .sort();

/** Function role name -> the member roles it may assume. */
function assumedBy(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const o of splitSynth.deployment.orchestrators) {
    for (const r of memberRolesOf(o.stackName)) {
      const assume = roleStatements(r).filter((s) => list(s.Action).includes("sts:AssumeRole"));
      if (r.RoleName && assume.length)
        out.set(r.RoleName, assume.flatMap((s) => resourcesOf(s)).sort());
    }
  }
  return out;
}

describe("cross-account: the split-account example, both sides", () => {
  it("synthesizes one MemberAccountRoles stack per member account, in that account", () => {
    expect(
      splitSynth.deployment.memberAccounts.map((s) => [s.stackName, s.account]).sort(),
    ).toEqual([
      ["GitopsFailover-payments-MemberRoles-222233334444", "222233334444"],
      ["GitopsFailover-payments-MemberRoles-333344445555", "333344445555"],
      ["GitopsFailover-payments-MemberRoles-444455556666", "444455556666"],
    ]);
  });

  it("each member role allows exactly the actions the orchestrator makes on that account's resources", () => {
    const topology = loadTopology(SPLIT);
    const [network] = memberRolesOf("GitopsFailover-payments-MemberRoles-222233334444");
    expect(network?.RoleName).toBe("gitops-failover-network");
    expect(roleActions(network as RoleProps)).toEqual([
      "globalaccelerator:DescribeEndpointGroup",
      "globalaccelerator:UpdateEndpointGroup",
      "route53:GetHealthCheckStatus",
    ]);
    const groups = Object.values(topology.regions).map(
      (r) => r.globalAccelerator?.endpointGroupArn,
    );
    for (const s of roleStatements(network as RoleProps)) {
      if (list(s.Action)[0]?.startsWith("globalaccelerator:"))
        expect(resourcesOf(s).sort()).toEqual(groups.sort());
      else
        expect(resourcesOf(s).sort()).toEqual(
          Object.values(topology.regions)
            .map((r) => `arn:aws:route53:::healthcheck/${r.route53.healthCheckId}`)
            .sort(),
        );
    }
    const [data] = memberRolesOf("GitopsFailover-payments-MemberRoles-333344445555");
    expect(roleActions(data as RoleProps)).toEqual([
      "cloudwatch:GetMetricData",
      "rds:DescribeDBClusters",
      "rds:DescribeDBInstances",
      "rds:DescribeGlobalClusters",
      "rds:FailoverGlobalCluster",
      "rds:SwitchoverGlobalCluster",
    ]);
    const clusters = Object.values(topology.regions).map((r) => r.aurora.clusterArn);
    const global = "arn:aws:rds::333344445555:global-cluster:payments-global";
    for (const s of roleStatements(data as RoleProps)) {
      const [first] = list(s.Action);
      const want =
        first === "cloudwatch:GetMetricData"
          ? ["*"]
          : first === "rds:DescribeDBClusters"
            ? clusters
            : first === "rds:DescribeDBInstances"
              ? clusters.map((c) => c.replace(/:cluster:.+$/, ":db:*"))
              : first === "rds:DescribeGlobalClusters"
                ? [global]
                : [global, ...clusters];
      expect(resourcesOf(s).sort(), first).toEqual(want.sort());
    }
    const [secrets] = memberRolesOf("GitopsFailover-payments-MemberRoles-444455556666");
    expect(roleActions(secrets as RoleProps)).toEqual([
      "secretsmanager:DescribeSecret",
      "secretsmanager:GetSecretValue",
    ]);
    for (const s of roleStatements(secrets as RoleProps))
      for (const arn of resourcesOf(s))
        expect(arn).toMatch(/^arn:aws:secretsmanager:[a-z0-9-]+:444455556666:secret:/);
  });

  it("each member role trusts exactly the function roles allowed to assume it, with its external id", () => {
    const assumed = assumedBy();
    for (const [stack, roleArn, externalId] of [
      ["GitopsFailover-payments-MemberRoles-222233334444", NETWORK, "payments-failover-network"],
      ["GitopsFailover-payments-MemberRoles-333344445555", DATA, "payments-failover-data"],
      ["GitopsFailover-payments-MemberRoles-444455556666", SECRETS, "payments-failover-secrets"],
    ] as const) {
      const [role] = memberRolesOf(stack);
      const [trust] = role?.AssumeRolePolicyDocument.Statement ?? [];
      expect(trust?.Principal).toEqual({
        AWS: { "Fn::Join": ["", ["arn:", { Ref: "AWS::Partition" }, ":iam::111122223333:root"]] },
      });
      expect(trust?.Condition?.StringEquals).toEqual({ "sts:ExternalId": externalId });
      const trusted = list(trust?.Condition?.ArnEquals?.["aws:PrincipalArn"] as string[]).sort();
      const granted = [...assumed.entries()]
        .filter(([, arns]) => arns.includes(roleArn))
        .map(([name]) => `arn:aws:iam::111122223333:role/${name}`)
        .sort();
      expect(trusted.length).toBeGreaterThan(0);
      expect(trusted).toEqual(granted);
    }
  });

  it("function roles assume only named roles and keep none of the member accounts' permissions", () => {
    const assumed = assumedBy();
    expect(assumed.get("gitops-failover-payments-PromoteAurora-us-west-2")).toEqual([DATA]);
    expect(assumed.get("gitops-failover-payments-VerifyTraffic-us-west-2")).toEqual([NETWORK]);
    expect(assumed.get("gitops-failover-payments-CommitRetarget-us-west-2")).toEqual([SECRETS]);
    for (const o of splitSynth.deployment.orchestrators) {
      for (const r of memberRolesOf(o.stackName)) {
        for (const a of roleActions(r))
          expect(a, r.RoleName).not.toMatch(
            /^(rds|globalaccelerator|route53|secretsmanager|cloudwatch):/,
          );
      }
    }
  });

  it("has no wildcard action in any member role or function role", () => {
    const stacks = [
      ...splitSynth.deployment.memberAccounts.map((s) => s.stackName),
      ...splitSynth.deployment.orchestrators.map((s) => s.stackName),
    ];
    for (const name of stacks)
      for (const r of memberRolesOf(name))
        for (const a of roleActions(r)) expect(a, name).not.toContain("*");
  });

  it("a single-account topology names no role: no member stack, nothing to assume", () => {
    expect(topologyRoles(loadTopology(DEFAULT_TOPOLOGY))).toEqual([]);
  });
});
