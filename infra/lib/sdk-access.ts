/**
 * The AWS API calls each function can make, derived from the code instead of listed by hand, so
 * the IAM grants follow the code as it changes. A command counts for a function when both hold:
 *  - its module survives tree-shaking in the function's bundle (built with the deployed
 *    options), so code the function never reaches grants nothing; and
 *  - one of our own modules in that bundle imports it by name (`XCommand`, or the paginator
 *    `paginateX`), so what the SDK bundles for its own use (credential providers, endpoint
 *    discovery, S3 Express sessions, lib-dynamodb's unused paginators) grants nothing either.
 * Imports that would hide which operations are called (aggregated clients, namespace or dynamic
 * imports, waiters) are refused with a message saying what to write instead.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import ts from "typescript";
import { BUNDLE_OPTIONS } from "./bundling.ts";

/** The repository root: entry points and metafile paths are relative to it. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The IAM service prefix of each SDK client package the functions may use. */
const IAM_PREFIX: Readonly<Record<string, string>> = {
  "@aws-sdk/client-cloudwatch": "cloudwatch",
  "@aws-sdk/client-dynamodb": "dynamodb",
  "@aws-sdk/client-global-accelerator": "globalaccelerator",
  "@aws-sdk/client-kms": "kms",
  "@aws-sdk/client-lambda": "lambda",
  "@aws-sdk/client-rds": "rds",
  "@aws-sdk/client-route-53": "route53",
  "@aws-sdk/client-s3": "s3",
  "@aws-sdk/client-secrets-manager": "secretsmanager",
  "@aws-sdk/client-sfn": "states",
  "@aws-sdk/client-sns": "sns",
  "@aws-sdk/client-ssm": "ssm",
};

const DOCUMENT_CLIENT = "@aws-sdk/lib-dynamodb";

/** lib-dynamodb's document commands and the DynamoDB operation (= IAM action) each sends. */
const DOCUMENT_OPERATIONS: Readonly<Record<string, string>> = {
  Get: "GetItem",
  Put: "PutItem",
  Update: "UpdateItem",
  Delete: "DeleteItem",
  Query: "Query",
  Scan: "Scan",
  BatchGet: "BatchGetItem",
  BatchWrite: "BatchWriteItem",
  TransactGet: "TransactGetItems",
  TransactWrite: "TransactWriteItems",
};

/** A function to derive: its name (the ASL state, or `Trigger`) and entry file. */
export interface FunctionEntry {
  name: string;
  /** Relative to the repository root, e.g. `functions/plan/handler.ts`. */
  entry: string;
}

/** One SDK command a function sends, and where our code imports it. */
export interface SdkCall {
  action: string;
  pkg: string;
  command: string;
  /** Our module that imports it (relative path). */
  module: string;
}

export interface FunctionAccess {
  name: string;
  /** IAM actions, sorted and unique. */
  actions: string[];
  calls: SdkCall[];
  /** Size of the minified bundle (without the compiled-in topology). */
  bundleBytes: number;
}

/** The IAM action an SDK command needs: service prefix from the package, operation from the name. */
export function iamActionOf(pkg: string, command: string): string {
  const operation = command.replace(/Command$/, "");
  if (pkg === DOCUMENT_CLIENT) {
    const op = DOCUMENT_OPERATIONS[operation];
    if (!op)
      throw new Error(
        `${pkg} ${command}: no DynamoDB operation known for it (add it to DOCUMENT_OPERATIONS in infra/lib/sdk-access.ts)`,
      );
    return `dynamodb:${op}`;
  }
  const prefix = IAM_PREFIX[pkg];
  if (!prefix)
    throw new Error(
      `${pkg}: no IAM service prefix known for it (add it to IAM_PREFIX in infra/lib/sdk-access.ts)`,
    );
  const action = `${prefix}:${operation}`;
  return ACTIONS_NAMED_OTHERWISE[action] ?? action;
}

/** Operations whose IAM action has another name (Lambda's Invoke is lambda:InvokeFunction). */
const ACTIONS_NAMED_OTHERWISE: Readonly<Record<string, string>> = {
  "lambda:Invoke": "lambda:InvokeFunction",
};

interface NamedImport {
  pkg: string;
  name: string;
  line: number;
}

/** The value imports our module takes from `@aws-sdk/*`; refuses the forms that hide calls. */
export function sdkImports(module: string, text: string, root = REPO_ROOT): NamedImport[] {
  const source = ts.createSourceFile(module, text, ts.ScriptTarget.Latest, true);
  const found: NamedImport[] = [];
  const at = (node: ts.Node) => source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
  const refuse = (node: ts.Node, why: string): never => {
    throw new Error(
      `${module}:${at(node)}: ${why}; the IAM derivation needs named imports of XClient and XCommand`,
    );
  };
  const visit = (node: ts.Node): void => {
    if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteral(node.arguments[0]) &&
      node.arguments[0].text.startsWith("@aws-sdk/")
    ) {
      refuse(node, `dynamic import of ${node.arguments[0].text}`);
    }
    const declaration =
      ts.isImportDeclaration(node) || ts.isExportDeclaration(node) ? node : undefined;
    const specifier = declaration?.moduleSpecifier;
    if (
      declaration &&
      specifier &&
      ts.isStringLiteral(specifier) &&
      specifier.text.startsWith("@aws-sdk/")
    ) {
      const pkg = specifier.text;
      const names: { name: string; node: ts.Node }[] = [];
      if (ts.isImportDeclaration(declaration)) {
        const clause = declaration.importClause;
        if (clause && !clause.isTypeOnly) {
          if (clause.name) refuse(clause, `default import from ${pkg}`);
          const bindings = clause.namedBindings;
          if (bindings && ts.isNamespaceImport(bindings))
            refuse(bindings, `namespace import of ${pkg}`);
          if (bindings && ts.isNamedImports(bindings)) {
            for (const el of bindings.elements) {
              if (!el.isTypeOnly) names.push({ name: (el.propertyName ?? el.name).text, node: el });
            }
          }
        }
      } else if (!declaration.isTypeOnly) {
        const clause = declaration.exportClause;
        if (!clause) refuse(declaration, `export * from ${pkg}`);
        if (clause && ts.isNamedExports(clause)) {
          for (const el of clause.elements) {
            if (!el.isTypeOnly) names.push({ name: (el.propertyName ?? el.name).text, node: el });
          }
        }
      }
      for (const { name, node: el } of names) {
        if (/^waitUntil|^waitFor/.test(name)) refuse(el, `waiter ${name} from ${pkg}`);
        // A credential provider is not an aggregated client: the AssumeRole it sends is granted
        // from the topology's roles (access.ts, memberGrants), not from the code.
        if (
          pkg !== "@aws-sdk/credential-providers" &&
          !name.endsWith("Client") &&
          existsSync(join(root, "node_modules", pkg, "dist-es", `${name}.js`))
        ) {
          refuse(el, `aggregated client ${name} from ${pkg}`);
        }
        found.push({ pkg, name, line: at(el) });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The command an imported name stands for (`XCommand`, or `paginateX` -> `XCommand`). */
function commandOf(name: string): string | undefined {
  if (/^\w+Command$/.test(name)) return name;
  const page = /^paginate(\w+)$/.exec(name);
  return page ? `${page[1]}Command` : undefined;
}

/** `@aws-sdk/<pkg>|<Name>Command` for a bundled SDK command module, else undefined. */
function bundledCommand(input: string): string | undefined {
  const at = input.lastIndexOf("node_modules/");
  if (at < 0) return undefined;
  const m = /^(@aws-sdk\/[^/]+)\/(?:.+\/)?commands\/(\w+Command)\.[cm]?js$/.exec(
    input.slice(at + "node_modules/".length),
  );
  return m ? `${m[1]}|${m[2]}` : undefined;
}

/**
 * Bundles every entry with BUNDLE_OPTIONS (one esbuild run, nothing written) and derives each
 * function's SDK calls and IAM actions from the bundle's metafile and our own modules' imports.
 */
export async function deriveSdkAccess(
  entries: FunctionEntry[],
  root = REPO_ROOT,
): Promise<Map<string, FunctionAccess>> {
  const result = await build({
    ...BUNDLE_OPTIONS,
    mainFields: [...BUNDLE_OPTIONS.mainFields],
    entryPoints: entries.map((e) => ({ in: e.entry, out: e.name })),
    outdir: "derived",
    write: false,
    metafile: true,
    logLevel: "silent",
    absWorkingDir: root,
  });
  const byEntry = new Map(entries.map((e) => [e.entry, e.name]));
  const imports = new Map<string, NamedImport[]>();
  const access = new Map<string, FunctionAccess>();
  for (const output of Object.values(result.metafile.outputs)) {
    const name = output.entryPoint ? byEntry.get(output.entryPoint) : undefined;
    if (!name) continue;
    const inputs = Object.entries(output.inputs)
      .filter(([, i]) => i.bytesInOutput > 0)
      .map(([path]) => path);
    const bundled = new Set(inputs.map(bundledCommand).filter((c) => c !== undefined));
    const calls = new Map<string, SdkCall>();
    for (const module of inputs.filter((p) => !p.includes("node_modules/")).sort()) {
      let named = imports.get(module);
      if (!named) {
        named = sdkImports(module, readFileSync(join(root, module), "utf8"), root);
        imports.set(module, named);
      }
      for (const { pkg, name: imported } of named) {
        const command = commandOf(imported);
        if (!command || !bundled.has(`${pkg}|${command}`)) continue;
        const key = `${pkg}|${command}`;
        if (!calls.has(key))
          calls.set(key, { action: iamActionOf(pkg, command), pkg, command, module });
      }
    }
    const list = [...calls.values()];
    access.set(name, {
      name,
      actions: [...new Set(list.map((c) => c.action))].sort(),
      calls: list,
      bundleBytes: output.bytes,
    });
  }
  const missing = entries.filter((e) => !access.has(e.name));
  if (missing.length) throw new Error(`no bundle for ${missing.map((e) => e.entry).join(", ")}`);
  return access;
}
