import { badRequest, VaultError } from "./errors.js";
import type { Capability } from "./tokens.js";
import { TransitKey, type TransitKeyType } from "./transit-keys.js";

/** One request to a Transit mount, its path relative to the mount. */
interface TransitRequest {
  method: string;
  /** `encrypt/<name>`, `decrypt/<name>`, `keys/<name>`, `keys/<name>/rotate` or `/config`. */
  path: string;
  keys: Map<string, TransitKey>;
  body: Record<string, unknown>;
  /** Throws Vault's 403 unless the token has the capability on the request's path. */
  allow: (capability: Capability) => void;
  /** Whether this decrypt's answer is to be damaged (a fault the test scripted). */
  corrupt: () => boolean;
}

/**
 * The Transit endpoints the emulator serves, with the ACL check Vault makes before each: the
 * `data` of the answer, or a bare 404 (Vault's answer to reading a key that does not exist).
 * An encrypt or key write for a missing key needs `create` (Vault's existence check turns the
 * update into a create), and with it the key is made on the spot — derived when a context came.
 */
export function transitRoute(
  request: TransitRequest,
): { data: Record<string, unknown> } | { status: 404 } {
  const { method, keys, body, allow } = request;
  const match = /^(encrypt|decrypt|keys)\/([\w.-]+)(?:\/(rotate|config))?$/.exec(request.path);
  const [, action, name = "", sub] = match ?? [];
  const key = keys.get(name);
  if (action === "encrypt" && method === "POST") {
    allow(key === undefined ? "create" : "update");
    const target =
      key ?? create(keys, name, body, typeof body.context === "string" && body.context !== "");
    return { data: target.encrypt(body) };
  }
  if (action === "decrypt" && method === "POST") {
    allow("update");
    if (key === undefined) throw badRequest("encryption key not found");
    const data = key.decrypt(body);
    if (request.corrupt()) {
      const plaintext = Buffer.from(data.plaintext, "base64");
      plaintext[0] = (plaintext[0] ?? 0) ^ 0x01;
      data.plaintext = plaintext.toString("base64");
    }
    return { data };
  }
  if (action === "keys" && sub === undefined && method === "GET") {
    allow("read");
    return key === undefined ? { status: 404 } : { data: key.read() };
  }
  if (action === "keys" && sub === undefined && method === "POST") {
    allow(key === undefined ? "create" : "update");
    return { data: (key ?? create(keys, name, body, body.derived === true)).read() };
  }
  if (action === "keys" && sub !== undefined && method === "POST") {
    allow("update");
    if (key === undefined) throw badRequest("encryption key not found");
    if (sub === "rotate") key.rotate();
    else
      key.configure({
        ...(body.min_decryption_version !== undefined && {
          minDecryptionVersion: Number(body.min_decryption_version),
        }),
        ...(body.min_encryption_version !== undefined && {
          minEncryptionVersion: Number(body.min_encryption_version),
        }),
      });
    return { data: key.read() };
  }
  allow(method === "GET" ? "read" : "update");
  throw new VaultError(405, ["1 error occurred:\n\t* unsupported operation\n\n"]);
}

function create(
  keys: Map<string, TransitKey>,
  name: string,
  body: Record<string, unknown>,
  derived: boolean,
): TransitKey {
  const key = new TransitKey(
    name,
    (body.type as TransitKeyType | undefined) ?? "aes256-gcm96",
    derived,
  );
  keys.set(name, key);
  return key;
}
