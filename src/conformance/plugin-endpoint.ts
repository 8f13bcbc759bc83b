import { isAbsolute } from "node:path";
import { KmsEnvelopeError } from "../errors.js";

/**
 * The gRPC address of a KMS plugin endpoint written as in an EncryptionConfiguration
 * (KMS-CONTRACT.md §1.3: `unix:///path` or `unix:///@abstract`), or a bare socket path.
 * Unlike `serve --socket`, abstract sockets are accepted: other plugins (Google's) listen on them.
 */
export function pluginAddress(endpoint: string): string {
  const value = endpoint.trim();
  let path: string;
  if (value.startsWith("unix://")) path = value.slice("unix://".length);
  else if (value.includes("://")) {
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `--endpoint ${JSON.stringify(endpoint)}: kube-apiserver only dials unix:// endpoints; write unix:///path/to/plugin.sock`,
    );
  } else path = value;
  if (path.startsWith("/@") && path.length > 2) return `unix-abstract:${path.slice(2)}`;
  if (path === "" || !isAbsolute(path)) {
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `--endpoint ${JSON.stringify(endpoint)}: give the plugin socket as unix:///absolute/path.sock`,
    );
  }
  return `unix:${path}`;
}
