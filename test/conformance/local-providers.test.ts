import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
import { FakeProvider } from "../../providers/fake.js";
import { LOCAL_KEY_REF } from "../../providers/local.js";
import type { CustodyProvider, ProviderOptions } from "../../providers/types.js";
import type { ProviderSubject } from "../../src/conformance/provider/index.js";
import { moduleSubject } from "../../src/conformance/provider-subject.js";
import { providerConformance } from "./provider-suite.js";

// The providers that need no emulator: local, the scripted fake, the file-driven custom module
// (loaded by path, as an operator's would be), and any module named in the environment.

function options(environment: NodeJS.ProcessEnv): ProviderOptions {
  return { timeoutMs: 2000, maxAttempts: 2, environment };
}

const masterKey = () => randomBytes(32).toString("base64");

providerConformance("local", async () => {
  const key = masterKey();
  const subject = await moduleSubject({
    specifier: "local",
    keyRef: LOCAL_KEY_REF,
    options: options({ ENCRYPTION_MASTER_KEY: key }),
  });
  // Another environment key is the local provider's "other key".
  const other = await moduleSubject({
    specifier: "local",
    keyRef: LOCAL_KEY_REF,
    options: options({ ENCRYPTION_MASTER_KEY: masterKey() }),
  });
  return { ...subject, openOtherKey: other.open };
});

providerConformance("fake", async () => {
  // Fault controls apply to every instance opened so far and every later one, as faults of
  // one key service would; the fake keeps its key-encryption key in memory only.
  const instances: FakeProvider[] = [];
  let standing: "ok" | "throttled" | "other" | "user" = "ok";
  let delayMs = 0;
  const open = async (): Promise<CustodyProvider> => {
    const provider = new FakeProvider().setStanding(standing).setDelay(delayMs);
    instances.push(provider);
    return provider;
  };
  const apply = () => {
    for (const instance of instances) instance.setStanding(standing).setDelay(delayMs);
  };
  const set = (outcome: typeof standing) => () => {
    standing = outcome;
    apply();
  };
  const subject: ProviderSubject = {
    label: "fake (providers/fake.ts)",
    open,
    openOtherKey: () => Promise.resolve(new FakeProvider()),
    durable: false,
    faults: {
      throttle: set("throttled"),
      outage: set("other"),
      revoke: set("user"),
      // The fake has no deadline of its own: only the caller's abort signal ends a delay.
      delay: (milliseconds) => {
        delayMs = milliseconds;
        apply();
      },
      restore: () => {
        standing = "ok";
        delayMs = 0;
        apply();
      },
    },
  };
  return subject;
});

const customDirectory = await mkdtemp(join(tmpdir(), "kms-envelope-conformance-"));
after(() => rm(customDirectory, { recursive: true, force: true }));

providerConformance("custom module (test/fixtures/custom-provider.ts)", async () => {
  const revoked = join(customDirectory, "revoked");
  const environment = (kek: string) => ({
    CUSTOM_PROVIDER_KEK: kek,
    CUSTOM_PROVIDER_REVOKED: revoked,
  });
  const modulePath = join(import.meta.dirname, "../fixtures/custom-provider.ts");
  const subject = await moduleSubject({
    specifier: modulePath,
    keyRef: "custom:conformance",
    options: options(environment(masterKey())),
    faults: {
      revoke: () => writeFile(revoked, ""),
      restore: async () => {
        if (existsSync(revoked)) await rm(revoked);
      },
    },
  });
  const other = await moduleSubject({
    specifier: modulePath,
    keyRef: "custom:other",
    options: options(environment(masterKey())),
  });
  return { ...subject, openOtherKey: other.open };
});

// A provider author's own module: KMS_ENVELOPE_CONFORMANCE_PROVIDER=./my-hsm.js
// KMS_ENVELOPE_CONFORMANCE_KEY_REF=… [KMS_ENVELOPE_CONFORMANCE_OTHER_KEY_REF=…] npm run test:conformance
const external = process.env.KMS_ENVELOPE_CONFORMANCE_PROVIDER;
if (external !== undefined && external !== "") {
  providerConformance(external, () =>
    moduleSubject({
      specifier: external,
      keyRef: process.env.KMS_ENVELOPE_CONFORMANCE_KEY_REF ?? "",
      otherKeyRef: process.env.KMS_ENVELOPE_CONFORMANCE_OTHER_KEY_REF || undefined,
      options: { timeoutMs: 10_000, maxAttempts: 3, environment: process.env },
    }),
  );
}
