import { KmsEnvelopeError } from "../src/errors.js";

/** The form of a CryptoKey name, as messages show it. */
export const KEY_REF_SHAPE = "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY";

const KEY_REF =
  /^projects\/[^/\s]+\/locations\/[^/\s]+\/keyRings\/[\w-]{1,63}\/cryptoKeys\/[\w-]{1,63}$/;

/** Returns a valid CryptoKey name unchanged; refuses anything else (a version too) saying why. */
export function validateGcpKeyRef(keyRef: string): string {
  if (KEY_REF.test(keyRef)) return keyRef;
  const hint = /\/cryptoKeyVersions\//.test(keyRef)
    ? "name the CryptoKey, not a version (Decrypt picks the version from the ciphertext)"
    : `expected ${KEY_REF_SHAPE}`;
  throw new KmsEnvelopeError(
    "INVALID_CONFIG",
    `gcp key reference ${JSON.stringify(keyRef.slice(0, 200))} is invalid: ${hint}`,
  );
}
