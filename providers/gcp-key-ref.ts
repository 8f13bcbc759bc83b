import { ConfigError } from "../src/errors.js";

/** The form of a CryptoKey name, as messages show it. */
export const KEY_REF_SHAPE = "projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY";

const KEY_REF =
  /^projects\/[^/\s]+\/locations\/[^/\s]+\/keyRings\/[\w-]{1,63}\/cryptoKeys\/[\w-]{1,63}$/;

/** Returns a valid CryptoKey name unchanged; refuses anything else (a version too) saying why. */
export function validateGcpKeyRef(keyRef: string): string {
  if (KEY_REF.test(keyRef)) return keyRef;
  const shown = JSON.stringify(keyRef.slice(0, 200));
  if (/\/cryptoKeyVersions\//.test(keyRef)) {
    throw new ConfigError(
      "gcp keyRef",
      `${shown} names a CryptoKey version`,
      "name the CryptoKey, not a version (Decrypt picks the version from the ciphertext)",
    );
  }
  throw new ConfigError("gcp keyRef", `${shown} is not a CryptoKey name`, `give ${KEY_REF_SHAPE}`);
}
