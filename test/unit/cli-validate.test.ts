import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "gf-cli-"));
const EXAMPLE = "config/topology.example.yaml";

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ["cli/bin.js", ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

describe("gitops-failover validate-config / validate-input", () => {
  it("exits 0 for the example topology and a valid input", async () => {
    const config = await cli("validate-config", EXAMPLE);
    expect(config).toMatchObject({ code: 0, stderr: "" });
    expect(config.stdout).toContain("valid (3 regions: us-west-2, us-east-2, eu-west-1)");
    const input = file(
      "ok.json",
      JSON.stringify({ targetRegion: "us-east-2", reason: "usw2 down", dryRun: true }),
    );
    const result = await cli("validate-input", input, "--config", EXAMPLE);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("failover to us-east-2, graceful, dry run");
  });

  it.each([
    [
      "unknown region",
      { targetRegion: "ap-south-1", reason: "drill" },
      /targetRegion: "ap-south-1" is not in the topology/,
    ],
    [
      "a URL for a region",
      { targetRegion: "https://x.example.com", reason: "drill" },
      /targetRegion: must be an AWS region name/,
    ],
    [
      "an ARN for a region",
      { targetRegion: "arn:aws:rds:us-east-2:1:cluster:a", reason: "drill" },
      /targetRegion: must be an AWS region name/,
    ],
    [
      "an unknown field",
      { targetRegion: "us-east-2", reason: "drill", endpoint: "x" },
      /\(root\): Unrecognized key: "endpoint"/,
    ],
    [
      "a wrong type",
      { targetRegion: "us-east-2", reason: "drill", dryRun: "yes" },
      /dryRun: Invalid input: expected boolean/,
    ],
    ["a missing reason", { targetRegion: "us-east-2" }, /reason: /],
  ])("exits 2 with one line per problem for %s", async (_name, input, message) => {
    const result = await cli(
      "validate-input",
      file("bad.json", JSON.stringify(input)),
      "--config",
      EXAMPLE,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it.each([
    ["an empty file", "", /file is empty/],
    ["a non-YAML file", "regions: [unclosed\n", /bad\.yaml:\d+:\d+: /],
    ["a huge file", `# ${"x".repeat(1024 * 1024)}\n`, /larger than 1048576 bytes/],
    ["a missing file", null, /cannot read the file/],
    ["a directory", undefined, /not a file/],
  ])("exits 2 for %s as a topology, without a stack trace", async (_name, content, message) => {
    const path =
      content === undefined
        ? dir
        : content === null
          ? join(dir, "absent.yaml")
          : file("bad.yaml", content);
    const result = await cli("validate-config", path);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  const example = readFileSync(EXAMPLE, "utf8");
  const bomb = [
    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
  ].join("\n");

  it.each([
    [
      "a region named __proto__",
      example.replace(/^ {2}us-east-2:$/m, "  __proto__:"),
      /^topology\.yaml is invalid\n {2}regions\.__proto__: must be an AWS region name/,
    ],
    [
      "a region named constructor",
      example.replace(/^ {2}us-east-2:$/m, "  constructor:"),
      /regions\.constructor: must be an AWS region name/,
    ],
    [
      "an http:// Git URL without insecure: true",
      example.replace("url: https://git.example.com", "url: http://git.example.com"),
      /git\.url: must be an https:\/\/ URL: the Git token would otherwise go out in plain text; .*set insecure: true/,
    ],
    [
      "an http:// Argo CD hub without insecure: true",
      example.replace("url: https://argocd.hub", "url: http://argocd.hub"),
      /argocd\.hubs\.0\.url: must be an https:\/\/ URL: the Argo CD token/,
    ],
    [
      "a retarget file inside .git/",
      example.replace("- file: envs/production/values.yaml", "- file: .git/config"),
      /git\.retarget\.0\.file: may not be inside \.git\//,
    ],
    [
      "a branch that reads as an option",
      example.replace("branch: main", "branch: --upload-pack=x"),
      /git\.branch: is not a valid Git branch name: may not begin with '-'/,
    ],
    [
      "an author name that forges the author line",
      example.replace("name: gitops-failover\n", 'name: "ops <evil@example.com>"\n'),
      /git\.author\.name: must be one line without '<' or '>'/,
    ],
    [
      "an alias bomb",
      `${bomb}\n${example}`,
      /^topology\.yaml:[234]:\d+: alias \*[abc]: Excessive alias count .*expand to 100 nodes/,
    ],
  ])("exits 2 naming the problem for %s in a topology", async (_name, content, message) => {
    const result = await cli("validate-config", file("topology.yaml", content));

    expect(result.code).toBe(2);
    expect(result.stderr.replace(/^.*\/topology\.yaml/, "topology.yaml")).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it.each([
    ["an alias bomb", `${bomb}\ntargetRegion: us-east-2\n`, /^in\.yaml:[234]:\d+: alias \*[abc]: /],
    [
      "an alias without its anchor",
      "targetRegion: *east\nreason: x\n",
      /^in\.yaml:1:15: alias \*east: Unresolved alias/,
    ],
    [
      "a __proto__ key",
      '{"targetRegion": "us-east-2", "reason": "drill", "__proto__": {"dryRun": false}}',
      /\(root\): Unrecognized key: "__proto__"/,
    ],
  ])("exits 2 naming the file and line for %s in an input", async (_name, content, message) => {
    const result = await cli("validate-input", file("in.yaml", content), "--config", EXAMPLE);

    expect(result.code).toBe(2);
    expect(result.stderr.replace(/^.*\/in\.yaml/, "in.yaml")).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it("exits 2 for an input that is not JSON or YAML", async () => {
    const result = await cli(
      "validate-input",
      file("in.json", '{"targetRegion": '),
      "--config",
      EXAMPLE,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/in\.json:\d+:\d+: /);
  });

  it("exits 2 on usage errors", async () => {
    expect((await cli("validate-input", "x.json")).code).toBe(2);
    expect((await cli("no-such-command")).code).toBe(2);
  });
});
