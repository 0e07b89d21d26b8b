/**
 * On Lambda every outbound HTTP(S) request of a traced invocation is an X-Ray subsegment: the
 * Tracer patches node:http and node:https (Argo CD's client, isomorphic-git's transport) and
 * subscribes to fetch's diagnostics channel (the Kubernetes client). Its own file: the fetch
 * subscription is process-wide, so a second Tracer in the same process would record each
 * request twice, which one container never does.
 */
import { describe, expect, it, vi } from "vitest";

describe("outbound HTTP in a traced invocation", () => {
  it("becomes a subsegment per request, through node:http(s) (Argo CD, isomorphic-git) and fetch (the Kubernetes client)", async () => {
    // Prepare: a Lambda environment, a segment as Lambda's facade would hold, a local server.
    vi.stubEnv("AWS_EXECUTION_ENV", "AWS_Lambda_nodejs22.x");
    vi.stubEnv("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:9");
    vi.stubEnv(
      "_X_AMZN_TRACE_ID",
      "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    );
    const { tracer } = await import("../../functions/lib/telemetry.ts");
    const xray = await import("aws-xray-sdk-core");
    const http = (await import("node:http")).default;
    const server = http.createServer((_req, res) => res.end("ok"));
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    const port = (server.address() as { port: number }).port;
    const segment = new xray.Segment("handler");
    try {
      // Act: inside the invocation's trace context, as the handler middleware runs.
      await xray.getNamespace().runPromise(async () => {
        tracer.setSegment(segment);
        await new Promise<void>((done, fail) => {
          http
            .request({ host: "127.0.0.1", port, path: "/api/v1/applications" }, (res) => {
              res.resume();
              res.on("end", done);
            })
            .on("error", fail)
            .end();
        });
        await (await fetch(`http://localhost:${port}/api/v1/nodes`)).text();
      });
    } finally {
      server.close();
    }
    // Assess
    const subsegments = (segment.subsegments ?? []) as unknown as {
      name: string;
      http?: { request?: { url?: string } };
    }[];
    expect(subsegments.map((s) => s.name).sort()).toEqual(["127.0.0.1", "localhost"]);
    expect(subsegments.map((s) => s.http?.request?.url).sort()).toEqual([
      "http://127.0.0.1/api/v1/applications",
      "http://localhost/api/v1/nodes",
    ]);
  });
});
