/**
 * Validation against an OpenAPI 2.0 document's definitions with ajv, every object schema closed
 * (additionalProperties: false unless the definition says otherwise), so that a field the real
 * server's types do not have is a failure, not something the validator lets through.
 */
import { readFileSync } from "node:fs";
import { Ajv, type ValidateFunction } from "ajv";

/** An OpenAPI 2.0 document: the parts the contract tests read. */
export interface OpenApi {
  definitions: Record<string, Record<string, unknown>>;
  paths: Record<
    string,
    Record<string, { responses: Record<string, { schema?: { $ref: string } }> }>
  >;
}

function closed(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closed);
  if (typeof schema !== "object" || schema === null) return schema;
  const out = Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, closed(v)]));
  if (out.properties && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

/** Loads a document; `check(ref, value)` lists what in `value` breaks the definition `ref`. */
export function openApi(file: string): {
  doc: OpenApi;
  check(ref: string, value: unknown): string[];
} {
  const doc = JSON.parse(readFileSync(file, "utf8")) as OpenApi;
  const definitions = closed(doc.definitions);
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const compiled = new Map<string, ValidateFunction>();
  return {
    doc,
    check(ref, value) {
      let validate = compiled.get(ref);
      if (!validate) {
        validate = ajv.compile({ definitions, $ref: ref });
        compiled.set(ref, validate);
      }
      if (validate(value)) return [];
      return (validate.errors ?? []).map((e) => {
        const extra =
          e.params && "additionalProperty" in e.params ? ` "${e.params.additionalProperty}"` : "";
        return `${ref}: ${e.instancePath || "/"} ${e.message}${extra}`;
      });
    },
  };
}
