/**
 * A Lambda function URL with AWS_IAM auth, as the approval entry point is deployed: the request
 * must carry a SigV4 signature for the `lambda` service that this server recomputes with the
 * caller's secret key (a wrong key, a changed body or header, a stale date are refused with
 * 403 as Lambda refuses them); the verified caller becomes `requestContext.authorizer.iam` of a
 * payload-format-2.0 event, and the function's response is sent back as Lambda sends it.
 */
import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";

/** A principal the sandbox knows: its access key pair and the ARN Lambda would report. */
export interface SandboxPrincipal {
  accessKeyId: string;
  secretAccessKey: string;
  arn: string;
  accountId: string;
  userId: string;
}

/** What the function returns (payload format 2.0). */
export interface UrlResponse {
  statusCode: number;
  headers?: Record<string, string>;
  body?: string;
}

export interface FunctionUrlServer {
  url: string;
  stop(): Promise<void>;
}

const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/;
/** Lambda, like the other SigV4 services, refuses a request signed more than 5 minutes away. */
const MAX_SKEW_MS = 5 * 60_000;

class Refused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** `20250101T000000Z` as a Date, or undefined. */
function amzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m;
  return new Date(`${y}-${mo}-${d}T${h}:${mi}:${s}Z`);
}

/** Recomputes the request's signature with the caller's secret; returns the caller or refuses. */
async function authenticate(
  req: IncomingMessage,
  body: Buffer,
  region: string,
  principals: SandboxPrincipal[],
): Promise<SandboxPrincipal> {
  const header = req.headers.authorization;
  if (!header) throw new Refused(403, "Forbidden");
  const m = AUTH.exec(header);
  const date = String(req.headers["x-amz-date"] ?? "");
  const signedAt = amzDate(date);
  if (!m || !signedAt || !date.startsWith(m[2] ?? "")) throw new Refused(403, "Forbidden");
  const [, keyId, , scopeRegion, service, signed = "", signature] = m;
  const caller = principals.find((p) => p.accessKeyId === keyId);
  if (!caller) throw new Refused(403, "The security token included in the request is invalid.");
  if (service !== "lambda" || scopeRegion !== region)
    throw new Refused(
      403,
      `Credential should be scoped to correct service: 'lambda' and region: '${region}'.`,
    );
  if (Math.abs(Date.now() - signedAt.getTime()) > MAX_SKEW_MS)
    throw new Refused(
      403,
      "Signature expired: the request's X-Amz-Date is more than 5 minutes away",
    );
  const names = signed.split(";");
  if (!names.includes("host")) throw new Refused(403, "Forbidden");
  const headers: Record<string, string> = {};
  for (const name of names) {
    const value = req.headers[name];
    if (value === undefined) throw new Refused(403, "Forbidden");
    headers[name] = Array.isArray(value) ? value.join(",") : value;
  }
  // The signature covers the payload through its hash, computed from the body received: a
  // header stating another hash does not make a changed body verify.
  if (headers["x-amz-content-sha256"] !== undefined)
    headers["x-amz-content-sha256"] = createHash("sha256").update(body).digest("hex");
  const url = new URL(req.url ?? "/", `http://${headers.host}`);
  const expected = await new SignatureV4({
    service: "lambda",
    region,
    credentials: { accessKeyId: caller.accessKeyId, secretAccessKey: caller.secretAccessKey },
    sha256: Sha256,
  }).sign(
    new HttpRequest({
      method: req.method ?? "GET",
      protocol: "http:",
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
    }),
    { signingDate: signedAt },
  );
  const recomputed = /Signature=([0-9a-f]{64})/.exec(
    String(expected.headers.authorization ?? expected.headers.Authorization),
  )?.[1];
  if (recomputed !== signature)
    throw new Refused(
      403,
      "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    );
  return caller;
}

/** Starts the URL on 127.0.0.1; `invoke` runs the function with the payload-2.0 event. */
export async function startFunctionUrl(options: {
  region: string;
  principals: SandboxPrincipal[];
  invoke: (event: unknown) => Promise<UrlResponse>;
}): Promise<FunctionUrlServer> {
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    try {
      const body = await readBody(req);
      const caller = await authenticate(req, body, options.region, options.principals);
      const url = new URL(req.url ?? "/", "http://url");
      const event = {
        version: "2.0",
        routeKey: "$default",
        rawPath: url.pathname,
        rawQueryString: url.search.slice(1),
        headers: Object.fromEntries(
          Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(",") : v]),
        ),
        requestContext: {
          accountId: caller.accountId,
          apiId: "sandbox-approval",
          authorizer: {
            iam: {
              accessKey: caller.accessKeyId,
              accountId: caller.accountId,
              callerId: caller.userId,
              userArn: caller.arn,
              userId: caller.userId,
            },
          },
          http: {
            method: req.method ?? "GET",
            path: url.pathname,
            protocol: "HTTP/1.1",
            sourceIp: req.socket.remoteAddress ?? "127.0.0.1",
            userAgent: String(req.headers["user-agent"] ?? ""),
          },
          requestId,
          routeKey: "$default",
          stage: "$default",
          time: new Date().toISOString(),
          timeEpoch: Date.now(),
        },
        body: body.toString("base64"),
        isBase64Encoded: true,
      };
      let out: UrlResponse;
      try {
        out = await options.invoke(event);
      } catch {
        throw new Refused(502, "Internal Server Error");
      }
      res.writeHead(out.statusCode, { ...out.headers, "x-amzn-requestid": requestId });
      res.end(out.body ?? "");
    } catch (e) {
      const refused = e instanceof Refused ? e : new Refused(500, "Internal Server Error");
      res.writeHead(refused.status, {
        "content-type": "application/json",
        "x-amzn-requestid": requestId,
        "x-amzn-errortype": refused.status === 403 ? "AccessDeniedException" : "ServiceException",
      });
      res.end(JSON.stringify({ Message: refused.message }));
    }
  }
  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
