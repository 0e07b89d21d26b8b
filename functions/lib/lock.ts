/**
 * The single-flight lock: one failover per platform at a time. A DynamoDB item in the audit
 * table (`pk` = `lock#<platform>`) written with a conditional put and a lease; the holder renews
 * it by re-acquiring, releases it at every end, and a stale lease (expired, or held by an
 * execution that is no longer running) is taken over with a second conditional write, so two
 * contenders can never both win.
 *
 * Two more items of the same table serve the trigger:
 * - the last failover (`pk` = `failover#<platform>`, `sk` = `last`): written at release by an
 *   execution whose report lists changes (succeeded or failed half-way), never by a dry run or a
 *   no-op; the trigger's cooldown counts from it;
 * - one claim per incident (`pk` = `incident#<platform>`, `sk` = the execution name): a
 *   conditional put, so of two concurrent deliveries of one alarm exactly one says "started".
 */

import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { DescribeExecutionCommand } from "@aws-sdk/client-sfn";
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
} from "@aws-sdk/lib-dynamodb";
import { awsError, dynamoClient, regionOfArn, sfnClient } from "./aws.ts";
import { ConfigError, FailoverInProgress, UnexpectedError } from "./errors.ts";

export interface LockHolder {
  owner: string;
  executionArn: string;
  acquiredAt: string;
  expiresAt: number;
}

const keyOf = (platform: string) => ({ pk: `lock#${platform}`, sk: "lock" });

/** A thin document view over the shared (cached) DynamoDB client. */
function db(): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClient());
}

function table(): string | undefined {
  return process.env.AUDIT_TABLE;
}

async function holderOf(tableName: string, platform: string): Promise<LockHolder | undefined> {
  const out = await db().send(
    new GetCommand({ TableName: tableName, Key: keyOf(platform), ConsistentRead: true }),
  );
  return out.Item as LockHolder | undefined;
}

/** How long the holder's execution is looked up, all SDK attempts included: Plan waits on it. */
const HOLDER_LOOKUP_MS = 3_000;
/**
 * Put-then-read rounds before giving up: the lock vanishing between a refused put and the read
 * of its holder happens once when a holder releases at that moment; every round after that is
 * another holder coming and going, and Plan must not chase them forever.
 */
const MAX_LOCK_ROUNDS = 3;

/**
 * True only when Step Functions says the holder's execution has ended (so its lease is stale
 * whatever its expiry). Anything uncertain — no answer, an unknown execution — counts as
 * running: the lease's expiry is the fallback, never a guess.
 */
async function holderEnded(holder: LockHolder): Promise<boolean> {
  try {
    const out = await sfnClient(regionOfArn(holder.executionArn)).send(
      new DescribeExecutionCommand({ executionArn: holder.executionArn }),
      { abortSignal: AbortSignal.timeout(HOLDER_LOOKUP_MS) },
    );
    return out.status !== undefined && out.status !== "RUNNING" && out.status !== "PENDING_REDRIVE";
  } catch {
    return false;
  }
}

/**
 * Takes the platform's lock for `owner` (an execution name) for `leaseSeconds`. Re-acquiring
 * one's own lock renews it; a stale lease is taken over; a live one fails with
 * FailoverInProgress naming the execution that holds it.
 */
export async function acquireLock(
  platform: string,
  owner: { name: string; arn: string },
  leaseSeconds: number,
): Promise<LockHolder | undefined> {
  const tableName = table();
  if (!tableName) return undefined;
  const now = Math.floor(Date.now() / 1000);
  const item: LockHolder = {
    owner: owner.name,
    executionArn: owner.arn,
    acquiredAt: new Date().toISOString(),
    expiresAt: now + leaseSeconds,
  };
  const put = (condition: string, values: Record<string, unknown>) =>
    db().send(
      new PutCommand({
        TableName: tableName,
        Item: { ...keyOf(platform), ...item },
        ConditionExpression: condition,
        ExpressionAttributeNames: { "#owner": "owner" },
        ExpressionAttributeValues: values,
      }),
    );
  try {
    for (let round = 1; ; round++) {
      try {
        await put("attribute_not_exists(pk) OR #owner = :me", { ":me": owner.name });
        return item;
      } catch (e) {
        if (!(e instanceof ConditionalCheckFailedException)) throw e;
      }
      const holder = await holderOf(tableName, platform);
      if (holder) {
        await takeOver(holder, now, platform, put);
        return item;
      }
      if (round >= MAX_LOCK_ROUNDS)
        throw new FailoverInProgress(
          `the failover lock of ${platform} was taken and released ${round} times while ${owner.name} tried to take it: other failovers are starting and ending right now`,
          ["check `gitops-failover list` for the other executions, then start again"],
        );
    }
  } catch (e) {
    if (e instanceof FailoverInProgress) throw e;
    if (e instanceof ConditionalCheckFailedException) {
      throw new FailoverInProgress(
        `another failover of ${platform} took the lock at the same moment`,
        ["start again once it has ended"],
        { cause: e },
      );
    }
    throw awsError(e, `taking the failover lock in ${tableName}`, UnexpectedError);
  }
}

/**
 * Takes a stale lease over with a write conditional on the very lease read (so of two
 * contenders one wins); a live one fails with FailoverInProgress naming its holder.
 */
async function takeOver(
  holder: LockHolder,
  now: number,
  platform: string,
  put: (condition: string, values: Record<string, unknown>) => Promise<unknown>,
): Promise<void> {
  if (holder.expiresAt > now && !(await holderEnded(holder))) {
    throw new FailoverInProgress(
      `another failover of ${platform} is running: ${holder.owner} holds the lock until ${new Date(holder.expiresAt * 1000).toISOString()}`,
      [
        `wait for ${holder.owner} to end (gitops-failover status ${holder.owner}), or stop it, then start again`,
      ],
    );
  }
  await put("#owner = :stale AND expiresAt = :expires", {
    ":stale": holder.owner,
    ":expires": holder.expiresAt,
  });
}

/** What an execution changed, as its report lists it (`ReportSummary.changed`). */
export interface ReleaseOutcome {
  changed: string[];
}

/** The last execution that changed the platform: what the trigger's cooldown counts from. */
export interface LastFailover {
  execution: string;
  endedAt: string;
  /** The report's change list (at most MAX_CHANGES_KEPT lines). */
  changed: string[];
}

const lastFailoverKey = (platform: string) => ({ pk: `failover#${platform}`, sk: "last" });
const MAX_CHANGES_KEPT = 20;

/**
 * Records `owner` as the platform's last failover. Conditional on being newer than the marker
 * there, so a late Report (a redrive) never moves the cooldown back in time.
 */
async function recordLastFailover(
  tableName: string,
  platform: string,
  owner: string,
  changed: string[],
): Promise<void> {
  const endedAt = new Date();
  try {
    await db().send(
      new PutCommand({
        TableName: tableName,
        Item: {
          ...lastFailoverKey(platform),
          execution: owner,
          endedAt: endedAt.toISOString(),
          endedAtMs: endedAt.getTime(),
          changed: changed.slice(0, MAX_CHANGES_KEPT),
        },
        ConditionExpression: "attribute_not_exists(pk) OR endedAtMs <= :now",
        ExpressionAttributeValues: { ":now": endedAt.getTime() },
      }),
    );
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) return;
    throw awsError(e, `recording the last failover in ${tableName}`, UnexpectedError);
  }
}

/**
 * Releases the lock if `owner` still holds it; someone else's lock is left alone. When the
 * execution changed something (`outcome.changed` not empty: a failover, finished or half-done),
 * it is first recorded as the platform's last failover, whoever holds the lock by now.
 */
export async function releaseLock(
  platform: string,
  owner: string,
  outcome?: ReleaseOutcome,
): Promise<boolean> {
  const tableName = table();
  if (!tableName) return false;
  if (outcome?.changed.length) {
    await recordLastFailover(tableName, platform, owner, outcome.changed);
  }
  try {
    await db().send(
      new DeleteCommand({
        TableName: tableName,
        Key: keyOf(platform),
        ConditionExpression: "#owner = :me",
        ExpressionAttributeNames: { "#owner": "owner" },
        ExpressionAttributeValues: { ":me": owner },
      }),
    );
    return true;
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) return false;
    throw awsError(e, `releasing the failover lock in ${tableName}`, UnexpectedError);
  }
}

function requiredTable(what: string): string {
  const tableName = table();
  if (!tableName) throw new ConfigError(`AUDIT_TABLE is not set: cannot ${what}`);
  return tableName;
}

/** The platform's last failover that changed something, if any (strongly consistent read). */
export async function lastFailover(platform: string): Promise<LastFailover | undefined> {
  const tableName = requiredTable("read the last failover");
  try {
    const out = await db().send(
      new GetCommand({
        TableName: tableName,
        Key: lastFailoverKey(platform),
        ConsistentRead: true,
      }),
    );
    const item = out.Item;
    if (!item || typeof item.execution !== "string" || typeof item.endedAt !== "string")
      return undefined;
    const changed = Array.isArray(item.changed) ? item.changed.map(String) : [];
    return { execution: item.execution, endedAt: item.endedAt, changed };
  } catch (e) {
    throw awsError(e, `reading the last failover in ${tableName}`, UnexpectedError);
  }
}

const incidentKey = (platform: string, incident: string) => ({
  pk: `incident#${platform}`,
  sk: incident,
});

/** Step Functions keeps execution names unique for 90 days; a claim never needs to outlive that. */
const CLAIM_SECONDS = 90 * 24 * 3600;

/**
 * Claims an incident for the caller: true for exactly one caller per incident, however many
 * deliveries of the alarm race (a conditional put).
 */
export async function claimIncident(platform: string, incident: string): Promise<boolean> {
  const tableName = requiredTable("claim the incident");
  try {
    await db().send(
      new PutCommand({
        TableName: tableName,
        Item: {
          ...incidentKey(platform, incident),
          claimedAt: new Date().toISOString(),
          expiresAt: Math.floor(Date.now() / 1000) + CLAIM_SECONDS,
        },
        ConditionExpression: "attribute_not_exists(pk)",
      }),
    );
    return true;
  } catch (e) {
    if (e instanceof ConditionalCheckFailedException) return false;
    throw awsError(e, `claiming incident ${incident} in ${tableName}`, UnexpectedError);
  }
}

/** Gives a claim back (the start it was taken for failed), so a retried delivery can act. */
export async function unclaimIncident(platform: string, incident: string): Promise<void> {
  const tableName = requiredTable("release the incident claim");
  try {
    await db().send(
      new DeleteCommand({ TableName: tableName, Key: incidentKey(platform, incident) }),
    );
  } catch (e) {
    throw awsError(
      e,
      `releasing the claim on incident ${incident} in ${tableName}`,
      UnexpectedError,
    );
  }
}
