import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    // The functions log structured JSON; tests that read logs turn them on themselves.
    env: { POWERTOOLS_LOG_LEVEL: "SILENT" },
  },
});
