import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AwsKmsEmulator } from "../emulators/aws-kms/server.js";
import { AzureKeyVaultEmulator } from "../emulators/azure-key-vault/server.js";
import { testTls } from "../emulators/azure-key-vault/tls.js";
import { MetadataServer } from "../emulators/gcp-kms/metadata.js";
import { GcpKmsEmulator } from "../emulators/gcp-kms/server.js";
import {
  call,
  DaemonProcess,
  dial,
  runCli,
  temporaryDirectory,
} from "../support/daemon-process.js";

// Short-lived credentials as each cloud's production credential source issues them, through
// the SDKs' own chains pointed at loopback only where the SDK lets an operator point them:
// the daemon keeps serving across several credential lifetimes without a restart, and when the
// source stops issuing credentials, health fails naming the credential to fix — then recovers.

/** What the lifecycle test needs from one cloud's credential source. */
interface CredentialSourceUnderTest {
  label: string;
  provider: string;
  keyRef: string;
  env: NodeJS.ProcessEnv;
  args: string[];
  /** Credentials (or tokens) issued so far. */
  issued(): number;
  /** Requests the key service saw with credentials past their expiry. */
  expiredUses(): number;
  /** The credential source replaces what it accepts (a rotated projected token), if it has one. */
  rotate?(): Promise<void>;
  /** The source stops issuing credentials (identity removed, trust revoked). */
  stopIssuing(): Promise<void>;
  resumeIssuing(): Promise<void>;
  /** What health must say once the last credential has expired. */
  failure: RegExp;
  /** How long one credential lives. */
  lifetimeMs: number;
  close(): Promise<void>;
}

async function eventually(check: () => Promise<void>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Only what the test gives: no credential of the machine running the tests may be found.
const NO_AMBIENT_AWS = {
  AWS_ACCESS_KEY_ID: undefined,
  AWS_SECRET_ACCESS_KEY: undefined,
  AWS_SESSION_TOKEN: undefined,
  AWS_PROFILE: undefined,
  AWS_ROLE_ARN: undefined,
  AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
  AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
  AWS_CONTAINER_AUTHORIZATION_TOKEN: undefined,
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: undefined,
  AWS_CONFIG_FILE: "/nonexistent",
  AWS_SHARED_CREDENTIALS_FILE: "/nonexistent",
  AWS_EC2_METADATA_DISABLED: "true",
};

async function awsWebIdentity(directory: string): Promise<CredentialSourceUnderTest> {
  const kms = await AwsKmsEmulator.start({ region: "eu-west-3" });
  const { arn } = kms.createKey("credential lifecycle");
  const lifetimeMs = 2_000;
  kms.issuer.lifetimeMs = lifetimeMs;
  const tokenFile = join(directory, "web-identity-token");
  let token = randomBytes(24).toString("base64url");
  kms.issuer.acceptWebIdentityToken(token);
  await writeFile(tokenFile, token);
  return {
    label: "aws web identity (IRSA: STS AssumeRoleWithWebIdentity)",
    provider: "aws",
    keyRef: arn,
    env: {
      ...NO_AMBIENT_AWS,
      AWS_REGION: kms.region,
      AWS_ROLE_ARN: kms.issuer.roleArn,
      AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
      AWS_ENDPOINT_URL_KMS: kms.endpoint,
      AWS_ENDPOINT_URL_STS: kms.endpoint,
    },
    args: [],
    issued: () => kms.issuer.issued.webIdentity,
    expiredUses: () => kms.issuer.expiredUses,
    // The kubelet rewrites the projected token; STS then accepts only the new one.
    async rotate() {
      token = randomBytes(24).toString("base64url");
      await writeFile(tokenFile, token);
      kms.issuer.acceptWebIdentityToken(token);
    },
    async stopIssuing() {
      kms.issuer.acceptWebIdentityToken(undefined);
    },
    async resumeIssuing() {
      kms.issuer.acceptWebIdentityToken(token);
    },
    failure: new RegExp(
      `custody provider failing \\(user\\): AWS STS refused to issue credentials for kms:Decrypt \\(InvalidIdentityTokenException\\) from the web identity role ${kms.issuer.roleArn.replace(/[/]/g, "\\/")} \\(IRSA, token file ${tokenFile.replace(/[/.]/g, "\\$&")}\\).*trust policy`,
    ),
    lifetimeMs,
    close: () => kms.close(),
  };
}

async function awsPodIdentity(directory: string): Promise<CredentialSourceUnderTest> {
  const kms = await AwsKmsEmulator.start({ region: "eu-west-3" });
  const { arn } = kms.createKey("credential lifecycle");
  const lifetimeMs = 2_000;
  kms.issuer.lifetimeMs = lifetimeMs;
  const tokenFile = join(directory, "pod-identity-token");
  let token = randomBytes(24).toString("base64url");
  kms.issuer.acceptContainerToken(token);
  await writeFile(tokenFile, token);
  const endpoint = `${kms.endpoint}/v1/credentials`;
  return {
    label: "aws container credentials (EKS Pod Identity agent)",
    provider: "aws",
    keyRef: arn,
    env: {
      ...NO_AMBIENT_AWS,
      AWS_REGION: kms.region,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: endpoint,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      AWS_ENDPOINT_URL_KMS: kms.endpoint,
    },
    args: [],
    issued: () => kms.issuer.issued.container,
    expiredUses: () => kms.issuer.expiredUses,
    async rotate() {
      token = randomBytes(24).toString("base64url");
      await writeFile(tokenFile, token);
      kms.issuer.acceptContainerToken(token);
    },
    async stopIssuing() {
      kms.issuer.acceptContainerToken(undefined);
    },
    async resumeIssuing() {
      kms.issuer.acceptContainerToken(token);
    },
    failure: new RegExp(
      `custody provider failing \\(user\\): no AWS credentials for kms:Decrypt from the container credentials endpoint ${endpoint.replace(/[/.]/g, "\\$&")} \\(EKS Pod Identity or ECS task role\\): check the pod identity association`,
    ),
    lifetimeMs,
    close: () => kms.close(),
  };
}

async function azureManagedIdentity(): Promise<CredentialSourceUnderTest> {
  // With `get`, so keygen has no skipped check to report and its stderr stays empty.
  const vault = await AzureKeyVaultEmulator.start({
    keyPermissions: ["get", "wrapKey", "unwrapKey"],
  });
  const key = vault.createKey("lifecycle");
  const lifetimeSeconds = 3;
  vault.setIdentityTokenLifetime(lifetimeSeconds);
  return {
    label: "azure managed identity (App Service identity endpoint)",
    provider: "azure",
    keyRef: vault.keyUrl(key.name, key.version),
    env: vault.daemonEnvironment(),
    args: [],
    issued: () => vault.counters.identityTokens,
    expiredUses: () => vault.counters.expiredTokens,
    async stopIssuing() {
      vault.stopIdentityTokens();
    },
    async resumeIssuing() {
      vault.resumeIdentityTokens();
    },
    failure: new RegExp(
      `custody provider failing \\(user\\): no Microsoft Entra token for Key Vault from the managed identity of ${vault.identityEndpoint.replace(/[/.]/g, "\\$&")} \\(.*\\): check that the identity is still assigned to this resource`,
    ),
    lifetimeMs: lifetimeSeconds * 1000,
    close: () => vault.close(),
  };
}

async function gcpMetadataServer(directory: string): Promise<CredentialSourceUnderTest> {
  const metadata = await MetadataServer.start();
  const lifetimeSeconds = 3;
  metadata.lifetimeSeconds = lifetimeSeconds;
  // OAuth tokens travel on secure channels only, so the key service speaks TLS under a test CA
  // that the daemon trusts through gRPC's own root-certificates variable.
  const tls = await testTls();
  const kms = await GcpKmsEmulator.start({ tls, authorize: (token) => metadata.verdict(token) });
  const caFile = join(directory, "gcp-test-ca.pem");
  await writeFile(caFile, tls.ca);
  const keyRef = "projects/kms-envelope-test/locations/global/keyRings/test/cryptoKeys/master";
  kms.createKey(keyRef);
  return {
    label: "gcp metadata server (GCE / GKE workload identity)",
    provider: "gcp",
    keyRef,
    env: {
      // Application default credentials find nothing before the metadata server.
      GOOGLE_APPLICATION_CREDENTIALS: undefined,
      HOME: directory,
      CLOUDSDK_CONFIG: join(directory, "gcloud"),
      GCE_METADATA_HOST: metadata.host,
      GCE_METADATA_IP: undefined,
      METADATA_SERVER_DETECTION: undefined,
      GRPC_DEFAULT_SSL_ROOTS_FILE_PATH: caFile,
    },
    args: ["--endpoint", `https://localhost:${kms.port}`],
    issued: () => metadata.issued,
    expiredUses: () => kms.refusedTokens.expired,
    async stopIssuing() {
      metadata.stop();
    },
    async resumeIssuing() {
      metadata.resume();
    },
    failure: new RegExp(
      `custody provider failing \\(user\\): no usable Google credentials for Cloud KMS from the service account of the metadata server ${metadata.host.replace(/[.]/g, "\\.")} \\(GCE, or GKE workload identity\\): check .*workload identity binding`,
    ),
    lifetimeMs: lifetimeSeconds * 1000,
    async close() {
      await kms.close();
      await metadata.close();
    },
  };
}

for (const makeSource of [
  awsWebIdentity,
  awsPodIdentity,
  azureManagedIdentity,
  gcpMetadataServer,
]) {
  describe(`credential lifecycle: ${makeSource.name}`, () => {
    let source: CredentialSourceUnderTest;
    let directory: Awaited<ReturnType<typeof temporaryDirectory>>;
    let keyring: string;

    before(async () => {
      directory = await temporaryDirectory();
      source = await makeSource(directory.path);
      keyring = join(directory.path, "keyring.yaml");
    });
    after(async () => {
      await source.close();
      await directory.remove();
    });

    test("keygen gets short-lived credentials from the source, quietly", async () => {
      const result = await runCli(
        [
          "keygen",
          "--provider",
          source.provider,
          "--key-ref",
          source.keyRef,
          "--keyring",
          keyring,
          ...source.args,
        ],
        source.env,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr, "");
      assert.ok(source.issued() >= 1);
    });

    test("the daemon renews credentials across lifetimes, fails naming the source when none come, and recovers", async () => {
      const daemon = await DaemonProcess.start({
        socketPath: join(directory.path, "lifecycle.sock"),
        env: source.env,
        args: [
          "--keyring",
          keyring,
          ...source.args,
          "--health-interval",
          "300ms",
          "--grace-period",
          "30s",
          "--provider-timeout",
          "8s",
        ],
      });
      const clients = dial(daemon.socketPath);
      const status = () => call<{ healthz: string }>(clients.kmsV2, "Status", {});
      try {
        const issuedAtStart = source.issued();
        // Several lifetimes, with the source's own token rotated half-way.
        await sleep(source.lifetimeMs * 1.5);
        await source.rotate?.();
        await sleep(source.lifetimeMs * 1.5);
        assert.equal((await status()).healthz, "ok");
        assert.ok(
          source.issued() >= issuedAtStart + 2,
          `credentials renewed while serving (${source.issued() - issuedAtStart} issued)`,
        );
        assert.equal(source.expiredUses(), 0, "no call was signed with an expired credential");
        await call(clients.kmsV2, "Encrypt", { plaintext: randomBytes(32), uid: "renewed" });

        await source.stopIssuing();
        await eventually(
          async () => assert.match((await status()).healthz, source.failure),
          source.lifetimeMs + 15_000,
        );
        await source.resumeIssuing();
        await eventually(async () => assert.equal((await status()).healthz, "ok"), 15_000);
      } finally {
        clients.close();
        assert.equal(await daemon.stop(), 0);
      }
      assert.deepEqual(
        daemon.logRecords().filter((record) => "raw" in record),
        [],
        "only log records, nothing an SDK printed",
      );
    });
  });
}
