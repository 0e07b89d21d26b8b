/**
 * The signed anchor: what a report says about the chain it closed (execution, event count, head
 * hash, and the S3 version of each report object), signed with the stack's asymmetric KMS key
 * (ECC_NIST_P256, SIGN_VERIFY). The hash chain alone cannot show a chain rewritten from the
 * start by someone who can write the table; a signature made by a key only Report and
 * RecordFailure may use can. The signed message is the anchor's canonical JSON (RAW, hashed
 * by KMS with SHA-256), so anyone holding the public key can check it offline.
 */
import { SignCommand } from "@aws-sdk/client-kms";
import { canonicalJson } from "./audit.ts";
import { awsError, kmsClient, regionOfArn } from "./aws.ts";
import { UnexpectedError } from "./errors.ts";

/** The only algorithm an ECC_NIST_P256 signing key has. */
export const SIGNING_ALGORITHM = "ECDSA_SHA_256";

/** The sandbox exports its signing key's public key here, beside the reports it signs. */
export const SIGNING_KEY_FILE = "signing-key.pem";

/** What is signed. */
export interface AnchorPayload {
  /** The execution ARN: a signature cannot be moved to another execution's report. */
  execution: string;
  events: number;
  head: string | null;
  /**
   * Each report object written before the signature and its S3 VersionId; null where the writer
   * keeps no versions (a local report directory, as in the sandbox).
   */
  objects: Record<string, string | null>;
  /** Where the objects are: `s3://bucket/prefix/`, or the local directory. */
  location: string;
}

/** The anchor with its signature; `signature` is null when no key is configured. */
export interface SignedAnchor {
  payload: AnchorPayload;
  signature: { keyId: string; algorithm: typeof SIGNING_ALGORITHM; value: string } | null;
}

/** The bytes that are signed: the payload's canonical JSON (well under KMS's 4096-byte RAW limit). */
export function anchorMessage(payload: AnchorPayload): Buffer {
  return Buffer.from(canonicalJson(payload), "utf8");
}

/**
 * Signs the payload with the key in `AUDIT_SIGNING_KEY` (its ARN, so the call goes to the key's
 * own region). Without the variable (a unit run outside the stack and the sandbox) the anchor is
 * left unsigned, which `audit verify` refuses.
 */
export async function signAnchor(payload: AnchorPayload): Promise<SignedAnchor> {
  const keyId = process.env.AUDIT_SIGNING_KEY;
  if (!keyId) return { payload, signature: null };
  try {
    const out = await kmsClient(regionOfArn(keyId)).send(
      new SignCommand({
        KeyId: keyId,
        Message: anchorMessage(payload),
        MessageType: "RAW",
        SigningAlgorithm: SIGNING_ALGORITHM,
      }),
    );
    if (!out.Signature || !out.KeyId) throw new Error("KMS returned no signature");
    return {
      payload,
      signature: {
        keyId: out.KeyId,
        algorithm: SIGNING_ALGORITHM,
        value: Buffer.from(out.Signature).toString("base64"),
      },
    };
  } catch (e) {
    throw awsError(e, `signing the audit anchor with ${keyId}`, UnexpectedError);
  }
}
