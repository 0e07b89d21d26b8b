/**
 * The tamper-evident audit trail. Each event is appended to the DynamoDB table `AUDIT_TABLE`
 * (`pk` = `exec#<execution>`, `sk` = zero-padded sequence) with a conditional put, so nothing is
 * ever overwritten, and carries the SHA-256 of the previous event's canonical JSON: editing,
 * deleting or reordering any event breaks the chain, which `verifyChain` detects.
 */
import { createHash } from "node:crypto";
import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand, QueryCommand } from "@aws-sdk/lib-dynamodb";
import { awsError, dynamoClient } from "./aws.ts";
import { UnexpectedError } from "./errors.ts";
import { redactDeep } from "./redact.ts";

export type AuditOutcome = "SUCCEEDED" | "SKIPPED" | "FAILED" | "IN_PROGRESS" | "DECIDED";

export interface AuditEventInput {
  /** The execution name (or, for the trigger, the incident's deterministic name). */
  execution: string;
  step: string;
  actor: string;
  action: string;
  outcome: AuditOutcome;
  before?: unknown;
  after?: unknown;
  detail?: string;
  startedAt?: string;
  endedAt?: string;
}

/** An event as stored: the input plus its place in the chain. */
export interface AuditEvent extends AuditEventInput {
  seq: number;
  recordedAt: string;
  prevHash: string;
  hash: string;
}

/** The `prevHash` of the first event of a chain. */
export const GENESIS_HASH = "0".repeat(64);
const APPEND_ATTEMPTS = 8;

/** JSON with sorted keys and no whitespace: the form that is hashed, so it must never vary. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value))
    return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** The hash of an event: SHA-256 over the canonical JSON of everything but `hash` itself. */
function hashEvent(event: Omit<AuditEvent, "hash"> & { hash?: string }): string {
  const { hash: _ignored, ...body } = event;
  return createHash("sha256").update(canonicalJson(body)).digest("hex");
}

const pkOf = (execution: string) => `exec#${execution}`;
const skOf = (seq: number) => String(seq).padStart(8, "0");

/** A thin document view over the shared (cached) DynamoDB client. */
function db(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient(), {
    marshallOptions: { removeUndefinedValues: true },
  });
}

async function lastEvent(table: string, execution: string): Promise<AuditEvent | undefined> {
  const out = await db().send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": pkOf(execution) },
      ScanIndexForward: false,
      Limit: 1,
      ConsistentRead: true,
    }),
  );
  const item = out.Items?.[0];
  return item ? (JSON.parse(String(item.event)) as AuditEvent) : undefined;
}

/**
 * Appends one event to an execution's chain. Concurrent writers (the Parallel branches) race on
 * the next sequence number; the loser re-reads the head and tries again. Redacted before hashing,
 * so no secret is ever part of the trail. A no-op (returning the event unchained) without a table.
 */
export async function appendAuditEvent(input: AuditEventInput): Promise<AuditEvent> {
  const clean = redactDeep(input);
  const table = process.env.AUDIT_TABLE;
  if (!table) {
    const unchained = {
      ...clean,
      seq: 0,
      recordedAt: new Date().toISOString(),
      prevHash: GENESIS_HASH,
    };
    return { ...unchained, hash: hashEvent(unchained) };
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const previous = await lastEvent(table, input.execution);
      const body = {
        ...clean,
        seq: (previous?.seq ?? 0) + 1,
        recordedAt: new Date().toISOString(),
        prevHash: previous?.hash ?? GENESIS_HASH,
      };
      const event: AuditEvent = { ...body, hash: hashEvent(body) };
      await db().send(
        new PutCommand({
          TableName: table,
          Item: {
            pk: pkOf(input.execution),
            sk: skOf(event.seq),
            hash: event.hash,
            event: canonicalJson(event),
          },
          ConditionExpression: "attribute_not_exists(pk)",
        }),
      );
      return event;
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException && attempt < APPEND_ATTEMPTS) continue;
      throw awsError(e, `appending to the audit trail in ${table}`, UnexpectedError);
    }
  }
}

/** Reads an execution's whole chain, in sequence order. */
export async function readAuditTrail(execution: string): Promise<AuditEvent[]> {
  const table = process.env.AUDIT_TABLE;
  if (!table) return [];
  const events: AuditEvent[] = [];
  let start: Record<string, unknown> | undefined;
  try {
    do {
      const out = await db().send(
        new QueryCommand({
          TableName: table,
          KeyConditionExpression: "pk = :pk",
          ExpressionAttributeValues: { ":pk": pkOf(execution) },
          ConsistentRead: true,
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      for (const item of out.Items ?? []) events.push(JSON.parse(String(item.event)) as AuditEvent);
      start = out.LastEvaluatedKey;
    } while (start);
  } catch (e) {
    throw awsError(e, `reading the audit trail of ${execution} from ${table}`, UnexpectedError);
  }
  return events;
}

export type ChainVerdict =
  | { intact: true; events: number; head: string }
  | { intact: false; seq: number; problem: string };

/**
 * Recomputes the chain: each event's hash over its canonical body, each `prevHash` against the
 * event before it, and the sequence without gaps. Returns the first event that does not hold.
 */
export function verifyChain(events: AuditEvent[]): ChainVerdict {
  let prev = GENESIS_HASH;
  for (const [i, event] of events.entries()) {
    const seq = typeof event.seq === "number" ? event.seq : i + 1;
    if (event.seq !== i + 1) {
      return {
        intact: false,
        seq,
        problem: `event ${i + 1} has sequence ${String(event.seq)} (deleted or reordered)`,
      };
    }
    if (event.prevHash !== prev) {
      return {
        intact: false,
        seq,
        problem: "prevHash does not match the previous event (deleted or reordered)",
      };
    }
    if (hashEvent(event) !== event.hash) {
      return { intact: false, seq, problem: "hash does not match the event's content (edited)" };
    }
    prev = event.hash;
  }
  return { intact: true, events: events.length, head: prev };
}

/** What a report recorded about the chain it closed: report.json, and the Report step's output. */
export interface ChainAnchor {
  events: number;
  head: string | null;
}

/**
 * Checks an intact chain against the anchor its report recorded: it must hold at least that
 * many events, and the event at that count must hash to the recorded head. Shorter means
 * truncated; another hash means the chain up to there was replaced. Events past the anchor are
 * returned for the caller to judge (only the trigger may append after the report).
 */
export function checkAnchor(
  events: AuditEvent[],
  anchor: ChainAnchor,
  names: { chain: string; anchor: string },
): { ok: true; later: AuditEvent[] } | { ok: false; problem: string } {
  if (events.length < anchor.events) {
    return {
      ok: false,
      problem: `${names.chain} has ${events.length} events, ${names.anchor} recorded ${anchor.events} (truncated?)`,
    };
  }
  const head = anchor.events > 0 ? (events[anchor.events - 1]?.hash ?? null) : null;
  if (head !== anchor.head) {
    return {
      ok: false,
      problem: `event ${anchor.events} of ${names.chain} hashes to ${head ?? "nothing"}, ${names.anchor} recorded head ${anchor.head ?? "none"} (replaced?)`,
    };
  }
  return { ok: true, later: events.slice(anchor.events) };
}
