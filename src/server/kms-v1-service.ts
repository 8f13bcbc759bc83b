import { InvalidRequestError } from "../errors.js";
import type { SealingService } from "../keys/sealing-service.js";
import { PACKAGE_VERSION } from "../package-info.js";
import type { DecryptRequest__Output } from "../wire/generated/v1beta1/DecryptRequest.js";
import type { DecryptResponse } from "../wire/generated/v1beta1/DecryptResponse.js";
import type { EncryptRequest__Output } from "../wire/generated/v1beta1/EncryptRequest.js";
import type { EncryptResponse } from "../wire/generated/v1beta1/EncryptResponse.js";
import type { VersionResponse } from "../wire/generated/v1beta1/VersionResponse.js";
import type { ServiceHandlers } from "./grpc-server.js";

/** The only version the v1beta1 client accepts (KMS-CONTRACT.md §1.2). */
const KMS_V1_VERSION = "v1beta1";

// kube-apiserver always sends "v1beta1"; an empty version is tolerated for hand-written clients.
function assertVersion(request: { version: string }): void {
  if (request.version !== "" && request.version !== KMS_V1_VERSION) {
    throw new InvalidRequestError(
      `version ${JSON.stringify(request.version.slice(0, 32))} is not supported: send "${KMS_V1_VERSION}"`,
    );
  }
}

/** Handlers of `v1beta1.KeyManagementService` (the deprecated Kubernetes KMS v1 API). */
export function kmsV1Service(envelope: SealingService): ServiceHandlers {
  return {
    Version: (): VersionResponse => ({
      version: KMS_V1_VERSION,
      runtime_name: "kms-envelope",
      runtime_version: PACKAGE_VERSION,
    }),
    Encrypt: (request: EncryptRequest__Output): EncryptResponse => {
      assertVersion(request);
      return { cipher: envelope.encryptKms("v1", request.plain).ciphertext };
    },
    Decrypt: (request: DecryptRequest__Output): DecryptResponse => {
      assertVersion(request);
      // v1beta1 requests carry no key id: the one inside the ciphertext picks the version.
      return { plain: envelope.decryptKms("v1", request.cipher) };
    },
  };
}
