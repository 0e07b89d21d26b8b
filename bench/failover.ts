/**
 * One whole failover in the embedded sandbox per run, measured from the execution history and at
 * the wire (node:diagnostics_channel, so nothing is patched): Argo CD API calls per AwaitArgoSync
 * poll, largest state payload, state transitions, handler time (Task StateEntered -> StateExited;
 * Waits excluded), handler time with no request of ours in flight, wall time and peak RSS.
 * Aurora promotes at once (delay 0). Each run is a fresh child process, so RSS and caches do not
 * leak between runs; the parent prints medians as Markdown.
 *
 *   npx tsx bench/failover.ts [--runs 3] [--sizes 3x6,100x5000] [--wait-ms 20]
 */
import { spawn } from "node:child_process";
import diagnostics from "node:diagnostics_channel";
import type { ClientRequest } from "node:http";
import { fileURLToPath } from "node:url";
import {
  GetExecutionHistoryCommand,
  type HistoryEvent,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { FUNCTIONS } from "../functions/catalog.ts";
import { sfnClient } from "../functions/lib/aws.ts";
import { startSandbox } from "../sandbox/index.ts";
import { aslText } from "../statemachine/definition.ts";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? fallback) : fallback;
};
const MAX_STATE_BYTES = 256 * 1024;
const RESULT = "bench-result ";
const POLL_LOOPS = new Set(["AwaitArgoSync", "AwaitAurora", "VerifyTraffic"]);

/** What one child run reports. */
interface RunResult {
  spokes: number;
  apps: number;
  status: string;
  startMs: number;
  execMs: number;
  maxRssMb: number;
  transitions: number;
  /** Transitions of every poll after the first (Task + Choice + Wait each). */
  loopTransitions: number;
  maxPayloadBytes: number;
  maxPayloadAt: string;
  handlerSumMs: number;
  handlerCriticalMs: number;
  /** Time some Task state ran while none of our requests to an emulator was in flight. */
  handlerNotWaitingMs: number;
  handlerByState: Record<string, number>;
  /** Argo CD calls made by each AwaitArgoSync poll, by kind (list, refresh, sync, clusters, other). */
  argoCallsPerPoll: Record<string, number>[];
  argoCallsOutsidePolls: number;
  /** Largest Argo CD application-list answer (bytes). */
  maxListBytes: number;
  /** Our requests by client library, and how many never reported their end. */
  requests: Record<string, number>;
}

// ---------------------------------------------------------------- child: one measured failover

interface Request {
  client: "node" | "undici";
  port: string;
  method: string;
  path: string;
  start: number;
  end?: number;
  /** Response content-length, when the server sent one. */
  bytes?: number;
}

/** Records every outgoing HTTP(S) request of this process (node:http and undici) as it ends. */
function recordRequests(): Request[] {
  const seen: Request[] = [];
  diagnostics.subscribe("http.client.request.start", (message) => {
    const req = (message as { request: ClientRequest }).request;
    const host = String(req.getHeader("host") ?? "");
    const r: Request = {
      client: "node",
      port: host.split(":")[1] ?? "",
      method: req.method,
      path: req.path,
      start: Date.now(),
    };
    seen.push(r);
    req.once("response", (res) => {
      const length = Number(res.headers["content-length"]);
      if (Number.isFinite(length)) r.bytes = length;
    });
    req.once("close", () => {
      r.end = Date.now();
    });
  });
  const undici = new WeakMap<object, Request>();
  diagnostics.subscribe("undici:request:create", (message) => {
    const req = (message as { request: { origin: string | URL; method: string; path: string } })
      .request;
    const r: Request = {
      client: "undici",
      port: new URL(String(req.origin)).port,
      method: req.method,
      path: req.path,
      start: Date.now(),
    };
    seen.push(r);
    undici.set(req, r);
  });
  const finish = (message: unknown) => {
    const r = undici.get((message as { request: object }).request);
    if (r) r.end = Date.now();
  };
  diagnostics.subscribe("undici:request:trailers", finish);
  diagnostics.subscribe("undici:request:error", finish);
  return seen;
}

function argoKind(r: Request): string {
  const [path = "", query = ""] = r.path.split("?");
  if (path === "/api/v1/applications") return "list";
  if (path === "/api/v1/clusters") return "clusters";
  if (r.method === "POST" && path.endsWith("/sync")) return "sync";
  if (new URLSearchParams(query).has("refresh")) return "refresh";
  return "other";
}

type Interval = [number, number];

function union(xs: Interval[]): Interval[] {
  const out: Interval[] = [];
  for (const [a, b] of [...xs].sort((x, y) => x[0] - y[0])) {
    const last = out.at(-1);
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Length of `xs` not covered by `minus` (both already unions). */
function uncovered(xs: Interval[], minus: Interval[]): number {
  let total = 0;
  for (const [a, b] of xs) {
    let covered = 0;
    for (const [c, d] of minus) covered += Math.max(0, Math.min(b, d) - Math.max(a, c));
    total += b - a - covered;
  }
  return total;
}

interface AslState {
  Type: string;
  Branches?: { States: Record<string, AslState> }[];
}

/** State name -> "<parallel>/<branch index>" for states inside a Parallel. */
function branchOf(): Map<string, string> {
  const out = new Map<string, string>();
  const states = (JSON.parse(aslText()) as { States: Record<string, AslState> }).States;
  for (const [name, s] of Object.entries(states)) {
    s.Branches?.forEach((b, i) => {
      for (const inner of Object.keys(b.States)) out.set(inner, `${name}/${i}`);
    });
  }
  return out;
}

async function child(spokes: number, apps: number, waitMs: number): Promise<RunResult> {
  const t0 = Date.now();
  const sandbox = await startSandbox({
    spokes,
    apps,
    reportDir: `${process.env.TMPDIR ?? "/tmp"}/gf-bench-report-${process.pid}`,
    waitMs,
    promotionDelayMs: 0,
  });
  const startMs = Date.now() - t0;
  try {
    // Module init is bench/bundle.ts's measure; imported after startSandbox set the log level.
    for (const f of FUNCTIONS) await import(`../functions/${f.dir}/handler.ts`);
    const argoPorts = new Set(Object.values(sandbox.argo.urls).map((u) => new URL(u).port));
    const spokePorts = new Set(sandbox.spokes.map((s) => new URL(s.url).port));
    const requests = recordRequests();
    const t1 = Date.now();
    const started = await sfnClient().send(
      new StartExecutionCommand({
        stateMachineArn: sandbox.stateMachineArn,
        name: `bench-${Date.now()}`,
        input: JSON.stringify({
          targetRegion: "us-east-2",
          reason: "benchmark",
          mode: "graceful",
          dryRun: false,
          requestedBy: "bench",
        }),
      }),
    );
    await sandbox.sfn.idle();
    const execMs = Date.now() - t1;
    const history = await sfnClient().send(
      new GetExecutionHistoryCommand({ executionArn: started.executionArn, maxResults: 1000 }),
    );
    const events: HistoryEvent[] = history.events ?? [];
    const status =
      events
        .at(-1)
        ?.type?.replace(/^Execution/, "")
        .toUpperCase() ?? "UNKNOWN";

    const at = (e: HistoryEvent) => e.timestamp?.getTime() ?? 0;
    const entered: Record<string, number> = {};
    let maxPayloadBytes = 0;
    let maxPayloadAt = "";
    const open = new Map<string, number>();
    const taskWindows: Interval[] = [];
    const handlerByState: Record<string, number> = {};
    const pollEnds: number[] = [];
    for (const e of events) {
      const payload =
        e.stateEnteredEventDetails?.input ??
        e.stateExitedEventDetails?.output ??
        e.executionStartedEventDetails?.input ??
        e.executionSucceededEventDetails?.output;
      const bytes = payload ? Buffer.byteLength(payload) : 0;
      const name = e.stateEnteredEventDetails?.name ?? e.stateExitedEventDetails?.name ?? "";
      if (bytes > maxPayloadBytes) {
        maxPayloadBytes = bytes;
        maxPayloadAt = `${e.type}${name ? ` ${name}` : ""}`;
      }
      if (e.type?.endsWith("StateEntered")) entered[name] = (entered[name] ?? 0) + 1;
      if (e.type === "TaskStateEntered") open.set(name, at(e));
      if (e.type === "TaskStateExited") {
        const from = open.get(name) ?? at(e);
        taskWindows.push([from, at(e)]);
        handlerByState[name] = (handlerByState[name] ?? 0) + at(e) - from;
        if (name === "AwaitArgoSync") pollEnds.push(at(e));
      }
    }

    // Ours: every request but the Argo CD emulator's own node:https calls to the spokes (the
    // functions reach spokes through undici). A poll's calls all end before its StateExited and
    // the next poll starts after a Wait, so a call belongs to the first poll ending after it.
    const ours = requests.filter((r) => !(r.client === "node" && spokePorts.has(r.port)));
    const argoCallsPerPoll: Record<string, number>[] = pollEnds.map(() => ({}));
    let argoCallsOutsidePolls = 0;
    let maxListBytes = 0;
    for (const r of ours.filter((x) => x.client === "node" && argoPorts.has(x.port))) {
      const poll = argoCallsPerPoll[pollEnds.findIndex((end) => r.start <= end)];
      const kind = argoKind(r);
      if (kind === "list") maxListBytes = Math.max(maxListBytes, r.bytes ?? 0);
      if (poll) poll[kind] = (poll[kind] ?? 0) + 1;
      else argoCallsOutsidePolls += 1;
    }
    const inFlight = union(ours.map((r): Interval => [r.start, r.end ?? r.start]));
    const handlerNotWaitingMs = uncovered(union(taskWindows), inFlight);

    // Critical path: states outside a Parallel, plus the slowest branch of each Parallel.
    const branches = branchOf();
    const perBranch = new Map<string, number>();
    let handlerCriticalMs = 0;
    for (const [name, ms] of Object.entries(handlerByState)) {
      const b = branches.get(name);
      if (b) perBranch.set(b, (perBranch.get(b) ?? 0) + ms);
      else handlerCriticalMs += ms;
    }
    const slowest = new Map<string, number>();
    for (const [b, ms] of perBranch) {
      const parallel = b.split("/")[0] ?? b;
      slowest.set(parallel, Math.max(slowest.get(parallel) ?? 0, ms));
    }
    for (const ms of slowest.values()) handlerCriticalMs += ms;

    let loopTransitions = 0;
    for (const [name, n] of Object.entries(entered))
      if (POLL_LOOPS.has(name)) loopTransitions += (n - 1) * 3;
    return {
      spokes: sandbox.spokes.length,
      apps: sandbox.argo.applications().length,
      status,
      startMs,
      execMs,
      maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      transitions: Object.values(entered).reduce((a, b) => a + b, 0),
      loopTransitions,
      maxPayloadBytes,
      maxPayloadAt,
      handlerSumMs: Object.values(handlerByState).reduce((a, b) => a + b, 0),
      handlerCriticalMs,
      handlerNotWaitingMs,
      handlerByState,
      argoCallsPerPoll,
      argoCallsOutsidePolls,
      maxListBytes,
      requests: {
        node: ours.filter((r) => r.client === "node").length,
        undici: ours.filter((r) => r.client === "undici").length,
        unfinished: ours.filter((r) => r.end === undefined).length,
      },
    };
  } finally {
    await sandbox.stop();
  }
}

// ---------------------------------------------------------------- parent: runs and medians

function runChild(spokes: number, apps: number, waitMs: number): Promise<RunResult> {
  const args = [
    ...process.execArgv,
    fileURLToPath(import.meta.url),
    ...["--child", "--spokes", String(spokes), "--apps", String(apps), "--wait-ms", String(waitMs)],
  ];
  // Set before the logger is constructed: Powertools restores its construction-time level on
  // every invocation, undoing startSandbox's setLogLevel (cli/bin.js does the same).
  const env = {
    ...process.env,
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? "SILENT",
  };
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, args, { env, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    p.on("error", reject);
    p.on("close", (code) => {
      const line = out
        .split("\n")
        .find((l) => l.startsWith(RESULT))
        ?.slice(RESULT.length);
      if (code !== 0 || !line) reject(new Error(`child exited ${code}: ${out.slice(-2000)}`));
      else resolve(JSON.parse(line) as RunResult);
    });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const total = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

function table(rs: RunResult[]): string[] {
  const m = (f: (r: RunResult) => number) => median(rs.map(f));
  const pass = (ok: boolean) => (ok ? "PASS" : "FAIL");
  const range = (f: (r: RunResult) => number) =>
    `${Math.min(...rs.map(f))}-${Math.max(...rs.map(f))}`;
  const r0 = rs[0];
  const lists = Math.max(...rs.flatMap((r) => r.argoCallsPerPoll.map((p) => p.list ?? 0)));
  const later = rs.flatMap((r) => r.argoCallsPerPoll.slice(1).map(total));
  const laterMax = Math.max(0, ...later);
  const first = (k: string) => m((r) => r.argoCallsPerPoll[0]?.[k] ?? 0);
  const polls = rs.map((r) => r.argoCallsPerPoll.length).join("/");
  const outside = Math.max(...rs.map((r) => r.argoCallsOutsidePolls));
  const bytes = m((r) => r.maxPayloadBytes);
  const transitions = m((r) => r.transitions);
  const loops = m((r) => r.loopTransitions);
  const statuses = [...new Set(rs.map((r) => r.status))].join("/");
  return [
    `### ${r0?.spokes} spokes, ${r0?.apps} apps (${rs.length} runs, medians; status ${statuses})`,
    "",
    "| measure | value | target | result |",
    "| --- | --- | --- | --- |",
    `| Argo CD list calls per AwaitArgoSync poll (max, all polls) | ${lists} | 1 | ${pass(lists === 1)} |`,
    `| Argo CD calls in a poll after the first (max) | ${later.length ? laterMax : "n/a (one poll)"} | 1 | ${later.length ? pass(laterMax <= 1) : ""} |`,
    `| first poll, one-time calls: refresh / sync / clusters | ${first("refresh")} / ${first("sync")} / ${first("clusters")} | (reported) | |`,
    `| AwaitArgoSync polls per run | ${polls} | (reported) | |`,
    `| size of one list answer (content-length) | ${(m((r) => r.maxListBytes) / 1024).toFixed(0)} KiB | (reported) | |`,
    `| Argo CD calls outside AwaitArgoSync (max) | ${outside} | 0 | ${pass(outside === 0)} |`,
    `| largest state payload | ${(bytes / 1024).toFixed(1)} KiB (${r0?.maxPayloadAt}) | < 256 KiB | ${pass(bytes < MAX_STATE_BYTES)} |`,
    `| state transitions (StateEntered) | ${transitions} (${transitions - loops} + ${loops} in repeat polls) | < 200 | ${pass(transitions < 200)} |`,
    `| handler time, sum of Task states (min-max) | ${m((r) => r.handlerSumMs)} ms (${range((r) => r.handlerSumMs)}) | < 5 s | ${pass(m((r) => r.handlerSumMs) < 5000)} |`,
    `| handler time, critical path | ${m((r) => r.handlerCriticalMs)} ms | (reported) | |`,
    `| handler time with none of our requests in flight (min-max) | ${m((r) => r.handlerNotWaitingMs)} ms (${range((r) => r.handlerNotWaitingMs)}) | < 5 s | ${pass(m((r) => r.handlerNotWaitingMs) < 5000)} |`,
    `| execution wall time, StartExecution -> end (min-max) | ${m((r) => r.execMs)} ms (${range((r) => r.execMs)}) | (reported) | |`,
    `| sandbox start | ${m((r) => r.startMs)} ms | (reported) | |`,
    `| peak RSS (process maxRSS) | ${m((r) => r.maxRssMb)} MB | (reported) | |`,
    "",
    `Handler ms by state (median): ${Object.keys(r0?.handlerByState ?? {})
      .map((k) => `${k} ${m((r) => r.handlerByState[k] ?? 0)}`)
      .join(", ")}`,
    "",
  ];
}

if (process.argv.includes("--child")) {
  const r = await child(
    Number(arg("spokes", "3")),
    Number(arg("apps", "6")),
    Number(arg("wait-ms", "20")),
  );
  process.stdout.write(`${RESULT}${JSON.stringify(r)}\n`);
  process.exit(0);
} else {
  const runs = Number(arg("runs", "3"));
  const waitMs = Number(arg("wait-ms", "20"));
  const sizes = arg("sizes", "3x6,100x5000")
    .split(",")
    .map((s) => s.split("x").map(Number) as [number, number]);
  console.log(`Node ${process.version}, ${runs} runs per size, Wait states ${waitMs} ms\n`);
  for (const [spokes, apps] of sizes) {
    const results: RunResult[] = [];
    for (let i = 0; i < runs; i++) {
      results.push(await runChild(spokes, apps, waitMs));
      console.error(`${spokes}x${apps} run ${i + 1}: ${JSON.stringify(results.at(-1))}`);
    }
    console.log(table(results).join("\n"));
  }
}
