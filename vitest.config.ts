import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    // vitest's default is one worker fewer than the cores: a single worker on CI's 2 cores, so
    // the files ran one after another while the drills mostly wait (Wait states, child
    // processes, sockets). Two files at a time on 2 cores, one per core on bigger machines.
    maxWorkers: Math.max(2, availableParallelism()),
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    // The functions log structured JSON; tests that read logs turn them on themselves.
    env: { POWERTOOLS_LOG_LEVEL: "SILENT" },
  },
});
