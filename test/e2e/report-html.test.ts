/**
 * report.html as people see it: a failed drill's page rendered by headless Chromium (Debian's
 * `chromium`, driven by playwright-core), which must show the outcome and the gantt with the
 * failed step marked and the critical path drawn — and must need nothing from the network (its
 * Content-Security-Policy forbids it, and every request the page makes is recorded here).
 * `report <execution> --open` writes the same page to a temporary file and prints its path.
 * A screenshot stays in the test's temporary directory while it runs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../cli/main.ts";
import type { FailoverReport } from "../../functions/lib/report.ts";
import { DRILL_DEFAULTS, type DrillResult, runDrill } from "../../sandbox/drill.ts";

const CHROMIUM = "/usr/bin/chromium";
const root = mkdtempSync(join(tmpdir(), "gf-report-html-"));

let browser: BrowserContext;
let page: Page;
let result: DrillResult;
let report: FailoverReport;
const requests: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: install it with \`apt-get install -y chromium\``);
  result = await runDrill({
    ...DRILL_DEFAULTS,
    faults: ["argocd-degraded"],
    reportDir: join(root, "drill-report"),
  });
  report = JSON.parse(readFileSync(join(result.reportDir, "report.json"), "utf8"));
  // A fresh profile (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(join(root, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  page = await browser.newPage();
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(pathToFileURL(join(result.reportDir, "report.html")).href);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  rmSync(root, { recursive: true, force: true });
});

describe("report.html of a failed drill (argocd-degraded) in headless Chromium", () => {
  it("shows the outcome and the error of the failed step", async () => {
    expect(result.status).toBe("FAILED");
    await expect(page.locator("#outcome").isVisible()).resolves.toBe(true);
    expect(await page.locator("#outcome").textContent()).toBe("FAILED");
    expect(await page.locator("#error").textContent()).toContain(
      `${report.failedStep}: ${report.error?.name}`,
    );
  });

  it("draws one visible gantt bar per timed step, the failed one marked and the critical path drawn", async () => {
    const bars = page.locator("#gantt rect.bar");
    const timed = report.steps.filter((s) => s.startedAt && s.endedAt).map((s) => s.name);
    expect(await bars.evaluateAll((els) => els.map((e) => e.getAttribute("data-step")))).toEqual(
      timed,
    );
    for (const name of timed) {
      const box = await page.locator(`#gantt rect[data-step="${name}"]`).boundingBox();
      expect(box?.width, name).toBeGreaterThan(0);
      expect(box?.height, name).toBeGreaterThan(0);
    }
    const failed = page.locator("#gantt rect.failed");
    expect(await failed.getAttribute("data-step")).toBe(report.failedStep);
    // Runs in the page, where globalThis is the window (the tests' TypeScript has no DOM library).
    type Window = { getComputedStyle(e: unknown): { fill: string } };
    const fill = await failed.evaluate(
      (e) => (globalThis as unknown as Window).getComputedStyle(e).fill,
    );
    expect(fill).toBe("rgb(207, 34, 46)");
    const critical = await page
      .locator("#gantt rect.critical")
      .evaluateAll((els) => els.map((e) => e.getAttribute("data-step")));
    expect(critical).toEqual(report.criticalPath.filter((s) => s !== report.failedStep));
    await expect(page.locator("#gantt text.flag").isVisible()).resolves.toBe(true);
  });

  it("has the before/after table, the commit and the manual steps from the same data as report.json", async () => {
    expect(await page.locator("#before-after").isVisible()).toBe(true);
    expect(await page.locator("#before-after tbody tr").count()).toBe(4);
    expect(await page.locator("#commit a").allTextContents()).toEqual(
      report.commits.map((c) => c.sha),
    );
    expect(report.commits[0]?.sha).toBe(report.commit?.sha);
    const manual = await page.locator("#manual-steps li").allTextContents();
    expect(manual).toEqual(report.manualSteps);
  });

  it("loads nothing but itself", () => {
    expect(requests).toEqual([pathToFileURL(join(result.reportDir, "report.html")).href]);
    const html = readFileSync(join(result.reportDir, "report.html"), "utf8");
    expect(html).not.toMatch(/<script|<link|@import|url\(|src=/i);
  });

  it("leaves a screenshot in the test's temporary directory", async () => {
    const file = join(root, "report.png");
    await page.screenshot({ path: file, fullPage: true });
    expect(statSync(file).size).toBeGreaterThan(10_000);
  });
});

describe("report <execution> --open", () => {
  it("writes report.html to a temporary file and prints its path", async () => {
    let out = "";
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      out += String(chunk);
      return true;
    });
    let code: number;
    try {
      code = await main(["node", "gitops-failover", "report", result.reportDir, "--open"]);
    } finally {
      spy.mockRestore();
    }
    const file = out.trim();

    expect(code).toBe(0);
    expect(file).toMatch(/gitops-failover-report-.*report\.html$/);
    expect(readFileSync(file, "utf8")).toBe(
      readFileSync(join(result.reportDir, "report.html"), "utf8"),
    );
    rmSync(join(file, ".."), { recursive: true, force: true });
  });
});
