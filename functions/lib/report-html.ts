/**
 * The runbook report as one self-contained HTML page: no script, no external stylesheet, font
 * or image (a Content-Security-Policy forbids them), so it opens the same from the S3 console,
 * a ticket attachment or an email. The timeline is an inline SVG gantt of the steps, with the
 * critical path and the failed step marked. Rendered from the report object report.ts builds,
 * the same data as report.md and report.json.
 */
import type { FailoverReport } from "./report.ts";

type Step = FailoverReport["steps"][number];

/** Text as HTML: every character that could open a tag, an attribute or an entity is escaped. */
function esc(text: string | number | null | undefined): string {
  return String(text ?? "").replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );
}

/** Only http(s) links become anchors: a report must not carry a `javascript:` URL. */
function link(href: string | null, text: string): string {
  return href && /^https?:\/\//.test(href) ? `<a href="${esc(href)}">${esc(text)}</a>` : esc(text);
}

const durationOf = (s: Step) =>
  s.startedAt && s.endedAt ? (Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000 : null;

const secondsText = (n: number | null) => (n === null ? "" : `${n.toFixed(1)} s`);

/** Gantt geometry (SVG user units); `right` leaves room for the FAILED flag after a bar. */
const GANTT = { width: 900, label: 150, right: 70, row: 26, bar: 16, top: 28, minBar: 3 } as const;

/** The class of a step's bar: failed, on the critical path, or neither; plus its outcome. */
function barClass(r: FailoverReport, s: Step): string {
  const mark =
    s.status === "FAILED" ? "failed" : r.criticalPath.includes(s.name) ? "critical" : "other";
  return `bar ${mark} ${s.status.toLowerCase()}`;
}

/** Round tick spacing (seconds) giving about six ticks over `span` seconds. */
function tickStep(span: number): number {
  const raw = span / 6;
  const magnitude = 10 ** Math.floor(Math.log10(raw || 1));
  return ([1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude) || 1;
}

/** The steps with both timestamps as an SVG gantt; time runs from the first start. */
function gantt(r: FailoverReport): string {
  const timed = r.steps.filter((s) => s.startedAt && s.endedAt);
  if (!timed.length) return `<p class="muted">No step recorded timestamps.</p>`;
  const t0 = Math.min(...timed.map((s) => Date.parse(s.startedAt ?? "")));
  const t1 = Math.max(...timed.map((s) => Date.parse(s.endedAt ?? "")));
  const span = Math.max((t1 - t0) / 1000, 0.001);
  const plot = GANTT.width - GANTT.label - GANTT.right;
  const x = (at: string | null) => GANTT.label + ((Date.parse(at ?? "") - t0) / 1000 / span) * plot;
  const height = GANTT.top + timed.length * GANTT.row + 10;
  const step = tickStep(span);
  const ticks: string[] = [];
  for (let s = 0; s <= span + 1e-9; s += step) {
    const tx = GANTT.label + (s / span) * plot;
    ticks.push(
      `<line class="tick" x1="${tx.toFixed(1)}" y1="${GANTT.top - 6}" x2="${tx.toFixed(1)}" y2="${height - 10}"/>`,
      `<text class="axis" x="${tx.toFixed(1)}" y="${GANTT.top - 10}" text-anchor="middle">${esc(Number(s.toPrecision(6)))} s</text>`,
    );
  }
  const rows = timed.map((s, i) => {
    const y = GANTT.top + i * GANTT.row;
    const left = x(s.startedAt);
    const width = Math.max(x(s.endedAt) - left, GANTT.minBar);
    const tip = `${s.name}: ${s.status}, ${secondsText(durationOf(s))}${s.detail ? `, ${s.detail}` : ""}`;
    return [
      `<text class="label" x="${GANTT.label - 8}" y="${y + GANTT.bar - 3}" text-anchor="end">${esc(s.name)}</text>`,
      `<rect class="${barClass(r, s)}" data-step="${esc(s.name)}" data-status="${esc(s.status)}" x="${left.toFixed(1)}" y="${y}" width="${width.toFixed(1)}" height="${GANTT.bar}" rx="3"><title>${esc(tip)}</title></rect>`,
      s.status === "FAILED"
        ? `<text class="flag" x="${(left + width + 6).toFixed(1)}" y="${y + GANTT.bar - 3}">FAILED</text>`
        : "",
    ].join("");
  });
  return `<svg id="gantt" role="img" aria-label="timeline of the failover steps" viewBox="0 0 ${GANTT.width} ${height}" width="100%" xmlns="http://www.w3.org/2000/svg">${ticks.join("")}${rows.join("")}</svg>
<p class="legend"><span class="key critical"></span> critical path <span class="key other"></span> off the critical path <span class="key failed"></span> failed step <span class="key skipped"></span> skipped</p>`;
}

type Snapshot = FailoverReport["before"];

const dials = (s: Snapshot) =>
  s?.trafficDials
    ? Object.entries(s.trafficDials)
        .map(([region, d]) => `${region} ${d}%`)
        .join(", ")
    : "?";

const active = (s: Snapshot) => (s?.activeRegions ? s.activeRegions.join(", ") || "none" : "?");

function beforeAfter(r: FailoverReport): string {
  const row = (what: string, before: string, after: string) =>
    `<tr><th scope="row">${esc(what)}</th><td>${esc(before)}</td><td${before !== after ? ' class="changed"' : ""}>${esc(after)}</td></tr>`;
  return `<table id="before-after"><thead><tr><th></th><th>before</th><th>after</th></tr></thead><tbody>
${row("Git active region(s)", active(r.before), active(r.after))}
${row("Git head", r.before?.gitHead?.slice(0, 12) ?? "?", r.after?.gitHead?.slice(0, 12) ?? "?")}
${row("Aurora writer", r.before?.auroraWriterRegion ?? "?", r.after?.auroraWriterRegion ?? "?")}
${row("Traffic dials", dials(r.before), dials(r.after))}
</tbody></table>`;
}

function stepsTable(r: FailoverReport): string {
  const rows = r.steps.map(
    (s) =>
      `<tr class="${esc(s.status.toLowerCase())}"><td>${esc(s.name)}${r.criticalPath.includes(s.name) ? ' <span class="crit-tag">critical</span>' : ""}</td><td>${esc(s.status)}</td><td class="num">${secondsText(durationOf(s))}</td><td>${esc(s.detail)}</td></tr>`,
  );
  return `<table id="steps"><thead><tr><th>step</th><th>outcome</th><th>duration</th><th>detail</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function rtoText(r: FailoverReport): string {
  const start = r.rto.start === "detectedAt" ? "the alarm's detectedAt" : "the execution start";
  return r.rto.seconds !== null
    ? `${r.rto.seconds} s, from ${start} (${r.rto.from}) to traffic shifted (${r.rto.trafficShiftedAt})`
    : `not measured: traffic was not shifted by this execution (counts from ${start})`;
}

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:960px;color:#1b1f24;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.outcome{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:700;color:#fff}
.outcome.succeeded{background:#1a7f37}.outcome.failed{background:#cf222e}
table{border-collapse:collapse;width:100%;margin:4px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}td.num{text-align:right;white-space:nowrap}td.changed{font-weight:600;background:#fff8c5}
tr.failed td{background:#ffebe9}.crit-tag{font-size:11px;color:#9a6700;border:1px solid #d4a72c;border-radius:8px;padding:0 5px}
.muted{color:#57606a}code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:1px 4px;border-radius:4px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}dt{color:#57606a}dd{margin:0}
.error{border-left:4px solid #cf222e;background:#ffebe9;padding:8px 12px;margin:12px 0}
ol.manual li{margin:0 0 8px}
svg text{font:12px system-ui,sans-serif;fill:#1b1f24}svg .axis{fill:#57606a;font-size:11px}svg .tick{stroke:#eaeef2}
svg .flag{fill:#cf222e;font-weight:700}
.bar.critical{fill:#d4a72c}.bar.other{fill:#54aeff}.bar.failed{fill:#cf222e}.bar.skipped{fill-opacity:.35}.bar.stopped{fill-opacity:.6}
.legend{font-size:12px;color:#57606a}.key{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-2px;margin:0 2px 0 10px}
.key.critical{background:#d4a72c}.key.other{background:#54aeff}.key.failed{background:#cf222e}.key.skipped{background:#54aeff;opacity:.35}
`;

/** Renders the report as a self-contained HTML page. */
export function renderHtml(r: FailoverReport): string {
  const ok = r.status === "SUCCEEDED";
  const route = `${r.sourceRegion ?? "?"} → ${r.targetRegion ?? "?"}`;
  const commit = r.commits.length
    ? `<ul id="commit">${r.commits.map((c) => `<li>${esc(c.phase)}: ${link(c.url, c.sha)} ${esc(c.subject)}</li>`).join("")}</ul>`
    : r.commit
      ? `<p id="commit">${link(r.links.commit, r.commit.sha)} ${esc(r.commit.subject)} <span class="muted">(previous head <code>${esc(r.commit.previousSha.slice(0, 12))}</code>)</span></p>`
      : `<p id="commit" class="muted">No retarget commit by this execution.</p>`;
  const compensation = r.compensation.length
    ? `<h2>Compensation</h2><table id="compensation"><thead><tr><th>time</th><th>action</th><th>outcome</th><th>detail</th></tr></thead><tbody>${r.compensation.map((a) => `<tr><td>${esc(a.at)}</td><td>${esc(a.action)}</td><td>${esc(a.outcome)}</td><td>${esc(a.detail)}</td></tr>`).join("")}</tbody></table>`
    : "";
  const split = r.order.split;
  const apart = !split
    ? "never (Aurora's writer was not moved by this execution)"
    : split.seconds !== null
      ? `${split.seconds} s (from the promotion call to ${split.to})`
      : `since ${split.from}, still apart when this report was written`;
  const manual = r.manualSteps.length
    ? `<h2>Manual steps</h2><ol class="manual" id="manual-steps">${r.manualSteps.map((s) => `<li>${esc(s)}</li>`).join("")}</ol>`
    : "";
  const timeline = r.timeline
    .map(
      (e) =>
        `<tr><td class="num">${e.seq}</td><td>${esc(e.at)}</td><td>${esc(e.step)}</td><td>${esc(e.outcome)}</td><td>${esc(e.action)}</td><td>${esc(e.detail)}</td></tr>`,
    )
    .join("");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Failover ${esc(r.status)}: ${esc(route)} (${esc(r.execution.name)})</title>
<style>${STYLE}</style></head><body>
<h1>Failover ${esc(route)} <span id="outcome" class="outcome ${ok ? "succeeded" : "failed"}">${esc(r.status)}</span></h1>
<p class="muted">${esc(r.platform)} · execution ${link(r.links.execution, r.execution.name)} · generated ${esc(r.generatedAt)}</p>
${r.error ? `<div class="error" id="error"><strong>${esc(r.failedStep)}: ${esc(r.error.name)}</strong> ${esc(r.error.message)}</div>` : ""}
<dl>
<dt>RTO</dt><dd id="rto">${esc(rtoText(r))}</dd>
<dt>Mode</dt><dd>${esc(r.mode ?? "?")}</dd>
<dt>Reason</dt><dd>${esc(r.reason ?? "?")}</dd>
<dt>Requested by</dt><dd>${esc(r.requestedBy ?? "?")}</dd>
<dt>Order</dt><dd id="order">${esc(r.order.kind ?? "?")}: ${esc(r.order.why)}</dd>
<dt>Users and writer apart</dt><dd id="split">${esc(apart)}</dd>
${r.approval ? `<dt>Approved by</dt><dd id="approval">${esc(r.approval.by)}${r.approval.principal ? ` (verified ${esc(r.approval.principal)})` : " (as typed)"}${r.approval.waitedSeconds !== null ? `, after ${r.approval.waitedSeconds} s` : ""}</dd>` : ""}
<dt>Critical path</dt><dd>${esc(r.criticalPath.join(" → ") || "none")}</dd>
<dt>Audit trail</dt><dd>${r.audit.events} events, chain ${r.audit.intact ? "intact" : "<strong>BROKEN</strong>"}, head <code>${esc(r.audit.head ?? "none")}</code></dd>
</dl>
<h2>Timeline</h2>
${gantt(r)}
<h2>Steps</h2>
${stepsTable(r)}
<h2>Before / after</h2>
${beforeAfter(r)}
<h2>Commits</h2>
${commit}
${compensation}
<h2>Changed</h2>
<ul>${(r.changed.length ? r.changed : ["nothing"]).map((c) => `<li>${esc(c)}</li>`).join("")}</ul>
${manual}
<h2>Audit events</h2>
<table id="audit-events"><thead><tr><th>#</th><th>time</th><th>step</th><th>outcome</th><th>action</th><th>detail</th></tr></thead><tbody>${timeline}</tbody></table>
</body></html>
`;
}
