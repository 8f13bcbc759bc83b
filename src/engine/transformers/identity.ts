import { MalformedCiphertextError } from "../../errors.js";
import type { Read, Stored, Transformer, Writer } from "./transformer.js";

const ENCRYPTED_MARKER = Buffer.from("k8s:enc:");
const WRITER: Writer = { provider: "identity", keyId: "" };

/**
 * Stores plaintext. On read it refuses anything that looks encrypted, as kube-apiserver's
 * identity transformer does, so a config that lists identity first can still migrate away
 * from encryption: the prefix list skips this refusal and tries the later providers.
 */
export class IdentityTransformer implements Transformer {
  toStorageSync(plaintext: Uint8Array): Stored {
    return { data: plaintext, writer: WRITER };
  }

  fromStorageSync(data: Uint8Array): Read {
    if (
      Buffer.from(data.buffer, data.byteOffset, data.byteLength)
        .subarray(0, 8)
        .equals(ENCRYPTED_MARKER)
    )
      throw new MalformedCiphertextError(
        "identity transformer tried to read encrypted data: add the provider that wrote it to the configuration",
      );
    return { plaintext: data, stale: false, writer: WRITER };
  }

  async toStorage(plaintext: Uint8Array): Promise<Stored> {
    return this.toStorageSync(plaintext);
  }

  async fromStorage(data: Uint8Array): Promise<Read> {
    return this.fromStorageSync(data);
  }

  currentWriter(): Writer {
    return WRITER;
  }
}
