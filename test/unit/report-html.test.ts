/**
 * report.html carries text from outside (the input's reason and requestedBy, error messages,
 * step details): it must stay text, never markup, a script or a `javascript:` link, so the page
 * is safe to open from an attachment. The browser test (test/e2e/report-html.test.ts) checks the
 * rendering of a real drill's report.
 */
import { describe, expect, it } from "vitest";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { renderHtml } from "../../functions/lib/report-html.ts";

const HOSTILE = `<img src=x onerror="alert(1)"> & '</title><script>alert(2)</script>`;

function reportWith(overrides: Partial<FailoverReport>): FailoverReport {
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  return {
    status: "FAILED",
    execution: { id: "arn:aws:states:us-west-2:1:execution:m:e1", name: "e1", startTime: at(0) },
    platform: "payments",
    sourceRegion: "us-west-2",
    targetRegion: "us-east-2",
    mode: "graceful",
    reason: HOSTILE,
    requestedBy: HOSTILE,
    failedStep: "VerifySpoke",
    error: { name: "SpokeNotReady", message: HOSTILE },
    steps: [
      { name: "Plan", status: "SUCCEEDED", detail: HOSTILE, startedAt: at(0), endedAt: at(2) },
      {
        name: "VerifySpoke",
        status: "FAILED",
        detail: "see error",
        startedAt: at(2),
        endedAt: at(5),
      },
    ],
    criticalPath: ["Plan", "VerifySpoke"],
    timeline: [
      { seq: 1, at: at(2), step: "Plan", outcome: "SUCCEEDED", action: HOSTILE, detail: HOSTILE },
    ],
    audit: { events: 1, head: "ab", intact: true },
    links: { execution: "https://example.com/e1", commit: "javascript:alert(3)" },
    before: null,
    after: null,
    commit: { sha: "0123456789abcdef", previousSha: "fedcba9876543210", subject: HOSTILE },
    commits: [],
    targetReadiness: null,
    dryRun: false,
    plan: null,
    order: { kind: "sequential", why: HOSTILE, split: null },
    approval: { by: HOSTILE, at: null, waitedSeconds: 3, principal: null },
    compensation: [{ at: at(6), action: "revert-commit", outcome: "DONE", detail: HOSTILE }],
    changed: [],
    manualSteps: [HOSTILE],
    rto: { from: at(0), start: "executionStart", trafficShiftedAt: null, seconds: null },
    generatedAt: at(9),
    ...overrides,
  };
}

describe("renderHtml", () => {
  it("escapes outside text everywhere and links only http(s) URLs", () => {
    const html = renderHtml(reportWith({}));

    expect(html).not.toContain("<script");
    expect(html).not.toContain("<img");
    expect(html).not.toContain("javascript:");
    expect(html).toContain(
      "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; &#39;&lt;/title&gt;",
    );
    expect(html).toContain('<a href="https://example.com/e1">e1</a>');
  });

  it("scales the gantt to the steps' timestamps: bar widths proportional to durations", () => {
    const html = renderHtml(reportWith({}));
    const width = (step: string) =>
      Number(new RegExp(`data-step="${step}"[^>]* width="([0-9.]+)"`).exec(html)?.[1]);

    expect(width("VerifySpoke") / width("Plan")).toBeCloseTo(3 / 2, 2);
    expect(html).toMatch(/class="bar failed failed" data-step="VerifySpoke"/);
    expect(html).toMatch(/class="bar critical succeeded" data-step="Plan"/);
  });

  it("says so when no step has timestamps instead of drawing an empty chart", () => {
    const html = renderHtml(
      reportWith({
        steps: [{ name: "Plan", status: "FAILED", detail: "", startedAt: null, endedAt: null }],
      }),
    );
    expect(html).not.toContain('id="gantt"');
    expect(html).toContain("No step recorded timestamps.");
  });
});
