/**
 * ECDSA P-256 over a digest the caller already computed (KMS `MessageType: DIGEST`). node:crypto
 * always hashes what it signs (`crypto.sign(null, ...)` hashes with SHA-256 for an EC key), so a
 * digest would be hashed twice and the signature would not verify anywhere else. This is the
 * textbook algorithm (SEC 1, 4.1.3 and 4.1.4) over the key node:crypto generated, with DER
 * signatures like KMS's; RAW messages keep using node:crypto.
 */
import { type KeyObject, randomBytes } from "node:crypto";

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const A = P - 3n;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const G: Point = {
  x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
};

type Point = { x: bigint; y: bigint } | null;

const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;

function inverse(a: bigint, m: bigint): bigint {
  let [r0, r1, s0, s1] = [mod(a, m), m, 1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return mod(s0, m);
}

function add(p: Point, q: Point): Point {
  if (!p) return q;
  if (!q) return p;
  if (p.x === q.x && mod(p.y + q.y, P) === 0n) return null;
  const l =
    p.x === q.x && p.y === q.y
      ? mod((3n * p.x * p.x + A) * inverse(2n * p.y, P), P)
      : mod((q.y - p.y) * inverse(q.x - p.x, P), P);
  const x = mod(l * l - p.x - q.x, P);
  return { x, y: mod(l * (p.x - x) - p.y, P) };
}

function multiply(k: bigint, p: Point): Point {
  let result: Point = null;
  let addend = p;
  for (let n = k; n > 0n; n >>= 1n) {
    if (n & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

const toBig = (b: Buffer) => BigInt(`0x${b.toString("hex") || "0"}`);
const fromB64url = (s: string | undefined) => toBig(Buffer.from(s ?? "", "base64url"));

function derInteger(v: bigint): Buffer {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, "hex");
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

function derSignature(r: bigint, s: bigint): Buffer {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

/** r and s of a DER ECDSA signature, or undefined when it is not one. */
function parseDer(sig: Buffer): { r: bigint; s: bigint } | undefined {
  if (sig[0] !== 0x30 || sig[1] !== sig.length - 2) return undefined;
  const ints: bigint[] = [];
  let at = 2;
  for (let i = 0; i < 2; i++) {
    const len = sig[at + 1];
    if (sig[at] !== 0x02 || len === undefined || len === 0 || at + 2 + len > sig.length)
      return undefined;
    ints.push(toBig(sig.subarray(at + 2, at + 2 + len)));
    at += 2 + len;
  }
  const [r, s] = ints;
  return at === sig.length && r !== undefined && s !== undefined ? { r, s } : undefined;
}

/** Signs a 32-byte digest with a P-256 private key; the signature is DER, as KMS returns it. */
export function signDigest(digest: Buffer, key: KeyObject): Buffer {
  const d = fromB64url(key.export({ format: "jwk" }).d);
  const z = toBig(digest);
  for (;;) {
    const k = mod(toBig(randomBytes(40)), N - 1n) + 1n;
    const r = mod(multiply(k, G)?.x ?? 0n, N);
    const s = mod(inverse(k, N) * (z + r * d), N);
    if (r !== 0n && s !== 0n) return derSignature(r, s);
  }
}

/** Verifies a DER signature over a 32-byte digest with a P-256 public key. */
export function verifyDigest(digest: Buffer, signature: Buffer, key: KeyObject): boolean {
  const parsed = parseDer(signature);
  if (!parsed) return false;
  const { r, s } = parsed;
  if (r <= 0n || r >= N || s <= 0n || s >= N) return false;
  const jwk = key.export({ format: "jwk" });
  const q: Point = { x: fromB64url(jwk.x), y: fromB64url(jwk.y) };
  const w = inverse(s, N);
  const point = add(multiply(mod(toBig(digest) * w, N), G), multiply(mod(r * w, N), q));
  return point !== null && mod(point.x, N) === r;
}
