/**
 * One loopback HTTP server for every emulated AWS service. Requests are routed the way AWS's
 * front ends route them: by the SigV4 credential scope's service, then by protocol (X-Amz-Target
 * for awsJson, the form's Action for awsQuery, method + path for restXml), and every refusal
 * uses the protocol's real error shape, so the production SDK clients, pointed here through
 * the standard AWS_ENDPOINT_URL_<SERVICE> variables, behave as they would against AWS.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import {
  CLOUDWATCH_QUERY_ERRORS,
  type CloudWatchEmulator,
  createCloudWatch,
} from "./cloudwatch.ts";
import { startDynamo } from "./dynamodb.ts";
import { createGlobalAccelerator, GA_REGION, type GaEmulator } from "./globalaccelerator.ts";
import { createKms, type KmsEmulator } from "./kms.ts";
import {
  AwsServiceError,
  type JsonServiceHandler,
  parseSigV4,
  type QueryServiceHandler,
  type RequestContext,
  type RestXmlServiceHandler,
  SANDBOX_REGION,
  xmlDocument,
} from "./protocol.ts";
import { createRds, type RdsEmulator } from "./rds.ts";
import { createRoute53, type Route53Emulator } from "./route53.ts";
import { createSecretsManager, type SecretsEmulator } from "./secretsmanager.ts";
import { createSns, type SnsEmulator } from "./sns.ts";
import { createSsm, type SsmEmulator } from "./ssm.ts";
import { type CallerIdentity, createSts, SANDBOX_ACCESS_KEY_ID, type StsEmulator } from "./sts.ts";

export { SANDBOX_ACCESS_KEY_ID };
/** Its secret: the AWS emulators check the signature's form and key; the approval URL recomputes it. */
export const SANDBOX_SECRET_ACCESS_KEY = "sandbox-secret-access-key-not-a-real-one";

/** The running sandbox: its endpoint, the env to give SDK clients, and each service's controls. */
export interface AwsSandbox {
  endpoint: string;
  /** AWS_ENDPOINT_URL_<SERVICE> for every emulated service, credentials and AWS_REGION. */
  env: Record<string, string>;
  rds: RdsEmulator;
  cloudwatch: CloudWatchEmulator;
  ga: GaEmulator;
  secrets: SecretsEmulator;
  route53: Route53Emulator;
  sns: SnsEmulator;
  ssm: SsmEmulator;
  sts: StsEmulator;
  kms: KmsEmulator;
  dynamo: { endpoint: string };
  /** Serves another awsJson service (e.g. `states`) under its credential-scope name. */
  register(service: string, protocol: "json1.0" | "json1.1", handler: JsonServiceHandler): void;
  stop(): Promise<void>;
}

type Route =
  | {
      kind: "json";
      version: "1.0" | "1.1";
      handler: JsonServiceHandler;
      targetPrefix?: string;
      /** awsQueryCompatible services: `__type` -> the awsQuery code sent in x-amzn-query-error. */
      queryErrors?: Record<string, string>;
      /** Regions with an endpoint; a call signed for another region fails as a name lookup would. */
      regions?: string[];
      /** The awsQuery protocol the same service also accepts (a request without X-Amz-Target). */
      query?: Omit<Extract<Route, { kind: "query" }>, "kind">;
    }
  | { kind: "query"; version: string; xmlns: string; handler: QueryServiceHandler }
  | { kind: "restXml"; xmlns: string; handler: RestXmlServiceHandler };

/** The error shape a request gets before (or instead of) reaching a service. */
type ErrorStyle =
  | { kind: "json"; version: string; queryErrors?: Record<string, string> }
  | { kind: "query" }
  | { kind: "restXml"; xmlns?: string };

/**
 * The services whose resources may live in another account than the orchestrator's: each one's
 * owning account (`drill --accounts split`); absent, every resource is the sandbox account's.
 */
export type ResourceAccounts = Partial<
  Record<"rds" | "monitoring" | "globalaccelerator" | "route53" | "secretsmanager", string>
>;

/** X-Amz-Target prefixes of the awsJson services the project may register. */
const KNOWN_TARGET_PREFIXES: Record<string, string> = { states: "AWSStepFunctions" };

/** The AWS_ENDPOINT_URL_<SERVICE> suffix (the SDK's serviceId) per served service. */
const ENDPOINT_ENV: Record<string, string> = {
  rds: "RDS",
  monitoring: "CLOUDWATCH",
  globalaccelerator: "GLOBAL_ACCELERATOR",
  secretsmanager: "SECRETS_MANAGER",
  route53: "ROUTE_53",
  sns: "SNS",
  ssm: "SSM",
  states: "SFN",
  sts: "STS",
  kms: "KMS",
};

/**
 * A call signed for a region where the service has no endpoint. On AWS the client never gets
 * an answer: the regional host name does not resolve (the AWS CLI prints `Could not connect to
 * the endpoint URL`, the SDK fails with ENOTFOUND). The sandbox's one endpoint does answer, so
 * it answers an error that names that failure and is not retryable, instead of resetting the
 * connection (which clients retry as a transient network error).
 */
function noEndpoint(service: string, region: string): AwsServiceError {
  const host = `${service}.${region}.amazonaws.com`;
  return new AwsServiceError(
    "UnknownEndpoint",
    `Could not connect to the endpoint URL: "https://${host}/": getaddrinfo ENOTFOUND ${host} (${service} has no endpoint in ${region})`,
    400,
  );
}

function inferStyle(req: IncomingMessage): ErrorStyle {
  const contentType = req.headers["content-type"] ?? "";
  if (req.headers["x-amz-target"]) {
    return { kind: "json", version: contentType.endsWith("1.1") ? "1.1" : "1.0" };
  }
  if (contentType.startsWith("application/x-www-form-urlencoded")) return { kind: "query" };
  return { kind: "restXml" };
}

function styleOf(route: Route): ErrorStyle {
  if (route.kind === "json") {
    return { kind: "json", version: route.version, queryErrors: route.queryErrors };
  }
  return route.kind === "query" ? { kind: "query" } : { kind: "restXml", xmlns: route.xmlns };
}

function sendError(res: ServerResponse, style: ErrorStyle, requestId: string, e: AwsServiceError) {
  const fault = e.statusCode >= 500 ? "Receiver" : "Sender";
  if (style.kind === "json") {
    const queryCode = style.queryErrors?.[e.code];
    res.writeHead(e.statusCode, {
      "content-type": `application/x-amz-json-${style.version}`,
      "x-amzn-requestid": requestId,
      "x-amzn-errortype": e.code,
      ...(queryCode ? { "x-amzn-query-error": `${queryCode};${fault}` } : {}),
    });
    res.end(JSON.stringify({ __type: e.code, message: e.message }));
    return;
  }
  const body = {
    Error: { Type: fault, Code: e.code, Message: e.message },
    RequestId: requestId,
  };
  res.writeHead(e.statusCode, { "content-type": "text/xml", "x-amzn-requestid": requestId });
  res.end(xmlDocument("ErrorResponse", body, style.kind === "restXml" ? style.xmlns : undefined));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks);
  return (req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw).toString("utf8");
}

/** Checks the Authorization header as AWS does before routing; returns the scope and the caller. */
function authenticate(
  req: IncomingMessage,
  style: ErrorStyle,
  sts: StsEmulator,
): { service: string; region: string; accessKeyId: string; caller: CallerIdentity } {
  const header = req.headers.authorization;
  if (!header) {
    const code =
      style.kind === "json" ? "MissingAuthenticationTokenException" : "MissingAuthenticationToken";
    throw new AwsServiceError(code, "Request is missing Authentication Token", 403);
  }
  const credential = parseSigV4(header);
  const date = req.headers["x-amz-date"];
  if (
    !credential ||
    typeof date !== "string" ||
    !date.startsWith(credential.date) ||
    !credential.signedHeaders.includes("host") ||
    !credential.signedHeaders.includes("x-amz-date")
  ) {
    throw new AwsServiceError(
      "IncompleteSignature",
      "The request signature does not conform to AWS standards.",
      403,
    );
  }
  const caller = sts.identity(credential.accessKeyId);
  // Temporary credentials count only with their session token (X-Amz-Security-Token).
  if (
    !caller ||
    (caller.sessionToken && req.headers["x-amz-security-token"] !== caller.sessionToken)
  ) {
    const code = style.kind === "json" ? "UnrecognizedClientException" : "InvalidClientTokenId";
    throw new AwsServiceError(code, "The security token included in the request is invalid.", 403);
  }
  if (caller.expiresAt !== undefined && caller.expiresAt <= Date.now()) {
    const code = style.kind === "json" ? "ExpiredTokenException" : "ExpiredToken";
    throw new AwsServiceError(code, "The security token included in the request is expired", 403);
  }
  return {
    service: credential.service,
    region: credential.region,
    accessKeyId: credential.accessKeyId,
    caller,
  };
}

/** The operation a request names, for an access-denied message: the target, the Action or the path. */
function operationOf(req: IncomingMessage, body: string): string {
  const target = req.headers["x-amz-target"];
  if (typeof target === "string") return target.slice(target.lastIndexOf(".") + 1);
  const action = new URLSearchParams(body).get("Action");
  if (action) return action;
  const path = new URL(req.url ?? "/", "http://sandbox").pathname;
  if (/\/healthcheck\/[^/]+\/status$/.test(path)) return "GetHealthCheckStatus";
  if (/\/healthcheck\/[^/]+$/.test(path)) return "GetHealthCheck";
  if (/\/hostedzone\/[^/]+\/rrset$/.test(path))
    return req.method === "POST" ? "ChangeResourceRecordSets" : "ListResourceRecordSets";
  return path.split("/").filter(Boolean).join(":");
}

/** The resource a request names, as the denial's `on resource:` says it. */
function resourceOf(service: string, owner: string, req: IncomingMessage, body: string): string {
  const path = new URL(req.url ?? "/", "http://sandbox").pathname;
  const hc = /\/healthcheck\/([^/]+)/.exec(path)?.[1];
  if (hc) return `arn:aws:route53:::healthcheck/${hc}`;
  const zone = /\/hostedzone\/([^/]+)/.exec(path)?.[1];
  if (zone) return `arn:aws:route53:::hostedzone/${zone}`;
  let fields: Record<string, unknown> = Object.fromEntries(new URLSearchParams(body));
  if (req.headers["x-amz-target"]) {
    try {
      fields = JSON.parse(body || "{}") as Record<string, unknown>;
    } catch {
      fields = {};
    }
  }
  const arn = [fields.EndpointGroupArn, fields.SecretId].find((v) => typeof v === "string");
  if (typeof arn === "string") return arn;
  if (typeof fields.GlobalClusterIdentifier === "string")
    return `arn:aws:rds::${owner}:global-cluster:${fields.GlobalClusterIdentifier}`;
  return `arn:aws:${service}:*:${owner}:*`;
}

/**
 * A call with credentials of another account than the resource's: what AWS answers when no
 * resource-based policy lets that account in (awsJson: AccessDeniedException, 400; awsQuery and
 * restXml: AccessDenied, 403), naming the caller, the action and the resource.
 */
function accessDenied(
  style: ErrorStyle,
  caller: CallerIdentity,
  action: string,
  resource: string,
): AwsServiceError {
  const message = `User: ${caller.arn} is not authorized to perform: ${action} on resource: ${resource} because no resource-based policy allows the ${action} action`;
  return style.kind === "json"
    ? new AwsServiceError("AccessDeniedException", message, 400)
    : new AwsServiceError("AccessDenied", message, 403);
}

async function serveJson(
  route: Extract<Route, { kind: "json" }>,
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
  ctx: RequestContext,
  requestId: string,
) {
  const target = String(req.headers["x-amz-target"] ?? "");
  const dot = target.lastIndexOf(".");
  const prefix = target.slice(0, dot);
  const action = target.slice(dot + 1);
  if (dot < 1 || !action || (route.targetPrefix && prefix !== route.targetPrefix)) {
    throw new AwsServiceError("UnknownOperationException", `Unknown operation ${target}`);
  }
  let input: unknown;
  try {
    input = JSON.parse(body || "{}");
  } catch {
    throw new AwsServiceError("SerializationException", "The request body is not valid JSON.");
  }
  if (typeof input !== "object" || input === null || Array.isArray(input)) {
    throw new AwsServiceError("SerializationException", "The request body must be a JSON object.");
  }
  const output = await route.handler(action, input as Record<string, unknown>, ctx);
  res.writeHead(200, {
    "content-type": `application/x-amz-json-${route.version}`,
    "x-amzn-requestid": requestId,
  });
  res.end(JSON.stringify(output ?? {}));
}

async function serveQuery(
  route: Extract<Route, { kind: "query" }>,
  res: ServerResponse,
  body: string,
  ctx: RequestContext,
  requestId: string,
) {
  const params = Object.fromEntries(new URLSearchParams(body));
  const { Action: action, Version: version } = params;
  if (!action) throw new AwsServiceError("MissingAction", "Missing Action");
  if (version !== route.version) {
    throw new AwsServiceError(
      "InvalidAction",
      `Could not find operation ${action} for version ${version ?? "(none)"}`,
    );
  }
  const result = await route.handler(action, params, ctx);
  const xml = xmlDocument(
    `${action}Response`,
    { [`${action}Result`]: result, ResponseMetadata: { RequestId: requestId } },
    route.xmlns,
  );
  res.writeHead(200, { "content-type": "text/xml", "x-amzn-requestid": requestId });
  res.end(xml);
}

async function serveRestXml(
  route: Extract<Route, { kind: "restXml" }>,
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
  ctx: RequestContext,
  requestId: string,
) {
  const url = new URL(req.url ?? "/", "http://sandbox");
  const out = await route.handler(
    { method: req.method ?? "GET", path: url.pathname, query: url.searchParams, body },
    ctx,
  );
  res.writeHead(out.status ?? 200, { "content-type": "text/xml", "x-amzn-requestid": requestId });
  res.end(xmlDocument(out.root, out.body, route.xmlns));
}

/** Starts every emulator, dynalite and the server; `stop` ends all of them. */
export async function startAwsSandbox(
  options: { accounts?: ResourceAccounts } = {},
): Promise<AwsSandbox> {
  const accounts: Record<string, string | undefined> = options.accounts ?? {};
  const sts = createSts();
  const rds = createRds();
  const cloudwatch = createCloudWatch();
  cloudwatch.setServerlessCapacitySource(rds.capacityHistory);
  const ga = createGlobalAccelerator();
  const secrets = createSecretsManager();
  const route53 = createRoute53();
  const sns = createSns();
  const ssm = createSsm(SANDBOX_REGION);
  const kms = createKms(SANDBOX_REGION);
  const routes = new Map<string, Route>([
    [
      "rds",
      {
        kind: "query",
        version: "2014-10-31",
        xmlns: "http://rds.amazonaws.com/doc/2014-10-31/",
        handler: rds.handler,
      },
    ],
    [
      "sns",
      {
        kind: "query",
        version: "2010-03-31",
        xmlns: "http://sns.amazonaws.com/doc/2010-03-31/",
        handler: sns.handler,
      },
    ],
    [
      "monitoring",
      {
        kind: "json",
        version: "1.0",
        targetPrefix: "GraniteServiceVersion20100801",
        handler: cloudwatch.handler,
        queryErrors: CLOUDWATCH_QUERY_ERRORS,
        query: {
          version: "2010-08-01",
          xmlns: "http://monitoring.amazonaws.com/doc/2010-08-01/",
          handler: cloudwatch.queryHandler,
        },
      },
    ],
    [
      "sts",
      {
        kind: "query",
        version: "2011-06-15",
        xmlns: "https://sts.amazonaws.com/doc/2011-06-15/",
        handler: sts.handler,
      },
    ],
    [
      "globalaccelerator",
      {
        kind: "json",
        version: "1.1",
        targetPrefix: "GlobalAccelerator_V20180706",
        handler: ga.handler,
        regions: [GA_REGION],
      },
    ],
    [
      "secretsmanager",
      { kind: "json", version: "1.1", targetPrefix: "secretsmanager", handler: secrets.handler },
    ],
    ["ssm", { kind: "json", version: "1.1", targetPrefix: "AmazonSSM", handler: ssm.handler }],
    ["kms", { kind: "json", version: "1.1", targetPrefix: "TrentService", handler: kms.handler }],
    [
      "route53",
      {
        kind: "restXml",
        xmlns: "https://route53.amazonaws.com/doc/2013-04-01/",
        handler: route53.handler,
      },
    ],
  ]);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    let style = inferStyle(req);
    try {
      const body = await readBody(req);
      const { service, region, accessKeyId, caller } = authenticate(req, style, sts);
      const route = routes.get(service);
      if (!route) {
        throw new AwsServiceError(
          style.kind === "json" ? "UnknownOperationException" : "InvalidAction",
          `The sandbox does not serve the ${service} service`,
        );
      }
      const query = route.kind === "json" && !req.headers["x-amz-target"] ? route.query : undefined;
      style = query ? { kind: "query" } : styleOf(route);
      const ctx = { region, accessKeyId };
      if (route.kind === "json" && route.regions && !route.regions.includes(region)) {
        throw noEndpoint(service, region);
      }
      const owner = accounts[service];
      if (owner && caller.account !== owner) {
        const action = `${service === "monitoring" ? "cloudwatch" : service}:${operationOf(req, body)}`;
        throw accessDenied(style, caller, action, resourceOf(service, owner, req, body));
      }
      if (query) await serveQuery({ kind: "query", ...query }, res, body, ctx, requestId);
      else if (route.kind === "json") await serveJson(route, req, res, body, ctx, requestId);
      else if (route.kind === "query") await serveQuery(route, res, body, ctx, requestId);
      else await serveRestXml(route, req, res, body, ctx, requestId);
    } catch (e) {
      const error =
        e instanceof AwsServiceError
          ? e
          : new AwsServiceError("InternalFailure", `sandbox: ${(e as Error).message}`, 500);
      sendError(res, style, requestId, error);
    }
  }

  const server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const dynamo = await startDynamo().catch(async (e: unknown) => {
    await new Promise((resolve) => server.close(resolve));
    throw e;
  });

  const env: Record<string, string> = {
    AWS_ACCESS_KEY_ID: SANDBOX_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: SANDBOX_SECRET_ACCESS_KEY,
    AWS_REGION: SANDBOX_REGION,
    AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
    ...Object.fromEntries(
      Object.values(ENDPOINT_ENV).map((suffix) => [`AWS_ENDPOINT_URL_${suffix}`, endpoint]),
    ),
  };

  return {
    endpoint,
    env,
    rds,
    cloudwatch,
    ga,
    secrets,
    route53,
    sns,
    ssm,
    sts,
    kms,
    dynamo: { endpoint: dynamo.endpoint },
    register(service, protocol, handler) {
      if (routes.has(service)) throw new Error(`service ${service} is already served`);
      const targetPrefix = KNOWN_TARGET_PREFIXES[service];
      routes.set(service, {
        kind: "json",
        version: protocol === "json1.0" ? "1.0" : "1.1",
        handler,
        ...(targetPrefix ? { targetPrefix } : {}),
      });
    },
    async stop() {
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
      await dynamo.stop();
    },
  };
}
