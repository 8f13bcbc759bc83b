import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parsePkcs11Uri } from "../../../providers/pkcs11-uri.js";
import { ConfigError } from "../../../src/errors.js";

const MODULE = "module-path=/usr/lib/softhsm/libsofthsm2.so";

// A refusal is a ConfigError on the key reference, one line, saying what to do (in parentheses).
function refused(pattern: RegExp, secret?: string) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.code, "INVALID_CONFIG");
    assert.equal(error.setting, "pkcs11 keyRef");
    assert.match(error.message, pattern);
    assert.match(error.message, /\(.+\)$/, "the message ends with what to do");
    assert.ok(!error.message.includes("\n"), "one line");
    if (secret !== undefined) assert.ok(!error.message.includes(secret), "no value is echoed");
    return true;
  };
}

describe("pkcs11 key reference (RFC 7512 URI)", () => {
  test("the README's example names the token, the key, the module and the PIN file", () => {
    const reference = parsePkcs11Uri(
      "  pkcs11:token=kmse;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/kmse/pin ",
    );
    assert.deepEqual(reference, {
      uri: "pkcs11:token=kmse;object=kek?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/kmse/pin",
      token: { label: "kmse" },
      slot: {},
      library: {},
      object: { label: "kek" },
      modulePath: "/usr/lib/softhsm/libsofthsm2.so",
      pinSource: { kind: "file", path: "/etc/kmse/pin" },
    });
  });

  test("values are percent-decoded: text as UTF-8, id as bytes; the scheme is case-insensitive", () => {
    const reference = parsePkcs11Uri(
      `PKCS11:token=My%20token%25%20(prod);manufacturer=Snake%20Oil,%20Inc.;serial=00a1;model=SoftHSM%20v2;object=k%C3%A9k&co;id=%01%ff%2F;type=secret-key?${MODULE}`,
    );
    assert.deepEqual(reference.token, {
      label: "My token% (prod)",
      manufacturer: "Snake Oil, Inc.",
      serial: "00a1",
      model: "SoftHSM v2",
    });
    assert.deepEqual(reference.object, {
      label: "kék&co",
      id: Uint8Array.from([0x01, 0xff, 0x2f]),
    });
    assert.equal(reference.pinSource, undefined);
  });

  test("slot and library selectors, and every pin-source form", () => {
    const reference = parsePkcs11Uri(
      `pkcs11:slot-id=18446744073709551615;slot-description=SoftHSM%20slot;slot-manufacturer=SoftHSM%20project;library-manufacturer=SoftHSM;library-description=Implementation%20of%20PKCS11;library-version=2;object=kek?${MODULE}&pin-source=env:KMSE_PIN`,
    );
    assert.deepEqual(reference.slot, {
      id: 2n ** 64n - 1n,
      description: "SoftHSM slot",
      manufacturer: "SoftHSM project",
    });
    assert.deepEqual(reference.library, {
      manufacturer: "SoftHSM",
      description: "Implementation of PKCS11",
      version: { major: 2, minor: 0 },
    });
    assert.deepEqual(reference.pinSource, { kind: "env", variable: "KMSE_PIN" });
    for (const [source, path] of [
      ["file:/run/pin", "/run/pin"],
      ["file:///run/pin", "/run/pin"],
      ["file://localhost/run/pin", "/run/pin"],
      ["file:/run/pin%20file", "/run/pin file"],
    ] as const) {
      assert.deepEqual(
        parsePkcs11Uri(`pkcs11:token=t;object=o?pin-source=${source}&${MODULE}`).pinSource,
        { kind: "file", path },
        source,
      );
    }
    assert.deepEqual(
      parsePkcs11Uri(`pkcs11:token=t;object=o;library-version=3.14?${MODULE}`).library.version,
      { major: 3, minor: 14 },
    );
  });

  test("unknown, misplaced, duplicate and misspelt attributes are refused by name", () => {
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o;colour=red?${MODULE}`),
      refused(/unknown path attribute "colour" \(use only token, manufacturer, serial/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o;x-vendor=1?${MODULE}`),
      refused(/unknown path attribute "x-vendor"/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o?${MODULE}&verbose=1`),
      refused(/unknown query attribute "verbose" \(use only module-path, pin-source\)/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o;${MODULE}`),
      refused(/"module-path" is a query attribute \(move it after the "\?"/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:object=o?${MODULE}&token=t`),
      refused(/"token" is a path attribute \(move it before the "\?"/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o;token=u?${MODULE}`),
      refused(/gives token more than once \(keep one token/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o?${MODULE}&${MODULE}`),
      refused(/gives module-path more than once/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:Token=t;object=o?${MODULE}`),
      refused(/unknown path attribute "Token" \(attribute names are lowercase: write token\)/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;;object=o?${MODULE}`),
      refused(/has an empty path attribute \(attribute 2\)/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object?${MODULE}`),
      refused(/path attribute 2 is not name=value/),
    );
  });

  test("a PIN in the reference is refused without being echoed; module-name is refused", () => {
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o?${MODULE}&pin-value=s3cr3t-PIN`),
      refused(/holds pin-value.*give pin-source=file:/, "s3cr3t-PIN"),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o?pin-value=s3cr3t%20PIN&${MODULE}`),
      refused(/holds pin-value/, "s3cr3t"),
    );
    assert.throws(
      () => parsePkcs11Uri("pkcs11:token=t;object=o?module-name=softhsm2"),
      refused(/gives module-name.*\(give module-path=/),
    );
  });

  test("characters that must be percent-encoded, and bad percent-encoding, are refused", () => {
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=my token;object=o?${MODULE}`),
      refused(
        /value of token holds a character \(U\+0020\) that must be percent-encoded in the path \(percent-encode it as its UTF-8 bytes, e\.g\. %20\)/,
      ),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=a/b;object=o?${MODULE}`),
      refused(/U\+002F.*%2F/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=kék?${MODULE}`),
      refused(/U\+00E9.*%C3%A9/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o#frag?${MODULE}`),
      refused(/U\+0023/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o?${MODULE}&pin-source=file:/a;b`),
      refused(
        /value of pin-source holds a character \(U\+003B\) that must be percent-encoded in the query/,
      ),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=100%;object=o?${MODULE}`),
      refused(/"%" not followed by two hexadecimal digits \(write a literal "%" as %25\)/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=%C3%28;object=o?${MODULE}`),
      refused(/the value of token is not UTF-8 once percent-decoded/),
    );
  });

  test("a reference must single out a token and a key object, with an absolute module path", () => {
    assert.throws(() => parsePkcs11Uri("pkcs11"), refused(/does not start with pkcs11:/));
    assert.throws(() => parsePkcs11Uri("file:/etc/kek"), refused(/does not start with pkcs11:/));
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:object=kek?${MODULE}`),
      refused(/names no token \(add token=LABEL/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=kmse?${MODULE}`),
      refused(/names no key object \(add object=LABEL/),
    );
    assert.throws(
      () => parsePkcs11Uri("pkcs11:token=kmse;object=kek"),
      refused(/has no module-path \(add \?module-path=/),
    );
    assert.throws(
      () => parsePkcs11Uri("pkcs11:token=kmse;object=kek?module-path=libsofthsm2.so"),
      refused(/module-path is not an absolute path/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=kmse;object=kek;type=private?${MODULE}`),
      refused(/type="private" does not name a secret key/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:slot-id=18446744073709551616;object=kek?${MODULE}`),
      refused(/slot-id is not a decimal number of at most 64 bits/),
    );
    assert.throws(
      () => parsePkcs11Uri(`pkcs11:token=t;object=o;library-version=2.x?${MODULE}`),
      refused(/library-version is not MAJOR or MAJOR.MINOR/),
    );
    for (const source of [
      "file:relative/pin",
      "file:/run/",
      "https://pins/1",
      "env:1BAD",
      "|cat",
    ]) {
      assert.throws(
        () => parsePkcs11Uri(`pkcs11:token=t;object=o?${MODULE}&pin-source=${source}`),
        refused(/pin-source is neither a file: URI with an absolute path nor env:VARIABLE/),
        source,
      );
    }
  });
});
