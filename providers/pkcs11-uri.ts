import { isAbsolute } from "node:path";
import { ConfigError } from "../src/errors.js";

/** Where the token's user PIN is read from when the provider logs in. */
type PinSource = { kind: "file"; path: string } | { kind: "env"; variable: string };

/**
 * A checked `pkcs11:` key reference (RFC 7512): which token, which key object, which module, and
 * where the PIN comes from. Every selector that is set must match; unset ones match anything.
 */
export interface Pkcs11KeyReference {
  /** The reference as given, trimmed: what describe() shows and the keyring records. */
  readonly uri: string;
  /** Token selectors: CK_TOKEN_INFO label, manufacturerID, model, serialNumber. */
  readonly token: {
    readonly label?: string;
    readonly manufacturer?: string;
    readonly model?: string;
    readonly serial?: string;
  };
  /** Slot selectors: CK_SLOT_INFO slotDescription, manufacturerID, and the slot id. */
  readonly slot: {
    readonly description?: string;
    readonly manufacturer?: string;
    readonly id?: bigint;
  };
  /** Library selectors: CK_INFO manufacturerID, libraryDescription, libraryVersion. */
  readonly library: {
    readonly manufacturer?: string;
    readonly description?: string;
    readonly version?: { readonly major: number; readonly minor: number };
  };
  /** Key object selectors: CKA_LABEL and CKA_ID. */
  readonly object: { readonly label?: string; readonly id?: Uint8Array };
  /** Absolute path of the PKCS#11 module (shared library). */
  readonly modulePath: string;
  /** Where the user PIN is read from; none for a token that needs no login. */
  readonly pinSource: PinSource | undefined;
}

const SETTING = "pkcs11 keyRef";
const SHAPE =
  "pkcs11:token=LABEL;object=KEY?module-path=/path/to/module.so&pin-source=file:/path/to/pin";

// RFC 7512 §2.3: characters a value may hold unencoded, beyond RFC 3986's unreserved ones.
// "&" separates query attributes, and "/" and "?" would end the path, so each is allowed only
// where it cannot be taken for a delimiter.
const UNRESERVED = "A-Za-z0-9\\-._~";
const RES_AVAIL = ":\\[\\]@!$'()*+,=";
const PATH_CHAR = new RegExp(`^[${UNRESERVED}${RES_AVAIL}&]$`);
const QUERY_CHAR = new RegExp(`^[${UNRESERVED}${RES_AVAIL}/?|]$`);

type Component = "path" | "query";

// Every attribute RFC 7512 defines, by component. Those this provider cannot honour are still
// listed, so refusing them can say why instead of calling them unknown.
const PATH_ATTRIBUTES = [
  "token",
  "manufacturer",
  "serial",
  "model",
  "library-manufacturer",
  "library-description",
  "library-version",
  "object",
  "type",
  "id",
  "slot-description",
  "slot-manufacturer",
  "slot-id",
] as const;
const QUERY_ATTRIBUTES = ["module-path", "pin-source", "module-name", "pin-value"] as const;

type PathAttribute = (typeof PATH_ATTRIBUTES)[number];
type QueryAttribute = (typeof QUERY_ATTRIBUTES)[number];

/**
 * Parses a `pkcs11:` URI (RFC 7512) naming the AES key that wraps master keys: path attributes
 * select the token and the key object, query attributes give `module-path` (required) and
 * `pin-source` (`file:/absolute/path` or `env:VARIABLE`). Refuses, with a ConfigError that says
 * what to change: unknown, duplicate or misplaced attributes, characters that must be
 * percent-encoded, bad percent-encoding, `pin-value` (a PIN in a reference would be stored in
 * the keyring and shown in logs), and references that do not single out a token and an object.
 * Errors never quote attribute values, so nothing meant to be secret reaches them.
 */
export function parsePkcs11Uri(keyRef: string): Pkcs11KeyReference {
  const uri = keyRef.trim();
  // RFC 3986 §3.1: the scheme is case-insensitive.
  if (uri.slice(0, 7).toLowerCase() !== "pkcs11:") {
    throw new ConfigError(SETTING, "does not start with pkcs11:", `give ${SHAPE}`);
  }
  const rest = uri.slice(7);
  // "?" may appear unencoded in query values, so only the first one ends the path.
  const mark = rest.indexOf("?");
  const path = mark < 0 ? rest : rest.slice(0, mark);
  const query = mark < 0 ? undefined : rest.slice(mark + 1);

  const pathValues = new Map<PathAttribute, Uint8Array>();
  for (const [name, raw] of attributes(path, ";", "path")) {
    const known = expectAttribute(name, "path");
    if (pathValues.has(known)) throw duplicate(name);
    pathValues.set(known, decodeValue(raw, name, "path"));
  }
  const queryValues = new Map<QueryAttribute, Uint8Array>();
  if (query !== undefined && query !== "") {
    for (const [name, raw] of attributes(query, "&", "query")) {
      const known = expectAttribute(name, "query");
      if (queryValues.has(known)) throw duplicate(name);
      queryValues.set(known, decodeValue(raw, name, "query"));
    }
  }

  const text = (name: PathAttribute) => textValue(pathValues.get(name), name);
  const type = text("type");
  if (type !== undefined && type !== "secret-key") {
    throw new ConfigError(
      SETTING,
      `type=${JSON.stringify(type)} does not name a secret key`,
      "drop type or give type=secret-key: the key that wraps master keys is an AES secret key",
    );
  }
  const slotIdText = text("slot-id");
  const versionText = text("library-version");
  const reference: Pkcs11KeyReference = {
    uri,
    token: defined({
      label: text("token"),
      manufacturer: text("manufacturer"),
      model: text("model"),
      serial: text("serial"),
    }),
    slot: defined({
      description: text("slot-description"),
      manufacturer: text("slot-manufacturer"),
      id: slotIdText === undefined ? undefined : slotId(slotIdText),
    }),
    library: defined({
      manufacturer: text("library-manufacturer"),
      description: text("library-description"),
      version: versionText === undefined ? undefined : libraryVersion(versionText),
    }),
    object: defined({ label: text("object"), id: pathValues.get("id") }),
    modulePath: modulePath(queryValues),
    pinSource: pinSource(queryValues),
  };
  // A reference that could match a token or key added later would silently switch keys.
  if (
    reference.token.label === undefined &&
    reference.token.serial === undefined &&
    reference.slot.id === undefined
  ) {
    throw new ConfigError(
      SETTING,
      "names no token",
      "add token=LABEL (or serial=SERIAL) so that exactly one token is used",
    );
  }
  if (reference.object.label === undefined && reference.object.id === undefined) {
    throw new ConfigError(
      SETTING,
      "names no key object",
      "add object=LABEL (or id=%01…, its CKA_ID) to name the AES key",
    );
  }
  return reference;
}

/** Splits a component into `name=value` pairs; every attribute must have a name and an "=". */
function attributes(component: string, separator: string, where: Component): [string, string][] {
  if (component === "") return [];
  return component.split(separator).map((attribute, index) => {
    const equals = attribute.indexOf("=");
    if (equals <= 0) {
      throw new ConfigError(
        SETTING,
        attribute === ""
          ? `has an empty ${where} attribute (attribute ${index + 1})`
          : `${where} attribute ${index + 1} is not name=value`,
        `separate ${where} attributes with ${JSON.stringify(separator)}, each written name=value`,
      );
    }
    return [attribute.slice(0, equals), attribute.slice(equals + 1)];
  });
}

function expectAttribute(name: string, where: "path"): PathAttribute;
function expectAttribute(name: string, where: "query"): QueryAttribute;
function expectAttribute(name: string, where: Component): PathAttribute | QueryAttribute {
  const shown = JSON.stringify(name.slice(0, 40));
  const own: readonly string[] = where === "path" ? PATH_ATTRIBUTES : QUERY_ATTRIBUTES;
  const other: readonly string[] = where === "path" ? QUERY_ATTRIBUTES : PATH_ATTRIBUTES;
  if (own.includes(name)) {
    if (name === "pin-value") {
      throw new ConfigError(
        SETTING,
        "holds pin-value, and a key reference is stored in the keyring and shown in logs",
        "put the PIN in a file only the daemon can read and give pin-source=file:/path/to/pin (or pin-source=env:VARIABLE)",
      );
    }
    if (name === "module-name") {
      throw new ConfigError(
        SETTING,
        "gives module-name, which leaves the module's location to a search this provider does not do",
        "give module-path=/absolute/path/to/module.so instead",
      );
    }
    return name as PathAttribute | QueryAttribute;
  }
  if (other.includes(name)) {
    throw new ConfigError(
      SETTING,
      `${shown} is a ${where === "path" ? "query" : "path"} attribute`,
      where === "path"
        ? `move it after the "?" (query attributes are separated by "&")`
        : `move it before the "?" (path attributes are separated by ";")`,
    );
  }
  const lower = name.toLowerCase();
  throw new ConfigError(
    SETTING,
    `has the unknown ${where} attribute ${shown}`,
    own.includes(lower)
      ? `attribute names are lowercase: write ${lower}`
      : `use only ${own.filter((known) => known !== "pin-value" && known !== "module-name").join(", ")}`,
  );
}

function duplicate(name: string): ConfigError {
  return new ConfigError(
    SETTING,
    `gives ${name} more than once`,
    `keep one ${name}: a reference with two could mean either`,
  );
}

/** Percent-decodes a value, refusing characters RFC 7512 requires to be encoded there. */
function decodeValue(raw: string, name: string, where: Component): Uint8Array {
  const allowed = where === "path" ? PATH_CHAR : QUERY_CHAR;
  const bytes: number[] = [];
  for (let index = 0; index < raw.length; index += 1) {
    const character = raw[index] as string;
    if (character === "%") {
      const hex = raw.slice(index + 1, index + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        throw new ConfigError(
          SETTING,
          `the value of ${name} has a "%" not followed by two hexadecimal digits`,
          'write a literal "%" as %25',
        );
      }
      bytes.push(Number.parseInt(hex, 16));
      index += 2;
      continue;
    }
    if (!allowed.test(character)) {
      const code = raw.codePointAt(index) ?? 0;
      // The character itself is not quoted: it may belong to something the operator keeps private.
      throw new ConfigError(
        SETTING,
        `the value of ${name} holds a character (U+${code.toString(16).toUpperCase().padStart(4, "0")}) that must be percent-encoded in the ${where}`,
        `percent-encode it as its UTF-8 bytes, e.g. ${[...Buffer.from(String.fromCodePoint(code), "utf8")].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, "0")}`).join("")}`,
      );
    }
    bytes.push(character.charCodeAt(0));
  }
  return Uint8Array.from(bytes);
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function textValue(bytes: Uint8Array | undefined, name: string): string | undefined {
  if (bytes === undefined) return undefined;
  try {
    return UTF8.decode(bytes);
  } catch (error) {
    throw new ConfigError(
      SETTING,
      `the value of ${name} is not UTF-8 once percent-decoded`,
      "percent-encode the UTF-8 bytes of the text",
      { cause: error },
    );
  }
}

const MAX_SLOT_ID = 2n ** 64n - 1n;

function slotId(text: string): bigint {
  // CK_SLOT_ID is a CK_ULONG: 1*DIGIT, at most 64 bits.
  if (!/^\d{1,20}$/.test(text) || BigInt(text) > MAX_SLOT_ID) {
    throw new ConfigError(
      SETTING,
      "slot-id is not a decimal number of at most 64 bits",
      "give the slot id in decimal, e.g. slot-id=1346449133 (softhsm2-util --show-slots shows it)",
    );
  }
  return BigInt(text);
}

function libraryVersion(text: string): { major: number; minor: number } {
  const match = /^(\d{1,3})(?:\.(\d{1,3}))?$/.exec(text);
  const major = Number(match?.[1]);
  const minor = Number(match?.[2] ?? "0");
  // CK_VERSION holds two bytes; RFC 7512 reads a missing minor as 0.
  if (match === null || major > 255 || minor > 255) {
    throw new ConfigError(
      SETTING,
      "library-version is not MAJOR or MAJOR.MINOR (each 0..255)",
      "give e.g. library-version=2.6, or drop it",
    );
  }
  return { major, minor };
}

function modulePath(values: Map<QueryAttribute, Uint8Array>): string {
  const path = textValue(values.get("module-path"), "module-path");
  if (path === undefined || path === "") {
    throw new ConfigError(
      SETTING,
      "has no module-path",
      "add ?module-path=/absolute/path/to/module.so, e.g. /usr/lib/softhsm/libsofthsm2.so for SoftHSM2 on Debian",
    );
  }
  if (!isAbsolute(path) || path.includes("\u0000")) {
    throw new ConfigError(
      SETTING,
      "module-path is not an absolute path",
      "give the module's absolute path, so the dynamic loader does not search for it",
    );
  }
  return path;
}

function pinSource(values: Map<QueryAttribute, Uint8Array>): PinSource | undefined {
  const source = textValue(values.get("pin-source"), "pin-source");
  if (source === undefined) return undefined;
  const env = /^env:([A-Za-z_][A-Za-z0-9_]*)$/.exec(source);
  if (env !== null) return { kind: "env", variable: env[1] as string };
  // RFC 8089: file:/path, file:///path and file://localhost/path all name a local file.
  // "s": a path may hold any character, line separators included.
  const file = /^file:(?:\/\/(?:localhost)?)?(\/.*)$/is.exec(source);
  const path = file?.[1];
  if (path !== undefined && !path.includes("\u0000") && !path.endsWith("/")) {
    return { kind: "file", path };
  }
  throw new ConfigError(
    SETTING,
    "pin-source is neither a file: URI with an absolute path nor env:VARIABLE",
    "give pin-source=file:/path/to/pin (a file holding the user PIN) or pin-source=env:VARIABLE",
  );
}

// Drops unset members, so a reference compares equal to one written without them.
function defined<T extends object>(value: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, member]) => member !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}
