import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import {
  loadTopology,
  parseDocumentText,
  parseInput,
  parseTopology,
  renderEdit,
} from "../../functions/lib/config.ts";
import { ConfigError, InputValidationError } from "../../functions/lib/errors.ts";

const EXAMPLE = "config/topology.example.yaml";
const example = () =>
  parse(readFileSync(EXAMPLE, "utf8")) as Record<string, unknown> & {
    regions: Record<string, Record<string, unknown>>;
  };

function problems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError || e instanceof InputValidationError)
      return e.details.length ? e.details : [e.message];
    throw e;
  }
  return [];
}

describe("topology schema", () => {
  it("accepts the example with three regions and fills defaults", () => {
    const t = loadTopology(EXAMPLE);
    expect(Object.keys(t.regions)).toEqual(["us-west-2", "us-east-2", "eu-west-1"]);
    expect(t.argocd.hubs.map((h) => h.name)).toEqual(["hub-primary", "hub-standby"]);
    expect(t.traffic.stages).toEqual([100]);
  });

  it("names the path of each problem", () => {
    const t = example();
    t.regions["us-east-2"] = { ...t.regions["us-east-2"], priority: "high", surprise: true };
    (t as unknown as { git: Record<string, unknown> }).git.credentialsSecretArn = "my-token-value";
    const found = problems(() => parseTopology(t));
    expect(found).toContainEqual(expect.stringMatching(/^regions\.us-east-2\.priority: /));
    expect(found).toContainEqual(
      expect.stringMatching(/^regions\.us-east-2: Unrecognized key: "surprise"/),
    );
    expect(found).toContainEqual(
      expect.stringMatching(
        /^git\.credentialsSecretArn: must be a complete Secrets Manager secret ARN/,
      ),
    );
  });

  it("refuses a secret ARN without its suffix: an IAM grant on it would not match the secret", () => {
    const t = example();
    (t as unknown as { git: Record<string, unknown> }).git.credentialsSecretArn =
      "arn:aws:secretsmanager:us-west-2:111122223333:secret:gitops-failover/git";
    expect(problems(() => parseTopology(t))).toEqual([
      expect.stringMatching(/^git\.credentialsSecretArn: .*6-character suffix/),
    ]);
  });

  it("refuses deadlines that cannot fit in the execution's timeout", () => {
    const t = example();
    (t as unknown as { timeouts: Record<string, number> }).timeouts = {
      approvalSeconds: 3600,
      argoSyncSeconds: 3600,
      auroraSeconds: 600,
      trafficVerifySeconds: 300,
    };
    expect(problems(() => parseTopology(t))).toEqual([
      expect.stringMatching(/^timeouts: .* add up to 8100s, over the execution's 7200s limit/),
    ]);
  });

  it("refuses a region key that is not a region name, and credentials in URLs", () => {
    const t = example();
    t.regions["https://evil.example.com"] = t.regions["eu-west-1"] ?? {};
    (t as unknown as { git: Record<string, unknown> }).git.url =
      "https://user:hunter2@git.example.com/x.git";
    const found = problems(() => parseTopology(t)).join("\n");
    expect(found).toMatch(/regions.*must be an AWS region name/);
    expect(found).toMatch(/git\.url: must not embed credentials/);
    expect(found).not.toContain("hunter2");
  });

  it("requires what the traffic mode needs", () => {
    const t = example();
    (t as unknown as { traffic: Record<string, unknown> }).traffic = { mode: "route53" };
    const found = problems(() => parseTopology(t));
    expect(found).toContain("traffic.hostedZoneId: is required when traffic.mode is route53");
    expect(found).toContain(
      "regions.us-west-2.route53.setIdentifier: is required when traffic.mode is route53",
    );
  });

  it("refuses retarget edits that cannot tell regions apart, and paths escaping the repo", () => {
    const t = example();
    (t as unknown as { git: Record<string, unknown> }).git.retarget = [
      { file: "../etc/passwd", path: "a.b", value: "x" },
    ];
    const found = problems(() => parseTopology(t)).join("\n");
    expect(found).toMatch(/git\.retarget\.0\.file: must be a relative path inside the repository/);
    expect(found).toMatch(/git\.retarget: no edit mentions \{\{targetRegion\}\}/);
  });

  it("accepts one spelling per retarget file: no './', '.', '//' or trailing '/'", () => {
    const t = example();
    const git = (t as unknown as { git: { retarget: Record<string, unknown>[] } }).git;
    const edit = git.retarget[0] ?? {};
    git.retarget = ["./values.yaml", "envs//values.yaml", "envs/./values.yaml", "envs/", "."].map(
      (file) => ({ ...edit, file }),
    );

    const found = problems(() => parseTopology(t));

    expect(found).toEqual(
      [0, 1, 2, 3, 4].map(
        (i) =>
          `git.retarget.${i}.file: must name the file one way: no './' or '.' segments, '//' or trailing '/' (envs/prod/values.yaml)`,
      ),
    );
    git.retarget = [{ ...edit, file: "envs/production/values.yaml" }];
    expect(problems(() => parseTopology(t))).toEqual([]);
  });

  it("refuses empty, malformed, duplicate-key and oversized documents with a located message", () => {
    expect(problems(() => parseDocumentText("  \n", "t.yaml"))).toEqual(["t.yaml: file is empty"]);
    expect(problems(() => parseDocumentText("a: [1, 2", "t.yaml"))[0]).toMatch(
      /^t\.yaml:\d+:\d+: /,
    );
    expect(problems(() => parseDocumentText("a: 1\na: 2\n", "t.yaml"))[0]).toMatch(
      /^t\.yaml:2:1: .*unique/i,
    );
    expect(problems(() => parseDocumentText("x".repeat(1024 * 1024 + 1), "big.yaml"))[0]).toMatch(
      /larger than/,
    );
  });

  it.each([
    ["..", "release..2026", "may not contain '..'"],
    ["a leading '-'", "-delete", "may not begin with '-'"],
    ["a full ref", "refs/heads/main", "must be the short branch name"],
    ["HEAD", "HEAD", "must be the short branch name"],
    ["a reflog expression", "main@{1}", "may not contain '@{'"],
    ["a lock file", "main.lock", "end with '.lock'"],
    ["a hidden component", "team/.hidden", "begin with '.'"],
    ["a trailing '/'", "main/", "may not begin or end with '/'"],
    ["a trailing '.'", "main.", "may not end with '.'"],
    ["a newline", "main\nx", "may not contain spaces, control characters"],
    ["a revision operator", "main^2", "any of ~ ^ : ? * [ \\"],
  ])("refuses a git.branch with %s (git check-ref-format --branch)", (_what, branch, message) => {
    const t = example();
    (t as unknown as { git: Record<string, unknown> }).git.branch = branch;

    const found = problems(() => parseTopology(t));

    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^git\.branch: is not a valid Git branch name: /);
    expect(found[0]).toContain(message);
  });

  it("accepts ordinary branch names", () => {
    for (const branch of ["main", "release/2026-q4", "env/prod.v2", "hotfix-1"]) {
      const t = example();
      (t as unknown as { git: Record<string, unknown> }).git.branch = branch;
      expect(
        problems(() => parseTopology(t)),
        branch,
      ).toEqual([]);
    }
  });

  it("refuses an author name or email that could forge the commit's author line", () => {
    const t = example();
    const git = (t as unknown as { git: Record<string, unknown> }).git;
    git.author = { name: "ops\nCommitter: mallory", email: "ops@example.com" };
    expect(problems(() => parseTopology(t))).toEqual([
      expect.stringMatching(/^git\.author\.name: must be one line without '<' or '>'/),
    ]);
    git.author = { name: "ops <mallory@evil.example>", email: "ops@example.com>" };
    expect(problems(() => parseTopology(t))).toEqual([
      expect.stringMatching(/^git\.author\.name: must be one line without '<' or '>'/),
      expect.stringMatching(/^git\.author\.email: /),
    ]);
    git.author = { name: "ops", email: "ops@example.com\nx: y" };
    expect(problems(() => parseTopology(t))).toEqual([
      expect.stringMatching(/^git\.author\.email: /),
    ]);
  });

  it.each(["__proto__", "constructor", "prototype"])(
    "refuses a region named %s in YAML and JSON instead of dropping it",
    (key) => {
      const yaml = readFileSync(EXAMPLE, "utf8").replace(/^ {2}us-east-2:$/m, `  ${key}:`);
      const json = JSON.stringify(parse(yaml));

      for (const [text, source] of [
        [yaml, "t.yaml"],
        [json, "t.json"],
      ] as const) {
        const found = problems(() => parseTopology(parseDocumentText(text, source), source));
        expect(found, source).toContain(
          `regions.${key}: must be an AWS region name such as us-east-2 (not a URL or an ARN)`,
        );
      }
    },
  );

  it("requires https:// for Git and Argo CD unless that endpoint says insecure: true; spokes always", () => {
    const t = example() as unknown as {
      git: Record<string, unknown>;
      argocd: { hubs: Record<string, unknown>[] };
      regions: Record<string, { spokes: Record<string, unknown>[] }>;
    };
    t.git.url = "http://git.example.com/platform/payments-gitops.git";
    const hub = t.argocd.hubs[1] as Record<string, unknown>;
    hub.url = "http://argocd-standby.hub.example.com";
    const spoke = t.regions["us-east-2"]?.spokes[0] as Record<string, unknown>;
    spoke.apiServer = "http://10.0.0.1:6443";

    expect(problems(() => parseTopology(t))).toEqual([
      "git.url: must be an https:// URL: the Git token would otherwise go out in plain text; for a lab endpoint that cannot do TLS, set insecure: true next to this url",
      "argocd.hubs.1.url: must be an https:// URL: the Argo CD token would otherwise go out in plain text; for a lab endpoint that cannot do TLS, set insecure: true next to this url",
      "regions.us-east-2.spokes.0.apiServer: must be an https:// URL: the spoke's token would otherwise go out in plain text",
    ]);
    t.git.insecure = true;
    hub.insecure = true;
    spoke.apiServer = "https://10.0.0.1:6443";
    const accepted = parseTopology(t);
    expect(accepted.git).toMatchObject({ url: t.git.url, insecure: true });
    expect(accepted.argocd.hubs.map((h) => h.insecure)).toEqual([false, true]);
  });

  it("takes an optional list of approvers (IAM principal ARNs) and refuses anything else", () => {
    const t = example() as Record<string, unknown>;
    const jane = "arn:aws:iam::111122223333:user/jane";
    const session = "arn:aws:sts::111122223333:assumed-role/sre/jane@example.com";

    expect(parseTopology(t).approvers).toBeUndefined();
    expect(parseTopology({ ...t, approvers: [jane, session] }).approvers).toEqual([jane, session]);
    expect(problems(() => parseTopology({ ...t, approvers: ["jane", jane] }))).toEqual([
      "approvers.0: must be an IAM principal ARN such as arn:aws:iam::111122223333:user/jane",
    ]);
    expect(problems(() => parseTopology({ ...t, approvers: [] }))).toEqual([
      "approvers: must name at least one principal (or leave approvers out)",
    ]);
  });

  it.each([".git/config", "apps/.git/hooks/post-checkout", ".GIT/config"])(
    "refuses a retarget file inside .git/: %s",
    (file) => {
      const t = example();
      const git = (t as unknown as { git: { retarget: Record<string, unknown>[] } }).git;
      git.retarget = [{ ...git.retarget[0], file }];

      expect(problems(() => parseTopology(t))).toEqual([
        "git.retarget.0.file: may not be inside .git/: that is the repository's own machinery, not a tracked file",
      ]);
    },
  );

  it("refuses an alias bomb and an alias without its anchor, naming the file and the alias's line", () => {
    const laughs = [
      'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
      ..."bcdefgh".split("").map((k, i) => {
        const prev = "abcdefgh"[i];
        return `${k}: &${k} [${Array(9).fill(`*${prev}`).join(", ")}]`;
      }),
    ].join("\n");

    const [bomb] = problems(() => parseDocumentText(laughs, "bomb.yaml"));
    const [dangling] = problems(() => parseDocumentText("a: 1\nb: *nowhere\n", "d.yaml"));

    expect(bomb).toMatch(
      /^bomb\.yaml:[2-8]:\d+: alias \*[a-g]: Excessive alias count .*; aliases may expand to 100 nodes in all: write the values out$/,
    );
    expect(dangling).toBe(
      "d.yaml:2:4: alias *nowhere: Unresolved alias (the anchor must be set before the alias): nowhere",
    );
    expect(parseDocumentText("a: &x {k: 1}\nb: *x\n", "ok.yaml")).toEqual({
      a: { k: 1 },
      b: { k: 1 },
    });
  });

  it("renders {{targetRegion}} in edit paths and values", () => {
    expect(
      renderEdit(
        { file: "v.yaml", path: "regions.{{targetRegion}}.mode", value: "{{targetRegion}}" },
        "eu-west-1",
      ),
    ).toEqual({
      file: "v.yaml",
      path: "regions.eu-west-1.mode",
      value: "eu-west-1",
    });
  });
});

describe("execution input schema", () => {
  const topology = loadTopology(EXAMPLE);

  it("accepts the console input and fills defaults", () => {
    expect(parseInput({ targetRegion: "us-east-2", reason: "usw2 is down" }, topology)).toEqual({
      targetRegion: "us-east-2",
      reason: "usw2 is down",
      mode: "graceful",
      dryRun: false,
      allowDataLoss: false,
      requestedBy: "console",
      requireApproval: false,
    });
  });

  it("refuses unknown regions, URLs and ARNs where a region belongs, unknown fields, wrong types, missing reason", () => {
    expect(
      problems(() => parseInput({ targetRegion: "ap-south-1", reason: "drill" }, topology)),
    ).toEqual([
      'targetRegion: "ap-south-1" is not in the topology (known: us-west-2, us-east-2, eu-west-1)',
    ]);
    const found = problems(() =>
      parseInput(
        { targetRegion: "arn:aws:rds:us-east-2:1:cluster:x", dryRun: "yes", endpoint: "https://x" },
        topology,
      ),
    );
    expect(found).toContain(
      "targetRegion: must be an AWS region name such as us-east-2 (not a URL or an ARN)",
    );
    expect(found).toContainEqual(expect.stringMatching(/^reason: /));
    expect(found).toContainEqual(expect.stringMatching(/^dryRun: /));
    expect(found).toContain('(root): Unrecognized key: "endpoint"');
  });

  it("refuses a failedRegion outside the topology or equal to the target, and allowDataLoss with a graceful switchover", () => {
    expect(
      problems(() =>
        parseInput(
          { targetRegion: "us-east-2", reason: "alarm", failedRegion: "us-west-9" },
          topology,
        ),
      ),
    ).toEqual([
      'failedRegion: "us-west-9" is not in the topology (known: us-west-2, us-east-2, eu-west-1)',
    ]);
    expect(
      problems(() =>
        parseInput(
          { targetRegion: "us-east-2", reason: "alarm", failedRegion: "us-east-2" },
          topology,
        ),
      ),
    ).toEqual(["failedRegion: is the same as targetRegion; fail over to another region"]);
    expect(
      problems(() =>
        parseInput({ targetRegion: "us-east-2", reason: "drill", allowDataLoss: true }, topology),
      ),
    ).toEqual([expect.stringMatching(/^allowDataLoss: only applies to mode "ungraceful"/)]);
  });

  it("round-trips through YAML the way the CLI reads it", () => {
    const text = stringify({
      targetRegion: "eu-west-1",
      reason: "drill",
      mode: "ungraceful",
      allowDataLoss: true,
    });
    expect(parseInput(parseDocumentText(text, "in.yaml"), topology).mode).toBe("ungraceful");
  });
});
