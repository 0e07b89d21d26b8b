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

const PATTERNS: [RegExp, string][] = [
  [/(authorization\s*[:=]\s*)(bearer|basic|token)?\s*[^\s,;"']+/gi, "$1$2 [REDACTED]"],
  [/\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi, "$1 [REDACTED]"],
  [/(\/\/)[^/\s:@]+:[^/\s@]+@/g, "$1[REDACTED]@"],
  [/\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g, "[REDACTED]"],
  [/\b(ghp|gho|ghs|ghu|github_pat|glpat|xox[abp])[-_][A-Za-z0-9_-]{10,}/g, "[REDACTED]"],
  [/\b(AKIA|ASIA)[A-Z0-9]{16}\b/g, "[REDACTED]"],
  [
    /("?(?:token|password|secret|apiKey|api_key|accessKey|secretAccessKey)"?\s*[:=]\s*"?)[^"\s,}]{4,}/gi,
    "$1[REDACTED]",
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
