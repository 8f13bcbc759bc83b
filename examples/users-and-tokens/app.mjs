// @ts-check
/**
 * An application's data layer on kms-envelope, from first write to a finished key rotation:
 * users, OAuth tokens and a credential kept in SQLite with their sensitive fields sealed by the
 * in-process engine, then a rotation done the way an operator does it (put a new key first,
 * rewrap, drop the old key) without ever reading plaintext out of the database.
 *
 *   npm install && node app.mjs [data-directory]
 *
 * It prints one JSON summary line on stdout. The directory must be new or empty: the example
 * writes its own EncryptionConfiguration there, with keys it generates.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CredentialStore,
  EncryptedStore,
  KmsEnvelopeError,
  openFieldLayer,
  openRepository,
  PlaintextGuard,
  rewrap,
} from "kms-envelope";

const dataDirectory = resolve(process.argv[2] ?? "data");
const fieldMapPath = fileURLToPath(new URL("field-map.yaml", import.meta.url));
const encryptionConfigPath = resolve(dataDirectory, "encryption-configuration.yaml");
const storeUrl = `sqlite://${resolve(dataDirectory, "app.db")}`;

/**
 * The EncryptionConfiguration the engine reads: the first key writes, every listed key reads.
 * A real deployment keeps this file out of the data directory and, better, names a `kms`
 * provider (the kms-envelope daemon) instead of holding keys itself.
 * @param {{ name: string, secret: string }[]} keys
 */
async function writeEncryptionConfiguration(keys) {
  const listed = keys.map(
    (key) => `            - name: ${key.name}\n              secret: ${key.secret}`,
  );
  await writeFile(
    encryptionConfigPath,
    [
      "apiVersion: apiserver.config.k8s.io/v1",
      "kind: EncryptionConfiguration",
      "resources:",
      "  - resources: [users, oauthtokens, credentials]",
      "    providers:",
      "      - secretbox:",
      "          keys:",
      ...listed,
      "",
    ].join("\n"),
    { mode: 0o600 },
  );
}

/** @param {string} name */
function newKey(name) {
  return { name, secret: randomBytes(32).toString("base64") };
}

/** Everything the application holds open; built again after each configuration change. */
async function openData() {
  const codec = await openFieldLayer({ fieldMapPath, encryptionConfigPath });
  const repository = await openRepository(storeUrl);
  // Plain fields that look like credentials (a token pasted into a display name) are refused.
  const guard = new PlaintextGuard({ mode: "refuse" }, (finding) =>
    process.stderr.write(`refused credential-like plaintext: ${JSON.stringify(finding)}\n`),
  );
  const store = new EncryptedStore({ repository, codec, guard });
  return {
    codec,
    repository,
    store,
    credentials: new CredentialStore(store, codec),
    async close() {
      await codec.close();
      await repository.close();
    },
  };
}

await mkdir(dataDirectory, { recursive: true, mode: 0o700 });
if ((await readdir(dataDirectory)).length > 0) {
  process.stderr.write(`${dataDirectory} is not empty: give the example a new directory\n`);
  process.exit(2);
}
const firstKey = newKey("key-1");
await writeEncryptionConfiguration([firstKey]);

// 1. Write users, tokens and a credential.
let data = await openData();
const userId = "ada";
await data.store.create("users", {
  id: userId,
  subjectId: userId,
  document: { id: userId, email: "ada@example.com", displayName: "Ada", plan: "team" },
});
await data.store.create("oauthtokens", {
  id: "github-ada",
  subjectId: userId,
  document: { provider: "github", accessToken: "gho_example_access", refreshToken: "ghr_example" },
});
await data.credentials.put(
  { name: "github", context: "mcp", secrets: { GITHUB_TOKEN: "ghp_example_token" } },
  { subjectId: userId },
);

// 2. Read them back, and show what a mistyped resource name gets.
const user = await data.store.read("users", userId);
let mistyped = "";
try {
  await data.store.read("user", userId);
} catch (error) {
  if (!(error instanceof KmsEnvelopeError)) throw error;
  mistyped = error.code;
}
await data.close();

// 3. Rotate: a new key in front (it writes), the old one behind (it still reads), then rewrap.
const secondKey = newKey("key-2");
await writeEncryptionConfiguration([secondKey, firstKey]);
data = await openData();
const staleBefore = (await data.store.read("users", userId))?.stale ?? false;
const summary = await rewrap({ repository: data.repository, codec: data.codec });
await data.close();

// 4. Drop the old key: everything must still open, and nothing may be stale.
await writeEncryptionConfiguration([secondKey]);
data = await openData();
const afterRotation = await data.store.read("users", userId);
const token = await data.store.read("oauthtokens", "github-ada");
const credential = await data.credentials.get("github", "mcp");
await data.close();

process.stdout.write(
  `${JSON.stringify({
    user: user?.document,
    mistypedResource: mistyped,
    staleBeforeRewrap: staleBefore,
    fieldsRewrapped: summary.resources.reduce((sum, each) => sum + each.fieldsRewrapped, 0),
    afterRotation: {
      user: afterRotation?.document,
      stale: afterRotation?.stale,
      accessToken: token?.document.accessToken,
      credential: credential?.secrets,
    },
  })}\n`,
);
