/**
 * `audit verify` and `report`: read an execution's audit trail and report back, from a report
 * directory (the sandbox's drill-report/), from DynamoDB and S3, or from a running sandbox.
 * The chain detects an edited, deleted or reordered event by itself; a truncated one only
 * against its anchor, the count and head the report recorded (report.json, and the Report
 * step's output in the Step Functions history, which no one can edit).
 */
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { DescribeExecutionCommand, paginateGetExecutionHistory } from "@aws-sdk/client-sfn";
import type { Command } from "commander";
import { SIGNING_KEY_FILE } from "../functions/lib/anchor.ts";
import {
  checkSignedAnchor,
  exportPublicKey,
  type SignatureKey,
  type SignatureVerdict,
} from "../functions/lib/anchor-verify.ts";
import {
  type AuditEvent,
  type ChainAnchor,
  type ChainVerdict,
  checkAnchor,
  readAuditTrail,
  verifyChain,
} from "../functions/lib/audit.ts";
import { awsError, regionOfArn, s3Client, sfnClient } from "../functions/lib/aws.ts";
import { describe, InputValidationError, UnexpectedError } from "../functions/lib/errors.ts";
import { SANDBOX_ACCOUNT } from "../sandbox/aws/protocol.ts";
import type { CliIo } from "./drill.ts";
import { EXECUTION_ARN, readSandboxFile } from "./sandbox-file.ts";

/** Parses audit.jsonl strictly: a line that is not JSON is itself a broken chain. */
function parseAuditJsonl(text: string, source: string): { events: AuditEvent[]; badLine?: number } {
  const events: AuditEvent[] = [];
  const lines = text.split("\n").filter((l) => l.trim());
  for (const [i, line] of lines.entries()) {
    try {
      events.push(JSON.parse(line) as AuditEvent);
    } catch {
      return { events, badLine: i + 1 };
    }
  }
  if (!lines.length) throw new InputValidationError(`${source} holds no audit events`);
  return { events };
}

/** Where the AWS calls go: `--region`/`--profile`, or a sandbox's endpoint file. */
interface ConnectionFlags {
  sandbox?: string;
  region?: string;
  profile?: string;
}

/** How `audit verify` checks a report's signature: a pinned public key, or KMS with a pinned key. */
interface KeyFlags {
  publicKey?: string;
  keyId?: string;
}

/**
 * Applies the connection flags to the environment before any client is created: the SDK's
 * default chain then reads the profile and region like every other AWS tool.
 */
function applyConnection(flags: ConnectionFlags): { reportDir?: string; stateMachineArn?: string } {
  if (flags.region) process.env.AWS_REGION = flags.region;
  if (flags.profile) process.env.AWS_PROFILE = flags.profile;
  return applySandbox(flags.sandbox);
}

/**
 * The sandbox endpoint file's environment, all of it: `audit verify` reads the audit table the
 * sandbox's functions write (AUDIT_TABLE), not only the AWS endpoints.
 */
function applySandbox(file: string | undefined): { reportDir?: string; stateMachineArn?: string } {
  if (!file) return {};
  const data = readSandboxFile(file);
  Object.assign(process.env, data.env);
  return {
    ...(data.reportDir ? { reportDir: data.reportDir } : {}),
    stateMachineArn: data.stateMachineArn,
  };
}

const executionName = (ref: string) => ref.split(":").at(-1) ?? ref;

/** An audit chain to verify, where it came from, and what its report recorded about it. */
interface Loaded {
  events: AuditEvent[];
  badLine?: number;
  chain: string;
  /** The anchor, or why there is none. */
  anchor: { source: string; value: ChainAnchor; doc?: unknown } | { missing: string };
  /** Without an anchor truncation cannot be ruled out: a report directory always has one. */
  anchorRequired: boolean;
  /** Events allowed after the anchor: none in a report directory; in the table, the trigger's. */
  mayFollow: (e: AuditEvent) => boolean;
  /**
   * For a report directory: the execution's own output, which no one who can write the
   * directory can change (audit.jsonl and report.json truncated together agree with each other).
   */
  witness?: Loaded["anchor"] | { problem: string };
  /** For a report directory: report.json's signed anchor, checked; and what the check relied on. */
  signature?: SignatureVerdict & { caveat?: string };
}

/** `report.audit` of report.json or of a Report / RecordFailure output, when it is one. */
function anchorIn(doc: unknown): ChainAnchor | undefined {
  const audit = (doc as { audit?: { events?: unknown; head?: unknown } } | null)?.audit;
  if (typeof audit?.events !== "number") return undefined;
  if (typeof audit.head !== "string" && audit.head !== null) return undefined;
  return { events: audit.events, head: audit.head };
}

function parseJson(text: string | undefined): unknown {
  try {
    return JSON.parse(text ?? "");
  } catch {
    return undefined;
  }
}

/**
 * The key report.json's signature is checked with: `--public-key` (offline), else KMS when the
 * execution's account can be asked (`--sandbox`, `--key-id`, or an execution on AWS), else the
 * public key a sandbox exported beside its reports.
 */
function signatureKey(
  dir: string,
  report: unknown,
  flags: ConnectionFlags & KeyFlags,
): { key: SignatureKey; caveat?: string } | { problem: string } {
  if (flags.publicKey) {
    return {
      key: { kind: "publicKey", pem: readPem(flags.publicKey), source: flags.publicKey },
    };
  }
  const arn = (report as { execution?: { id?: unknown } } | undefined)?.execution?.id;
  const onAws = typeof arn === "string" && arn.split(":")[4] !== SANDBOX_ACCOUNT;
  if (flags.sandbox || flags.keyId || onAws) {
    applyConnection(flags);
    return {
      key: { kind: "kms", ...(flags.keyId ? { expectedKeyId: flags.keyId } : {}) },
      ...(flags.keyId
        ? {}
        : { caveat: "the key is the one report.json names: pin it with --key-id <arn>" }),
    };
  }
  const exported = join(dir, SIGNING_KEY_FILE);
  if (!existsSync(exported))
    return {
      problem: `no key to check report.json's signed anchor with: pass --public-key <file> (\`gitops-failover audit public-key --key-id <arn>\` exports it) or --key-id <arn>`,
    };
  return {
    key: { kind: "publicKey", pem: readFileSync(exported, "utf8"), source: exported },
    caveat: `${SIGNING_KEY_FILE} lies beside the report: pin a key with --public-key to rule out a report re-signed with another key`,
  };
}

async function loadDirectory(dir: string, flags: ConnectionFlags & KeyFlags): Promise<Loaded> {
  const file = join(dir, "audit.jsonl");
  if (!existsSync(file))
    throw new InputValidationError(`${file} does not exist: is ${dir} a report directory?`);
  const reportFile = join(dir, "report.json");
  const report = existsSync(reportFile) ? parseJson(readFileSync(reportFile, "utf8")) : undefined;
  const value = anchorIn(report);
  const parsed = parseAuditJsonl(readFileSync(file, "utf8"), file);
  return {
    ...parsed,
    chain: "audit.jsonl",
    anchor: value
      ? { source: "report.json", value }
      : { missing: `${reportFile} is missing or records no audit count and head` },
    anchorRequired: true,
    mayFollow: () => false,
    witness: await directoryWitness(report, parsed.events, flags),
    signature: await directorySignature(dir, report, value, flags),
  };
}

async function directorySignature(
  dir: string,
  report: unknown,
  recorded: ChainAnchor | undefined,
  flags: ConnectionFlags & KeyFlags,
): Promise<NonNullable<Loaded["signature"]> | undefined> {
  if (!recorded) return undefined;
  const key = signatureKey(dir, report, flags);
  if ("problem" in key) return { ok: false, problem: key.problem };
  const execution = (report as { execution?: { id?: unknown } }).execution?.id;
  const verdict = await checkSignedAnchor(
    report,
    { execution: typeof execution === "string" ? execution : undefined, ...recorded },
    "report.json",
    key.key,
  );
  return { ...verdict, ...(key.caveat ? { caveat: key.caveat } : {}) };
}

/**
 * The anchor of the execution a report directory names, from Step Functions when it can be
 * reached: a running sandbox through `--sandbox`, else AWS (region and profile as given). A
 * sandbox's execution is never looked up in AWS: only that sandbox knows it.
 */
async function directoryWitness(
  report: unknown,
  events: AuditEvent[],
  flags: ConnectionFlags,
): Promise<NonNullable<Loaded["witness"]>> {
  const arn = (report as { execution?: { id?: unknown } } | undefined)?.execution?.id;
  if (typeof arn !== "string" || !EXECUTION_ARN.test(arn))
    return { missing: "report.json names no execution ARN to read the execution from" };
  const owner = events[0]?.execution;
  if (owner !== undefined && owner !== executionName(arn))
    return {
      problem: `report.json names execution ${executionName(arn)}, the events in audit.jsonl are ${owner}'s`,
    };
  if (!flags.sandbox && arn.split(":")[4] === SANDBOX_ACCOUNT)
    return {
      missing: `${executionName(arn)} ran in a sandbox, which only that sandbox can answer for (pass --sandbox <endpoint file> while it runs)`,
    };
  applyConnection(flags);
  return executionAnchor(arn);
}

/**
 * The Report (or RecordFailure) step's output, as Step Functions keeps it: the execution's
 * output when it succeeded, else the last such state's output in its history.
 */
async function executionAnchor(arn: string): Promise<Loaded["anchor"]> {
  const source = "the execution history";
  try {
    const client = sfnClient(regionOfArn(arn));
    const described = await client.send(new DescribeExecutionCommand({ executionArn: arn }));
    if (described.status === "RUNNING") return { missing: `${arn} is still running` };
    const report = (parseJson(described.output) as { report?: unknown })?.report;
    const output = anchorIn(report);
    if (output) return { source, value: output, doc: report };
    const pages = paginateGetExecutionHistory(
      { client },
      { executionArn: arn, reverseOrder: true, includeExecutionData: true, maxResults: 1000 },
    );
    for await (const page of pages) {
      for (const e of page.events ?? []) {
        const exited = e.stateExitedEventDetails;
        if (exited?.name !== "Report" && exited?.name !== "RecordFailure") continue;
        const report = (parseJson(exited.output) as { report?: unknown })?.report;
        const value = anchorIn(report);
        if (value) return { source, value, doc: report };
      }
    }
    return { missing: `the history of ${arn} holds no Report or RecordFailure output` };
  } catch (e) {
    return { missing: `could not read ${arn} from Step Functions (${describe(e)})` };
  }
}

async function loadTable(
  source: string,
  flags: { table?: string; stateMachine?: string } & ConnectionFlags & KeyFlags,
): Promise<Loaded> {
  const sandbox = applyConnection(flags);
  if (flags.table) process.env.AUDIT_TABLE = flags.table;
  const table = process.env.AUDIT_TABLE;
  if (!table) {
    throw new InputValidationError(
      `no audit table: pass --table <name>, --sandbox <file> or a report directory`,
    );
  }
  const name = executionName(source);
  const events = await readAuditTrail(name);
  if (!events.length) throw new InputValidationError(`no audit events for ${name} in ${table}`);
  const stateMachine =
    flags.stateMachine ??
    sandbox.stateMachineArn ??
    process.env.GITOPS_FAILOVER_STATE_MACHINE_ARN ??
    process.env.STATE_MACHINE_ARN;
  const arn = source.startsWith("arn:")
    ? source
    : stateMachine && `${stateMachine.replace(":stateMachine:", ":execution:")}:${name}`;
  const anchor: Loaded["anchor"] = arn
    ? await executionAnchor(arn)
    : { missing: "no state machine to read the execution from (pass --state-machine <arn>)" };
  return {
    events,
    chain: `the audit table ${table}`,
    anchor,
    anchorRequired: false,
    mayFollow: (e) => e.step === "Trigger",
    ...(arn && "value" in anchor
      ? { signature: await outputSignature(arn, anchor.value, anchor.doc, flags) }
      : {}),
  };
}

/**
 * The signed anchor of the Report (or RecordFailure) output, checked with kms:Verify (or
 * --public-key): the history cannot be edited, and the signature says the key's holder closed
 * this chain.
 */
async function outputSignature(
  arn: string,
  recorded: ChainAnchor,
  doc: unknown,
  flags: KeyFlags,
): Promise<NonNullable<Loaded["signature"]>> {
  const key: SignatureKey = flags.publicKey
    ? { kind: "publicKey", pem: readPem(flags.publicKey), source: flags.publicKey }
    : { kind: "kms", ...(flags.keyId ? { expectedKeyId: flags.keyId } : {}) };
  return checkSignedAnchor(doc, { execution: arn, ...recorded }, "the execution history", key);
}

function readPem(file: string): string {
  if (!existsSync(file))
    throw new InputValidationError(
      `--public-key ${file} does not exist: export it with \`gitops-failover audit public-key --key-id <arn>\``,
    );
  return readFileSync(file, "utf8");
}

interface Verdict {
  intact: boolean;
  events: number;
  head: string | null;
  /** The first event that does not hold, when the chain itself is broken. */
  seq?: number;
  problem?: string;
  anchor: { source: string; events: number; head: string | null } | null;
  notes: string[];
}

/** The chain, then the chain against its anchor. */
function judge(l: Loaded): Verdict {
  const base = { events: l.events.length, head: l.events.at(-1)?.hash ?? null, notes: [] };
  const chain: ChainVerdict =
    l.badLine !== undefined
      ? { intact: false, seq: l.badLine, problem: `line ${l.badLine} is not JSON` }
      : verifyChain(l.events);
  if (!chain.intact)
    return { ...base, intact: false, seq: chain.seq, problem: chain.problem, anchor: null };
  if (l.witness && "problem" in l.witness)
    return { ...base, intact: false, problem: l.witness.problem, anchor: null };
  if (l.signature && !l.signature.ok)
    return { ...base, intact: false, problem: l.signature.problem, anchor: null };
  const signed = l.signature?.ok
    ? [l.signature.caveat ? `${l.signature.how} (${l.signature.caveat})` : l.signature.how]
    : [];
  if ("missing" in l.anchor) {
    const note = `not anchored: ${l.anchor.missing}; truncation cannot be ruled out`;
    return l.anchorRequired
      ? { ...base, intact: false, problem: note, anchor: null }
      : { ...base, intact: true, anchor: null, notes: [note] };
  }
  const anchor = { source: l.anchor.source, ...l.anchor.value };
  const checked = checkAnchor(l.events, l.anchor.value, { chain: l.chain, anchor: anchor.source });
  if (!checked.ok) return { ...base, intact: false, problem: checked.problem, anchor };
  const stray = checked.later.filter((e) => !l.mayFollow(e));
  if (stray.length) {
    return {
      ...base,
      intact: false,
      problem: `${l.chain} has ${l.events.length} events, ${anchor.source} recorded ${anchor.events}: ${stray.map((e) => `event ${e.seq} (${e.step})`).join(", ")} came after the report closed the chain`,
      anchor,
    };
  }
  const later = checked.later.length
    ? [`${checked.later.length} later trigger decision(s) (a repeated alarm) after the report`]
    : [];
  if (!l.witness) return { ...base, intact: true, anchor, notes: [...later, ...signed] };
  if ("missing" in l.witness)
    return {
      ...base,
      intact: true,
      anchor,
      notes: [
        ...later,
        ...signed,
        l.signature?.ok
          ? `not checked against the execution: ${l.witness.missing}; the signed anchor stands in for it (audit.jsonl and report.json truncated together would need a new signature)`
          : `checked the directory against itself only: ${l.witness.missing}; audit.jsonl and report.json truncated together would not show`,
      ],
    };
  const witnessed = checkAnchor(l.events, l.witness.value, {
    chain: l.chain,
    anchor: l.witness.source,
  });
  if (!witnessed.ok) return { ...base, intact: false, problem: witnessed.problem, anchor };
  if (witnessed.later.length)
    return {
      ...base,
      intact: false,
      problem: `${l.chain} has ${l.events.length} events, ${l.witness.source} recorded ${l.witness.value.events}: the directory holds events the execution never closed`,
      anchor,
    };
  return {
    ...base,
    intact: true,
    anchor,
    notes: [...later, ...signed, `matches ${l.witness.source} too`],
  };
}

const VERIFY_EXIT_CODES = `
A report directory is checked against its report.json and, when the execution can be read
(--sandbox <file> for a running sandbox's, else AWS), against the execution's own output too;
otherwise the verdict says it checked the directory against itself only.

report.json's signed anchor (execution, count, head, report object versions) is checked with
--public-key (offline), else kms:Verify when the execution can be reached, else the public key
a sandbox exported beside its reports (signing-key.pem).

Exit codes:
  0  the chain is intact, matches the count and head its report recorded, and the signature holds
  1  the chain is broken, truncated or does not match (the first bad event is named), or the
     signed anchor is missing or does not verify (named)
  2  bad usage or input (no such directory, no table)`;

const REPORT_EXIT_CODES = `
Exit codes:
  0  the report was printed
  1  it could not be read (S3 or the sandbox)
  2  bad usage or input (no bucket, no report for that execution)`;

/**
 * A sandbox writes every execution's report to one directory, so the one there may be another
 * execution's: printing it under this name would mislead.
 */
function assertReportOf(dir: string, execution: string): void {
  const recorded = (
    parseJson(readFileSync(join(dir, "report.json"), "utf8")) as {
      execution?: { name?: string };
    }
  )?.execution?.name;
  if (recorded !== execution) {
    throw new InputValidationError(
      `${dir} holds the report of ${recorded ?? "an unknown execution"}, not ${execution}: the sandbox keeps only the latest execution's report`,
    );
  }
}

/** Registers `audit verify` and `report`. */
export function registerAuditCommands(cli: Command, io: CliIo): void {
  const audit = cli.command("audit").description("the tamper-evident audit trail");
  audit
    .command("verify")
    .description(
      "recompute an execution's hash chain and compare it with the count and head its report recorded (report.json, or the execution's Report output): exit 0 when intact, 1 naming the problem",
    )
    .argument(
      "<source>",
      "a report directory holding audit.jsonl and report.json, or an execution name/ARN (read from AUDIT_TABLE)",
    )
    .option("--table <name>", "the audit table (default: $AUDIT_TABLE)")
    .option(
      "--state-machine <arn>",
      "where an execution name's output is read (default: $GITOPS_FAILOVER_STATE_MACHINE_ARN)",
    )
    .option("--sandbox <file>", "a running sandbox's endpoint file")
    .option(
      "--public-key <file>",
      "check report.json's signature offline with this PEM public key (see `audit public-key`)",
    )
    .option(
      "--key-id <arn>",
      "check report.json's signature with kms:Verify, and only if this key signed it",
    )
    .option("--region <region>", "AWS region of the orchestrator stack (default: $AWS_REGION)")
    .option("--profile <profile>", "AWS profile from ~/.aws/config (default: $AWS_PROFILE)")
    .option("--json", "print the verdict as JSON", false)
    .addHelpText("after", VERIFY_EXIT_CODES)
    .action(
      async (
        source: string,
        flags: { table?: string; stateMachine?: string; json: boolean } & ConnectionFlags &
          KeyFlags,
      ) => {
        const loaded =
          existsSync(source) && statSync(source).isDirectory()
            ? await loadDirectory(source, flags)
            : await loadTable(source, flags);
        const v = judge(loaded);
        if (flags.json) io.out(JSON.stringify(v));
        else if (!v.intact)
          io.out(
            v.seq !== undefined
              ? `audit trail BROKEN at event ${v.seq}: ${v.problem}`
              : `audit trail BROKEN: ${v.problem}`,
          );
        else
          io.out(
            [
              `audit trail intact: ${v.events} events, head ${v.head}`,
              ...(v.anchor
                ? [`matches ${v.anchor.source} (${v.anchor.events} events, same head)`]
                : []),
              ...v.notes,
            ].join("; "),
          );
        io.setExit(v.intact ? 0 : 1);
      },
    );

  audit
    .command("public-key")
    .description(
      "print the audit signing key's public key (PEM, from kms:GetPublicKey): `audit verify --public-key` checks reports with it offline",
    )
    .requiredOption("--key-id <arn>", "the signing key (the stack's AuditSigningKeyArn output)")
    .option("--sandbox <file>", "a running sandbox's endpoint file")
    .option("--region <region>", "AWS region (default: $AWS_REGION)")
    .option("--profile <profile>", "AWS profile from ~/.aws/config (default: $AWS_PROFILE)")
    .action(async (flags: { keyId: string } & ConnectionFlags) => {
      applyConnection(flags);
      io.out((await exportPublicKey(flags.keyId)).trimEnd());
    });

  cli
    .command("report")
    .description(
      "print an execution's runbook report (Markdown; --json for the JSON; --open writes the HTML page to a temporary file and prints its path)",
    )
    .argument("<execution>", "execution name or ARN, or a report directory")
    .option("--bucket <name>", "the report bucket (default: $REPORT_BUCKET)")
    .option("--sandbox <file>", "a running sandbox's endpoint file")
    .option("--region <region>", "AWS region of the orchestrator stack (default: $AWS_REGION)")
    .option("--profile <profile>", "AWS profile from ~/.aws/config (default: $AWS_PROFILE)")
    .option("--json", "print report.json instead of report.md", false)
    .option("--open", "write report.html to a temporary file and print its path", false)
    .addHelpText("after", REPORT_EXIT_CODES)
    .action(
      async (
        ref: string,
        flags: { bucket?: string; json: boolean; open: boolean } & ConnectionFlags,
      ) => {
        if (flags.json && flags.open)
          throw new InputValidationError("--json and --open exclude each other: pass one");
        const name = flags.open ? "report.html" : flags.json ? "report.json" : "report.md";
        const text = await readReportFile(ref, name, flags);
        if (!flags.open) {
          io.out(text.trimEnd());
          return;
        }
        const file = join(mkdtempSync(join(tmpdir(), "gitops-failover-report-")), "report.html");
        writeFileSync(file, text);
        io.out(file);
      },
    );
}

/** One file of an execution's report: from a report directory, a sandbox, or S3. */
async function readReportFile(
  ref: string,
  name: string,
  flags: { bucket?: string } & ConnectionFlags,
): Promise<string> {
  const sandbox = applyConnection(flags);
  const given = existsSync(ref) && statSync(ref).isDirectory();
  const dir = given ? ref : sandbox.reportDir;
  if (dir) {
    const file = join(dir, name);
    if (!existsSync(file))
      throw new InputValidationError(
        `${file} does not exist: no report has been written there yet`,
      );
    if (!given) assertReportOf(dir, executionName(ref));
    return readFileSync(file, "utf8");
  }
  const bucket = flags.bucket ?? process.env.REPORT_BUCKET;
  if (!bucket)
    throw new InputValidationError(
      "no report bucket: pass --bucket <name> (the stack's ReportBucketName output)",
    );
  const key = `reports/${executionName(ref)}/${name}`;
  try {
    const out = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await out.Body?.transformToString()) ?? "";
  } catch (e) {
    throw awsError(e, `reading s3://${bucket}/${key}`, UnexpectedError);
  }
}
