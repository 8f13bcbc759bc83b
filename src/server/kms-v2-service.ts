import { InvalidRequestError } from "../errors.js";
import type { SealingService } from "../keys/sealing-service.js";
import { custodyProviderOf, type KeyIdMetrics } from "../ops/key-id-metrics.js";
import { checkHealthz, type ProbeSources } from "../ops/probes.js";
import type { DecryptRequest__Output } from "../wire/generated/v2/DecryptRequest.js";
import type { DecryptResponse } from "../wire/generated/v2/DecryptResponse.js";
import type { EncryptRequest__Output } from "../wire/generated/v2/EncryptRequest.js";
import type { EncryptResponse } from "../wire/generated/v2/EncryptResponse.js";
import type { StatusResponse } from "../wire/generated/v2/StatusResponse.js";
import type { ServiceHandlers } from "./grpc-server.js";

/** Status.version: kube-apiserver accepts "v2" or "v2beta1" and then pins it (KMS-CONTRACT.md §2.1). */
const KMS_V2_VERSION = "v2";

/**
 * Handlers of `v2.KeyManagementService` (the Kubernetes KMS v2 API). Key ids are counted only
 * once a call succeeded, so a client sending made-up key ids cannot create label sets.
 */
export function kmsV2Service(
  envelope: SealingService,
  probes: ProbeSources,
  keyIds: KeyIdMetrics,
): ServiceHandlers {
  return {
    Status: (): StatusResponse => {
      const health = checkHealthz(probes);
      const keyId = envelope.primaryKeyId;
      keyIds.recordStatus(custodyProviderOf(keyId), keyId);
      // healthz is "ok" only when the key is really usable; otherwise the reason, which the
      // apiserver shows in its own healthz output (KMS-CONTRACT.md §2.2).
      return {
        version: KMS_V2_VERSION,
        healthz: health.ok ? "ok" : health.reason,
        key_id: keyId,
      };
    },
    Encrypt: (request: EncryptRequest__Output): EncryptResponse => {
      const { ciphertext, keyId } = envelope.encryptKms("v2", request.plaintext);
      keyIds.recordOwnUse("to_storage", keyId);
      // No annotations: the key id travels inside the ciphertext and nothing else is needed
      // to decrypt, so nothing extra sits unencrypted in etcd.
      return { ciphertext, key_id: keyId };
    },
    Decrypt: (request: DecryptRequest__Output): DecryptResponse => {
      if (request.key_id === "") {
        throw new InvalidRequestError("key_id is required: send the key_id that Encrypt returned");
      }
      const plaintext = envelope.decryptKms("v2", request.ciphertext, request.key_id);
      keyIds.recordOwnUse("from_storage", request.key_id);
      return { plaintext };
    },
  };
}
