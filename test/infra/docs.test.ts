/**
 * What the deploy documentation points at exists: the manifests in config/ send operators to a
 * README step, and that step is there and applies that manifest.
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const readme = readFileSync("README.md", "utf8");

/** The text of the README section under `## <title>`, up to the next `## `. */
function section(title: string): string {
  const start = readme.indexOf(`\n## ${title}\n`);
  if (start < 0) return "";
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** The text of step `n` (`### <n>. ...`) of a section. */
function step(text: string, n: string): string {
  const start = text.search(new RegExp(`\\n### ${n}\\. `));
  if (start < 0) return "";
  const end = text.indexOf("\n### ", start + 1);
  return text.slice(start, end < 0 ? undefined : end);
}

describe("config/ manifests", () => {
  const manifests = readdirSync("config").filter(
    (f) => f.endsWith(".yaml") && !f.startsWith("topology."),
  );

  it("each names the README step that applies it, and that step exists and names the file", () => {
    expect(manifests.sort()).toEqual(["argocd-rbac-cm.yaml", "spoke-readonly-clusterrole.yaml"]);
    for (const file of manifests) {
      const text = readFileSync(`config/${file}`, "utf8");
      expect(text, file).not.toMatch(/DEPLOY\.md/);
      const ref = /see README\.md, "([^"]+)", step (\d+)/.exec(text);
      expect(ref, `${file} points to a README step`).not.toBeNull();
      const body = step(section(ref?.[1] ?? ""), ref?.[2] ?? "");
      expect(body, `${file}: README "${ref?.[1]}" step ${ref?.[2]}`).toContain(`config/${file}`);
    }
  });
});

describe('README "Deploy to AWS"', () => {
  const deploy = section("Deploy to AWS");

  it("tells how to replicate the secrets to every orchestrator region", () => {
    expect(deploy).toContain("replicate-secret-to-regions");
  });

  it("documents the operator policy output", () => {
    expect(deploy).toContain("OperatorPolicyArn");
  });
});
