/**
 * Checking a signed anchor (anchor.ts): that it anchors what its report says (the execution, the
 * count and head), then that the signature holds, either with `kms:Verify` on the signing key or
 * offline with its exported public key. Used by `audit verify`; no function needs it.
 */
import { createPublicKey, verify } from "node:crypto";
import {
  GetPublicKeyCommand,
  KMSInvalidSignatureException,
  VerifyCommand,
} from "@aws-sdk/client-kms";
import {
  type AnchorPayload,
  anchorMessage,
  SIGNING_ALGORITHM,
  type SignedAnchor,
} from "./anchor.ts";
import { awsError, kmsClient, regionOfArn } from "./aws.ts";
import { describe, UnexpectedError } from "./errors.ts";

/** How to check a signature: a trusted public key (offline), or KMS itself (online). */
export type SignatureKey =
  | { kind: "publicKey"; pem: string; source: string }
  | { kind: "kms"; expectedKeyId?: string };

export type SignatureVerdict = { ok: true; how: string } | { ok: false; problem: string };

/** `audit.signed` of a report, when it has the shape of a signed anchor. */
function signedIn(doc: unknown): SignedAnchor | undefined {
  const signed = (doc as { audit?: { signed?: unknown } } | null)?.audit?.signed as
    | Partial<SignedAnchor>
    | undefined;
  const p = signed?.payload as Partial<AnchorPayload> | undefined;
  if (
    !p ||
    typeof p.execution !== "string" ||
    typeof p.events !== "number" ||
    (typeof p.head !== "string" && p.head !== null) ||
    typeof p.objects !== "object" ||
    p.objects === null ||
    typeof p.location !== "string"
  )
    return undefined;
  const s = signed?.signature;
  if (s === null) return { payload: p as AnchorPayload, signature: null };
  if (
    typeof s?.keyId !== "string" ||
    s.algorithm !== SIGNING_ALGORITHM ||
    typeof s.value !== "string" ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(s.value)
  )
    return undefined;
  return signed as SignedAnchor;
}

/**
 * Checks the signed anchor of `doc` (report.json, or a Report output) against what the same
 * document records (`execution` ARN, `events`, `head`) and against the key. Every problem names
 * `source`'s signed anchor.
 */
export async function checkSignedAnchor(
  doc: unknown,
  recorded: { execution: string | undefined; events: number; head: string | null },
  source: string,
  key: SignatureKey,
): Promise<SignatureVerdict> {
  const name = `${source}'s signed anchor`;
  const signed = signedIn(doc);
  if (!signed)
    return {
      ok: false,
      problem: `${source} holds no signed anchor (audit.signed is missing or malformed)`,
    };
  const { payload, signature } = signed;
  if (!signature)
    return {
      ok: false,
      problem: `${name} is not signed (the report was written without a signing key)`,
    };
  if (payload.events !== recorded.events || payload.head !== recorded.head)
    return {
      ok: false,
      problem: `${name} signs ${payload.events} events, head ${payload.head ?? "none"}; ${source} records ${recorded.events} events, head ${recorded.head ?? "none"} (edited?)`,
    };
  if (recorded.execution !== undefined && payload.execution !== recorded.execution)
    return {
      ok: false,
      problem: `${name} signs execution ${payload.execution}, ${source} names ${recorded.execution}`,
    };
  const message = anchorMessage(payload);
  const sig = Buffer.from(signature.value, "base64");
  const bad = `${name}: the signature does not verify`;
  if (key.kind === "publicKey") {
    let valid: boolean;
    try {
      valid = verify("sha256", message, createPublicKey(key.pem), sig);
    } catch {
      valid = false;
    }
    return valid
      ? { ok: true, how: `signature verified offline with ${key.source}` }
      : {
          ok: false,
          problem: `${bad} with ${key.source} (head, count, objects or signature edited?)`,
        };
  }
  if (key.expectedKeyId && key.expectedKeyId !== signature.keyId)
    return {
      ok: false,
      problem: `${name} is signed with ${signature.keyId}, not the expected key ${key.expectedKeyId}`,
    };
  try {
    await kmsClient(regionOfArn(signature.keyId)).send(
      new VerifyCommand({
        KeyId: signature.keyId,
        Message: message,
        MessageType: "RAW",
        Signature: sig,
        SigningAlgorithm: SIGNING_ALGORITHM,
      }),
    );
    return { ok: true, how: `signature verified by kms:Verify with ${signature.keyId}` };
  } catch (e) {
    if (e instanceof KMSInvalidSignatureException)
      return {
        ok: false,
        problem: `${bad} (kms:Verify with ${signature.keyId}: head, count, objects or signature edited?)`,
      };
    return {
      ok: false,
      problem: `${name}: could not ask KMS to verify it (${describe(e)}); pass --public-key <file> to check offline`,
    };
  }
}

/** The signing key's public key as PEM (`kms:GetPublicKey`): for checking reports offline. */
export async function exportPublicKey(keyId: string): Promise<string> {
  try {
    const out = await kmsClient(regionOfArn(keyId)).send(new GetPublicKeyCommand({ KeyId: keyId }));
    if (!out.PublicKey) throw new Error("KMS returned no public key");
    return String(
      createPublicKey({ key: Buffer.from(out.PublicKey), format: "der", type: "spki" }).export({
        format: "pem",
        type: "spki",
      }),
    );
  } catch (e) {
    throw awsError(e, `reading the public key of ${keyId}`, UnexpectedError);
  }
}
