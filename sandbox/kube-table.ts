/**
 * The server-side printing kube-apiserver does for `kubectl get`: a request with
 * `Accept: application/json;as=Table;g=meta.k8s.io;v=v1` gets a meta.k8s.io/v1 Table whose
 * columns and cells are those of Kubernetes' own printers (pkg/printers/internalversion/
 * printers.go: nodeColumnDefinitions, namespaceColumnDefinitions, deploymentColumnDefinitions,
 * podColumnDefinitions, eventColumnDefinitions; ages by apimachinery's duration.HumanDuration;
 * a custom resource's columns from its CRD's additionalPrinterColumns).
 */

type Json = Record<string, unknown>;

/** A column of a Table (meta.k8s.io/v1 TableColumnDefinition: every field is always sent). */
interface Column {
  name: string;
  type: "string" | "integer";
  format: string;
  description: string;
  priority: number;
}

const column = (name: string, description: string, priority = 0, type: Column["type"] = "string") =>
  ({ name, type, format: name === "Name" ? "name" : "", description, priority }) satisfies Column;

const NAME = column(
  "Name",
  "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
);
const AGE = column(
  "Age",
  "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
);

/** apimachinery's duration.HumanDuration: what kubectl shows as AGE and LAST SEEN. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

/** translateTimestampSince: `<unknown>` for a missing timestamp. */
function since(timestamp: unknown, now: number): string {
  if (typeof timestamp !== "string" || !timestamp) return "<unknown>";
  return humanDuration(now - Date.parse(timestamp));
}

const meta = (obj: Json) => (obj.metadata ?? {}) as Json;
const spec = (obj: Json) => (obj.spec ?? {}) as Json;
const status = (obj: Json) => (obj.status ?? {}) as Json;
const num = (v: unknown) => (typeof v === "number" ? v : 0);
const list = (v: unknown) => (Array.isArray(v) ? (v as Json[]) : []);
const condition = (obj: Json, type: string) =>
  list(status(obj).conditions).find((c) => c.type === type);

interface Printer {
  columns: Column[];
  cells(obj: Json, now: number): unknown[];
}

const node: Printer = {
  columns: [
    NAME,
    column("Status", "The status of the node"),
    column("Roles", "The roles of the node"),
    AGE,
    column("Version", "Kubelet Version reported by the node."),
    column("Internal-IP", "List of addresses reachable to the node.", 1),
    column("External-IP", "List of addresses reachable to the node.", 1),
    column(
      "OS-Image",
      "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
      1,
    ),
    column(
      "Kernel-Version",
      "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
      1,
    ),
    column(
      "Container-Runtime",
      "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
      1,
    ),
  ],
  cells(obj, now) {
    const ready = condition(obj, "Ready");
    const states = [ready ? (ready.status === "True" ? "Ready" : "NotReady") : "Unknown"];
    if (spec(obj).unschedulable === true) states.push("SchedulingDisabled");
    const labels = (meta(obj).labels ?? {}) as Record<string, string>;
    const roles = Object.keys(labels)
      .filter((k) => k.startsWith("node-role.kubernetes.io/"))
      .map((k) => k.slice("node-role.kubernetes.io/".length))
      .filter(Boolean);
    if (labels["kubernetes.io/role"]) roles.push(labels["kubernetes.io/role"]);
    const info = (status(obj).nodeInfo ?? {}) as Record<string, string>;
    const address = (type: string) =>
      list(status(obj).addresses).find((a) => a.type === type)?.address ?? "<none>";
    return [
      meta(obj).name,
      states.join(","),
      roles.length ? roles.sort().join(",") : "<none>",
      since(meta(obj).creationTimestamp, now),
      info.kubeletVersion ?? "",
      address("InternalIP"),
      address("ExternalIP"),
      info.osImage || "<unknown>",
      info.kernelVersion || "<unknown>",
      info.containerRuntimeVersion || "<unknown>",
    ];
  },
};

const namespace: Printer = {
  columns: [NAME, column("Status", "The status of the namespace"), AGE],
  cells: (obj, now) => [
    meta(obj).name,
    status(obj).phase ?? "",
    since(meta(obj).creationTimestamp, now),
  ],
};

/** Containers and images of a pod template, as the wide columns show them. */
function containers(podSpec: Json): [string, string] {
  const cs = list(podSpec.containers);
  return [
    cs.map((c) => String(c.name ?? "")).join(","),
    cs.map((c) => String(c.image ?? "")).join(","),
  ];
}

function selectorText(selector: unknown): string {
  const labels = ((selector as Json | undefined)?.matchLabels ?? {}) as Record<string, string>;
  const parts = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.sort().join(",") : "<none>";
}

const deployment: Printer = {
  columns: [
    NAME,
    column("Ready", "Number of the pod with ready state"),
    column(
      "Up-to-date",
      "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
      0,
      "integer",
    ),
    column(
      "Available",
      "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
      0,
      "integer",
    ),
    AGE,
    column("Containers", "Names of each container in the template.", 1),
    column("Images", "Images referenced by each container in the template.", 1),
    column(
      "Selector",
      "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
      1,
    ),
  ],
  cells(obj, now) {
    const s = status(obj);
    const desired = typeof spec(obj).replicas === "number" ? (spec(obj).replicas as number) : 1;
    const template = (spec(obj).template ?? {}) as Json;
    const [names, images] = containers(spec(template));
    return [
      meta(obj).name,
      `${num(s.readyReplicas)}/${desired}`,
      num(s.updatedReplicas),
      num(s.availableReplicas),
      since(meta(obj).creationTimestamp, now),
      names,
      images,
      selectorText(spec(obj).selector),
    ];
  },
};

const pod: Printer = {
  columns: [
    NAME,
    column("Ready", "The aggregate readiness state of this pod for accepting traffic."),
    column("Status", "The aggregate status of the containers in this pod."),
    column(
      "Restarts",
      "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    column(
      "IP",
      "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
      1,
    ),
    column(
      "Node",
      "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
      1,
    ),
    column(
      "Nominated Node",
      "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
      1,
    ),
    column(
      "Readiness Gates",
      'If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to "True" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates',
      1,
    ),
  ],
  cells(obj, now) {
    const s = status(obj);
    const statuses = list(s.containerStatuses);
    const ready = statuses.filter((c) => c.ready === true).length;
    let reason = String(s.reason ?? s.phase ?? "");
    let restarts = 0;
    for (const c of statuses) {
      restarts += num(c.restartCount);
      const waiting = ((c.state ?? {}) as Json).waiting as Json | undefined;
      if (waiting?.reason) reason = String(waiting.reason);
    }
    return [
      meta(obj).name,
      `${ready}/${list(spec(obj).containers).length}`,
      reason,
      String(restarts),
      since(meta(obj).creationTimestamp, now),
      s.podIP ?? "<none>",
      spec(obj).nodeName ?? "<none>",
      s.nominatedNodeName ?? "<none>",
      "<none>",
    ];
  },
};

const event: Printer = {
  columns: [
    column("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    column("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    column(
      "Reason",
      "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    column("Object", "The object that this event is about."),
    column(
      "Subobject",
      'If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: "spec.containers{name}" (where "name" refers to the name of the container that triggered the event) or if no container name is specified "spec.containers[2]" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.',
      1,
    ),
    column(
      "Source",
      "The component reporting this event. Should be a short machine understandable string.",
      1,
    ),
    column("Message", "A human-readable description of the status of this operation."),
    column(
      "First Seen",
      "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
      1,
    ),
    column("Count", "The number of times this event has occurred.", 1),
    { ...column("Name", NAME.description, 1), format: "name" },
  ],
  cells(obj, now) {
    const involved = (obj.involvedObject ?? {}) as Json;
    const source = (obj.source ?? {}) as Json;
    const count = num(obj.count);
    const first = since(obj.firstTimestamp, now);
    const last = since(obj.lastTimestamp, now);
    return [
      count > 1 ? `${last} (x${count} over ${first})` : last,
      obj.type ?? "",
      obj.reason ?? "",
      `${String(involved.kind ?? "").toLowerCase()}/${String(involved.name ?? "")}`,
      involved.fieldPath ?? "",
      [source.component, source.host].filter(Boolean).join(", "),
      String(obj.message ?? "").trim(),
      first,
      String(count),
      meta(obj).name,
    ];
  },
};

/** external-secrets.io/v1 ExternalSecret: the CRD's additionalPrinterColumns (external-secrets v0.16+). */
const externalSecret: Printer = {
  columns: [
    NAME,
    column("StoreType", "", 1),
    column("Store", ""),
    column("Refresh Interval", ""),
    column("Status", ""),
    column("Ready", ""),
    AGE,
  ],
  cells(obj, now) {
    const ref = (spec(obj).secretStoreRef ?? {}) as Json;
    const ready = condition(obj, "Ready");
    return [
      meta(obj).name,
      ref.kind ?? "SecretStore",
      ref.name ?? "",
      spec(obj).refreshInterval ?? "",
      ready?.reason ?? "",
      ready?.status ?? "",
      since(meta(obj).creationTimestamp, now),
    ];
  },
};

const PRINTERS: Record<string, Printer> = {
  Node: node,
  Namespace: namespace,
  Deployment: deployment,
  Pod: pod,
  Event: event,
  ExternalSecret: externalSecret,
};

/** true when the client asked for a meta.k8s.io/v1 Table (kubectl get does, with a JSON fallback). */
export function wantsTable(accept: string | undefined): boolean {
  return (accept ?? "").split(",").some((part) => {
    const params = part.split(";").map((p) => p.trim());
    return (
      params[0] === "application/json" &&
      params.includes("as=Table") &&
      params.includes("g=meta.k8s.io") &&
      params.includes("v=v1")
    );
  });
}

/** The `object` of a row: PartialObjectMetadata (includeObject=Metadata, the default), the object, or none. */
function rowObject(obj: Json, include: string): Json | undefined {
  if (include === "None") return undefined;
  if (include === "Object") return obj;
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: meta(obj) };
}

/**
 * Renders objects of one kind as a Table (undefined for a kind without a printer: the JSON the
 * client also accepts is sent instead). `columns: false` leaves the column definitions out,
 * as kube-apiserver does for every watch event after the first.
 */
export function table(
  kind: string,
  objects: Json[],
  resourceVersion: string,
  includeObject: string,
  options: { columns?: boolean; now?: number } = {},
): Json | undefined {
  const printer = PRINTERS[kind];
  if (!printer) return undefined;
  const now = options.now ?? Date.now();
  return {
    kind: "Table",
    apiVersion: "meta.k8s.io/v1",
    metadata: { resourceVersion },
    columnDefinitions: options.columns === false ? null : printer.columns,
    rows: objects.map((obj) => {
      const object = rowObject(obj, includeObject);
      return { cells: printer.cells(obj, now), ...(object ? { object } : {}) };
    }),
  };
}

/** The includeObject values kube-apiserver accepts. */
export const INCLUDE_OBJECT = new Set(["None", "Metadata", "Object"]);
