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
