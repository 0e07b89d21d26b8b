/**
 * The GitOps repository the sandbox seeds its Git server with: what a platform team would keep
 * for a multi-region service, small enough to read and large enough to exercise the failover.
 *
 * - `applicationsets/<component>.yaml`: one ApplicationSet per component, cluster generator over
 *   the production spokes, automated sync with prune + selfHeal, and
 *   `preserveResourcesOnDeletion: true` so a cluster that stops matching keeps its workloads.
 * - `apps/<component>/`: a Deployment and an ExternalSecret; `web` also a HorizontalPodAutoscaler.
 * - `envs/production/values.yaml`: `regions.<region>.active` per region,
 *   `regions.<region>.minReplicas.<component>` (capacity parity's committed floor),
 *   `regions.<region>.maxReplicas.<component>` (the HPA's ceiling there) and
 *   `replicas.{active,passive}`.
 *
 * The "chart" rule (applied by the Argo CD emulator, as a Helm template would): a Deployment runs
 * `replicas.active` where the cluster's `region` value has `regions.<region>.active: true`, and
 * `replicas.passive` elsewhere. The default is a warm standby (3 active, 1 passive). A region is
 * made active and made passive by separate edits, so a failover is two commits: the first scales
 * the target up while the source keeps serving at full size, the second (once traffic has moved)
 * scales the source down to its standby size. A failover that stops before traffic moves never
 * leaves the serving region smaller than it was.
 */

/** What to seed: regions with their spokes, the active region and the app count per spoke. */
export interface LayoutOptions {
  platform: string;
  regions: { region: string; clusters: string[] }[];
  activeRegion: string;
  /** Components (Applications) per cluster. */
  components: number;
  /** Replicas per Deployment in the active region and in every other one (default {@link DEFAULT_REPLICAS}). */
  replicas?: { active: number; passive: number };
  /** The HPAs' `maxReplicas` per region, in the values (default {@link HPA_MAX_REPLICAS}). */
  hpaMaxReplicas?: Record<string, number>;
}

/** Warm standby: every passive region keeps one ready replica of each Deployment. */
export const DEFAULT_REPLICAS = { active: 3, passive: 1 } as const;

/** The file holding `regions.<region>.active`: the topology's retarget and demote edits point here. */
export const VALUES_FILE = "envs/production/values.yaml";

/** Where the ApplicationSets live (what an app-of-apps would apply to the hub). */
export const APPLICATIONSETS_DIR = "applicationsets";

/** The repoURL the ApplicationSets name; the emulator serves every source from its own repo. */
function repoUrl(platform: string): string {
  return `https://git.sandbox.local/${platform}/gitops.git`;
}

const NAMED_COMPONENTS = [
  "api",
  "web",
  "worker",
  "payments",
  "orders",
  "catalog",
  "search",
  "cart",
  "checkout",
  "inventory",
  "notifications",
  "accounts",
];

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Component names: a dozen familiar ones, then `svc-13`, `svc-14`, ... */
export function componentNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) =>
    i < NAMED_COMPONENTS.length
      ? (NAMED_COMPONENTS[i] as string)
      : `svc-${String(i + 1).padStart(2, "0")}`,
  );
}

function validate(o: LayoutOptions): void {
  const problems: string[] = [];
  if (!DNS_LABEL.test(o.platform)) problems.push(`platform "${o.platform}" must be a DNS label`);
  if (!Number.isInteger(o.components) || o.components < 1) {
    problems.push(`components must be an integer >= 1, got ${o.components}`);
  }
  if (!o.regions.some((r) => r.region === o.activeRegion)) {
    problems.push(`activeRegion "${o.activeRegion}" is not one of the regions`);
  }
  const clusters = o.regions.flatMap((r) => r.clusters);
  for (const c of clusters) {
    if (!DNS_LABEL.test(c)) problems.push(`cluster "${c}" must be a DNS label`);
  }
  const duplicate = clusters.find((c, i) => clusters.indexOf(c) !== i);
  if (duplicate) problems.push(`cluster "${duplicate}" appears twice`);
  const r = o.replicas;
  if (
    r &&
    !(Number.isInteger(r.active) && Number.isInteger(r.passive) && r.active >= 0 && r.passive >= 0)
  ) {
    problems.push("replicas.active and replicas.passive must be integers >= 0");
  }
  if (problems.length) throw new Error(`gitopsLayout: ${problems.join("; ")}`);
}

function applicationSet(platform: string, component: string): string {
  return `# ${component}: one Application per production spoke, named <cluster>-${component}.
# Clusters are selected by the labels on their Argo CD cluster Secret; the region label
# reaches the chart as the "region" parameter, which decides active or passive replicas.
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata:
  name: ${component}
  namespace: argocd
  labels:
    app.kubernetes.io/part-of: ${platform}
spec:
  generators:
    - clusters:
        selector:
          matchLabels:
            environment: production
  # Never delete workloads when a cluster stops matching (argo-cd #18480, #16838):
  # failover moves traffic by values in Git, not by relabelling clusters.
  syncPolicy:
    preserveResourcesOnDeletion: true
  template:
    metadata:
      name: '{{name}}-${component}'
      labels:
        app.kubernetes.io/part-of: ${platform}
        app.kubernetes.io/component: ${component}
        region: '{{metadata.labels.region}}'
    spec:
      project: default
      source:
        repoURL: ${repoUrl(platform)}
        targetRevision: HEAD
        path: apps/${component}
        helm:
          valueFiles:
            - ../../${VALUES_FILE}
          parameters:
            - name: region
              value: '{{metadata.labels.region}}'
      destination:
        name: '{{name}}'
        namespace: ${platform}
      syncPolicy:
        automated:
          prune: true
          selfHeal: true
        syncOptions:
          - CreateNamespace=true
`;
}

function deployment(platform: string, component: string): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${component}
  labels:
    app.kubernetes.io/name: ${component}
    app.kubernetes.io/part-of: ${platform}
spec:
  # Set by the chart from ${VALUES_FILE}: replicas.active where regions.<region>.active,
  # replicas.passive everywhere else.
  replicas: 0
  selector:
    matchLabels:
      app.kubernetes.io/name: ${component}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: ${component}
        app.kubernetes.io/part-of: ${platform}
    spec:
      containers:
        - name: ${component}
          image: registry.sandbox.local/${platform}/${component}:1.0.0
          ports:
            - containerPort: 8080
          envFrom:
            - secretRef:
                name: ${component}-secrets
          readinessProbe:
            httpGet:
              path: /healthz
              port: 8080
`;
}

function hpa(platform: string, component: string): string {
  return `# Scales ${component} with load. The chart sets minReplicas to the Deployment's figure
# (replicas.active, or the committed floor regions.<region>.minReplicas.${component} if higher;
# replicas.passive in a passive region): Argo CD's selfHeal keeps that floor, the HPA goes above it,
# up to maxReplicas: regions.<region>.maxReplicas.${component} (this default where unset).
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: ${component}
  labels:
    app.kubernetes.io/name: ${component}
    app.kubernetes.io/part-of: ${platform}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: ${component}
  minReplicas: 1
  maxReplicas: ${HPA_MAX_REPLICAS}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: 70
`;
}

/** The HPAs' `maxReplicas` in the seed. */
export const HPA_MAX_REPLICAS = 30;

/** The component that scales with load (an HPA); the others run fixed replicas. */
export const HPA_COMPONENT = "web";

function externalSecret(platform: string, component: string): string {
  return `# Credentials come from the region's own Secrets Manager, never from Git.
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: ${component}-secrets
  labels:
    app.kubernetes.io/name: ${component}
    app.kubernetes.io/part-of: ${platform}
spec:
  refreshInterval: 1h
  secretStoreRef:
    kind: ClusterSecretStore
    name: aws-secrets-manager
  target:
    name: ${component}-secrets
    creationPolicy: Owner
  dataFrom:
    - extract:
        key: ${platform}/${component}
`;
}

function values(
  o: LayoutOptions,
  replicas: { active: number; passive: number },
  components: string[],
): string {
  const floors = components.map((c) => `      ${c}: 1`).join("\n");
  const hpas = (region: string) =>
    components.includes(HPA_COMPONENT)
      ? `\n    # The HPAs' ceiling in this region: a floor above it would be an invalid HPA.\n    maxReplicas:\n      ${HPA_COMPONENT}: ${o.hpaMaxReplicas?.[region] ?? HPA_MAX_REPLICAS}`
      : "";
  const flags = o.regions.map(
    (r) =>
      `  ${r.region}:\n    active: ${r.region === o.activeRegion ? "true" : "false"}\n    # Capacity parity: each Deployment runs at least this many replicas while the region is\n    # active; a failover commits the source's observed capacity here.\n    minReplicas:\n${floors}${hpas(r.region)}`,
  );
  return `# Production values shared by every component of ${o.platform}.
# The regions that serve traffic: a failover first sets the target's flag to true (retarget edit
# regions.{{targetRegion}}.active), then, once traffic has moved, the old region's to false
# (demote edit regions.{{region}}.active). Both true for a while is expected: both run full size.
regions:
${flags.join("\n")}
replicas:
  # Replicas of each Deployment in an active region.
  active: ${replicas.active}
  # Replicas in every other region: ${replicas.passive === 0 ? "0 fences them (nothing runs there)" : "a warm standby, ready to take traffic"}.
  passive: ${replicas.passive}
`;
}

function readme(o: LayoutOptions, components: string[]): string {
  const rows = o.regions.map(
    (r) =>
      `| ${r.region}${r.region === o.activeRegion ? " (active)" : ""} | ${r.clusters.join(", ")} |`,
  );
  return `# ${o.platform} GitOps repository

Argo CD on the hub deploys every component to every production spoke through the
ApplicationSets in \`${APPLICATIONSETS_DIR}/\` (cluster generator, label \`environment: production\`).

| Region | Spokes |
| --- | --- |
${rows.join("\n")}

Components: ${components.join(", ")}.

## Failover

Only \`${VALUES_FILE}\` decides where traffic is served: \`regions.<region>.active\`. Each
Deployment runs \`replicas.active\` in an active region and \`replicas.passive\` elsewhere (a warm
standby). A failover commits twice: the target is made active first (both regions run full size),
and the old region is made passive only once traffic has left it, so it stays passive when it
comes back.
Never relabel cluster Secrets to move workloads: a cluster that stops matching an
ApplicationSet loses its Applications.
`;
}

/** The repository's files (path -> content) for `o`, deterministic for the same options. */
export function gitopsLayout(o: LayoutOptions): Record<string, string> {
  validate(o);
  const replicas = o.replicas ?? DEFAULT_REPLICAS;
  const components = componentNames(o.components);
  const files: Record<string, string> = {
    "README.md": readme(o, components),
    [VALUES_FILE]: values(o, replicas, components),
  };
  for (const c of components) {
    files[`${APPLICATIONSETS_DIR}/${c}.yaml`] = applicationSet(o.platform, c);
    files[`apps/${c}/deployment.yaml`] = deployment(o.platform, c);
    files[`apps/${c}/externalsecret.yaml`] = externalSecret(o.platform, c);
    if (c === HPA_COMPONENT) files[`apps/${c}/hpa.yaml`] = hpa(o.platform, c);
  }
  return files;
}
