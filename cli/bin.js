#!/usr/bin/env node
// The operator CLI runs its TypeScript sources directly through tsx (Node 22+).
const major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  console.error(
    `gitops-failover needs Node.js 22 or later (this is ${process.version}). ` +
      "Run it through npm, which puts the project's node@22 first: npx gitops-failover ...",
  );
  process.exit(2);
}
const { register } = await import("tsx/esm/api");

// Drills run the functions in this process; their INFO logs would drown the CLI's own output.
// Powertools fixes the level when its logger is built, so the default must be set first.
// `POWERTOOLS_LOG_LEVEL=INFO npx gitops-failover drill` shows them.
process.env.POWERTOOLS_LOG_LEVEL ??= "SILENT";
register();
// A reader that stops early (`drill | head`) closes the pipe: the drill still finishes and removes
// its sandbox, with nothing more printed, instead of dying on an unhandled EPIPE.
process.stdout.on("error", (err) => {
  if (err.code !== "EPIPE" && err.code !== "ERR_STREAM_DESTROYED") throw err;
});
const { main } = await import("./main.ts");
process.exitCode = await main(process.argv);
