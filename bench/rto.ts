/**
 * RTO against the physical floor, in a time-scaled sandbox (sandbox/time-model.ts): every
 * service delay realistic and scaled by one factor, the ASL's Waits and Retries too, handler
 * compute real. For each size, on a fresh sandbox each, with the same time model:
 *
 * - the orchestrator, started by hand (graceful and ungraceful) and by the alarm path (Route 53
 *   detection, then the trigger: ungraceful);
 * - the runbook an SRE would otherwise run, sequentially, through the same clients against the
 *   same emulators: git push; `argocd app wait --sync --health` (no refresh: Argo CD's Git poll
 *   finds the commit); `aws rds switchover-global-cluster` (or failover with data loss) and a
 *   `describe-global-clusters` loop every 10 s; `aws globalaccelerator update-endpoint-group`.
 *
 * RTO ends when traffic has converged on the target (the GA emulator's update time plus its
 * convergence). The floor is what the services themselves need, from the emulators' own event
 * times: apps (Argo CD's first compare of a target app with the commit to the last target app
 * Synced and Healthy),
 * data (the promotion), traffic (GA convergence); `max(apps, data) + traffic` for ungraceful,
 * `apps + data + traffic` for graceful (the switchover waits for the apps by design, issue 19),
 * plus Route 53 detection on the alarm path. AWS seconds = sandbox time / scale, except the
 * handlers' (or the runbook's clients') own time on the critical path, which counts as is, and
 * a modelled Step Functions overhead per transition and per Lambda invoke.
 *
 *   npx tsx bench/rto.ts [--time-scale 0.05 | --sizes 3x6@0.05,100x5000@0.1]
 *                        [--time aurora.switchoverSeconds=90 ...]
 *                        [--paths graceful,ungraceful,alarm,runbook-graceful,runbook-ungraceful]
 */
import diagnostics from "node:diagnostics_channel";
import type { ClientRequest } from "node:http";
import { loadavg } from "node:os";
import {
  DescribeEndpointGroupCommand,
  UpdateEndpointGroupCommand,
} from "@aws-sdk/client-global-accelerator";
import {
  DescribeGlobalClustersCommand,
  FailoverGlobalClusterCommand,
  SwitchoverGlobalClusterCommand,
} from "@aws-sdk/client-rds";
import {
  GetExecutionHistoryCommand,
  type HistoryEvent,
  StartExecutionCommand,
} from "@aws-sdk/client-sfn";
import { FUNCTIONS } from "../functions/catalog.ts";
import { checkSync } from "../functions/lib/argocd.ts";
import { globalAcceleratorClient, rdsClient, sfnClient } from "../functions/lib/aws.ts";
import { commitRetarget } from "../functions/lib/gitops.ts";
import { alarmEvent } from "../sandbox/drill.ts";
import { VALUES_FILE } from "../sandbox/gitops-layout.ts";
import { type Sandbox, startSandbox } from "../sandbox/index.ts";
import { invokeTrigger } from "../sandbox/runner.ts";
import {
  awsSeconds,
  detectionSeconds,
  sandboxMs,
  type TimeModel,
  timeModel,
} from "../sandbox/time-model.ts";
import { aslText } from "../statemachine/definition.ts";

const args = process.argv.slice(2);
const arg = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? (args[i + 1] ?? fallback) : fallback;
};
const overrides = Object.fromEntries(
  args.flatMap((a, i) =>
    args[i - 1] === "--time" ? [[a.split("=")[0] ?? "", Number(a.split("=")[1])]] : [],
  ),
);
const SOURCE = "us-west-2";
const TARGET = "us-east-2";

type Path = "graceful" | "ungraceful" | "alarm" | "runbook-graceful" | "runbook-ungraceful";

/** One measured failover. All durations in AWS seconds unless named `Ms`. */
interface Measured {
  path: Path;
  status: string;
  rto: number;
  floor: number;
  floorParts: { detection: number; apps: number; data: number; traffic: number };
  excess: Record<string, number>;
  transitions?: number;
  argoCallsPerPoll?: Record<string, number>[];
  /** Every Argo CD API call of the run, by kind (hub load). */
  argoCalls: Record<string, number>;
  /** Apps the hub re-compared because we asked (refresh GETs, webhook deliveries). */
  appsRefreshedOnRequest: number;
  wallMs: number;
}

// ------------------------------------------------------------------ wire: Argo CD calls

interface Call {
  port: string;
  method: string;
  path: string;
  start: number;
}

function recordCalls(): Call[] {
  const seen: Call[] = [];
  diagnostics.subscribe("http.client.request.start", (message) => {
    const req = (message as { request: ClientRequest }).request;
    const host = String(req.getHeader("host") ?? "");
    seen.push({
      port: host.split(":")[1] ?? "",
      method: req.method,
      path: req.path,
      start: Date.now(),
    });
  });
  return seen;
}

function argoKind(c: Call): string {
  const [path = "", query = ""] = c.path.split("?");
  if (path === "/api/webhook") return "webhook";
  if (path === "/api/v1/applications") return "list";
  if (path === "/api/v1/clusters") return "clusters";
  if (c.method === "POST" && path.endsWith("/sync")) return "sync";
  if (new URLSearchParams(query).has("refresh")) return "refresh";
  return "other";
}

function countBy(calls: Call[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of calls) out[argoKind(c)] = (out[argoKind(c)] ?? 0) + 1;
  return out;
}

// ------------------------------------------------------------------ floors from the emulators

interface Floors {
  appsMs: number;
  appsDoneAt: number;
  appsDetectedAt: number;
  dataMs: number;
  dataDoneAt: number;
  trafficMs: number;
  trafficAt: number;
  convergedAt: number;
}

async function floorsOf(sandbox: Sandbox): Promise<Floors> {
  const targetClusters = new Set(
    sandbox.topology.regions[TARGET]?.spokes.map((s) => s.argocdCluster) ?? [],
  );
  const events = sandbox.argo
    .syncEvents()
    .filter((e) => targetClusters.has(e.cluster) && e.syncedAt !== undefined);
  // The retarget commit: the revision most target apps synced to first.
  const byRevision = new Map<string, typeof events>();
  for (const e of events) byRevision.set(e.revision, [...(byRevision.get(e.revision) ?? []), e]);
  const first = [...byRevision.values()].sort(
    (a, b) => Math.min(...a.map((e) => e.detectedAt)) - Math.min(...b.map((e) => e.detectedAt)),
  )[0];
  const apps = first ?? [];
  const promotion = sandbox.aws.rds.promotions().at(-1);
  const update = sandbox.aws.ga.updates().findLast((u) => u.region === TARGET && u.dial === 100);
  const convergedAt = update?.convergedAt ?? Number.NaN;
  return {
    // From Argo CD first comparing a target app with the commit to the last one Synced and
    // Healthy: the sync and rollout, and Argo CD working through a bulk refresh (a runbook's
    // apps are found by Git poll ticks spread over minutes: that spread counts here too).
    appsMs:
      Math.max(0, ...apps.map((e) => e.syncedAt ?? 0)) - Math.min(...apps.map((e) => e.detectedAt)),
    appsDoneAt: Math.max(0, ...apps.map((e) => e.syncedAt ?? 0)),
    appsDetectedAt: Math.min(...apps.map((e) => e.detectedAt)),
    dataMs: promotion?.completedAt ? promotion.completedAt - promotion.startedAt : Number.NaN,
    dataDoneAt: promotion?.completedAt ?? Number.NaN,
    trafficMs: update ? update.convergedAt - update.at : Number.NaN,
    trafficAt: update?.at ?? Number.NaN,
    convergedAt,
  };
}

// ------------------------------------------------------------------ the orchestrator

interface Span {
  name: string;
  type: string;
  start: number;
  end: number;
}

/** State name -> "<parallel>/<branch index>" for states inside a Parallel. */
/** Each state nested in a Parallel: the Parallel branches it is in, outermost first. */
function branchOf(): Map<string, string[]> {
  type States = Record<string, { Branches?: { States: States }[] }>;
  const out = new Map<string, string[]>();
  const walk = (states: States, trail: string[]) => {
    for (const [name, s] of Object.entries(states)) {
      if (trail.length) out.set(name, trail);
      for (const [i, b] of (s.Branches ?? []).entries()) walk(b.States, [...trail, `${name}/${i}`]);
    }
  };
  walk((JSON.parse(aslText()) as { States: States }).States, []);
  return out;
}

function spansOf(events: HistoryEvent[]): Span[] {
  const open = new Map<string, { type: string; start: number }>();
  const spans: Span[] = [];
  for (const e of events) {
    const t = e.timestamp?.getTime() ?? 0;
    const type = e.type ?? "";
    if (type.endsWith("StateEntered")) {
      const name = e.stateEnteredEventDetails?.name ?? "";
      open.set(name, { type: type.replace("StateEntered", ""), start: t });
    } else if (type.endsWith("StateExited")) {
      const name = e.stateExitedEventDetails?.name ?? "";
      const o = open.get(name);
      if (o) spans.push({ name, type: o.type, start: o.start, end: t });
      open.delete(name);
    }
  }
  return spans;
}

/**
 * The spans on the critical path up to `until`: those outside any Parallel, plus, per run of a
 * Parallel, the branch that ended last.
 */
/**
 * The spans on the critical path: in each Parallel (nested ones too), only the branch that ended
 * last; every other state as it ran.
 */
function criticalSpans(spans: Span[], until: number): Span[] {
  const branches = branchOf();
  const off = new Set<Span>();
  for (const p of spans.filter((s) => s.type === "Parallel")) {
    const branchIn = (s: Span) =>
      (branches.get(s.name) ?? []).find((b) => b.startsWith(`${p.name}/`));
    const inside = spans.filter(
      (s) => branchIn(s) !== undefined && s.start >= p.start && s.end <= p.end + 1,
    );
    const ends = new Map<string, number>();
    for (const s of inside) {
      const b = branchIn(s) ?? "";
      ends.set(b, Math.max(ends.get(b) ?? 0, s.end));
    }
    const last = [...ends].sort((a, b) => b[1] - a[1])[0]?.[0];
    for (const s of inside) if (branchIn(s) !== last) off.add(s);
  }
  return spans.filter((s) => !off.has(s) && s.start < until);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function orchestrator(sandbox: Sandbox, model: TimeModel, path: Path): Promise<Measured> {
  const argoPorts = new Set(Object.values(sandbox.argo.urls).map((u) => new URL(u).port));
  const calls = recordCalls();
  const t0 = Date.now();
  let executionArn: string | undefined;
  let triggerMs = 0;
  if (path === "alarm") {
    sandbox.aws.route53.setFailingFraction(
      sandbox.topology.regions[SOURCE]?.route53.healthCheckId ?? "",
      1,
    );
    await sleep(sandboxMs(model, detectionSeconds(model)));
    const triggerStart = Date.now();
    const decision = (await invokeTrigger(alarmEvent(sandbox, SOURCE, new Date()))) as {
      decision: string;
      executionArn?: string;
      reason?: string;
    };
    if (decision.decision !== "started")
      throw new Error(`trigger did not start: ${decision.reason}`);
    executionArn = decision.executionArn;
    triggerMs = Date.now() - triggerStart;
  } else {
    const started = await sfnClient().send(
      new StartExecutionCommand({
        stateMachineArn: sandbox.stateMachineArn,
        name: `rto-${path}-${Date.now()}`,
        input: JSON.stringify({
          targetRegion: TARGET,
          reason: "rto benchmark",
          mode: path,
          dryRun: false,
          requestedBy: "bench",
        }),
      }),
    );
    executionArn = started.executionArn;
  }
  await sandbox.sfn.idle();
  const wallMs = Date.now() - t0;
  const history = await sfnClient().send(
    new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }),
  );
  const events = history.events ?? [];
  const status = events.at(-1)?.type?.replace(/^Execution/, "") ?? "UNKNOWN";
  const f = await floorsOf(sandbox);
  const spans = spansOf(events);
  if (process.env.RTO_DEBUG)
    for (const s of spans)
      console.error(
        `${s.name.padEnd(22)} ${s.type.padEnd(8)} ${fmt(awsSeconds(model, s.start - t0))} -> ${fmt(awsSeconds(model, s.end - t0))}`,
      );
  // The critical path, summed: Task time counts as is (real compute), Wait time scaled back to
  // AWS seconds, each transition and invoke its modelled overhead; then traffic convergence.
  const critical = criticalSpans(spans, f.trafficAt);
  const clip = (x: Span) => Math.max(0, Math.min(x.end, f.trafficAt) - x.start);
  const tasks = critical.filter((x) => x.type === "Task");
  const handler = (triggerMs + tasks.reduce((n, x) => n + clip(x), 0)) / 1000;
  const waitsOf = (waits: string[]) =>
    awsSeconds(
      model,
      critical
        .filter((x) => x.type === "Wait" && waits.includes(x.name))
        .reduce((n, x) => n + clip(x), 0),
    );
  const allWaits = awsSeconds(
    model,
    critical.filter((x) => x.type === "Wait").reduce((n, x) => n + clip(x), 0),
  );
  const sfnOverhead =
    critical.length * model.stepFunctions.transitionSeconds +
    tasks.length * model.stepFunctions.lambdaInvokeSeconds;
  const graceful = path === "graceful";
  const detection = path === "alarm" ? detectionSeconds(model) : 0;
  const apps = awsSeconds(model, f.appsMs);
  const data = awsSeconds(model, f.dataMs);
  const traffic = awsSeconds(model, f.trafficMs);
  const floor = detection + (graceful ? apps + data : Math.max(apps, data)) + traffic;
  // A service keeps working while a handler computes (real time, counted as is): a loop's AWS
  // time is at least the service's own time, plus the quantization of the poll that saw it
  // done (from the emulator's event time to that poll's start), plus that poll's handler time.
  const names = new Set(critical.map((x) => x.name));
  const loops: Record<string, number> = {};
  let corrections = 0;
  // A loop: its pollers (the first is the service's), the Waits between its passes.
  const loop = (tasks: string[], waits: string[], serviceMs: number, doneAt: number) => {
    const [name = ""] = tasks;
    if (!names.has(name)) return;
    const polls = critical.filter((x) => x.type === "Task" && tasks.includes(x.name));
    const seen = critical.filter((x) => x.name === name).at(-1);
    const last = polls.at(-1);
    if (!seen || !last) return;
    const quant = Math.max(0, awsSeconds(model, seen.start - doneAt));
    const counted = waitsOf(waits) + polls.reduce((n, x) => n + clip(x), 0) / 1000;
    const floorOfLoop =
      awsSeconds(model, serviceMs) + quant + (Math.min(last.end, f.trafficAt) - seen.start) / 1000;
    corrections += Math.max(0, floorOfLoop - counted);
    loops[`poll quantization ${name}`] = quant;
    // Waits after the pass that saw the service done: the capacity gate waiting for the floors.
    const gate = critical.filter(
      (x) => x.type === "Wait" && waits.includes(x.name) && x.start > seen.end && x.end <= last.end,
    );
    if (gate.length)
      loops[`capacity gate's waits after ${name}`] = awsSeconds(
        model,
        gate.reduce((n, x) => n + clip(x), 0),
      );
  };
  loop(
    ["AwaitArgoSync", "AwaitCapacity"],
    ["AwaitAppsWait", "AwaitCapacityWait"],
    f.appsDoneAt - f.appsDetectedAt,
    f.appsDoneAt,
  );
  loop(["AwaitAurora"], ["AwaitAuroraWait"], f.dataMs, f.dataDoneAt);
  const rto =
    detection +
    handler +
    allWaits +
    corrections +
    sfnOverhead +
    awsSeconds(model, f.convergedAt - f.trafficAt);
  const excess = rto - floor;
  const known = handler + sfnOverhead + Object.values(loops).reduce((a, b) => a + b, 0);
  const pollWindows = spans.filter((x) => x.name === "AwaitArgoSync");
  const argo = calls.filter((c) => argoPorts.has(c.port));
  const argoCallsPerPoll = pollWindows.map((w, i) =>
    countBy(
      argo.filter(
        (c) => c.start >= (i === 0 ? 0 : (pollWindows[i - 1]?.end ?? 0)) && c.start <= w.end,
      ),
    ),
  );
  return {
    path,
    status,
    rto,
    floor,
    floorParts: { detection, apps, data, traffic },
    excess: {
      "handler time (critical path)": handler,
      "Step Functions transitions + Lambda invokes (modelled)": sfnOverhead,
      ...loops,
      "other (detection of the commit, waits before a service started, spread of app detections)":
        excess - known,
    },
    transitions: spans.length,
    argoCallsPerPoll,
    argoCalls: countBy(argo),
    appsRefreshedOnRequest:
      sandbox.argo.webhooks().reduce((n, w) => n + w.refreshed, 0) + (countBy(argo).refresh ?? 0),
    wallMs,
  };
}

// ------------------------------------------------------------------ the runbook

async function runbook(sandbox: Sandbox, model: TimeModel, path: Path): Promise<Measured> {
  const argoPorts = new Set(Object.values(sandbox.argo.urls).map((u) => new URL(u).port));
  const calls = recordCalls();
  const t = sandbox.topology;
  const graceful = path === "runbook-graceful";
  /** The latest call's window (wall ms), for the phase that ends with it. */
  let last = { start: 0, end: 0 };
  const timed = async <T>(work: () => Promise<T>): Promise<T> => {
    const s = Date.now();
    try {
      return await work();
    } finally {
      last = { start: s, end: Date.now() };
    }
  };
  const nap = (seconds: number) => sleep(sandboxMs(model, seconds));
  const t0 = Date.now();
  // 1. git push
  const commit = await timed(() =>
    commitRetarget(
      { url: t.git.url, branch: t.git.branch, author: t.git.author },
      { token: sandbox.credentials.git.password, username: sandbox.credentials.git.username },
      [{ file: VALUES_FILE, path: `regions.${TARGET}.active`, value: true }],
      { subject: `failover: make ${TARGET} active (runbook)`, body: "", trailers: {} },
      { maxAttempts: 3 },
    ),
  );
  const pushEnd = last.end;
  let appsSeen = last;
  // 2. argocd app wait --sync --health -l <selector> (a watch: polled every 2 s here)
  const hubs = Object.entries(sandbox.argo.urls).map(([name, url]) => ({
    name,
    url,
    token: sandbox.credentials.argocdToken,
    caData: sandbox.ca.caPem,
  }));
  for (;;) {
    const r = await timed(() =>
      checkSync({
        hubs,
        selector: t.argocd.appSelector,
        clusters: t.regions[TARGET]?.spokes.map((s) => s.argocdCluster) ?? [],
        revision: commit.sha,
        refresh: "none",
        sync: false,
        firstPoll: false,
        timeoutMs: 60_000,
      }),
    );
    if (r.status === "SUCCEEDED") {
      appsSeen = last;
      break;
    }
    if (r.status === "FAILED")
      throw new Error(`runbook: argocd app wait failed: ${r.error?.message}`);
    await nap(2);
  }
  // 3. aws rds switchover-global-cluster / failover-global-cluster --allow-data-loss, then wait
  const gc = t.aurora.globalClusterIdentifier;
  const target = t.regions[TARGET]?.aurora.clusterArn ?? "";
  await timed(() =>
    graceful
      ? rdsClient(SOURCE).send(
          new SwitchoverGlobalClusterCommand({
            GlobalClusterIdentifier: gc,
            TargetDbClusterIdentifier: target,
          }),
        )
      : rdsClient(TARGET).send(
          new FailoverGlobalClusterCommand({
            GlobalClusterIdentifier: gc,
            TargetDbClusterIdentifier: target,
            AllowDataLoss: true,
          }),
        ),
  );
  const promoted = last;
  let dataSeen = last;
  for (;;) {
    await nap(10);
    const d = await timed(() =>
      rdsClient(TARGET).send(new DescribeGlobalClustersCommand({ GlobalClusterIdentifier: gc })),
    );
    const g = d.GlobalClusters?.[0];
    const writer = g?.GlobalClusterMembers?.find((m) => m.IsWriter)?.DBClusterArn;
    if (writer === target && !g?.FailoverState?.Status) {
      dataSeen = last;
      break;
    }
  }
  // 4. aws globalaccelerator update-endpoint-group: target dial 100, then source dial 0
  const gaStart = Date.now();
  for (const [region, dial] of [
    [TARGET, 100],
    [SOURCE, 0],
  ] as const) {
    const arn = t.regions[region]?.globalAccelerator?.endpointGroupArn ?? "";
    await timed(async () => {
      const g = await globalAcceleratorClient().send(
        new DescribeEndpointGroupCommand({ EndpointGroupArn: arn }),
      );
      await globalAcceleratorClient().send(
        new UpdateEndpointGroupCommand({
          EndpointGroupArn: arn,
          TrafficDialPercentage: dial,
          EndpointConfigurations: (g.EndpointGroup?.EndpointDescriptions ?? []).map((e) => ({
            EndpointId: e.EndpointId,
            Weight: e.Weight,
            ClientIPPreservationEnabled: e.ClientIPPreservationEnabled,
          })),
        }),
      );
    });
  }
  const wallMs = Date.now() - t0;
  const f = await floorsOf(sandbox);
  const apps = awsSeconds(model, f.appsMs);
  const data = awsSeconds(model, f.dataMs);
  const traffic = awsSeconds(model, f.trafficMs);
  const floor = (graceful ? apps + data : Math.max(apps, data)) + traffic;
  // Waiting on a service is service time (scaled back); the calls are real time, counted as is,
  // except those made while the service was still working (its progress is in the waits).
  const appsWait = awsSeconds(model, appsSeen.start - pushEnd);
  const dataWait = awsSeconds(model, dataSeen.start - promoted.end);
  const callsMs =
    pushEnd -
    t0 +
    (appsSeen.end - appsSeen.start) +
    (promoted.end - promoted.start) +
    (dataSeen.end - dataSeen.start) +
    Math.max(0, f.trafficAt - gaStart);
  const rto =
    Math.max(0, callsMs) / 1000 +
    appsWait +
    dataWait +
    awsSeconds(model, f.convergedAt - f.trafficAt);
  const argo = calls.filter((c) => argoPorts.has(c.port));
  return {
    path,
    status: "SUCCEEDED",
    rto,
    floor,
    floorParts: { detection: 0, apps, data, traffic },
    excess: {
      "client time (git, argocd, aws CLI calls) outside the waits": Math.max(0, callsMs) / 1000,
      "argocd app wait beyond the apps' own time (Argo CD's Git poll finds the commit)":
        appsWait - apps,
      "describe-global-clusters loop beyond the promotion's own time": dataWait - data,
      "sequential: apps then data (ungraceful could overlap them)": graceful
        ? 0
        : Math.min(apps, data),
    },
    argoCalls: countBy(argo),
    appsRefreshedOnRequest: 0,
    wallMs,
  };
}

// ------------------------------------------------------------------ main

const fmt = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : "n/a");

async function measure(spokes: number, apps: number, model: TimeModel, path: Path) {
  const sandbox = await startSandbox({
    spokes,
    apps,
    reportDir: `${process.env.TMPDIR ?? "/tmp"}/gf-rto-report-${process.pid}`,
    timeModel: model,
  });
  try {
    // Module init is bench/bundle.ts's measure (cold starts under 300 ms on Lambda), not this one's.
    for (const f of FUNCTIONS) await import(`../functions/${f.dir}/handler.ts`);
    return path.startsWith("runbook")
      ? await runbook(sandbox, model, path)
      : await orchestrator(sandbox, model, path);
  } finally {
    await sandbox.stop();
  }
}

const defaultScale = arg("time-scale", "");
const sizes = arg("sizes", defaultScale ? "3x6,100x5000" : "3x6@0.05,100x5000@0.1")
  .split(",")
  .map((s) => {
    const [size = "", scale = defaultScale || "0.05"] = s.split("@");
    const [spokes = 3, apps = 6] = size.split("x").map(Number);
    return { spokes, apps, scale: Number(scale) };
  });
const paths = arg("paths", "graceful,ungraceful,alarm,runbook-graceful,runbook-ungraceful").split(
  ",",
) as Path[];
process.env.POWERTOOLS_LOG_LEVEL ??= "SILENT";
console.log(
  `Node ${process.version}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")} at start; time model overrides ${JSON.stringify(overrides)}\n`,
);
for (const { spokes, apps, scale } of sizes) {
  const model = timeModel(scale, overrides);
  const results: Measured[] = [];
  for (const path of paths) {
    const r = await measure(spokes, apps, model, path);
    results.push(r);
    console.error(`${spokes}x${apps} ${path}: ${JSON.stringify(r)}`);
  }
  console.log(
    `### ${spokes} spokes x ${apps} apps, scale ${scale} (${1 / scale} AWS s per sandbox s); load ${loadavg()[0]?.toFixed(2)}\n`,
  );
  console.log(
    "| path | status | RTO (AWS s) | floor (AWS s) | floor parts: detection / apps / data / traffic | ratio RTO/floor | ratio RTO / services' floor | transitions | Argo CD calls per AwaitArgoSync poll (first, max later) | Argo CD calls in the run | apps refreshed on request | wall |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  /** The services' floor of a mode: measured where Argo CD is told at once (the orchestrator's run). */
  const servicesFloor = (r: Measured) =>
    results.find((x) => x.path === r.path.replace("runbook-", ""))?.floor ?? r.floor;
  for (const r of results) {
    const polls = r.argoCallsPerPoll ?? [];
    const total = (p: Record<string, number> | undefined) =>
      Object.values(p ?? {}).reduce((a, b) => a + b, 0);
    const first = polls[0] ? `${total(polls[0])} ${JSON.stringify(polls[0])}` : "-";
    const later = polls.length > 1 ? Math.max(...polls.slice(1).map(total)) : "-";
    console.log(
      `| ${r.path} | ${r.status} | ${fmt(r.rto)} | ${fmt(r.floor)} | ${[r.floorParts.detection, r.floorParts.apps, r.floorParts.data, r.floorParts.traffic].map(fmt).join(" / ")} | ${(r.rto / r.floor).toFixed(3)} | **${(r.rto / servicesFloor(r)).toFixed(3)}** | ${r.transitions ?? "-"} | ${polls.length ? `${first}; ${later} (${polls.length} polls)` : "-"} | ${JSON.stringify(r.argoCalls)} | ${r.appsRefreshedOnRequest} | ${(r.wallMs / 1000).toFixed(1)} s |`,
    );
  }
  console.log("\nExcess over the floor, by cause (AWS s):\n");
  for (const r of results)
    console.log(
      `- ${r.path}: ${Object.entries(r.excess)
        .map(([k, v]) => `${k} ${fmt(v)}`)
        .join("; ")}`,
    );
  console.log("");
}
process.exit(0);
