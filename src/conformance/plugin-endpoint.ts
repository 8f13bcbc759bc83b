import { isAbsolute } from "node:path";
import { parseKmsEndpoint } from "../engine/config/kms-endpoint.js";
import { ConfigError } from "../errors.js";
import { grpcAddress } from "../wire/socket-address.js";

/**
 * The gRPC address of a KMS plugin endpoint written as in an EncryptionConfiguration
 * (KMS-CONTRACT.md §1.3: `unix:///path` or `unix:///@abstract`, resolved as kube-apiserver
 * does), or a bare absolute socket path. Unlike `serve --socket`, abstract sockets are
 * accepted: other plugins (Google's) listen on them.
 */
export function pluginAddress(endpoint: string): string {
  const value = endpoint.trim();
  if (!value.includes("://") && !isAbsolute(value)) {
    throw new ConfigError(
      "--endpoint",
      `${JSON.stringify(endpoint)} is neither a unix:// URL nor an absolute path`,
      "give the plugin socket as unix:///absolute/path.sock",
    );
  }
  const parsed = parseKmsEndpoint(value.includes("://") ? value : `unix://${value}`);
  if (!parsed.ok)
    // The problem is kube-apiserver's own wording (engine/config/kms-endpoint.ts).
    throw new ConfigError(
      "--endpoint",
      `${JSON.stringify(endpoint)} is refused as kube-apiserver would refuse it: ${parsed.message}`,
      "give the plugin socket as unix:///absolute/path.sock or unix:///@abstract-name",
    );
  return grpcAddress(parsed.socketPath);
}
