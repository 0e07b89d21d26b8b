/**
 * The sandbox's own certificate authority, made with the `openssl` CLI: every local HTTPS
 * emulator (fake spokes, the Argo CD emulator) serves a certificate it issued, and the code
 * under test trusts only `caPem`, so TLS is verified in the sandbox exactly as it is on AWS.
 *
 * Keys are EC P-256 and certificates are valid for 7 days with SAN `IP:127.0.0.1` and
 * `DNS:localhost`. Each name gets its own leaf certificate (its CN names the server, which
 * helps when reading a handshake failure), issued once and then reused: one `openssl`
 * process takes a few milliseconds, so 50+ spokes cost well under a second and a shared
 * leaf certificate is not needed. The sandbox takes its CA from {@link reuseCa}: one CA per
 * process, so a process that starts many sandboxes (the tests) issues each name once.
 */
import { execFile } from "node:child_process";
import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

const VALID_DAYS = "7";
const NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
const EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** The sandbox CA (`dir/ca.crt`, `dir/ca.key`) and the server certificates it issues. */
export interface Ca {
  /** PEM of the CA certificate: what clients trust. */
  caPem: string;
  /** A server certificate for 127.0.0.1 / localhost named `name`; the same one on every call. */
  issue(name: string): Promise<{ certPem: string; keyPem: string }>;
  /** Where the CA key, certificate and issued certificates live (the caller removes it). */
  dir: string;
}

async function openssl(args: string[], what: string): Promise<void> {
  try {
    await run("openssl", args, { timeout: 30_000 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT") {
      throw new Error("the openssl CLI is not on PATH; install it (apt-get install openssl)", {
        cause: e,
      });
    }
    const stderr = (err.stderr ?? "").trim().split("\n").slice(0, 3).join(" | ");
    throw new Error(`openssl failed to ${what}: ${stderr || err.message}`, { cause: e });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** A CA's key and certificate, and the certificates it issued, held in memory. */
interface CaMaterial {
  /** When it was made (ms epoch): {@link reuseCa} makes a new one a day later. */
  madeAt: number;
  caPem: string;
  caKeyPem: string;
  issued: Map<string, Promise<{ certPem: string; keyPem: string }>>;
}

/** How long {@link reuseCa} serves the same CA: a day, well inside its certificates' 7. */
const REUSE_MS = 24 * 3_600_000;

/** The CA {@link reuseCa} hands out in this process, made by its first call. */
let processCa: Promise<CaMaterial> | undefined;

/**
 * Creates a new CA in `dir` (created with mode 0700 if absent). Refuses a directory that
 * already holds one, so two sandboxes can never overwrite each other's keys.
 */
export async function createCa(dir: string): Promise<Ca> {
  return caIn(dir, await newCa(dir));
}

/**
 * The same as {@link createCa}, except that every call in this process serves the same CA and
 * certificates (written into `dir`, so its files are the sandbox's as before): the sandboxes a
 * process starts one after another (a test file's drills) then run `openssl` only for names no
 * earlier sandbox had, instead of ~7 times each. The material lives in this process's memory
 * and in the directories of its sandboxes, which remove it when they stop.
 */
export async function reuseCa(dir: string): Promise<Ca> {
  const current = await processCa?.catch(() => undefined);
  if (current && Date.now() - current.madeAt > REUSE_MS) processCa = undefined;
  const pending = processCa ?? newCa(dir);
  if (!processCa) {
    processCa = pending;
    pending.catch(() => {
      processCa = undefined;
    });
    return caIn(dir, await pending);
  }
  const material = await pending;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (await exists(join(dir, "ca.crt"))) {
    throw new Error(`${dir} already holds a CA (ca.crt); give reuseCa an empty directory`);
  }
  await writeFile(join(dir, "ca.key"), material.caKeyPem, { mode: 0o600 });
  await writeFile(join(dir, "ca.crt"), material.caPem);
  return caIn(dir, material);
}

/** Makes a CA's key and certificate in `dir` with openssl. */
async function newCa(dir: string): Promise<CaMaterial> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caCert = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");
  if (await exists(caCert)) {
    throw new Error(`${dir} already holds a CA (ca.crt); give createCa an empty directory`);
  }
  await openssl(
    [
      "req",
      "-x509",
      ...EC_KEY,
      "-keyout",
      caKey,
      "-out",
      caCert,
      "-days",
      VALID_DAYS,
      "-subj",
      "/CN=gitops-failover sandbox CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE,pathlen:0",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ],
    "create the sandbox CA",
  );
  const [caPem, caKeyPem] = await Promise.all([readFile(caCert, "utf8"), readFile(caKey, "utf8")]);
  return { madeAt: Date.now(), caPem, caKeyPem, issued: new Map() };
}

/** The CA of `material` whose key and certificate files are in `dir`. */
function caIn(dir: string, material: CaMaterial): Ca {
  const { caPem, issued } = material;
  const caCert = join(dir, "ca.crt");
  const caKey = join(dir, "ca.key");

  async function sign(name: string): Promise<{ certPem: string; keyPem: string }> {
    const cert = join(dir, `${name}.crt`);
    const key = join(dir, `${name}.key`);
    await openssl(
      [
        "req",
        "-x509",
        ...EC_KEY,
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        VALID_DAYS,
        "-subj",
        `/CN=${name}`,
        "-CA",
        caCert,
        "-CAkey",
        caKey,
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "keyUsage=critical,digitalSignature",
        "-addext",
        "extendedKeyUsage=serverAuth",
      ],
      `issue a certificate for ${name}`,
    );
    const [certPem, keyPem] = await Promise.all([readFile(cert, "utf8"), readFile(key, "utf8")]);
    return { certPem, keyPem };
  }

  return {
    caPem,
    dir,
    issue(name: string) {
      if (!NAME.test(name) || name === "ca") {
        return Promise.reject(
          new Error(`certificate name "${name}" must be a DNS-1123 name other than "ca"`),
        );
      }
      let pending = issued.get(name);
      if (!pending) {
        pending = sign(name);
        pending.catch(() => issued.delete(name));
        issued.set(name, pending);
      }
      return pending;
    },
  };
}
