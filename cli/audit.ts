/**
 * `audit verify` and `report`: read an execution's audit trail and report back, from a report
 * directory (the sandbox's drill-report/), from DynamoDB and S3, or from a running sandbox.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import type { Command } from "commander";
import { type AuditEvent, readAuditTrail, verifyChain } from "../functions/lib/audit.ts";
import { awsError, s3Client } from "../functions/lib/aws.ts";
import { ConfigError, InputValidationError, UnexpectedError } from "../functions/lib/errors.ts";
import type { CliIo } from "./drill.ts";

/** Parses audit.jsonl strictly: a line that is not JSON is itself a broken chain. */
export function parseAuditJsonl(
  text: string,
  source: string,
): { events: AuditEvent[]; badLine?: number } {
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

/** The sandbox endpoint file's environment, applied before any client is created. */
function applySandbox(file: string | undefined): { reportDir?: string } {
  if (!file) return {};
  let data: { env?: Record<string, string>; reportDir?: string };
  try {
    data = JSON.parse(readFileSync(file, "utf8")) as typeof data;
  } catch {
    throw new ConfigError(
      `${file}: not a sandbox endpoint file (written by \`gitops-failover sandbox up\`)`,
    );
  }
  Object.assign(process.env, data.env ?? {});
  return data.reportDir ? { reportDir: data.reportDir } : {};
}

const executionName = (ref: string) => ref.split(":").at(-1) ?? ref;

/** Registers `audit verify` and `report`. */
export function registerAuditCommands(cli: Command, io: CliIo): void {
  const audit = cli.command("audit").description("the tamper-evident audit trail");
  audit
    .command("verify")
    .description(
      "recompute an execution's hash chain: exit 0 when intact, 1 naming the first bad event",
    )
    .argument(
      "<source>",
      "a report directory holding audit.jsonl, or an execution name/ARN (read from AUDIT_TABLE)",
    )
    .option("--table <name>", "the audit table (default: $AUDIT_TABLE)")
    .option("--sandbox <file>", "a running sandbox's endpoint file")
    .option("--json", "print the verdict as JSON", false)
    .action(async (source: string, flags: { table?: string; sandbox?: string; json: boolean }) => {
      let events: AuditEvent[];
      let badLine: number | undefined;
      if (existsSync(source) && statSync(source).isDirectory()) {
        const file = join(source, "audit.jsonl");
        if (!existsSync(file))
          throw new InputValidationError(
            `${file} does not exist: is ${source} a report directory?`,
          );
        ({ events, badLine } = parseAuditJsonl(readFileSync(file, "utf8"), file));
      } else {
        applySandbox(flags.sandbox);
        if (flags.table) process.env.AUDIT_TABLE = flags.table;
        if (!process.env.AUDIT_TABLE) {
          throw new InputValidationError(
            `no audit table: pass --table <name>, --sandbox <file> or a report directory`,
          );
        }
        events = await readAuditTrail(executionName(source));
        if (!events.length)
          throw new InputValidationError(
            `no audit events for ${executionName(source)} in ${process.env.AUDIT_TABLE}`,
          );
      }
      const verdict =
        badLine !== undefined
          ? { intact: false as const, seq: badLine, problem: `line ${badLine} is not JSON` }
          : verifyChain(events);
      if (flags.json) io.out(JSON.stringify(verdict));
      else if (verdict.intact)
        io.out(`audit trail intact: ${verdict.events} events, head ${verdict.head}`);
      else io.out(`audit trail BROKEN at event ${verdict.seq}: ${verdict.problem}`);
      io.setExit(verdict.intact ? 0 : 1);
    });

  cli
    .command("report")
    .description("print an execution's runbook report (Markdown; --json for the JSON)")
    .argument("<execution>", "execution name or ARN, or a report directory")
    .option("--bucket <name>", "the report bucket (default: $REPORT_BUCKET)")
    .option("--sandbox <file>", "a running sandbox's endpoint file")
    .option("--json", "print report.json instead of report.md", false)
    .action(async (ref: string, flags: { bucket?: string; sandbox?: string; json: boolean }) => {
      const name = flags.json ? "report.json" : "report.md";
      const sandbox = applySandbox(flags.sandbox);
      const dir = existsSync(ref) && statSync(ref).isDirectory() ? ref : sandbox.reportDir;
      if (dir) {
        const file = join(dir, name);
        if (!existsSync(file))
          throw new InputValidationError(
            `${file} does not exist: no report has been written there yet`,
          );
        io.out(readFileSync(file, "utf8").trimEnd());
        return;
      }
      const bucket = flags.bucket ?? process.env.REPORT_BUCKET;
      if (!bucket)
        throw new InputValidationError(
          "no report bucket: pass --bucket <name> (the stack's ReportBucket output)",
        );
      const key = `reports/${executionName(ref)}/${name}`;
      try {
        const out = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        io.out((await out.Body?.transformToString())?.trimEnd() ?? "");
      } catch (e) {
        throw awsError(e, `reading s3://${bucket}/${key}`, UnexpectedError);
      }
    });
}
