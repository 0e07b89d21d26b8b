/**
 * The single-flight lock: one failover per platform at a time. A DynamoDB item in the audit
 * table (`pk` = `lock#<platform>`) written with a conditional put and a lease; the holder renews
 * it by re-acquiring, releases it at every end, and a stale lease (expired, or held by an
 * execution that is no longer running) is taken over with a second conditional write, so two
 * contenders can never both win.
 */

import { ConditionalCheckFailedException } from "@aws-sdk/client-dynamodb";
import { DescribeExecutionCommand } from "@aws-sdk/client-sfn";
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
} from "@aws-sdk/lib-dynamodb";
import { awsError, dynamoClient, sfnClient } from "./aws.ts";
import { FailoverInProgress, UnexpectedError } from "./errors.ts";

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

/**
 * True only when Step Functions says the holder's execution has ended (so its lease is stale
 * whatever its expiry). Anything uncertain — no answer, an unknown execution — counts as
 * running: the lease's expiry is the fallback, never a guess.
 */
async function holderEnded(holder: LockHolder): Promise<boolean> {
  try {
    const out = await sfnClient(holder.executionArn.split(":")[3]).send(
      new DescribeExecutionCommand({ executionArn: holder.executionArn }),
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
    try {
      await put("attribute_not_exists(pk) OR #owner = :me", { ":me": owner.name });
      return item;
    } catch (e) {
      if (!(e instanceof ConditionalCheckFailedException)) throw e;
    }
    const holder = await holderOf(tableName, platform);
    if (!holder) return acquireLock(platform, owner, leaseSeconds);
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
    return item;
  } catch (e) {
    if (e instanceof FailoverInProgress) throw e;
    if (e instanceof ConditionalCheckFailedException) {
      throw new FailoverInProgress(
        `another failover of ${platform} took the lock at the same moment`,
        ["start again once it has ended"],
      );
    }
    throw awsError(e, `taking the failover lock in ${tableName}`, UnexpectedError);
  }
}

/** Releases the lock if `owner` still holds it; someone else's lock is left alone. */
export async function releaseLock(platform: string, owner: string): Promise<boolean> {
  const tableName = table();
  if (!tableName) return false;
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
