import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  defaultRunDirectory,
  parseServeConfig,
  type ServeOptionsInput,
} from "../../../src/cli/serve-config.js";
import { KmsEnvelopeError } from "../../../src/errors.js";
import { SOCKET_FILE_NAME } from "../../../src/wire/socket-address.js";

/** What `kms-envelope serve` passes when no flag is given (the commander defaults). */
const DEFAULTS: ServeOptionsInput = {
  workspace: "kubernetes",
  httpAddress: "127.0.0.1:8089",
  socketMode: "0600",
  logLevel: "info",
  shutdownTimeout: "30s",
  healthInterval: "30s",
  healthTimeout: "5s",
  gracePeriod: "5m",
  maxRequestBytes: "4MiB",
  maxConnectionBufferBytes: "16MiB",
  maxBufferBytes: "64MiB",
  maxStreamsPerConnection: "100",
  maxConnections: "64",
  callTimeout: "30s",
  idleTimeout: "5m",
  fieldWorkers: "2",
  maxFieldsPerRequest: "100000",
  maxFieldsPerRecord: "1000",
  keyringPollInterval: "10s",
};

function invalidConfig(flag: string, detail?: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(error instanceof KmsEnvelopeError);
    assert.equal(error.code, "INVALID_CONFIG");
    assert.ok(error.message.includes(`${flag}: `), `names ${flag}: ${error.message}`);
    if (detail !== undefined) assert.match(error.message, detail);
    return true;
  };
}

describe("parseServeConfig: defaults", () => {
  test("the default flags give the documented configuration, frozen", () => {
    const config = parseServeConfig({ ...DEFAULTS, runDir: "/run/kms-test" });
    assert.deepEqual(config, {
      socket: join("/run/kms-test", SOCKET_FILE_NAME),
      runDir: "/run/kms-test",
      workspace: "kubernetes",
      dev: false,
      http: { host: "127.0.0.1", port: 8089 },
      socketMode: 0o600,
      socketOwner: undefined,
      logLevel: "info",
      shutdownTimeoutMs: 30_000,
      healthIntervalMs: 30_000,
      healthTimeoutMs: 5_000,
      gracePeriodMs: 300_000,
      limits: {
        maxRequestBytes: 4 * 1024 * 1024,
        maxConnectionBufferBytes: 16 * 1024 * 1024,
        maxBufferBytes: 64 * 1024 * 1024,
        maxStreamsPerConnection: 100,
        maxConnections: 64,
        callTimeoutMs: 30_000,
        idleTimeoutMs: 300_000,
      },
      fieldWorkers: 2,
      maxFieldsPerRequest: 100_000,
      maxFieldsPerRecord: 1000,
      keyring: undefined,
      keyringPollMs: 10_000,
    });
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.limits));
  });

  test("without --run-dir the socket lives in the default run directory", () => {
    const config = parseServeConfig(DEFAULTS);
    assert.equal(config.runDir, defaultRunDirectory());
    assert.equal(config.socket, join(defaultRunDirectory(), SOCKET_FILE_NAME));
  });

  test("--socket overrides the run-directory default and accepts unix:///path", () => {
    const config = parseServeConfig({
      ...DEFAULTS,
      runDir: "/run/x",
      socket: "unix:///tmp/k.sock",
    });
    assert.equal(config.socket, "/tmp/k.sock");
  });

  test("an abstract --socket is INVALID_CONFIG naming --socket", () => {
    assert.throws(
      () => parseServeConfig({ ...DEFAULTS, socket: "@kms" }),
      invalidConfig("--socket", /abstract sockets .* are not supported/),
    );
  });

  test("an empty --socket is INVALID_CONFIG naming --socket", () => {
    assert.throws(() => parseServeConfig({ ...DEFAULTS, socket: "" }), invalidConfig("--socket"));
  });

  test("--dev, --socket-owner and --socket-mode are parsed", () => {
    const config = parseServeConfig({
      ...DEFAULTS,
      dev: true,
      socketOwner: "1000:2000",
      socketMode: "660",
    });
    assert.equal(config.dev, true);
    assert.deepEqual(config.socketOwner, { uid: 1000, gid: 2000 });
    assert.equal(config.socketMode, 0o660);
    assert.deepEqual(parseServeConfig({ ...DEFAULTS, socketOwner: "0" }).socketOwner, {
      uid: 0,
      gid: 0,
    });
  });
});

describe("parseServeConfig: --http-address", () => {
  test('--http-address "off" (or empty) disables the HTTP server', () => {
    assert.equal(parseServeConfig({ ...DEFAULTS, httpAddress: "off" }).http, undefined);
    assert.equal(parseServeConfig({ ...DEFAULTS, httpAddress: "" }).http, undefined);
  });

  test("--http-address accepts a bracketed IPv6 host and port 0", () => {
    assert.deepEqual(parseServeConfig({ ...DEFAULTS, httpAddress: "[::1]:0" }).http, {
      host: "::1",
      port: 0,
    });
    assert.deepEqual(parseServeConfig({ ...DEFAULTS, httpAddress: "localhost:65535" }).http, {
      host: "localhost",
      port: 65535,
    });
  });

  test("a bad --http-address is INVALID_CONFIG naming the flag and the expected form", () => {
    for (const httpAddress of ["127.0.0.1", "::1:8089", "127.0.0.1:70000", "host:port", ":8089"]) {
      assert.throws(
        () => parseServeConfig({ ...DEFAULTS, httpAddress }),
        invalidConfig("--http-address", /HOST:PORT/),
        httpAddress,
      );
    }
  });
});

describe("parseServeConfig: --http-address stays on loopback", () => {
  test("a non-loopback --http-address is INVALID_CONFIG: probes and metrics are unauthenticated", () => {
    for (const httpAddress of ["0.0.0.0:8089", "10.0.0.5:8089", "[::]:8089", "example.com:80"]) {
      assert.throws(
        () => parseServeConfig({ ...DEFAULTS, httpAddress }),
        invalidConfig("--http-address", /must be a loopback address/),
        httpAddress,
      );
    }
    assert.deepEqual(parseServeConfig({ ...DEFAULTS, httpAddress: "127.0.0.2:9000" }).http, {
      host: "127.0.0.2",
      port: 9000,
    });
  });
});

describe("parseServeConfig: every other flag's bad value names the flag", () => {
  const cases: [string, Partial<ServeOptionsInput>, RegExp][] = [
    ["--socket-mode", { socketMode: "0800" }, /octal mode/],
    ["--socket-mode", { socketMode: "rw-------" }, /octal mode/],
    ["--socket-mode", { socketMode: "00600" }, /octal mode/],
    ["--socket-owner", { socketOwner: "root" }, /UID or UID:GID/],
    ["--socket-owner", { socketOwner: "1000:" }, /UID or UID:GID/],
    ["--log-level", { logLevel: "verbose" as ServeOptionsInput["logLevel"] }, /./],
    ["--shutdown-timeout", { shutdownTimeout: "30" }, /duration such as/],
    ["--health-interval", { healthInterval: "5 minutes" }, /duration such as/],
    ["--health-timeout", { healthTimeout: "-1s" }, /duration such as/],
    ["--health-interval", { healthInterval: "0s" }, /at least 100ms/],
    ["--health-interval", { healthInterval: "50ms" }, /at least 100ms/],
    ["--health-timeout", { healthTimeout: "0ms" }, /at least 100ms/],
    ["--max-request-bytes", { maxRequestBytes: "0x1000" }, /whole number of bytes/],
    ["--max-request-bytes", { maxRequestBytes: "1e6" }, /whole number of bytes/],
    ["--grace-period", { gracePeriod: "1d" }, /duration such as/],
    ["--max-request-bytes", { maxRequestBytes: "12" }, /./],
    ["--max-request-bytes", { maxRequestBytes: "lots" }, /./],
    ["--max-request-bytes", { maxRequestBytes: "1500.5" }, /./],
    ["--max-request-bytes", { maxRequestBytes: String(128 * 1024 * 1024) }, /./],
    ["--workspace", { workspace: "" }, /must not be empty/],
    ["--max-request-bytes", { maxRequestBytes: "4MB" }, /KiB, MiB or GiB/],
    ["--max-request-bytes", { maxRequestBytes: "65MiB" }, /at most 64MiB/],
    ["--max-buffer-bytes", { maxBufferBytes: "lots" }, /whole number of bytes/],
    ["--max-connection-buffer-bytes", { maxConnectionBufferBytes: "12" }, /at least 1KiB/],
    ["--max-streams-per-connection", { maxStreamsPerConnection: "0" }, /./],
    ["--max-streams-per-connection", { maxStreamsPerConnection: "70000" }, /./],
    ["--max-connections", { maxConnections: "-1" }, /whole number/],
    ["--call-timeout", { callTimeout: "10" }, /duration such as/],
    ["--call-timeout", { callTimeout: "1ms" }, /at least 100ms/],
    ["--idle-timeout", { idleTimeout: "10ms" }, /at least 1s/],
    ["--field-workers", { fieldWorkers: "0" }, /./],
    ["--field-workers", { fieldWorkers: "two" }, /whole number/],
    ["--max-fields-per-request", { maxFieldsPerRequest: "0" }, /./],
    ["--max-fields-per-record", { maxFieldsPerRecord: "1.5" }, /whole number/],
  ];
  for (const [flag, override, detail] of cases) {
    test(`${flag} ${JSON.stringify(Object.values(override)[0])} is INVALID_CONFIG naming ${flag}`, () => {
      assert.throws(
        () => parseServeConfig({ ...DEFAULTS, ...override }),
        invalidConfig(flag, detail),
      );
    });
  }

  test("byte sizes take KiB, MiB and GiB", () => {
    const config = parseServeConfig({
      ...DEFAULTS,
      maxRequestBytes: "512KiB",
      maxBufferBytes: "1GiB",
      maxConnectionBufferBytes: "2048",
    });
    assert.equal(config.limits.maxRequestBytes, 512 * 1024);
    assert.equal(config.limits.maxBufferBytes, 1024 ** 3);
    assert.equal(config.limits.maxConnectionBufferBytes, 2048);
  });

  test("a socket path over the 107-byte Unix limit is INVALID_CONFIG naming --socket", () => {
    const long = `/tmp/${"s".repeat(98)}.sock`;
    assert.equal(Buffer.byteLength(long), 108);
    assert.throws(
      () => parseServeConfig({ ...DEFAULTS, socket: long }),
      invalidConfig("--socket", /108 bytes long; Unix socket paths are limited to 107 bytes/),
    );
    const longest = `/tmp/${"s".repeat(97)}.sock`;
    assert.equal(parseServeConfig({ ...DEFAULTS, socket: longest }).socket, longest);
  });

  test("several bad flags are all reported in one error", () => {
    assert.throws(
      () => parseServeConfig({ ...DEFAULTS, socketMode: "x", logLevel: "loud" as "info" }),
      (error: unknown) =>
        invalidConfig("--socket-mode")(error) && invalidConfig("--log-level")(error),
    );
  });

  test("every documented log level is accepted", () => {
    for (const logLevel of [
      "fatal",
      "error",
      "warn",
      "info",
      "debug",
      "trace",
      "silent",
    ] as const) {
      assert.equal(parseServeConfig({ ...DEFAULTS, logLevel }).logLevel, logLevel);
    }
  });

  test("durations are converted to milliseconds for every duration flag", () => {
    const config = parseServeConfig({
      ...DEFAULTS,
      shutdownTimeout: "250ms",
      healthInterval: "1.5s",
      healthTimeout: "2s",
      gracePeriod: "1h",
    });
    assert.equal(config.shutdownTimeoutMs, 250);
    assert.equal(config.healthIntervalMs, 1_500);
    assert.equal(config.healthTimeoutMs, 2_000);
    assert.equal(config.gracePeriodMs, 3_600_000);
  });
});
