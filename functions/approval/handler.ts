/** Approval: ask operators to approve or reject, with the task token. */
import { stepHandler } from "../lib/middleware.ts";
import { approvalStep } from "../lib/notify.ts";

export const handler = stepHandler("Approval", approvalStep);
