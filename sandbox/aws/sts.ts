/**
 * STS (awsQuery, 2011-06-15): GetCallerIdentity, the first command an operator runs to see
 * which account and identity the configured credentials are. The sandbox's only access key
 * belongs to an IAM user of the sandbox account (STS API reference, GetCallerIdentity: UserId
 * is the user's unique ID, AIDA...).
 */
import { AwsServiceError, type QueryServiceHandler, SANDBOX_ACCOUNT } from "./protocol.ts";

/** The IAM user the sandbox credentials belong to. */
export const SANDBOX_USER_ARN = `arn:aws:iam::${SANDBOX_ACCOUNT}:user/sandbox`;

/** The awsQuery handler of the `sts` credential scope. */
export const stsHandler: QueryServiceHandler = (action) => {
  if (action !== "GetCallerIdentity") {
    throw new AwsServiceError(
      "InvalidAction",
      `Could not find operation ${action} for version 2011-06-15`,
    );
  }
  return { UserId: "AIDASANDBOX00000000001", Account: SANDBOX_ACCOUNT, Arn: SANDBOX_USER_ARN };
};
