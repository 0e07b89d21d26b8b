/**
 * Redaction: every string that leaves a function (errors, logs, audit events, reports) passes
 * through here. Secret values fetched at run time are registered and replaced wherever they
 * appear; token-shaped strings are replaced even when we never saw the secret itself.
 */
const known = new Set<string>();

/** Remembers a secret value so that it is redacted wherever it later appears. */
export function registerSecret(value: string): void {
  if (value.length >= 6) known.add(value);
}

/** Characters of a token as services print them (base64, base64url, hex, JWT). */
const TOKEN_CHARS = "A-Za-z0-9._~+/=-";

/**
 * Token shapes, each anchored on a name or a prefix that says "secret": a bare hex string is
 * never redacted, because commit SHAs and audit hashes must stay readable in reports.
 */
const PATTERNS: [RegExp, string][] = [
  [
    /-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)/g,
    "-----BEGIN $1PRIVATE KEY----- [REDACTED]",
  ],
  [/(authorization\s*[:=]\s*)(bearer|basic|token)?\s*[^\s,;"']+/gi, "$1$2 [REDACTED]"],
  // A credential after "Bearer"/"Basic" has a digit or is long; "Basic authentication" is prose.
  [
    new RegExp(
      `\\b(bearer|basic)(\\s*[:=]?\\s*)(?=[${TOKEN_CHARS}]*\\d|[${TOKEN_CHARS}]{24})[${TOKEN_CHARS}]{8,}`,
      "gi",
    ),
    "$1$2[REDACTED]",
  ],
  [/(\/\/)[^/\s:@]+:[^/\s@]+@/g, "$1[REDACTED]@"],
  [/\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, "[REDACTED]"],
  [/\b(ghp|gho|ghs|ghu|github_pat|glpat|xox[abp])[-_][A-Za-z0-9_-]{10,}/g, "[REDACTED]"],
  [/\b(AKIA|ASIA)[A-Z0-9]{16}\b/g, "[REDACTED]"],
  // The sandbox Argo CD's session tokens (and its cookie), as a real hub's would be named.
  [/\bargocd-session-[0-9a-f]{16,}/g, "[REDACTED]"],
  // Not after ":" — `:secret:name` inside a Secrets Manager ARN names the secret, it is not one.
  [
    /(?<!:)("?(?:[a-z0-9_.-]*token|password|passwd|secret|client_secret|x-api-key|api[-_]?key|access[-_]?key|secret[-_]?access[-_]?key|aws_secret_access_key|aws_session_token|private[-_]?key)"?\s*[:=]\s*"?)[^"\s,;}]{4,}/gi,
    "$1[REDACTED]",
  ],
  // `token <value>` in prose ("rejected token abc123..."): only a value with a digit and a
  // letter, so "token was rejected" and "token from tokenSecretArn" stay as they are.
  [
    new RegExp(
      `\\b(token|password|secret)(\\s+)(?=[${TOKEN_CHARS}]*\\d)(?=[${TOKEN_CHARS}]*[A-Za-z])[${TOKEN_CHARS}]{8,}`,
      "gi",
    ),
    "$1$2[REDACTED]",
  ],
];

/** Returns the string with secrets and token-shaped substrings replaced by `[REDACTED]`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of known) out = out.split(secret).join("[REDACTED]");
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** Deep-redacts a JSON-like value (strings inside objects and arrays). */
export function redactDeep<T>(value: T): T {
  if (typeof value === "string") return redact(value) as T;
  if (Array.isArray(value)) return value.map(redactDeep) as T;
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v)])) as T;
  }
  return value;
}
