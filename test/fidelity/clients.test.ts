/**
 * A missing client fails the fidelity tests with the package to install; it never skips them.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { git, kubectl } from "./clients.ts";

const savedPath = process.env.PATH;
const dirs: string[] = [];
afterEach(async () => {
  process.env.PATH = savedPath;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

describe("fidelity clients", () => {
  it("names the Debian package when kubectl or git is not on PATH", async () => {
    // Prepare
    const empty = await mkdtemp(join(tmpdir(), "gf-no-clients-"));
    dirs.push(empty);
    process.env.PATH = empty;
    // Act + Assess
    expect(() => kubectl()).toThrow(
      "kubectl is not installed: install the Debian package kubernetes-client (apt-get install -y kubernetes-client)",
    );
    expect(() => git()).toThrow("install the Debian package git (apt-get install -y git)");
  });
});
