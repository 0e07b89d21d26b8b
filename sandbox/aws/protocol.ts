/**
 * What every AWS emulator in the sandbox shares: the error a handler throws (the server renders
 * it in its protocol's real error shape), the handler signatures per protocol, SigV4
 * Authorization parsing, an XML writer for awsQuery / restXml answers and required-parameter
 * checks with the messages AWS gives. Emulators stay protocol-agnostic apart from the shape of
 * what they return.
 */

/** The account every sandbox ARN belongs to (emulators, topology, local state machine). */
export const SANDBOX_ACCOUNT = "000000000000";

/** The sandbox's home region: AWS_REGION of the functions, the state machine's region. */
export const SANDBOX_REGION = "us-east-1";

/**
 * A service error as AWS sends it: `code` is the wire error code (`__type`, `<Code>`), so the
 * real SDK clients raise their modeled exception for it.
 */
export class AwsServiceError extends Error {
  readonly code: string;
  readonly statusCode: number;

  constructor(code: string, message: string, statusCode = 400) {
    super(message);
    this.name = code;
    this.code = code;
    this.statusCode = statusCode;
  }
}

/** Per-request facts a handler may depend on: the SigV4 credential scope's region. */
export interface RequestContext {
  region: string;
  /** The access key id the request was signed with (STS tells whose it is). */
  accessKeyId?: string;
}

/** An awsJson1_0 / awsJson1_1 operation: `action` is the X-Amz-Target operation name. */
export type JsonServiceHandler = (
  action: string,
  input: Record<string, unknown>,
  ctx: RequestContext,
) => unknown | Promise<unknown>;

/** A value the XML writer can render; an array renders its parent element once per item. */
export type XmlValue = string | number | boolean | Date | undefined | XmlObject | XmlValue[];

/** An XML element's children by element name. */
export interface XmlObject {
  [element: string]: XmlValue;
}

/** An awsQuery operation: flat form parameters in, the `<Action>Result` children out. */
export type QueryServiceHandler = (
  action: string,
  params: Record<string, string>,
  ctx: RequestContext,
) => XmlObject | Promise<XmlObject>;

/** A restXml request as the service sees it. */
export interface RestRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: string;
}

/** A restXml answer: the root element's name and children, and the HTTP status. */
export interface RestResponse {
  status?: number;
  root: string;
  body: XmlObject;
}

/** A restXml service (one per API version path). */
export type RestXmlServiceHandler = (
  req: RestRequest,
  ctx: RequestContext,
) => RestResponse | Promise<RestResponse>;

/** The parts of a SigV4 `Authorization` header the sandbox checks. */
export interface SigV4Credential {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
}

const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=([A-Za-z0-9]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=[0-9a-f]{64}$/;

/** Parses a SigV4 Authorization header; undefined when it is not well-formed. */
export function parseSigV4(header: string): SigV4Credential | undefined {
  const m = SIGV4.exec(header);
  if (!m) return undefined;
  const [, accessKeyId = "", date = "", region = "", service = "", signed = ""] = m;
  return { accessKeyId, date, region, service, signedHeaders: signed.split(";") };
}

function escapeXml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

function renderValue(value: Exclude<XmlValue, undefined | XmlValue[]>): string {
  if (value instanceof Date) return value.toISOString();
  if (typeof value === "object") return renderChildren(value);
  return escapeXml(String(value));
}

function renderChildren(obj: XmlObject): string {
  let out = "";
  for (const [name, value] of Object.entries(obj)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === undefined || Array.isArray(item)) continue;
      out += `<${name}>${renderValue(item)}</${name}>`;
    }
  }
  return out;
}

/** Renders a whole XML document with `root` as its element. */
export function xmlDocument(root: string, body: XmlObject, xmlns?: string): string {
  const ns = xmlns ? ` xmlns="${escapeXml(xmlns)}"` : "";
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root}${ns}>${renderChildren(body)}</${root}>`;
}

function lowerFirst(key: string): string {
  return key.charAt(0).toLowerCase() + key.slice(1);
}

/** The error JSON (Coral) services answer for a missing required member. */
function coralMissing(key: string): AwsServiceError {
  return new AwsServiceError(
    "ValidationException",
    `1 validation error detected: Value null at '${lowerFirst(key)}' failed to satisfy constraint: Member must not be null`,
  );
}

/** The error awsQuery services answer for a missing required parameter. */
export function queryMissing(key: string): AwsServiceError {
  return new AwsServiceError("MissingParameter", `The request must contain the parameter ${key}`);
}

/** Reads a required non-empty string member, throwing `missing(key)` otherwise. */
export function requireString(
  input: Record<string, unknown>,
  key: string,
  missing: (key: string) => AwsServiceError = coralMissing,
): string {
  const v = input[key];
  if (typeof v !== "string" || v === "") throw missing(key);
  return v;
}

/** Reads an optional string member (a wrong type is a validation error, as in AWS). */
export function optionalString(input: Record<string, unknown>, key: string): string | undefined {
  const v = input[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") {
    throw new AwsServiceError("SerializationException", `${key} must be a string`);
  }
  return v;
}

/**
 * awsQuery form parameters as the nested input an awsJson handler takes: `A.member.1.B=x`
 * becomes `{A: [{B: "x"}]}` (values stay strings; the service converts its numbers and times).
 */
export function queryInput(params: Record<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(params)) {
    if (key === "Action" || key === "Version") continue;
    const path = key.split(".");
    let node: Record<string, unknown> | unknown[] = root;
    for (let i = 0; i < path.length; i++) {
      const part = path[i] as string;
      const isList = part === "member" && /^\d+$/.test(path[i + 1] ?? "");
      const slot: string | number = Array.isArray(node) ? Number(part) - 1 : part;
      if (isList) continue;
      const last = i === path.length - 1;
      const nextIsList = path[i + 1] === "member";
      const container = node as Record<string | number, unknown>;
      if (last) container[slot] = value;
      else {
        container[slot] ??= nextIsList ? [] : {};
        node = container[slot] as Record<string, unknown> | unknown[];
      }
    }
  }
  return root;
}

/** An awsJson-shaped answer as awsQuery XML: each list becomes `<member>` elements. */
export function queryOutput(value: unknown, timestampKeys: Set<string>, key = ""): XmlValue {
  if (Array.isArray(value)) {
    return { member: value.map((v) => queryOutput(v, timestampKeys, key)) as XmlValue[] };
  }
  if (typeof value === "number" && timestampKeys.has(key)) return new Date(value * 1000);
  if (typeof value === "object" && value !== null && !(value instanceof Date)) {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, queryOutput(v, timestampKeys, k)]),
    );
  }
  return value as XmlValue;
}

/** The region part of an ARN (`arn:aws:svc:<region>:...`). */
export function regionOfArn(arn: string): string | undefined {
  return arn.split(":")[3] || undefined;
}
