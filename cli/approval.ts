/**
 * `approve` / `reject` through the approval entry point: a POST to the approver's function URL
 * (AWS_IAM auth) signed with SigV4 for the `lambda` service with the operator's own
 * credentials (the Step Functions client's: the SDK's default chain, `--profile` included), so the approver records the
 * principal AWS verified rather than only the name typed with `--by`. Operators hold no
 * states:SendTaskSuccess/Failure; the URL is the only way to answer.
 */
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentity } from "@smithy/types";
import { describe, InputValidationError } from "../functions/lib/errors.ts";
import { readSandboxFile } from "./sandbox-file.ts";

/** The decision as the approver takes it. */
export type DecisionBody =
  | { decision: "approve"; executionArn: string; by: string }
  | { decision: "reject"; executionArn: string; by: string; reason: string };

/** What the approver answered: the verified principal on success, its message otherwise. */
export type DecisionAnswer =
  | { ok: true; principal: string }
  | { ok: false; status: number; message: string };

/** The URL: `--approval-url`, the sandbox file's, or `$GITOPS_FAILOVER_APPROVAL_URL`. */
export function approvalUrlOf(flags: { approvalUrl?: string; sandbox?: string }): string {
  const url =
    flags.approvalUrl ??
    (flags.sandbox ? readSandboxFile(flags.sandbox).env.GITOPS_FAILOVER_APPROVAL_URL : undefined) ??
    process.env.GITOPS_FAILOVER_APPROVAL_URL;
  if (!url)
    throw new InputValidationError(
      "no approval entry point: pass --approval-url <url> (the stack's ApprovalUrl output) or set GITOPS_FAILOVER_APPROVAL_URL",
    );
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputValidationError(`--approval-url: "${url}" is not a URL`);
  }
  const loopback = parsed.hostname === "127.0.0.1" || parsed.hostname === "localhost";
  if (parsed.protocol !== "https:" && !(loopback && parsed.protocol === "http:"))
    throw new InputValidationError(
      `--approval-url: "${url}" must be https:// (a function URL is https://<id>.lambda-url.<region>.on.aws/)`,
    );
  return parsed.toString();
}

/** The region a function URL lives in (`<id>.lambda-url.<region>.on.aws`), else `fallback`. */
function regionOfUrl(url: URL, fallback: string): string {
  return /^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$/.exec(url.hostname)?.[1] ?? fallback;
}

/** Signs and sends the decision; a refusal comes back as its status and message. */
export async function sendDecision(
  urlText: string,
  body: DecisionBody,
  options: { region: string; credentials: () => Promise<AwsCredentialIdentity> },
): Promise<DecisionAnswer> {
  const url = new URL(urlText);
  const payload = JSON.stringify(body);
  const signer = new SignatureV4({
    service: "lambda",
    region: regionOfUrl(url, options.region),
    credentials: options.credentials,
    sha256: Sha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: "POST",
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      headers: { host: url.host, "content-type": "application/json" },
      body: payload,
    }),
  );
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: signed.headers,
      body: payload,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    return { ok: false, status: 0, message: `${url.origin} did not answer (${describe(e)})` };
  }
  const text = await response.text();
  let doc: { message?: unknown; Message?: unknown; principal?: unknown } = {};
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch {
    // Not JSON (a proxy's page): the status says enough.
  }
  if (response.ok && typeof doc.principal === "string")
    return { ok: true, principal: doc.principal };
  const message = doc.message ?? doc.Message;
  return {
    ok: false,
    status: response.status,
    message: typeof message === "string" ? message : `HTTP ${response.status}`,
  };
}
