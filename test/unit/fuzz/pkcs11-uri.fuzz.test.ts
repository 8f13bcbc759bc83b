import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type Pkcs11KeyReference, parsePkcs11Uri } from "../../../providers/pkcs11-uri.js";
import { ConfigError } from "../../../src/errors.js";
import { AWKWARD_CHARACTERS, runs, textMutationOf } from "./fuzz-support.js";

// RFC 7512 §2.3, written out independently of the parser: what each component may hold
// unencoded besides RFC 3986's unreserved characters.
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const PATH_EXTRA = new Set([...":[]@!$'()*+,=&"]);
const QUERY_EXTRA = new Set([...":[]@!$'()*+,=/?|"]);

/** Percent-encodes `value` (bytes or text); `keep[i]` leaves the i-th allowed character as is. */
function encode(value: string | Uint8Array, where: "path" | "query", keep: boolean[]): string {
  const bytes = typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value);
  const extra = where === "path" ? PATH_EXTRA : QUERY_EXTRA;
  return [...bytes]
    .map((byte, index) => {
      const character = String.fromCharCode(byte);
      const allowed = byte < 0x80 && (UNRESERVED.test(character) || extra.has(character));
      if (allowed && keep[index % Math.max(1, keep.length)] !== false) return character;
      const hex = byte.toString(16).padStart(2, "0");
      // Hex digits are case-insensitive (RFC 3986 §2.1).
      return `%${index % 2 === 0 ? hex.toUpperCase() : hex}`;
    })
    .join("");
}

const text = fc.string({ unit: "grapheme", maxLength: 12 });
const absolutePath = fc
  .array(fc.string({ unit: "grapheme", minLength: 1, maxLength: 6 }), {
    minLength: 1,
    maxLength: 4,
  })
  .map((parts) => `/${parts.join("/")}`)
  .filter((path) => !path.includes("\u0000") && !path.endsWith("/"));

/** A reference as the parser should see it, and the attributes that spell it. */
const references = fc
  .record({
    label: text,
    serial: fc.option(text, { nil: undefined }),
    object: fc.option(text, { nil: undefined }),
    id: fc.option(fc.uint8Array({ maxLength: 8 }), { nil: undefined }),
    slotId: fc.option(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { nil: undefined }),
    modulePath: absolutePath,
    pinFile: fc.option(absolutePath, { nil: undefined }),
    keep: fc.array(fc.boolean(), { maxLength: 16 }),
    pathOrder: fc.nat(),
    queryOrder: fc.boolean(),
    scheme: fc.constantFrom("pkcs11", "PKCS11", "Pkcs11"),
  })
  .filter((draft) => draft.object !== undefined || draft.id !== undefined);

type Draft = typeof references extends fc.Arbitrary<infer T> ? T : never;

function spell(draft: Draft): string {
  const path: string[] = [`token=${encode(draft.label, "path", draft.keep)}`];
  if (draft.serial !== undefined) path.push(`serial=${encode(draft.serial, "path", draft.keep)}`);
  if (draft.object !== undefined) path.push(`object=${encode(draft.object, "path", draft.keep)}`);
  if (draft.id !== undefined) path.push(`id=${encode(draft.id, "path", draft.keep)}`);
  if (draft.slotId !== undefined) path.push(`slot-id=${draft.slotId}`);
  // Attribute order carries no meaning.
  const rotate = draft.pathOrder % path.length;
  const ordered = [...path.slice(rotate), ...path.slice(0, rotate)];
  const query = [`module-path=${encode(draft.modulePath, "query", draft.keep)}`];
  if (draft.pinFile !== undefined)
    query.push(`pin-source=${encode(`file:${draft.pinFile}`, "query", draft.keep)}`);
  if (draft.queryOrder) query.reverse();
  return `${draft.scheme}:${ordered.join(";")}?${query.join("&")}`;
}

function expected(draft: Draft, uri: string): Pkcs11KeyReference {
  return {
    uri,
    token: {
      label: draft.label,
      ...(draft.serial !== undefined && { serial: draft.serial }),
    },
    slot: draft.slotId === undefined ? {} : { id: draft.slotId },
    library: {},
    object: {
      ...(draft.object !== undefined && { label: draft.object }),
      ...(draft.id !== undefined && { id: draft.id }),
    },
    modulePath: draft.modulePath,
    pinSource: draft.pinFile === undefined ? undefined : { kind: "file", path: draft.pinFile },
  };
}

/** Parses; a refusal must be a one-line ConfigError on the key reference. */
function attempt(uri: string): Pkcs11KeyReference | ConfigError {
  try {
    return parsePkcs11Uri(uri);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    assert.equal(error.setting, "pkcs11 keyRef");
    assert.ok(!/[\n\r]/.test(error.message), `one line: ${JSON.stringify(error.message)}`);
    return error;
  }
}

describe("fuzz: pkcs11 key references (RFC 7512)", () => {
  it("every spelling of a reference — any values, any encoding choices, any order — parses back to it", () => {
    fc.assert(
      fc.property(references, (draft) => {
        const uri = spell(draft);
        assert.deepEqual(parsePkcs11Uri(uri), expected(draft, uri));
      }),
      runs(1500),
    );
  });

  it("a mutated reference parses or is refused with a ConfigError, never anything else", () => {
    fc.assert(
      fc.property(references.map(spell).chain(textMutationOf), (mutant) => {
        attempt(mutant);
      }),
      runs(3000),
    );
  });

  it("arbitrary text after pkcs11: parses or is refused with a ConfigError", () => {
    const awkward = fc
      .array(
        fc.oneof(
          fc.constantFrom(...AWKWARD_CHARACTERS, ";", "&", "?", "=", "%2", "%zz", "token=", "id="),
          fc.string({ maxLength: 4 }),
        ),
        { maxLength: 20 },
      )
      .map((parts) => `pkcs11:${parts.join("")}`);
    fc.assert(
      fc.property(fc.oneof(awkward, fc.string({ unit: "binary", maxLength: 60 })), (uri) => {
        attempt(uri);
      }),
      runs(3000),
    );
  });

  it("a repeated attribute is always refused, naming it", () => {
    fc.assert(
      fc.property(references, fc.nat(), (draft, pick) => {
        const present = ["token", "module-path"];
        if (draft.object !== undefined) present.push("object");
        if (draft.id !== undefined) present.push("id");
        if (draft.pinFile !== undefined) present.push("pin-source");
        const name = present[pick % present.length] as string;
        const uri = spell(draft);
        const doubled = ["module-path", "pin-source"].includes(name)
          ? `${uri}&${name}=/again`
          : uri.replace("?", `;${name}=again?`);
        const outcome = attempt(doubled);
        assert.ok(outcome instanceof ConfigError, `${doubled} was accepted`);
        assert.match(outcome.message, new RegExp(`gives ${name} more than once`));
      }),
      runs(500),
    );
  });

  it("an unknown or misplaced attribute is always refused, naming it", () => {
    const names = fc.oneof(
      fc.stringMatching(/^[a-z][a-z0-9-]{0,12}$/),
      fc.constantFrom("x-vendor", "Token", "OBJECT", "pin", "module"),
    );
    fc.assert(
      fc.property(references, names, fc.boolean(), (draft, extra, inPath) => {
        const known = [
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
          "module-path",
          "pin-source",
          "module-name",
          "pin-value",
        ];
        fc.pre(!known.includes(extra));
        const uri = spell(draft);
        const changed = inPath ? uri.replace("?", `;${extra}=1?`) : `${uri}&${extra}=1`;
        const outcome = attempt(changed);
        assert.ok(outcome instanceof ConfigError, `${changed} was accepted`);
        assert.ok(outcome.message.includes(JSON.stringify(extra)), outcome.message);
      }),
      runs(500),
    );
  });

  it("a pin-value is refused and never appears in the message, wherever it stands", () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9]{12,24}$/);
    fc.assert(
      fc.property(references, secret, fc.boolean(), (draft, pin, first) => {
        const [head, query] = spell(draft).split("?") as [string, string];
        const uri = first
          ? `${head}?pin-value=${pin}&${query}`
          : `${head}?${query}&pin-value=${pin}`;
        const outcome = attempt(uri);
        assert.ok(outcome instanceof ConfigError);
        assert.ok(!outcome.message.includes(pin), "the PIN is not echoed");
      }),
      runs(500),
    );
  });
});
