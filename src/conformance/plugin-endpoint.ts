import { isAbsolute } from "node:path";
import { parseKmsEndpoint } from "../engine/config/kms-endpoint.js";
import { KmsEnvelopeError } from "../errors.js";
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
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `--endpoint ${JSON.stringify(endpoint)}: give the plugin socket as unix:///absolute/path.sock`,
    );
  }
  const parsed = parseKmsEndpoint(value.includes("://") ? value : `unix://${value}`);
  if (!parsed.ok)
    throw new KmsEnvelopeError(
      "INVALID_CONFIG",
      `--endpoint ${JSON.stringify(endpoint)}: ${parsed.message}`,
    );
  return grpcAddress(parsed.socketPath);
}
