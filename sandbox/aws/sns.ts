/**
 * SNS (awsQuery, 2010-03-31): the notifications and approval requests the orchestrator sends,
 * kept so a drill can show (and a test can assert) what an operator would have received.
 */
import { randomUUID } from "node:crypto";
import {
  AwsServiceError,
  type QueryServiceHandler,
  regionOfArn,
  SANDBOX_ACCOUNT,
} from "./protocol.ts";

/** A message Publish accepted. */
export interface PublishedMessage {
  messageId: string;
  topicArn: string;
  region: string;
  subject?: string;
  message: string;
}

/** Control surface of the SNS emulator. */
export interface SnsEmulator {
  handler: QueryServiceHandler;
  /** Makes a topic exist without a CreateTopic call. */
  createTopic(arn: string): void;
  messages(): PublishedMessage[];
}

const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_SUBJECT_CHARS = 100;

function invalidParameter(what: string): AwsServiceError {
  return new AwsServiceError("InvalidParameter", `Invalid parameter: ${what}`);
}

/** Creates the emulator; `handler` serves the `sns` credential scope. */
export function createSns(): SnsEmulator {
  const topics = new Set<string>();
  const published: PublishedMessage[] = [];

  function publish(params: Record<string, string>, region: string) {
    const topicArn = params.TopicArn ?? params.TargetArn;
    if (!topicArn) {
      throw invalidParameter("TopicArn or TargetArn Reason: no value for required parameter");
    }
    const message = params.Message;
    if (message === undefined || message === "") {
      throw invalidParameter("Message Reason: Empty message");
    }
    if (Buffer.byteLength(message) > MAX_MESSAGE_BYTES) {
      throw invalidParameter("Message too long");
    }
    const subject = params.Subject;
    if (subject !== undefined && (subject.length >= MAX_SUBJECT_CHARS || /[\r\n]/.test(subject))) {
      throw invalidParameter("Subject");
    }
    if (regionOfArn(topicArn) !== region) {
      throw invalidParameter(`TopicArn Reason: ${topicArn} is not in ${region}`);
    }
    if (!topics.has(topicArn)) throw new AwsServiceError("NotFound", "Topic does not exist", 404);
    const messageId = randomUUID();
    published.push({
      messageId,
      topicArn,
      region,
      ...(subject !== undefined ? { subject } : {}),
      message,
    });
    return { MessageId: messageId };
  }

  const handler: QueryServiceHandler = (action, params, ctx) => {
    switch (action) {
      case "Publish":
        return publish(params, ctx.region);
      case "ListTopics": {
        // Up to 100 topics per page, in the caller's region (SNS API reference, ListTopics).
        const inRegion = [...topics].filter((arn) => regionOfArn(arn) === ctx.region).sort();
        const start = params.NextToken ? inRegion.indexOf(params.NextToken) : 0;
        if (start < 0) throw invalidParameter("NextToken");
        const page = inRegion.slice(start, start + 100);
        const next = inRegion[start + 100];
        return { Topics: { member: page.map((TopicArn) => ({ TopicArn })) }, NextToken: next };
      }
      case "CreateTopic": {
        const name = params.Name ?? "";
        if (!/^[A-Za-z0-9_-]{1,256}$/.test(name)) {
          throw invalidParameter("Topic Name");
        }
        const arn = `arn:aws:sns:${ctx.region}:${SANDBOX_ACCOUNT}:${name}`;
        topics.add(arn);
        return { TopicArn: arn };
      }
      default:
        throw new AwsServiceError(
          "InvalidAction",
          `Could not find operation ${action} for version 2010-03-31`,
        );
    }
  };

  return {
    handler,
    createTopic(arn) {
      if (!arn.startsWith("arn:aws:sns:") || !regionOfArn(arn)) {
        throw new Error(`not an SNS topic ARN: ${arn}`);
      }
      topics.add(arn);
    },
    messages: () => published.map((m) => ({ ...m })),
  };
}
