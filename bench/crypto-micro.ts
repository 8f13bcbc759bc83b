// Micro-benchmark of the per-call crypto of the daemon and of cheaper equivalents, to size the
// optimisation suggestions the daemon profile points at. Every alternative is checked to give
// byte-identical output to the current code before it is timed.
//
//   node --import tsx bench/crypto-micro.ts [--ms 1500]
import { createSecretKey, hkdfSync, randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { fieldContext, KMS_V2_CONTEXT } from "../src/crypto/contexts.js";
import { deriveRecordKey } from "../src/crypto/derivation.js";
import { formatFieldValue, parseFieldValue } from "../src/crypto/field-value.js";
import { encodeKmsCiphertext } from "../src/crypto/kms-ciphertext.js";
import { open, seal } from "../src/crypto/sealed.js";
import { loadSecretbox, secretboxSeal } from "../src/crypto/secretbox.js";
import {
  fastOpen,
  fastSeal,
  hkdfViaHash,
  hkdfViaHmac,
  NoncePool,
  WasmSealer,
} from "./fast-crypto.js";

const { values } = parseArgs({ options: { ms: { type: "string", default: "1500" } } });
const budgetMs = Number(values.ms);

function time(name: string, body: () => unknown): { name: string; nsPerOp: number } {
  for (let index = 0; index < 2000; index++) body();
  let operations = 0;
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(budgetMs) * 1_000_000n;
  let now = started;
  while (now < deadline) {
    for (let index = 0; index < 500; index++) body();
    operations += 500;
    now = process.hrtime.bigint();
  }
  return { name, nsPerOp: Math.round(Number(now - started) / operations) };
}

async function main(): Promise<void> {
  await loadSecretbox();
  const workspaceKey = randomBytes(32);
  const workspaceKeyObject = createSecretKey(workspaceKey);
  const nonce = randomBytes(24);
  const plaintext = randomBytes(32);
  const fieldValue = randomBytes(100);
  const context = KMS_V2_CONTEXT;
  const recordKey = deriveRecordKey(workspaceKey, nonce, context);

  // Equivalence checks: every alternative must give the same bytes as the current code.
  const reference = Buffer.from(recordKey);
  const checks: [string, Uint8Array][] = [
    [
      "hkdfSync(KeyObject)",
      new Uint8Array(hkdfSync("sha256", workspaceKeyObject, nonce, context, 32)),
    ],
    ["HKDF via 2 × createHmac", hkdfViaHmac(workspaceKey, nonce, context)],
    ["HKDF via 4 × crypto.hash", hkdfViaHash(workspaceKey, nonce, context)],
  ];
  for (const [name, bytes] of checks) {
    if (!reference.equals(Buffer.from(bytes)))
      throw new Error(`${name} differs from deriveRecordKey`);
  }
  const sealed = seal(workspaceKey, context, plaintext);
  if (!Buffer.from(fastOpen(workspaceKey, context, sealed)).equals(plaintext)) {
    throw new Error("fastOpen cannot open what seal sealed");
  }
  if (
    !Buffer.from(open(workspaceKey, context, fastSeal(workspaceKey, context, plaintext))).equals(
      plaintext,
    )
  ) {
    throw new Error("open cannot open what fastSeal sealed");
  }

  const wasm = new WasmSealer();
  if (!Buffer.from(wasm.open(workspaceKey, context, sealed)).equals(plaintext)) {
    throw new Error("WasmSealer cannot open what seal sealed");
  }
  if (
    !Buffer.from(open(workspaceKey, context, wasm.seal(workspaceKey, context, plaintext))).equals(
      plaintext,
    )
  ) {
    throw new Error("open cannot open what WasmSealer sealed");
  }
  const tampered = Uint8Array.from(sealed);
  tampered[tampered.length - 1] = (tampered[tampered.length - 1] as number) ^ 1;
  try {
    wasm.open(workspaceKey, context, tampered);
    throw new Error("WasmSealer opened a tampered value");
  } catch (error) {
    if (!(error instanceof Error) || error.name !== "DecryptionFailedError") throw error;
  }
  const pool = new NoncePool();
  const fieldCtx = fieldContext("benchrecords.bench.kms-envelope.io", "field_0", "rec-1");
  const keyId = "local:abcdefghijklmnop";
  const sealedField = formatFieldValue(keyId, seal(workspaceKey, fieldCtx, fieldValue));
  const rows = [
    time("randomBytes(24) (current nonce)", () => randomBytes(24)),
    time("pooled nonce (6 KiB randomFillSync, copy 24 B)", () => pool.take(24)),
    time("hkdfSync(Buffer key) (current deriveRecordKey)", () =>
      deriveRecordKey(workspaceKey, nonce, context),
    ),
    time("hkdfSync(cached KeyObject)", () =>
      hkdfSync("sha256", workspaceKeyObject, nonce, context, 32),
    ),
    time("HKDF via 2 × createHmac", () => hkdfViaHmac(workspaceKey, nonce, context)),
    time("HKDF via 4 × crypto.hash (one-shot SHA-256)", () =>
      hkdfViaHash(workspaceKey, nonce, context),
    ),
    time("secretbox_easy 32 B (libsodium wasm)", () => secretboxSeal(plaintext, nonce, recordKey)),
    time("secretbox_easy 100 B (libsodium wasm)", () =>
      secretboxSeal(fieldValue, nonce, recordKey),
    ),
    time("seal 32 B (current)", () => seal(workspaceKey, context, plaintext)),
    time("seal 32 B (HMAC-HKDF + nonce pool)", () => fastSeal(workspaceKey, context, plaintext)),
    time("seal 32 B (all-wasm HKDF + secretbox, nonce pool)", () =>
      wasm.seal(workspaceKey, context, plaintext),
    ),
    time("open 32 B (current)", () => open(workspaceKey, context, sealed)),
    time("open 32 B (HMAC-HKDF)", () => fastOpen(workspaceKey, context, sealed)),
    time("open 32 B (all-wasm)", () => wasm.open(workspaceKey, context, sealed)),
    time("encryptKms-equivalent: seal + encodeKmsCiphertext", () =>
      encodeKmsCiphertext(keyId, seal(workspaceKey, context, plaintext)),
    ),
    time("fieldContext(resource, field, record)", () =>
      fieldContext("benchrecords.bench.kms-envelope.io", "field_0", "rec-1"),
    ),
    time("field: seal 100 B + formatFieldValue (current)", () =>
      formatFieldValue(keyId, seal(workspaceKey, fieldCtx, fieldValue)),
    ),
    time("field: parseFieldValue + open 100 B (current)", () =>
      open(workspaceKey, fieldCtx, parseFieldValue(sealedField).sealed),
    ),
    time("field: seal 100 B + formatFieldValue (all-wasm)", () =>
      formatFieldValue(keyId, wasm.seal(workspaceKey, fieldCtx, fieldValue)),
    ),
    time("field: parseFieldValue + open 100 B (all-wasm)", () =>
      wasm.open(workspaceKey, fieldCtx, parseFieldValue(sealedField).sealed),
    ),
  ];
  const width = Math.max(...rows.map((row) => row.name.length));
  process.stdout.write(`Node ${process.version}, OpenSSL ${process.versions.openssl}\n`);
  for (const row of rows) {
    process.stdout.write(`${row.name.padEnd(width)}  ${String(row.nsPerOp).padStart(7)} ns/op\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
