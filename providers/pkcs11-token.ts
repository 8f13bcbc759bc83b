import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import pkcs11js, { type PKCS11 } from "pkcs11js";
import { wipe } from "../src/crypto/wipe.js";
import { ckrName, classifyPkcs11Error, type TokenFacts } from "./pkcs11-errors.js";
import type { SharedModule } from "./pkcs11-module.js";
import { IV_BYTES, RefusedCiphertext, StaleConnection, TAG_BYTES } from "./pkcs11-protocol.js";
import type { Pkcs11KeyReference } from "./pkcs11-uri.js";
import { ProviderError } from "./types.js";

/** Sessions one provider keeps open at most: unwraps at start-up run a few at a time. */
const MAX_SESSIONS = 4;
const MAX_PIN_BYTES = 1024;

/**
 * Remembers a PIN the token refused, as a keyed fingerprint (the PIN itself is not kept), so
 * the same wrong PIN is never offered again: tokens lock the user PIN after a few failed
 * logins, and health checks every 30 s would otherwise lock it within minutes.
 */
export class RefusedPin {
  readonly #key = randomBytes(32);
  #fingerprint: Buffer | undefined;

  matches(pin: Buffer): boolean {
    const fingerprint = this.#fingerprint;
    return fingerprint !== undefined && timingSafeEqual(fingerprint, this.#digest(pin));
  }

  remember(pin: Buffer | undefined): void {
    this.#fingerprint = pin === undefined ? undefined : this.#digest(pin);
  }

  #digest(pin: Buffer): Buffer {
    return createHmac("sha256", this.#key).update(pin).digest();
  }
}

/** What opening a connection needs besides the module. */
interface ConnectionSettings {
  reference: Pkcs11KeyReference;
  facts: TokenFacts;
  environment: NodeJS.ProcessEnv;
  refusedPin: RefusedPin;
}

/**
 * One logged-in view of the key on its token: the slot, the key's object handle and a small
 * pool of sessions, each running one operation at a time (PKCS#11 allows one active
 * operation per session). Opened whole or not at all; thrown away whole when anything in it
 * goes stale.
 */
export class Connection {
  readonly #module: SharedModule;
  readonly #slot: Buffer;
  readonly #key: Buffer;
  readonly #facts: TokenFacts;
  readonly #idle: Buffer[];
  readonly #waiting: { resolve: (session: Buffer) => void; reject: (error: Error) => void }[] = [];
  #sessions: number;
  #closed = false;

  private constructor(
    module: SharedModule,
    slot: Buffer,
    key: Buffer,
    session: Buffer,
    facts: TokenFacts,
  ) {
    this.#module = module;
    this.#slot = slot;
    this.#key = key;
    this.#idle = [session];
    this.#sessions = 1;
    this.#facts = facts;
  }

  /**
   * Selects the token, logs in, finds and checks the key. A module whose state is broken, or
   * that does not show the token, is re-initialised once and asked again: many modules only
   * see a token that came back, or recover from a device error, in C_Initialize.
   */
  static async open(module: SharedModule, settings: ConnectionSettings): Promise<Connection> {
    const generation = module.generation;
    try {
      return await Connection.#openOnce(module, settings);
    } catch (error) {
      const retry = error instanceof StaleConnection || error instanceof TokenAbsent;
      if (!retry) throw error;
      await module.reset(generation);
      try {
        return await Connection.#openOnce(module, settings);
      } catch (again) {
        if (again instanceof StaleConnection) throw again.failure;
        if (again instanceof TokenAbsent) throw again.failure;
        throw again;
      }
    }
  }

  static async #openOnce(module: SharedModule, settings: ConnectionSettings): Promise<Connection> {
    const { facts } = settings;
    const pin = await readPinIfNeeded(settings);
    try {
      return await module.call((api) => {
        const slot = selectSlot(api, settings.reference, facts);
        const flags = step(facts, "open", () => api.C_GetTokenInfo(slot).flags);
        checkMechanism(api, slot, facts);
        const session = step(facts, "open", () =>
          api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION),
        );
        try {
          if ((flags & pkcs11js.CKF_LOGIN_REQUIRED) !== 0)
            login(api, session, flags, pin.value, settings);
          const key = findKey(api, session, settings.reference, facts);
          return new Connection(module, slot, key, session, facts);
        } catch (error) {
          closeQuietly(api, session);
          throw error;
        }
      });
    } finally {
      wipe(pin.value);
    }
  }

  /** C_Encrypt with CKM_AES_GCM: returns ciphertext ‖ tag. */
  encrypt(plaintext: Uint8Array, iv: Buffer, aad: Buffer, signal: AbortSignal): Promise<Buffer> {
    return this.#operate("encrypt", signal, async (api, session) => {
      const input = Buffer.from(plaintext);
      const output = Buffer.alloc(plaintext.length + TAG_BYTES);
      try {
        api.C_EncryptInit(session, gcm(iv, aad), this.#key);
        return Buffer.from(await api.C_EncryptAsync(session, input, output));
      } finally {
        wipe(input);
      }
    });
  }

  /** C_Decrypt with CKM_AES_GCM: returns the plaintext; a refused ciphertext is a RefusedCiphertext. */
  decrypt(sealed: Uint8Array, iv: Buffer, aad: Buffer, signal: AbortSignal): Promise<Uint8Array> {
    return this.#operate("decrypt", signal, async (api, session) => {
      api.C_DecryptInit(session, gcm(iv, aad), this.#key);
      // Some modules ask for room for the whole input before they know the tag's length.
      const output = Buffer.alloc(sealed.length);
      try {
        const written = await api.C_DecryptAsync(session, Buffer.from(sealed), output);
        const plaintext = Uint8Array.from(written);
        // Nobody is waiting for a key unwrapped after the caller gave up: do not leave it about.
        if (signal.aborted) wipe(plaintext);
        return plaintext;
      } catch (error) {
        const ckr = ckrName(error);
        if (CIPHERTEXT_REFUSALS.has(ckr ?? ""))
          throw new RefusedCiphertext(`C_Decrypt refused the ciphertext (${ckr})`, {
            cause: error,
          });
        throw error;
      } finally {
        wipe(output);
      }
    });
  }

  /** Closes the sessions; one still running an operation is closed when it finishes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const session of this.#idle.splice(0)) closeQuietly(this.#module.api, session);
    const closed = new StaleConnection(
      new ProviderError("other", `the connection to ${this.#facts.token} was closed`),
    );
    for (const waiter of this.#waiting.splice(0)) waiter.reject(closed);
  }

  async #operate<T>(
    stage: "encrypt" | "decrypt",
    signal: AbortSignal,
    operation: (api: PKCS11, session: Buffer) => Promise<T>,
  ): Promise<T> {
    const session = await this.#take();
    let healthy = true;
    try {
      signal.throwIfAborted();
      return await this.#module.call((api) => operation(api, session));
    } catch (error) {
      if (error instanceof RefusedCiphertext || error === signal.reason) throw error;
      const failure = classifyPkcs11Error(error, stage, this.#facts);
      healthy = !failure.stale;
      throw failure.stale ? new StaleConnection(failure.error) : failure.error;
    } finally {
      this.#give(session, healthy);
    }
  }

  async #take(): Promise<Buffer> {
    if (this.#closed) {
      throw new StaleConnection(
        new ProviderError("other", `the connection to ${this.#facts.token} was closed`),
      );
    }
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    if (this.#sessions < MAX_SESSIONS) {
      this.#sessions += 1;
      try {
        return await this.#module.call((api) =>
          step(this.#facts, "open", () =>
            api.C_OpenSession(this.#slot, pkcs11js.CKF_SERIAL_SESSION),
          ),
        );
      } catch (error) {
        this.#sessions -= 1;
        throw error;
      }
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  #give(session: Buffer, healthy: boolean): void {
    if (this.#closed || !healthy) {
      closeQuietly(this.#module.api, session);
      this.#sessions -= 1;
      return;
    }
    const next = this.#waiting.shift();
    if (next !== undefined) next.resolve(session);
    else this.#idle.push(session);
  }
}

// What modules answer C_Decrypt with when a GCM tag does not verify (PKCS#11 2.40 names
// CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 says CKR_GENERAL_ERROR, others CKR_FUNCTION_FAILED).
const CIPHERTEXT_REFUSALS = new Set([
  "CKR_ENCRYPTED_DATA_INVALID",
  "CKR_ENCRYPTED_DATA_LEN_RANGE",
  "CKR_DATA_INVALID",
  "CKR_GENERAL_ERROR",
  "CKR_FUNCTION_FAILED",
]);

/** No token matches the reference (yet): re-initialising the module may bring it back. */
class TokenAbsent extends Error {
  readonly failure: ProviderError;
  constructor(failure: ProviderError) {
    super(failure.message, { cause: failure });
    this.name = "TokenAbsent";
    this.failure = failure;
  }
}

function gcm(iv: Buffer, aad: Buffer): pkcs11js.Mechanism {
  return {
    mechanism: pkcs11js.CKM_AES_GCM,
    // CK_GCM_PARAMS of PKCS#11 2.40, ulIvBits included: the binding's older CK_AES_GCM_PARAMS
    // leaves that member unset.
    parameter: {
      type: pkcs11js.CK_PARAMS_GCM,
      iv,
      ivBits: IV_BYTES * 8,
      aad,
      tagBits: TAG_BYTES * 8,
    } as pkcs11js.GcmParams,
  };
}

// Runs one setup call, turning a PKCS#11 failure into a classified one.
function step<T>(facts: TokenFacts, stage: "open" | "login" | "find", call: () => T): T {
  try {
    return call();
  } catch (error) {
    const failure = classifyPkcs11Error(error, stage, facts);
    throw failure.stale ? new StaleConnection(failure.error) : failure.error;
  }
}

function closeQuietly(api: PKCS11, session: Buffer): void {
  try {
    api.C_CloseSession(session);
  } catch {
    // A session of a finalised module or a removed token is gone already.
  }
}

// CK_TOKEN_INFO and friends pad their text with blanks; RFC 7512 values carry no padding.
function unpad(text: string): string {
  return text.replace(/ +$/, "");
}

function selectSlot(api: PKCS11, reference: Pkcs11KeyReference, facts: TokenFacts): Buffer {
  const { library, token, slot } = reference;
  if (Object.keys(library).length > 0) {
    const info = step(facts, "open", () => api.C_GetInfo());
    const version = info.libraryVersion;
    const matches =
      (library.manufacturer === undefined || unpad(info.manufacturerID) === library.manufacturer) &&
      (library.description === undefined ||
        unpad(info.libraryDescription) === library.description) &&
      (library.version === undefined ||
        (version.major === library.version.major && version.minor === library.version.minor));
    if (!matches) {
      throw new ProviderError(
        "user",
        `PKCS#11 module ${facts.module} is ${JSON.stringify(unpad(info.libraryDescription))} by ${JSON.stringify(unpad(info.manufacturerID))}, version ${version.major}.${version.minor}, which the key reference's library-* attributes do not match: correct module-path or those attributes`,
      );
    }
  }
  const slots = step(facts, "open", () => api.C_GetSlotList(true));
  const present: string[] = [];
  const matching: { slot: Buffer; serial: string }[] = [];
  for (const candidate of slots) {
    const info = step(facts, "open", () => api.C_GetTokenInfo(candidate));
    const label = unpad(info.label);
    const serial = unpad(info.serialNumber);
    // An uninitialised token (SoftHSM2's spare slot) is no candidate anyone means.
    if ((info.flags & pkcs11js.CKF_TOKEN_INITIALIZED) !== 0) present.push(JSON.stringify(label));
    const slotInfo =
      slot.description !== undefined || slot.manufacturer !== undefined
        ? step(facts, "open", () => api.C_GetSlotInfo(candidate))
        : undefined;
    const matches =
      (token.label === undefined || label === token.label) &&
      (token.serial === undefined || serial === token.serial) &&
      (token.manufacturer === undefined || unpad(info.manufacturerID) === token.manufacturer) &&
      (token.model === undefined || unpad(info.model) === token.model) &&
      (slot.id === undefined || slotNumber(candidate) === slot.id) &&
      (slot.description === undefined ||
        unpad(slotInfo?.slotDescription ?? "") === slot.description) &&
      (slot.manufacturer === undefined ||
        unpad(slotInfo?.manufacturerID ?? "") === slot.manufacturer);
    if (matches) matching.push({ slot: candidate, serial });
  }
  const [first, ...others] = matching;
  if (first === undefined) {
    throw new TokenAbsent(
      new ProviderError(
        "other",
        `${facts.token} is not present in PKCS#11 module ${facts.module} (token absent; tokens present: ${present.length === 0 ? "none" : present.sort().join(", ")}): connect or restore the token, or correct the key reference`,
      ),
    );
  }
  if (others.length > 0) {
    throw new ProviderError(
      "user",
      `${matching.length} tokens in PKCS#11 module ${facts.module} match ${facts.token} (serials ${matching.map((match) => match.serial).join(", ")}): add serial=… to the key reference`,
    );
  }
  return first.slot;
}

// The binding hands a CK_SLOT_ID over as the bytes of a native CK_ULONG.
function slotNumber(slot: Buffer): bigint {
  return slot.length >= 8 ? slot.readBigUInt64LE(0) : BigInt(slot.readUInt32LE(0));
}

function checkMechanism(api: PKCS11, slot: Buffer, facts: TokenFacts): void {
  let flags: number;
  try {
    flags = api.C_GetMechanismInfo(slot, pkcs11js.CKM_AES_GCM).flags;
  } catch (error) {
    const failure = classifyPkcs11Error(error, "open", facts);
    if (failure.stale) throw new StaleConnection(failure.error);
    throw new ProviderError(
      "user",
      `${facts.token} does not offer CKM_AES_GCM (mechanism not allowed): use a token that offers AES-GCM`,
      { cause: error },
    );
  }
  const needed = pkcs11js.CKF_ENCRYPT | pkcs11js.CKF_DECRYPT;
  if ((flags & needed) !== needed) {
    throw new ProviderError(
      "user",
      `${facts.token} offers CKM_AES_GCM without C_Encrypt and C_Decrypt (mechanism not allowed): use a token that encrypts and decrypts with AES-GCM`,
    );
  }
}

/** The PIN, read only for a reference that names a source; wiped by the caller. */
async function readPinIfNeeded(settings: ConnectionSettings): Promise<{ value?: Buffer }> {
  const source = settings.reference.pinSource;
  if (source === undefined) return {};
  if (source.kind === "env") {
    const value = settings.environment[source.variable];
    if (value === undefined || value === "") {
      throw new ProviderError(
        "user",
        `the PIN variable ${source.variable} (pin-source env:${source.variable}) is not set: set it to the token's user PIN`,
      );
    }
    return { value: Buffer.from(value, "utf8") };
  }
  let bytes: Buffer;
  try {
    // A PIN any local user can read is a PIN anyone on the machine can use.
    const status = await stat(source.path);
    if ((status.mode & 0o004) !== 0) {
      throw new ProviderError(
        "user",
        `the PIN file ${source.path} is readable by every user: chmod o-rwx ${source.path} (in Kubernetes, mount the Secret with defaultMode 0440 or 0400)`,
      );
    }
    if (!status.isFile() || status.size > MAX_PIN_BYTES) {
      throw new ProviderError(
        "user",
        `the PIN file ${source.path} is not a file of at most ${MAX_PIN_BYTES} bytes: give pin-source=file: a file holding only the user PIN`,
      );
    }
    bytes = await readFile(source.path);
  } catch (error) {
    if (error instanceof ProviderError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new ProviderError(
      "user",
      `the PIN file ${source.path} cannot be read (${code}): create it with the token's user PIN, readable by this daemon's user only`,
      { cause: error },
    );
  }
  // One trailing line break, as `echo` or an editor leaves it, is not part of the PIN.
  const end = bytes.at(-1) === 0x0a ? (bytes.at(-2) === 0x0d ? -2 : -1) : bytes.length;
  const value = Buffer.from(bytes.subarray(0, end));
  wipe(bytes);
  if (value.length === 0) {
    throw new ProviderError(
      "user",
      `the PIN file ${source.path} is empty: write the token's user PIN to it`,
    );
  }
  return { value };
}

function login(
  api: PKCS11,
  session: Buffer,
  flags: number,
  pin: Buffer | undefined,
  settings: ConnectionSettings,
): void {
  const { facts, refusedPin } = settings;
  if ((flags & pkcs11js.CKF_USER_PIN_LOCKED) !== 0) {
    throw classifyPkcs11Error(new Error("CKR_PIN_LOCKED"), "login", facts).error;
  }
  if (pin === undefined) {
    throw new ProviderError(
      "user",
      `${facts.token} requires a login and the key reference has no pin-source: add pin-source=file:/path/to/pin (a file holding the user PIN)`,
    );
  }
  if (refusedPin.matches(pin)) {
    throw classifyPkcs11Error(new Error("CKR_PIN_INCORRECT"), "login", facts).error;
  }
  try {
    // The binding takes the PIN as a string, which cannot be wiped; it lives for this call only.
    api.C_Login(session, pkcs11js.CKU_USER, pin.toString("utf8"));
    refusedPin.remember(undefined);
  } catch (error) {
    const failure = classifyPkcs11Error(error, "login", facts);
    switch (ckrName(error)) {
      // Login state is per process and token: another instance of this provider logged in.
      case "CKR_USER_ALREADY_LOGGED_IN":
        return;
      case "CKR_PIN_INCORRECT":
      case "CKR_PIN_INVALID":
      case "CKR_PIN_LEN_RANGE":
        refusedPin.remember(pin);
        break;
    }
    throw failure.stale ? new StaleConnection(failure.error) : failure.error;
  }
}

const CLASS_NAMES = new Map([
  [pkcs11js.CKO_DATA, "a data object"],
  [pkcs11js.CKO_CERTIFICATE, "a certificate"],
  [pkcs11js.CKO_PUBLIC_KEY, "a public key"],
  [pkcs11js.CKO_PRIVATE_KEY, "a private key"],
]);

function findKey(
  api: PKCS11,
  session: Buffer,
  reference: Pkcs11KeyReference,
  facts: TokenFacts,
): Buffer {
  const template: pkcs11js.Template = [];
  if (reference.object.label !== undefined)
    template.push({ type: pkcs11js.CKA_LABEL, value: reference.object.label });
  if (reference.object.id !== undefined)
    template.push({ type: pkcs11js.CKA_ID, value: Buffer.from(reference.object.id) });
  const found = step(facts, "find", () => {
    api.C_FindObjectsInit(session, template);
    try {
      return api.C_FindObjects(session, 16);
    } finally {
      api.C_FindObjectsFinal(session);
    }
  });
  const classes = found.map((handle) =>
    ulong(attribute(api, session, handle, pkcs11js.CKA_CLASS, facts)),
  );
  const keys = found.filter((_, index) => classes[index] === pkcs11js.CKO_SECRET_KEY);
  const [key, ...others] = keys;
  if (key === undefined) {
    const other = classes.map((type) => CLASS_NAMES.get(type) ?? "not a secret key")[0];
    throw new ProviderError(
      "user",
      other !== undefined
        ? `${facts.object} on ${facts.token} is ${other}, not an AES secret key: name an AES-256 secret key in the key reference`
        : `${facts.object} is missing on ${facts.token} (object missing${reference.pinSource === undefined ? "; a private object is only found after a login, so add pin-source if it is one" : ""}): create it (pkcs11-tool --module ${facts.module} --token-label ${reference.token.label ?? "LABEL"} --login --keygen --key-type AES:32 --label ${reference.object.label ?? "LABEL"} --sensitive --private) or correct object=/id= in the key reference`,
    );
  }
  if (others.length > 0) {
    throw new ProviderError(
      "user",
      `${keys.length} secret keys on ${facts.token} match ${facts.object}: add id=… (the key's CKA_ID, percent-encoded) to the key reference`,
    );
  }
  const keyType = ulong(attribute(api, session, key, pkcs11js.CKA_KEY_TYPE, facts));
  const length = ulong(attribute(api, session, key, pkcs11js.CKA_VALUE_LEN, facts));
  if (keyType !== pkcs11js.CKK_AES || length !== 32) {
    throw new ProviderError(
      "user",
      `${facts.object} on ${facts.token} is ${keyType === pkcs11js.CKK_AES ? `an AES-${length * 8} key` : "not an AES key"}: master keys are wrapped by an AES-256 key (pkcs11-tool --keygen --key-type AES:32)`,
    );
  }
  const usage = [
    [pkcs11js.CKA_ENCRYPT, "CKA_ENCRYPT"],
    [pkcs11js.CKA_DECRYPT, "CKA_DECRYPT"],
  ] as const;
  const denied = usage
    .filter(([type]) => attribute(api, session, key, type, facts)[0] !== 1)
    .map(([, label]) => label);
  if (denied.length > 0) {
    throw new ProviderError(
      "user",
      `${facts.object} on ${facts.token} has ${denied.join(" and ")} false (usage not allowed): the pkcs11 provider wraps with C_Encrypt and unwraps with C_Decrypt, so use an AES key with CKA_ENCRYPT and CKA_DECRYPT true`,
    );
  }
  return key;
}

function attribute(
  api: PKCS11,
  session: Buffer,
  handle: Buffer,
  type: number,
  facts: TokenFacts,
): Buffer {
  return step(
    facts,
    "find",
    () => api.C_GetAttributeValue(session, handle, [{ type }])[0]?.value ?? Buffer.alloc(0),
  );
}

// CK_ULONG attributes arrive as native-endian bytes of the platform's unsigned long.
function ulong(bytes: Buffer): number {
  if (bytes.length >= 8) return Number(bytes.readBigUInt64LE(0));
  if (bytes.length >= 4) return bytes.readUInt32LE(0);
  return -1;
}
