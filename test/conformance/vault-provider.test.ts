import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { VaultTransitProvider } from "../../providers/vault.js";
import type { ProviderSubject } from "../../src/conformance/provider/index.js";
import { VaultTransitEmulator } from "../emulators/vault-transit/server.js";
import { providerConformance } from "./provider-suite.js";

// The vault provider against the Transit emulator, configured only through its environment as
// an operator would (CA file, auth variables). The emulator's controls play the faults:
// throttling is Vault's 429 rate-limit quota, the outage is a sealed Vault, revocation is the
// policy losing its Transit paths.
const TIMEOUT_MS = 2000;
const PERSISTENT = 1000;
const POLICY = {
  "transit/encrypt/conformance": ["update"],
  "transit/decrypt/conformance": ["update"],
  "transit/encrypt/conformance-other": ["update"],
  "transit/decrypt/conformance-other": ["update"],
} as const;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  await Promise.allSettled(cleanups.splice(0).map((cleanup) => cleanup()));
});

async function subject(
  label: string,
  flavor: "vault" | "openbao",
  namespace: string,
): Promise<ProviderSubject> {
  const vault = await VaultTransitEmulator.start({ flavor });
  const directory = await mkdtemp(join(tmpdir(), "vault-conformance-"));
  cleanups.push(
    () => vault.close(),
    () => rm(directory, { recursive: true, force: true }),
  );
  const location = { namespace };
  if (namespace !== "") {
    vault.createNamespace(namespace);
    vault.enableTransit("transit", namespace);
  }
  vault.createKey("conformance", location);
  vault.createKey("conformance-other", location);
  vault.writePolicy("kms-envelope", POLICY, namespace);
  const approle = vault.enableAppRole("approle", namespace);
  const { roleId, secretId } = approle.createRole("kms-envelope", {
    policies: ["kms-envelope"],
    tokenTtlSeconds: 600,
  });
  await writeFile(join(directory, "secret-id"), `${secretId}\n`, { mode: 0o600 });
  const environment = {
    VAULT_CACERT: vault.caFile,
    VAULT_AUTH_METHOD: "approle",
    VAULT_ROLE_ID: roleId,
    VAULT_SECRET_ID_FILE: join(directory, "secret-id"),
  };
  const open = (name: string) =>
    Promise.resolve(
      new VaultTransitProvider({
        keyRef: vault.keyRef(name, location),
        environment,
        timeoutMs: TIMEOUT_MS,
        maxAttempts: 2,
      }),
    );
  return {
    label,
    open: () => open("conformance"),
    openOtherKey: () => open("conformance-other"),
    timeoutMs: TIMEOUT_MS,
    faults: {
      throttle: () => vault.throttle(PERSISTENT, undefined, 0),
      outage: () => vault.seal(),
      revoke: () => vault.writePolicy("kms-envelope", {}, namespace),
      delay: (milliseconds) => vault.delay(milliseconds),
      restore: () => {
        vault.reset();
        vault.writePolicy("kms-envelope", POLICY, namespace);
      },
    },
  };
}

providerConformance("vault (Transit emulator, AppRole)", () =>
  subject("vault (Transit emulator, AppRole)", "vault", ""),
);

providerConformance("vault (OpenBao-flavoured emulator, namespace, AppRole)", () =>
  subject("vault (OpenBao-flavoured emulator, namespace team-a/kms)", "openbao", "team-a/kms"),
);
