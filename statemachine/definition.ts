/**
 * Loading the ASL with its `${Placeholder}` substitutions: used by CDK (as
 * definitionSubstitutions), by the local runner and by the tests, so all three agree that
 * every placeholder is filled and no substitution is left unused.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ASL_PATH = fileURLToPath(new URL("./failover.asl.json", import.meta.url));

/** The ASL text exactly as committed. */
export function aslText(): string {
  return readFileSync(ASL_PATH, "utf8");
}

/** Names of the `${...}` placeholders in an ASL text, sorted and unique. */
export function placeholders(text: string): string[] {
  return [...new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1] ?? ""))].sort();
}

/** Substitutes every placeholder; throws naming any missing or unused one. */
export function substitute(text: string, values: Record<string, string>): string {
  const wanted = placeholders(text);
  const missing = wanted.filter((p) => !(p in values));
  const unused = Object.keys(values).filter((k) => !wanted.includes(k));
  if (missing.length || unused.length) {
    throw new Error(
      `ASL substitutions do not match: missing ${missing.join(", ") || "none"}; unused ${unused.join(", ") || "none"}`,
    );
  }
  return text.replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, name: string) => values[name] ?? "");
}
