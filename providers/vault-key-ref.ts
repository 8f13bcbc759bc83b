import { isIP } from "node:net";
import { ConfigError } from "../src/errors.js";

/** A checked Vault Transit key reference. */
export interface VaultKeyReference {
  /** Where Vault answers: scheme, host, port and any path before `/v1/` (a gateway prefix). */
  readonly address: string;
  /** The Transit mount path, without slashes at either end (`transit`, `kms/transit`). */
  readonly mount: string;
  /** The Transit key name. */
  readonly keyName: string;
  /** The Enterprise/OpenBao namespace, without slashes at either end; "" is the root. */
  readonly namespace: string;
  /** The canonical form, as it is recorded in a keyring. */
  readonly keyRef: string;
}

const EXAMPLE = "https://vault.example.com:8200/v1/transit/keys/kms-envelope?namespace=team-a";
// Vault's GenericNameRegex for key names; mount and namespace segments allow the same set.
const NAME = /^\w(?:[\w.-]*\w)?$/;

/**
 * Parses `https://<vault>[:port][/prefix]/v1/<mount>/keys/<name>[?namespace=<ns>]`: the key's
 * identity is the cluster, the mount, the namespace and the name, so all of them are in the
 * reference a keyring records. Plain http is accepted only for a loopback address (a Vault
 * Agent or Proxy listener, a dev server): anything else would send the token in the clear.
 */
export function parseVaultKeyRef(keyRef: string): VaultKeyReference {
  const refuse = (problem: string) =>
    new ConfigError(
      "vault keyRef",
      `${JSON.stringify(keyRef.slice(0, 300))} ${problem}`,
      `give the key's URL, such as ${EXAMPLE}`,
    );
  let url: URL;
  try {
    url = new URL(keyRef.trim());
  } catch {
    throw refuse("is not a URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw refuse("is not an https URL");
  if (url.protocol === "http:" && !isLoopback(url.hostname)) {
    throw refuse("uses plain http to a host that is not loopback: use https");
  }
  if (url.username !== "" || url.password !== "" || url.hash !== "") {
    throw refuse("must not carry credentials or a fragment");
  }
  const extra = [...url.searchParams.keys()].filter((name) => name !== "namespace");
  if (extra.length > 0) throw refuse(`has query parameters other than namespace (${extra[0]})`);
  const namespace = trimSlashes(url.searchParams.get("namespace") ?? "");
  if (namespace !== "" && !namespace.split("/").every((segment) => NAME.test(segment))) {
    throw refuse("has an invalid namespace");
  }
  if (url.pathname.includes("%")) throw refuse("has percent-encoded characters in its path");
  const segments = trimSlashes(url.pathname).split("/");
  const api = segments.indexOf("v1");
  const tail = api < 0 ? [] : segments.slice(api + 1);
  if (tail.length < 3 || tail.at(-2) !== "keys") {
    throw refuse("is not a Transit key URL (…/v1/<mount>/keys/<name>)");
  }
  const keyName = tail.at(-1) ?? "";
  const mountSegments = tail.slice(0, -2);
  if (!NAME.test(keyName)) throw refuse("has an invalid key name");
  if (!mountSegments.every((segment) => NAME.test(segment))) throw refuse("has an invalid mount");
  const prefix = segments.slice(0, api).join("/");
  const address = `${url.origin}${prefix === "" ? "" : `/${prefix}`}`;
  const mount = mountSegments.join("/");
  return {
    address,
    mount,
    keyName,
    namespace,
    keyRef: `${address}/v1/${mount}/keys/${keyName}${namespace === "" ? "" : `?namespace=${namespace}`}`,
  };
}

/** Whether a host name is a loopback address (or `localhost`), where plain http stays local. */
export function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}

function trimSlashes(value: string): string {
  return value.replace(/^\/+|\/+$/g, "");
}
