/**
 * A hub's own recoverability: the Argo CD hub is what re-creates every Application after a
 * disaster, so its namespace must have a recent Velero backup. Read through the hub cluster's
 * Kubernetes API (velero.io/v1 Backup objects in the Velero server's namespace) with a read-only
 * token, with the same TLS and error rules as the spokes (spoke.ts clusterClient).
 *
 * A backup counts for a namespace as Velero decides it: `spec.includedNamespaces` unset, empty or
 * `*` means every namespace, and `spec.excludedNamespaces` wins
 * (https://velero.io/docs/v1.10/api-types/backup/). Only `status.phase: Completed` counts:
 * PartiallyFailed, Failed and the in-progress phases do not restore the hub reliably.
 */
import type { HubBackup } from "./config.ts";
import { clusterClient, type SpokeConnection } from "./spoke.ts";

const HUB_CLUSTER_ROLE = {
  kind: "hub cluster",
  role: "read-only Role in the Velero namespace (get, list backups.velero.io)",
};

interface RawBackup {
  metadata?: { name?: string; creationTimestamp?: string };
  spec?: { includedNamespaces?: string[] | null; excludedNamespaces?: string[] | null };
  status?: { phase?: string; completionTimestamp?: string; startTimestamp?: string };
}

/** The newest backup of the Argo CD namespace and how it compares with the threshold. */
export interface BackupFinding {
  /**
   * `fresh`: a Completed backup younger than maxAgeHours; `stale`: older; `none`: no Completed
   * one; `unserved`: the API answered the list with an error (404: Velero is not installed).
   */
  verdict: "fresh" | "stale" | "none" | "unserved";
  /** For `unserved`: the HTTP status and message. */
  said?: string;
  /** Name and age (hours) of the newest Completed backup covering the namespace, if any. */
  newest?: { name: string; completedAt: string; ageHours: number };
  /** A newer attempt that did not complete (Failed, PartiallyFailed, ...), if any. */
  newerAttempt?: { name: string; phase: string };
  /** Backups listed in the namespace (all of them, covering the Argo CD namespace or not). */
  listed: number;
}

function covers(b: RawBackup, namespace: string): boolean {
  const included = b.spec?.includedNamespaces ?? [];
  const excluded = b.spec?.excludedNamespaces ?? [];
  if (excluded.includes(namespace)) return false;
  return included.length === 0 || included.includes("*") || included.includes(namespace);
}

const startedAt = (b: RawBackup) =>
  Date.parse(b.status?.startTimestamp ?? b.metadata?.creationTimestamp ?? "") || 0;

/**
 * Lists the Velero backups on the hub cluster and finds the newest Completed one covering the
 * Argo CD namespace. Throws SpokeUnreachable / SpokeAuthError (named for the hub cluster) when
 * the API server cannot be reached or refuses the token; an answer that is an error otherwise
 * (404: the Backup kind is not served, Velero is not installed) is `unserved`.
 */
export async function newestHubBackup(
  conn: SpokeConnection,
  backup: HubBackup,
  options: { timeoutMs: number; now?: number },
): Promise<BackupFinding> {
  const client = clusterClient(conn, options.timeoutMs, HUB_CLUSTER_ROLE);
  const answer = await client.call(
    `GET /apis/velero.io/v1/namespaces/${backup.namespace}/backups`,
    () =>
      client.custom.listNamespacedCustomObject({
        group: "velero.io",
        version: "v1",
        namespace: backup.namespace,
        plural: "backups",
      }) as Promise<{ items?: RawBackup[] }>,
  );
  if (!("value" in answer)) {
    return { verdict: "unserved", listed: 0, said: `HTTP ${answer.status}: ${answer.message}` };
  }
  const items = answer.value.items ?? [];
  const mine = items.filter((b) => covers(b, backup.argocdNamespace));
  const completed = mine
    .filter((b) => b.status?.phase === "Completed" && b.status.completionTimestamp)
    .sort(
      (a, b) =>
        Date.parse(b.status?.completionTimestamp ?? "") -
        Date.parse(a.status?.completionTimestamp ?? ""),
    );
  const newestDone = completed[0];
  const now = options.now ?? Date.now();
  const attempt = mine
    .filter((b) => b.status?.phase !== "Completed")
    .sort((a, b) => startedAt(b) - startedAt(a))[0];
  const newerAttempt =
    attempt && (!newestDone || startedAt(attempt) > startedAt(newestDone))
      ? { name: attempt.metadata?.name ?? "?", phase: attempt.status?.phase ?? "New" }
      : undefined;
  const base = { listed: items.length, ...(newerAttempt ? { newerAttempt } : {}) };
  if (!newestDone) return { ...base, verdict: "none" };
  const completedAt = newestDone.status?.completionTimestamp ?? "";
  const ageHours = Math.max(0, (now - Date.parse(completedAt)) / 3_600_000);
  return {
    ...base,
    verdict: ageHours < backup.maxAgeHours ? "fresh" : "stale",
    newest: { name: newestDone.metadata?.name ?? "?", completedAt, ageHours },
  };
}
