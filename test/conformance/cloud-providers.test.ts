import { after } from "node:test";
import type { AccessToken, TokenCredential } from "@azure/identity";
import { AwsKmsProvider } from "../../providers/aws.js";
import { AzureKeyVaultProvider } from "../../providers/azure.js";
import { GcpKmsProvider } from "../../providers/gcp.js";
import type { ProviderSubject } from "../../src/conformance/provider/index.js";
import { AwsKmsEmulator } from "../emulators/aws-kms/server.js";
import { AzureKeyVaultEmulator } from "../emulators/azure-key-vault/server.js";
import { GcpKmsEmulator } from "../emulators/gcp-kms/server.js";
import { providerConformance } from "./provider-suite.js";

// The cloud providers through their real SDKs against the wire-protocol emulators, whose
// controls play the key service's faults. Deadlines and retries are short so the fault rules
// stay fast; the rules themselves are the same for every provider.

// Deadlines leave room for 200 parallel unwraps on a busy CI machine. Azure's are 200 TLS
// handshakes and RSA decryptions in this very process, all started at once, so the last calls
// wait behind the others' CPU work: 3 s was passed on a two-core machine running two suites
// (165 of 200 unwraps timed out at 3.0 s, all correct once done), so it gets twice that.
const TIMEOUT_MS = 2000;
const AZURE_TIMEOUT_MS = 6000;
// A fault must outlast every retry: far more scripted failures than attempts.
const PERSISTENT = 1000;

// Each suite starts its emulator; all are closed once every suite in the file has run.
const emulators: { close(): Promise<void> }[] = [];
after(async () => {
  await Promise.allSettled(emulators.splice(0).map((emulator) => emulator.close()));
});

providerConformance("aws (KMS emulator)", async () => {
  const kms = await AwsKmsEmulator.start({ region: "eu-west-3" });
  emulators.push(kms);
  const { arn } = kms.createKey("conformance");
  const other = kms.createKey("conformance-other");
  const open = (keyRef: string) =>
    Promise.resolve(
      new AwsKmsProvider({
        keyRef,
        endpoint: kms.endpoint,
        credentials: kms.credentials,
        timeoutMs: TIMEOUT_MS,
        maxAttempts: 2,
      }),
    );
  const subject: ProviderSubject = {
    label: "aws (KMS emulator)",
    open: () => open(arn),
    openOtherKey: () => open(other.arn),
    timeoutMs: TIMEOUT_MS,
    faults: {
      throttle: () => kms.throttleNext(PERSISTENT),
      outage: () => kms.failNext(PERSISTENT, 503),
      revoke: () => kms.disableKey(arn),
      delay: (milliseconds) => kms.delayResponses(milliseconds),
      restore: () => {
        kms.clearFaults();
        kms.enableKey(arn);
      },
    },
  };
  return subject;
});

/** The emulator's static bearer token, as a credential. */
class StaticCredential implements TokenCredential {
  readonly #token: string;
  constructor(token: string) {
    this.#token = token;
  }
  async getToken(): Promise<AccessToken> {
    return { token: this.#token, expiresOnTimestamp: Date.now() + 3_600_000 };
  }
}

providerConformance("azure (Key Vault emulator)", async () => {
  const vault = await AzureKeyVaultEmulator.start();
  emulators.push(vault);
  const key = vault.createKey("conformance");
  const other = vault.createKey("conformance-other");
  const open = (keyRef: string) =>
    Promise.resolve(
      new AzureKeyVaultProvider({
        keyRef,
        algorithm: "auto",
        credential: new StaticCredential(vault.token),
        timeoutMs: AZURE_TIMEOUT_MS,
        maxRetries: 1,
        clientOptions: {
          tlsOptions: { ca: vault.ca },
          // The challenge names vault.azure.net, which 127.0.0.1 is not a subdomain of.
          disableChallengeResourceVerification: true,
          retryOptions: { retryDelayInMs: 5, maxRetryDelayInMs: 20 },
        },
      }),
    );
  const subject: ProviderSubject = {
    label: "azure (Key Vault emulator)",
    open: () => open(key.kid),
    openOtherKey: () => open(other.kid),
    timeoutMs: AZURE_TIMEOUT_MS,
    faults: {
      throttle: () => vault.throttle(PERSISTENT),
      outage: () => vault.fail(PERSISTENT, 503),
      revoke: () => vault.disable(key),
      delay: (milliseconds) => vault.delay(milliseconds),
      restore: () => {
        vault.reset();
        vault.enable(key);
      },
    },
  };
  return subject;
});

providerConformance("gcp (Cloud KMS emulator)", async () => {
  const kms = await GcpKmsEmulator.start();
  emulators.push(kms);
  const keyRef = "projects/conformance/locations/global/keyRings/ring/cryptoKeys/key";
  const otherKeyRef = "projects/conformance/locations/global/keyRings/ring/cryptoKeys/other";
  const version = kms.createKey(keyRef);
  kms.createKey(otherKeyRef);
  const open = (name: string) =>
    Promise.resolve(
      new GcpKmsProvider({
        keyRef: name,
        client: kms.clientOptions(),
        timeoutMs: TIMEOUT_MS,
        maxAttempts: 2,
        retryDelayMs: 5,
      }),
    );
  const subject: ProviderSubject = {
    label: "gcp (Cloud KMS emulator)",
    open: () => open(keyRef),
    openOtherKey: () => open(otherKeyRef),
    timeoutMs: TIMEOUT_MS,
    faults: {
      throttle: () => kms.throttleNext(Number.POSITIVE_INFINITY),
      outage: () => kms.failNext(Number.POSITIVE_INFINITY, "UNAVAILABLE"),
      revoke: () => kms.disableVersion(version),
      delay: (milliseconds) => kms.setDelay(milliseconds),
      restore: () => {
        kms.clearFaults();
        kms.enableVersion(version);
      },
    },
  };
  return subject;
});
