import { InvalidRequestError } from "../errors.js";

/**
 * Built-in resources whose etcd path does not name their API group (kube-apiserver stores them
 * as `<prefix>/<resource>/…`), and the few stored under another name.
 */
const BUILT_IN_GROUPS: Readonly<Record<string, string>> = {
  deployments: "apps",
  replicasets: "apps",
  daemonsets: "apps",
  statefulsets: "apps",
  controllerrevisions: "apps",
  jobs: "batch",
  cronjobs: "batch",
  horizontalpodautoscalers: "autoscaling",
  poddisruptionbudgets: "policy",
  ingress: "networking.k8s.io",
  ingressclasses: "networking.k8s.io",
  networkpolicies: "networking.k8s.io",
  ipaddresses: "networking.k8s.io",
  servicecidrs: "networking.k8s.io",
  roles: "rbac.authorization.k8s.io",
  rolebindings: "rbac.authorization.k8s.io",
  clusterroles: "rbac.authorization.k8s.io",
  clusterrolebindings: "rbac.authorization.k8s.io",
  storageclasses: "storage.k8s.io",
  volumeattachments: "storage.k8s.io",
  csidrivers: "storage.k8s.io",
  csinodes: "storage.k8s.io",
  csistoragecapacities: "storage.k8s.io",
  leases: "coordination.k8s.io",
  priorityclasses: "scheduling.k8s.io",
  runtimeclasses: "node.k8s.io",
  certificatesigningrequests: "certificates.k8s.io",
  mutatingwebhookconfigurations: "admissionregistration.k8s.io",
  validatingwebhookconfigurations: "admissionregistration.k8s.io",
  validatingadmissionpolicies: "admissionregistration.k8s.io",
  validatingadmissionpolicybindings: "admissionregistration.k8s.io",
  flowschemas: "flowcontrol.apiserver.k8s.io",
  prioritylevelconfigurations: "flowcontrol.apiserver.k8s.io",
  endpointslices: "discovery.k8s.io",
};

/**
 * Every resource kube-apiserver stores under a path segment without a dot: the core group's,
 * and the built-ins of other groups it stores without their group (above). Any other resource
 * (a custom resource, an aggregated API's) is stored under `<group>/<resource>`. Endpoints are
 * stored under `services/endpoints`.
 */
const UNGROUPED_SEGMENTS: ReadonlySet<string> = new Set([
  ...Object.keys(BUILT_IN_GROUPS),
  "configmaps",
  "controllers",
  "events",
  "limitranges",
  "minions",
  "namespaces",
  "persistentvolumeclaims",
  "persistentvolumes",
  "pods",
  "podtemplates",
  "resourcequotas",
  "secrets",
  "serviceaccounts",
  "services",
]);

/** Core resources kept under a historical path segment. */
const RENAMED: Readonly<Record<string, string>> = {
  minions: "nodes",
  controllers: "replicationcontrollers",
  ingress: "ingresses",
};

// Own properties only: a segment such as "constructor" must find nothing, not a member of
// Object.prototype.
function lookUp(table: Readonly<Record<string, string>>, name: string): string | undefined {
  return Object.hasOwn(table, name) ? table[name] : undefined;
}

/**
 * The group resource (`secrets`, `deployments.apps`, `widgets.example.com`) an etcd key
 * belongs to, for choosing the EncryptionConfiguration rule. Keys are
 * `<prefix>/<resource>/…` for built-ins and `<prefix>/<group>/<resource>/…` for other groups
 * (custom resources, aggregated APIs). Built-in resources stored without their group
 * (`/registry/deployments/…`) get it back (`deployments.apps`). Unusual layouts can be named
 * with `--resource`.
 *
 * @param key - The etcd key the value was read from (`/registry/secrets/default/db`).
 * @param prefix - The apiserver's `--etcd-prefix`; default `/registry`.
 * @returns The group resource in `resource.group` form (core resources have no group).
 * @throws `INVALID_REQUEST` when the key is not under `prefix` or names no resource.
 */
export function resourceOfEtcdKey(key: string, prefix = "/registry"): string {
  const root = prefix.endsWith("/") ? prefix : `${prefix}/`;
  if (!key.startsWith(root))
    throw new InvalidRequestError(
      `etcd key ${JSON.stringify(key.slice(0, 200))} is not under ${root}: pass --etcd-prefix or --resource`,
    );
  const [first = "", second = ""] = key.slice(root.length).split("/");
  if (first === "")
    throw new InvalidRequestError("the etcd key names no resource: pass --resource");
  if (first.includes(".")) {
    if (second === "")
      throw new InvalidRequestError("the etcd key names a group but no resource: pass --resource");
    return `${second}.${first}`;
  }
  // Services and their endpoints share /registry/services/{specs,endpoints}/.
  if (first === "services") return second === "endpoints" ? "endpoints" : "services";
  const resource = lookUp(RENAMED, first) ?? first;
  const group = lookUp(BUILT_IN_GROUPS, first);
  return group === undefined ? resource : `${resource}.${group}`;
}

/** One way to read an etcd key: the apiserver's `--etcd-prefix` and the resource after it. */
interface EtcdKeyReading {
  readonly prefix: string;
  readonly resource: string;
  /**
   * The segment after the prefix is one kube-apiserver writes (a built-in resource's, or a
   * group's), not a name that only the layout allows.
   */
  readonly plausible: boolean;
}

/**
 * The shapes of what follows the prefix, by segment count: `<resource>/<name>`,
 * `<resource>/<namespace>/<name>` or `<group>/<resource>/<name>`, and
 * `<group>/<resource>/<namespace>/<name>` or `services/{specs,endpoints}/<namespace>/<name>`.
 * Only a group has a dot; namespaces and resources are DNS labels, so cannot.
 */
function isResourcePath([first = "", second = "", third = ""]: readonly string[], length: number) {
  const grouped = first.includes(".");
  if (first === "services") return length === 4 && (second === "specs" || second === "endpoints");
  if (length === 2) return !grouped;
  if (second.includes(".")) return false;
  return length === 3 || (grouped && !third.includes("."));
}

/**
 * Every way `key` can be read when the apiserver's `--etcd-prefix` is not known: each split
 * into a prefix of at least one segment and a resource path in one of the layouts
 * kube-apiserver writes. The reading under the default `/registry` comes first, then the
 * plausible ones, then the others; within each, the longer resource path first. Empty when
 * the key has no such reading (not absolute, an empty segment, too short).
 *
 * @param key - The etcd key the value was read from.
 */
export function etcdKeyReadings(key: string): EtcdKeyReading[] {
  const segments = key.split("/");
  // An absolute key splits into "" and then its segments, none of which may be empty.
  if (segments.length < 4 || segments[0] !== "" || segments.slice(1).includes("")) return [];
  const readings: EtcdKeyReading[] = [];
  for (const length of [4, 3, 2]) {
    const start = segments.length - length;
    const rest = segments.slice(start);
    if (start < 2 || !isResourcePath(rest, length)) continue;
    const prefix = segments.slice(0, start).join("/");
    const first = rest[0] as string;
    readings.push({
      prefix,
      resource: resourceOfEtcdKey(key, prefix),
      plausible: first.includes(".") || UNGROUPED_SEGMENTS.has(first),
    });
  }
  const rank = (reading: EtcdKeyReading) =>
    reading.prefix === "/registry" ? 0 : reading.plausible ? 1 : 2;
  // A stable sort keeps the longer resource paths first within a rank.
  return readings.sort((a, b) => rank(a) - rank(b));
}
