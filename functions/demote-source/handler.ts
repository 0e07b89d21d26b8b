/** DemoteSource: the second commit of a two-phase retarget, once traffic is on the target. */
import { stepHandler } from "../lib/middleware.ts";
import { demoteSourceStep } from "../lib/steps.ts";

export const handler = stepHandler("DemoteSource", demoteSourceStep);
