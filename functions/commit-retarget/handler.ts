/** CommitRetarget: the Git commit that makes the target region active. */
import { stepHandler } from "../lib/middleware.ts";
import { commitRetargetStep } from "../lib/steps.ts";

export const handler = stepHandler("CommitRetarget", commitRetargetStep);
