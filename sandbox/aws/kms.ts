/**
 * KMS (awsJson1_1, `TrentService`): Sign, Verify, GetPublicKey and DescribeKey over keys the
 * emulator generates, so the audit anchor is signed with real ECDSA P-256 and verifies with
 * node:crypto, openssl or real KMS semantics alike. As on AWS: keys are regional and named by
 * id, key ARN, alias name or alias ARN; the message is 1-4096 bytes (RAW, hashed with SHA-256)
 * or exactly the 32-byte SHA-256 digest (DIGEST); the signing algorithm must be one of the
 * key's; a key whose KeyUsage is not SIGN_VERIFY refuses Sign and Verify, and a symmetric key
 * has no public key; a signature that does not verify is KMSInvalidSignatureException, never
 * `SignatureValid: false`. Signatures are DER, public keys DER SubjectPublicKeyInfo.
 */
import {
  createSecretKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  randomUUID,
  sign,
  verify,
} from "node:crypto";
import { signDigest, verifyDigest } from "./ecdsa-digest.ts";
import {
  AwsServiceError,
  type JsonServiceHandler,
  optionalString,
  type RequestContext,
  requireString,
  SANDBOX_ACCOUNT,
} from "./protocol.ts";

/** The alias of the sandbox's audit signing key (the stack's key has the same alias). */
export const SANDBOX_SIGNING_ALIAS = "alias/gitops-failover-audit";
/** A symmetric key, so Sign on the wrong kind of key can be tried. */
export const SANDBOX_SYMMETRIC_ALIAS = "alias/sandbox-symmetric";

const SIGNING_ALGORITHMS = [
  "RSASSA_PSS_SHA_256",
  "RSASSA_PSS_SHA_384",
  "RSASSA_PSS_SHA_512",
  "RSASSA_PKCS1_V1_5_SHA_256",
  "RSASSA_PKCS1_V1_5_SHA_384",
  "RSASSA_PKCS1_V1_5_SHA_512",
  "ECDSA_SHA_256",
  "ECDSA_SHA_384",
  "ECDSA_SHA_512",
  "SM2DSA",
  "ML_DSA_SHAKE_256",
];
const MESSAGE_TYPES = ["RAW", "DIGEST", "EXTERNAL_MU"];

interface Key {
  id: string;
  arn: string;
  region: string;
  usage: "SIGN_VERIFY" | "ENCRYPT_DECRYPT";
  spec: "ECC_NIST_P256" | "SYMMETRIC_DEFAULT";
  privateKey?: KeyObject;
  publicKey?: KeyObject;
  aliases: string[];
}

/** Control surface of the KMS emulator. */
export interface KmsEmulator {
  handler: JsonServiceHandler;
  /** The ARN of the audit signing key (ECC_NIST_P256, SIGN_VERIFY) in the home region. */
  signingKeyArn: string;
  /** Its public key as PEM (what `GetPublicKey` returns, DER, wrapped). */
  signingPublicKeyPem(): string;
}

const validation = (message: string) => new AwsServiceError("ValidationException", message);

/** A blob member (base64 in awsJson), as bytes. */
function requireBlob(input: Record<string, unknown>, key: string, member: string): Buffer {
  const v = requireString(input, key);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
    throw new AwsServiceError("SerializationException", `${key} is not valid base64`);
  }
  const bytes = Buffer.from(v, "base64");
  if (bytes.length < 1)
    throw validation(
      `1 validation error detected: Value at '${member}' failed to satisfy constraint: Member must have length greater than or equal to 1`,
    );
  return bytes;
}

function enumValue(
  input: Record<string, unknown>,
  key: string,
  member: string,
  values: string[],
): string | undefined {
  const v = optionalString(input, key);
  if (v !== undefined && !values.includes(v)) {
    throw validation(
      `1 validation error detected: Value '${v}' at '${member}' failed to satisfy constraint: Member must satisfy enum value set: [${values.join(", ")}]`,
    );
  }
  return v;
}

/** Creates the emulator with one signing key and one symmetric key in `homeRegion`. */
export function createKms(homeRegion: string): KmsEmulator {
  const keys: Key[] = [];
  function addKey(usage: Key["usage"], spec: Key["spec"], alias: string): Key {
    const id = randomUUID();
    const pair =
      spec === "ECC_NIST_P256" ? generateKeyPairSync("ec", { namedCurve: "prime256v1" }) : null;
    const key: Key = {
      id,
      arn: `arn:aws:kms:${homeRegion}:${SANDBOX_ACCOUNT}:key/${id}`,
      region: homeRegion,
      usage,
      spec,
      ...(pair ? { privateKey: pair.privateKey, publicKey: pair.publicKey } : {}),
      aliases: [alias],
    };
    if (!pair) key.privateKey = createSecretKey(randomBytes(32));
    keys.push(key);
    return key;
  }
  const signing = addKey("SIGN_VERIFY", "ECC_NIST_P256", SANDBOX_SIGNING_ALIAS);
  addKey("ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", SANDBOX_SYMMETRIC_ALIAS);

  /** Resolves KeyId the four ways KMS accepts, in the region the call was signed for. */
  function resolve(input: Record<string, unknown>, ctx: RequestContext): Key {
    const ref = requireString(input, "KeyId");
    if (ref.length > 2048)
      throw validation(
        "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length less than or equal to 2048",
      );
    const arn = /^arn:aws:kms:([a-z0-9-]+):(\d{12}):(key\/.+|alias\/.+)$/.exec(ref);
    const region = arn ? arn[1] : ctx.region;
    const local = arn ? (arn[3] ?? "") : ref;
    const found = keys.find(
      (k) =>
        k.region === region &&
        region === ctx.region &&
        (!arn || arn[2] === SANDBOX_ACCOUNT) &&
        (local === k.id || local === `key/${k.id}` || k.aliases.includes(local)),
    );
    if (!found) {
      const what = local.startsWith("alias/")
        ? `Alias ${arn ? ref : `arn:aws:kms:${ctx.region}:${SANDBOX_ACCOUNT}:${local}`}`
        : `Key '${arn ? ref : `arn:aws:kms:${ctx.region}:${SANDBOX_ACCOUNT}:key/${local}`}'`;
      throw new AwsServiceError("NotFoundException", `${what} is not found.`);
    }
    return found;
  }

  function signingKey(key: Key, operation: string): Key & { privateKey: KeyObject } {
    if (key.usage !== "SIGN_VERIFY" || !key.privateKey) {
      throw new AwsServiceError(
        "InvalidKeyUsageException",
        `${key.arn} key usage is ${key.usage} which is not valid for ${operation}.`,
      );
    }
    return key as Key & { privateKey: KeyObject };
  }

  /** The message as the algorithm sees it: RAW hashed by SHA-256, DIGEST exactly 32 bytes. */
  function messageOf(input: Record<string, unknown>, key: Key): { digest?: Buffer; raw?: Buffer } {
    const message = requireBlob(input, "Message", "message");
    const type = enumValue(input, "MessageType", "messageType", MESSAGE_TYPES) ?? "RAW";
    const algorithm = requireString(input, "SigningAlgorithm");
    enumValue(input, "SigningAlgorithm", "signingAlgorithm", SIGNING_ALGORITHMS);
    if (algorithm !== "ECDSA_SHA_256") {
      throw new AwsServiceError(
        "InvalidKeyUsageException",
        `Algorithm ${algorithm} is incompatible with key spec ${key.spec}.`,
      );
    }
    if (type === "EXTERNAL_MU")
      throw validation(`Message type EXTERNAL_MU is incompatible with key spec ${key.spec}.`);
    if (type === "RAW") {
      if (message.length > 4096)
        throw validation(
          "1 validation error detected: Value at 'message' failed to satisfy constraint: Member must have length less than or equal to 4096",
        );
      return { raw: message };
    }
    if (message.length !== 32)
      throw validation(
        `Digest is invalid length for algorithm ${algorithm}: ${message.length} bytes, expected 32.`,
      );
    return { digest: message };
  }

  const handler: JsonServiceHandler = (action, input, ctx) => {
    switch (action) {
      case "Sign": {
        const key = signingKey(resolve(input, ctx), "Sign");
        const m = messageOf(input, key);
        const signature = m.raw
          ? sign("sha256", m.raw, key.privateKey)
          : signDigest(m.digest as Buffer, key.privateKey);
        return {
          KeyId: key.arn,
          Signature: signature.toString("base64"),
          SigningAlgorithm: "ECDSA_SHA_256",
        };
      }
      case "Verify": {
        const key = signingKey(resolve(input, ctx), "Verify");
        const m = messageOf(input, key);
        const signature = requireBlob(input, "Signature", "signature");
        const publicKey = key.publicKey as KeyObject;
        const valid = m.raw
          ? verify("sha256", m.raw, publicKey, signature)
          : verifyDigest(m.digest as Buffer, signature, publicKey);
        if (!valid) {
          throw new AwsServiceError(
            "KMSInvalidSignatureException",
            "The request was rejected because the signature verification failed.",
          );
        }
        return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: "ECDSA_SHA_256" };
      }
      case "GetPublicKey": {
        const key = resolve(input, ctx);
        if (!key.publicKey) {
          throw new AwsServiceError(
            "UnsupportedOperationException",
            `${key.arn} key usage is ${key.usage} and key spec is ${key.spec}: GetPublicKey is valid only for asymmetric KMS keys.`,
          );
        }
        return {
          KeyId: key.arn,
          PublicKey: key.publicKey.export({ format: "der", type: "spki" }).toString("base64"),
          CustomerMasterKeySpec: key.spec,
          KeySpec: key.spec,
          KeyUsage: key.usage,
          SigningAlgorithms: ["ECDSA_SHA_256"],
        };
      }
      case "DescribeKey": {
        const key = resolve(input, ctx);
        return {
          KeyMetadata: {
            AWSAccountId: SANDBOX_ACCOUNT,
            KeyId: key.id,
            Arn: key.arn,
            Enabled: true,
            KeyState: "Enabled",
            KeyManager: "CUSTOMER",
            Origin: "AWS_KMS",
            KeyUsage: key.usage,
            KeySpec: key.spec,
            CustomerMasterKeySpec: key.spec,
            MultiRegion: false,
            ...(key.publicKey
              ? { SigningAlgorithms: ["ECDSA_SHA_256"] }
              : { EncryptionAlgorithms: ["SYMMETRIC_DEFAULT"] }),
          },
        };
      }
      default:
        throw new AwsServiceError("UnknownOperationException", `Unknown operation ${action}`);
    }
  };

  return {
    handler,
    signingKeyArn: signing.arn,
    signingPublicKeyPem: () =>
      String((signing.publicKey as KeyObject).export({ format: "pem", type: "spki" })),
  };
}
