import { InvalidRequestError } from "../errors.js";
import type { Envelope } from "../keys/envelope.js";
import { PACKAGE_VERSION } from "../package-info.js";
import type { ServiceHandlers } from "./grpc-server.js";

/** The only version the v1beta1 client accepts (KMS-CONTRACT.md §1.2). */
export const KMS_V1_VERSION = "v1beta1";

interface EncryptRequest {
  version: string;
  plain: Buffer;
}
interface DecryptRequest {
  version: string;
  cipher: Buffer;
}

// kube-apiserver always sends "v1beta1"; an empty version is tolerated for hand-written clients.
function assertVersion(request: { version: string }): void {
  if (request.version !== "" && request.version !== KMS_V1_VERSION) {
    throw new InvalidRequestError(
      `version ${JSON.stringify(request.version.slice(0, 32))} is not supported: send "${KMS_V1_VERSION}"`,
    );
  }
}

/** Handlers of `v1beta1.KeyManagementService` (the deprecated Kubernetes KMS v1 API). */
export function kmsV1Service(envelope: Envelope): ServiceHandlers {
  return {
    Version: () => ({
      version: KMS_V1_VERSION,
      runtime_name: "kms-envelope",
      runtime_version: PACKAGE_VERSION,
    }),
    Encrypt: (request: EncryptRequest) => {
      assertVersion(request);
      return { cipher: envelope.encryptKms("v1", request.plain).ciphertext };
    },
    Decrypt: (request: DecryptRequest) => {
      assertVersion(request);
      // v1beta1 requests carry no key id: the one inside the ciphertext picks the version.
      return { plain: envelope.decryptKms("v1", request.cipher) };
    },
  };
}
