/** Approver: the IAM-authenticated function URL that answers Approval with the verified caller. */
import { answerApproval } from "../lib/approver.ts";
import { stepHandler } from "../lib/middleware.ts";

export const handler = stepHandler("Approver", answerApproval, { audit: false });
