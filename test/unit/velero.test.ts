/**
 * A hub's Velero backups as readiness reads them: through a strict HTTPS fake kube-apiserver
 * serving velero.io/v1 Backups (sandbox/spoke.ts), with Velero's own rules for which backups cover
 * a namespace (https://velero.io/docs/v1.10/api-types/backup/: includedNamespaces unset, empty or
 * `*` is every namespace; excludedNamespaces wins) and for which count (phase Completed).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SpokeAuthError } from "../../functions/lib/errors.ts";
import { newestHubBackup } from "../../functions/lib/velero.ts";
import { type Ca, createCa } from "../../sandbox/ca.ts";
import { type FakeSpoke, type FakeVeleroBackup, startSpoke } from "../../sandbox/spoke.ts";

const NOW = Date.parse("2026-12-02T12:00:00Z");
const at = (hoursAgo: number) => new Date(NOW - hoursAgo * 3_600_000).toISOString();
const BACKUP = {
  apiServer: "",
  caData: "",
  tokenSecretArn: "arn:aws:secretsmanager:us-west-2:111122223333:secret:velero-AbCdEf",
  namespace: "velero",
  argocdNamespace: "argocd",
  maxAgeHours: 25,
};
const TOKEN = "hub-cluster-token";

let dir: string;
let ca: Ca;
let hub: FakeSpoke;
let bare: FakeSpoke;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gf-velero-"));
  ca = await createCa(join(dir, "ca"));
  [hub, bare] = await Promise.all([
    startSpoke({
      name: "hub",
      region: "us-west-2",
      token: TOKEN,
      ca,
      velero: { namespace: "velero" },
    }),
    startSpoke({ name: "bare", region: "us-west-2", token: TOKEN, ca }),
  ]);
});
afterAll(async () => {
  await Promise.all([hub?.stop(), bare?.stop()]);
  await rm(dir, { recursive: true, force: true });
});

function read(cluster: FakeSpoke, token = TOKEN) {
  return newestHubBackup(
    { name: cluster.name, apiServer: cluster.url, caData: ca.caPem, token },
    { ...BACKUP, apiServer: cluster.url, caData: ca.caPem },
    { timeoutMs: 5_000, now: NOW },
  );
}

const backup = (
  name: string,
  hoursAgo: number,
  phase = "Completed",
  includedNamespaces?: string[],
): FakeVeleroBackup => ({
  name,
  phase,
  startedAt: at(hoursAgo + 0.1),
  ...(phase === "Completed" || phase === "PartiallyFailed" ? { completedAt: at(hoursAgo) } : {}),
  ...(includedNamespaces ? { includedNamespaces } : {}),
});

describe("newest hub backup", () => {
  it("is the newest Completed backup covering the Argo CD namespace, fresh under maxAgeHours", async () => {
    hub.setVeleroBackups([
      backup("old", 30, "Completed", ["argocd"]),
      backup("other-namespace", 1, "Completed", ["payments"]),
      backup("daily", 3, "Completed", ["argocd"]),
    ]);
    expect(await read(hub)).toEqual({
      verdict: "fresh",
      listed: 3,
      newest: { name: "daily", completedAt: at(3), ageHours: 3 },
    });
  });

  it("counts a backup of every namespace (unset or '*'), not one that excludes argocd", async () => {
    hub.setVeleroBackups([
      backup("all", 5),
      backup("star", 4, "Completed", ["*"]),
      { ...backup("all-but-argocd", 1), excludedNamespaces: ["argocd"] },
    ]);
    expect((await read(hub)).newest?.name).toBe("star");
  });

  it("is stale past maxAgeHours and names a newer attempt that did not complete", async () => {
    hub.setVeleroBackups([
      backup("daily", 30, "Completed", ["argocd"]),
      backup("retry", 2, "PartiallyFailed", ["argocd"]),
    ]);
    expect(await read(hub)).toMatchObject({
      verdict: "stale",
      newest: { name: "daily", ageHours: 30 },
      newerAttempt: { name: "retry", phase: "PartiallyFailed" },
    });
  });

  it("is none when no Completed backup covers the namespace", async () => {
    hub.setVeleroBackups([backup("failing", 1, "Failed", ["argocd"])]);
    expect(await read(hub)).toEqual({
      verdict: "none",
      listed: 1,
      newerAttempt: { name: "failing", phase: "Failed" },
    });
  });

  it("says the Backup kind is not served where Velero is not installed", async () => {
    expect(await read(bare)).toMatchObject({
      verdict: "unserved",
      said: expect.stringMatching(/^HTTP 404/),
    });
  });

  it("names the hub cluster and the role when the token is refused", async () => {
    const refused = read(hub, "wrong-token");
    await expect(refused).rejects.toBeInstanceOf(SpokeAuthError);
    await expect(refused).rejects.toThrow(
      /^hub cluster hub \(https:\/\/127\.0\.0\.1:\d+\) rejected the token .*get, list backups\.velero\.io/,
    );
  });
});
