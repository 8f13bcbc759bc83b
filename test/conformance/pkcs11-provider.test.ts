import { after } from "node:test";
import { createProvider } from "../../providers/pkcs11.js";
import { moduleSubject } from "../../src/conformance/provider-subject.js";
import { startSoftHsm } from "../support/softhsm.js";
import { providerConformance } from "./provider-suite.js";

// The pkcs11 provider, loaded by name as the daemon loads it, against a real SoftHSM2 token
// (test/support/softhsm.ts). Faults are real ones: revocation turns the key's CKA_ENCRYPT and
// CKA_DECRYPT off, an outage deletes the token (softhsm2-util --delete-token) and restoring
// copies its backed-up directory back, a delay makes the token hang on locks its module waits
// for. A token does not throttle, so that rule skips.

const hsm = await startSoftHsm();
let keeper: ReturnType<typeof createProvider> | undefined;
// In this order: the module's thread is ended (and the module finalised) before its token goes.
after(async () => {
  await keeper?.close();
  await hsm.stop();
});

providerConformance("pkcs11 (SoftHSM2)", async () => {
  await hsm.initToken("conformance");
  await hsm.generateKey("conformance", "kek");
  await hsm.generateKey("conformance", "other-kek");
  // The module's thread is started (and, run from source, compiled) by its first user and ended
  // with its last; one instance held for the whole run keeps that cost out of the rules' deadlines.
  keeper = createProvider(hsm.keyRef("conformance", "kek"), {
    timeoutMs: 30_000,
    maxAttempts: 1,
    environment: {},
  });
  await keeper.checkHealth();
  let revoked = false;
  let restoreToken: (() => Promise<void>) | undefined;
  let release: (() => void) | undefined;
  return moduleSubject({
    specifier: "pkcs11",
    keyRef: hsm.keyRef("conformance", "kek"),
    otherKeyRef: hsm.keyRef("conformance", "other-kek"),
    options: { timeoutMs: 2000, maxAttempts: 3, environment: {} },
    faults: {
      revoke: () => {
        hsm.admin.setUsage("conformance", "kek", false);
        revoked = true;
      },
      outage: async () => {
        restoreToken = await hsm.backup("conformance");
        await hsm.deleteToken("conformance");
      },
      delay: async (milliseconds) => {
        release = await hsm.stall("conformance", milliseconds);
      },
      restore: async () => {
        release?.();
        release = undefined;
        if (restoreToken !== undefined) {
          await restoreToken();
          restoreToken = undefined;
        }
        if (revoked) {
          hsm.admin.setUsage("conformance", "kek", true);
          revoked = false;
        }
      },
    },
  });
});
