import { randomBytes, randomUUID } from "node:crypto";
import {
  ANNOTATIONS_MAX_BYTES,
  ENCRYPTED_DEK_SOURCE_MAX_BYTES as CIPHERTEXT_MAX_BYTES,
  fqdnProblem,
  KEY_ID_MAX_BYTES,
} from "../engine/kms/kms-v2-rules.js";
import {
  type CallResult,
  type EncryptAnswer,
  failureText,
  PluginClient,
  type StatusAnswer,
} from "./plugin-client.js";
import { pluginAddress } from "./plugin-endpoint.js";
import {
  buildReport,
  type ConformanceReport,
  Findings,
  type Rule,
  type RuleOutcome,
  type RuleResult,
  runRule,
  skipped,
} from "./report.js";

// kube-apiserver's limits on a KMS v2 plugin's answers (KMS-CONTRACT.md §2.1).
const V2_VERSIONS = ["v2", "v2beta1"];
/** The apiserver always encrypts a 32-byte seed (KMS v2) or DEK (v1). */
const SEED_BYTES = 32;
// KMS v1 stores the plugin's cipher after a uint16 length (KMS-CONTRACT.md §3).
const V1_CIPHER_MAX_BYTES = 0xffff;
const LARGER_SIZES = [1, 16, 64, 1024, 4096, 64 * 1024, 1024 * 1024];
const SEMVER = /^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?$/;

/** Knobs of a plugin run. */
export interface PluginRunOptions {
  /** `unix:///path.sock`, `unix:///@abstract` or a socket path. */
  endpoint: string;
  /** Deadline of each call; kube-apiserver's default `timeout` is 3 s. */
  timeoutMs?: number;
  /** Encrypt→Decrypt round trips in flight at once in the concurrency rule. Default 64. */
  concurrency?: number;
  /** Sequential calls of each kind measured by the latency rule. Default 50. */
  latencySamples?: number;
  /** Also check the deprecated v1beta1 API on the same socket. */
  v1?: boolean;
}

/** The state a plugin run shares between rules: the client and the first answers. */
export class PluginRun {
  readonly client: PluginClient;
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly latencySamples: number;
  readonly v1: boolean;
  #status: Promise<CallResult<StatusAnswer>> | undefined;
  #encrypt: Promise<{ seed: Buffer; result: CallResult<EncryptAnswer> }> | undefined;

  constructor(options: PluginRunOptions) {
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.concurrency = options.concurrency ?? 64;
    this.latencySamples = options.latencySamples ?? 50;
    this.v1 = options.v1 ?? false;
    this.client = new PluginClient(pluginAddress(options.endpoint), this.timeoutMs);
  }

  status(): Promise<CallResult<StatusAnswer>> {
    return this.client.call<StatusAnswer>("v2", "Status", {});
  }

  /** The first Status answer of the run, which the Status rules judge. */
  firstStatus(): Promise<CallResult<StatusAnswer>> {
    this.#status ??= this.status();
    return this.#status;
  }

  /** Encrypts a random 32-byte seed with a new uid, as the apiserver does. */
  async encrypt(plaintext: Buffer = randomBytes(SEED_BYTES)): Promise<CallResult<EncryptAnswer>> {
    return this.client.call<EncryptAnswer>("v2", "Encrypt", { plaintext, uid: randomUUID() });
  }

  /** Decrypts with everything Encrypt returned, as the apiserver does. */
  decrypt(answer: EncryptAnswer, ciphertext = answer.ciphertext): Promise<CallResult<Buffer>> {
    return this.client
      .call<{ plaintext: Buffer }>("v2", "Decrypt", {
        ciphertext,
        uid: randomUUID(),
        key_id: answer.key_id,
        annotations: answer.annotations,
      })
      .then((result) => (result.ok ? { ...result, value: result.value.plaintext } : result));
  }

  /** The first seed Encrypt of the run, which the Encrypt rules judge. */
  firstEncrypt(): Promise<{ seed: Buffer; result: CallResult<EncryptAnswer> }> {
    this.#encrypt ??= (async () => {
      const seed = randomBytes(SEED_BYTES);
      return { seed, result: await this.encrypt(seed) };
    })();
    return this.#encrypt;
  }

  close(): void {
    this.client.close();
  }
}

/** Judges the first Status answer; skips when there is none (status.answers says why). */
function statusRule(
  id: string,
  title: string,
  judge: (status: StatusAnswer, findings: Findings) => void,
): Rule<PluginRun> {
  return {
    id,
    title,
    async check(run) {
      const status = await run.firstStatus();
      if (!status.ok) return skipped("no Status answer (see status.answers)");
      const findings = new Findings();
      judge(status.value, findings);
      return findings.outcome();
    },
  };
}

/** Judges the first seed Encrypt answer; skips when there is none (encrypt.answers says why). */
function encryptRule(
  id: string,
  title: string,
  judge: (answer: EncryptAnswer, findings: Findings, run: PluginRun) => Promise<void> | void,
): Rule<PluginRun> {
  return {
    id,
    title,
    async check(run) {
      const { result } = await run.firstEncrypt();
      if (!result.ok) return skipped("no Encrypt answer (see encrypt.answers)");
      const findings = new Findings();
      await judge(result.value, findings, run);
      return findings.outcome();
    },
  };
}

function keyIdProblem(keyId: string): string | undefined {
  const bytes = Buffer.byteLength(keyId);
  if (bytes === 0) return 'is empty (apiserver: "keyID is empty")';
  if (bytes > KEY_ID_MAX_BYTES) return `is ${bytes} bytes (at most ${KEY_ID_MAX_BYTES})`;
  return undefined;
}

function quoted(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(fraction * sorted.length)));
  return sorted[rank - 1] as number;
}

// Checks that the plugin still answers after something that might have killed it.
async function stillAnswers(run: PluginRun, findings: Findings, after: string): Promise<boolean> {
  const status = await run.status();
  if (status.ok) return true;
  findings.fail(
    `after ${after} the plugin no longer answers Status: ${failureText(status)} (crashed?)`,
  );
  return false;
}

/** The Kubernetes KMS contract (KMS-CONTRACT.md §1-2), in the order the rules run. */
export const PLUGIN_RULES: readonly Rule<PluginRun>[] = [
  {
    id: "status.answers",
    title: "Status answers within the call timeout",
    async check(run) {
      const status = await run.firstStatus();
      const findings = new Findings();
      if (status.ok) findings.note(`Status answered in ${status.ms} ms`);
      else findings.fail(`Status: ${failureText(status)}`);
      return findings.outcome();
    },
  },
  statusRule("status.version", 'Status version is "v2" or "v2beta1"', (status, findings) => {
    findings.expect(V2_VERSIONS.includes(status.version), `version ${quoted(status.version)}`);
  }),
  statusRule("status.healthz", 'Status healthz is exactly "ok"', (status, findings) => {
    findings.expect(status.healthz === "ok", `healthz ${quoted(status.healthz)}`);
  }),
  statusRule(
    "status.key-id",
    "Status key_id is non-empty and at most 1024 bytes",
    (status, findings) => {
      const problem = keyIdProblem(status.key_id);
      if (problem === undefined)
        findings.note(
          `key_id ${quoted(status.key_id)} (${Buffer.byteLength(status.key_id)} bytes)`,
        );
      else findings.fail(`key_id ${problem}`);
    },
  ),
  {
    id: "status.stable",
    title: "version and key_id do not change between Status calls",
    async check(run) {
      const first = await run.firstStatus();
      if (!first.ok) return skipped("no Status answer (see status.answers)");
      const findings = new Findings();
      const versions = new Set([first.value.version]);
      const keyIds = new Set([first.value.key_id]);
      const calls = 5;
      for (let index = 0; index < calls; index += 1) {
        const status = await run.status();
        if (!status.ok) {
          findings.fail(`Status call ${index + 2}: ${failureText(status)}`);
          continue;
        }
        versions.add(status.value.version);
        keyIds.add(status.value.key_id);
      }
      findings.expect(
        versions.size === 1,
        `${calls + 1} calls gave ${versions.size} version(s): ${[...versions].map(quoted).join(", ")}`,
      );
      findings.expect(
        keyIds.size === 1,
        `${calls + 1} calls gave ${keyIds.size} key_id(s)${keyIds.size > 1 ? ": a flip-flopping key_id makes the apiserver re-seed" : ""}`,
      );
      return findings.outcome();
    },
  },
  {
    id: "encrypt.answers",
    title: "Encrypt of a 32-byte seed answers",
    async check(run) {
      const { result } = await run.firstEncrypt();
      const findings = new Findings();
      if (result.ok) findings.note(`Encrypt answered in ${result.ms} ms`);
      else findings.fail(`Encrypt: ${failureText(result)}`);
      return findings.outcome();
    },
  },
  encryptRule(
    "encrypt.key-id",
    "Encrypt key_id is non-empty and at most 1024 bytes",
    (answer, findings) => {
      const problem = keyIdProblem(answer.key_id);
      if (problem === undefined)
        findings.note(
          `key_id ${quoted(answer.key_id)} (${Buffer.byteLength(answer.key_id)} bytes)`,
        );
      else findings.fail(`key_id ${problem}`);
    },
  ),
  encryptRule(
    "encrypt.key-id-matches-status",
    "Encrypt key_id equals the Status key_id",
    async (answer, findings, run) => {
      const status = await run.firstStatus();
      if (!status.ok) {
        findings.fail(`no Status answer to compare with: ${failureText(status)}`);
        return;
      }
      findings.expect(
        answer.key_id === status.value.key_id,
        answer.key_id === status.value.key_id
          ? "Encrypt and Status name the same key_id"
          : `Encrypt key_id ${quoted(answer.key_id)} differs from Status key_id ${quoted(status.value.key_id)}: the apiserver discards the seed and reports the plugin unhealthy`,
      );
    },
  ),
  encryptRule(
    "encrypt.ciphertext-size",
    "Encrypt ciphertext of a 32-byte seed is non-empty and at most 1024 bytes",
    (answer, findings) => {
      const size = answer.ciphertext.length;
      findings.expect(
        size > 0 && size <= CIPHERTEXT_MAX_BYTES,
        `ciphertext is ${size} bytes (1..${CIPHERTEXT_MAX_BYTES} allowed)`,
      );
    },
  ),
  encryptRule(
    "encrypt.annotation-keys",
    "every annotation key is a fully qualified domain name",
    (answer, findings) => {
      const keys = Object.keys(answer.annotations);
      if (keys.length === 0) findings.note("no annotations");
      for (const key of keys) {
        const problem = fqdnProblem(key);
        if (problem === undefined) findings.note(`annotation key ${quoted(key)} is valid`);
        else findings.fail(`annotation key ${quoted(key)} ${problem}`);
      }
    },
  ),
  encryptRule(
    "encrypt.annotation-size",
    "annotation keys and values total at most 32 KiB",
    (answer, findings) => {
      const total = Object.entries(answer.annotations).reduce(
        (sum, [key, value]) => sum + Buffer.byteLength(key) + value.length,
        0,
      );
      findings.expect(
        total <= ANNOTATIONS_MAX_BYTES,
        `annotations total ${total} bytes (at most ${ANNOTATIONS_MAX_BYTES}); they are stored unencrypted in etcd`,
      );
    },
  ),
  {
    id: "round-trip.seed",
    title: "32-byte seeds round-trip through Encrypt and Decrypt",
    async check(run) {
      const findings = new Findings();
      const first = await run.firstEncrypt();
      const seeds = [
        first,
        ...(await Promise.all(
          [1, 2, 3, 4].map(async () => {
            const seed = randomBytes(SEED_BYTES);
            return { seed, result: await run.encrypt(seed) };
          }),
        )),
      ];
      for (const [index, { seed, result }] of seeds.entries()) {
        if (!result.ok) {
          findings.fail(`seed ${index + 1}: Encrypt ${failureText(result)}`);
          continue;
        }
        const decrypted = await run.decrypt(result.value);
        if (!decrypted.ok) findings.fail(`seed ${index + 1}: Decrypt ${failureText(decrypted)}`);
        else
          findings.expect(
            decrypted.value.equals(seed),
            `seed ${index + 1}: Decrypt returned ${decrypted.value.equals(seed) ? "the seed" : `${decrypted.value.length} other bytes`}`,
          );
      }
      return findings.outcome();
    },
  },
  {
    id: "round-trip.sizes",
    title: "other plaintext sizes (1 B to 1 MiB) round-trip or are refused cleanly",
    async check(run) {
      const findings = new Findings();
      for (const size of LARGER_SIZES) {
        const plaintext = randomBytes(size);
        const encrypted = await run.encrypt(plaintext);
        if (!encrypted.ok) {
          // Legal: kube-apiserver only ever sends 32 bytes.
          findings.warn(`${size} bytes: Encrypt refused: ${failureText(encrypted)}`);
          if (!(await stillAnswers(run, findings, `a ${size}-byte Encrypt`))) break;
          continue;
        }
        const decrypted = await run.decrypt(encrypted.value);
        if (!decrypted.ok)
          findings.fail(`${size} bytes: Encrypt answered but Decrypt ${failureText(decrypted)}`);
        else
          findings.expect(
            decrypted.value.equals(plaintext),
            `${size} bytes: ${decrypted.value.equals(plaintext) ? "round-tripped" : `Decrypt returned ${decrypted.value.length} other bytes`} (ciphertext ${encrypted.value.ciphertext.length} bytes)`,
          );
      }
      return findings.outcome();
    },
  },
  {
    id: "concurrency",
    title: "concurrent Encrypt→Decrypt round trips all succeed",
    async check(run) {
      const findings = new Findings();
      const started = performance.now();
      const outcomes = await Promise.all(
        Array.from({ length: run.concurrency }, async () => {
          const seed = randomBytes(SEED_BYTES);
          const encrypted = await run.encrypt(seed);
          if (!encrypted.ok) return `Encrypt ${encrypted.codeName}`;
          const decrypted = await run.decrypt(encrypted.value);
          if (!decrypted.ok) return `Decrypt ${decrypted.codeName}`;
          return decrypted.value.equals(seed) ? "ok" : "wrong plaintext";
        }),
      );
      const counts = new Map<string, number>();
      for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
      findings.note(
        `${run.concurrency} round trips in flight at once took ${Math.round(performance.now() - started)} ms`,
      );
      for (const [outcome, count] of counts) {
        if (outcome !== "ok") findings.fail(`${count} round trips: ${outcome}`);
      }
      return findings.outcome();
    },
  },
  {
    id: "latency",
    title:
      "Status, Encrypt and Decrypt latency percentiles (warn when p99 exceeds a third of the timeout)",
    async check(run) {
      const findings = new Findings();
      const first = await run.firstEncrypt();
      if (!first.result.ok) return skipped("no Encrypt answer (see encrypt.answers)");
      const samples: Record<string, number[]> = { Status: [], Encrypt: [], Decrypt: [] };
      let failures = 0;
      for (let index = 0; index < run.latencySamples; index += 1) {
        const results = [
          ["Status", await run.status()],
          ["Encrypt", await run.encrypt()],
          ["Decrypt", await run.decrypt(first.result.value)],
        ] as const;
        for (const [method, result] of results) {
          if (result.ok) samples[method]?.push(result.ms);
          else failures += 1;
        }
      }
      if (failures > 0)
        findings.fail(`${failures} of ${run.latencySamples * 3} sequential calls failed`);
      const budget = run.timeoutMs / 3;
      for (const [method, values] of Object.entries(samples)) {
        const sorted = [...values].sort((a, b) => a - b);
        const [p50, p95, p99] = [0.5, 0.95, 0.99].map((fraction) => percentile(sorted, fraction));
        const line = `${method}: p50 ${p50} ms, p95 ${p95} ms, p99 ${p99} ms over ${sorted.length} calls`;
        if ((p99 ?? 0) > budget)
          findings.warn(
            `${line}: p99 above ${Math.round(budget)} ms leaves little of the ${run.timeoutMs} ms timeout`,
          );
        else findings.note(line);
      }
      return findings.outcome();
    },
  },
  {
    id: "v1.version",
    title: 'v1beta1 Version answers "v1beta1" with a runtime name and semver version',
    async check(run) {
      if (!run.v1) return skipped("v1beta1 not requested (--v1)");
      const findings = new Findings();
      const answer = await run.client.call<{
        version: string;
        runtime_name: string;
        runtime_version: string;
      }>("v1", "Version", { version: "v1beta1" });
      if (!answer.ok) return findings.fail(`Version: ${failureText(answer)}`).outcome();
      const { version, runtime_name: name, runtime_version: runtime } = answer.value;
      findings.expect(
        version === "v1beta1",
        `version ${quoted(version)} (the apiserver refuses anything but "v1beta1")`,
      );
      if (name === "") findings.warn("runtime_name is empty");
      else findings.note(`runtime_name ${quoted(name)}`);
      if (!SEMVER.test(runtime)) findings.warn(`runtime_version ${quoted(runtime)} is not semver`);
      else findings.note(`runtime_version ${quoted(runtime)}`);
      return findings.outcome();
    },
  },
  {
    id: "v1.round-trip",
    title: "v1beta1 Encrypt/Decrypt round-trip a 32-byte DEK",
    async check(run) {
      if (!run.v1) return skipped("v1beta1 not requested (--v1)");
      const findings = new Findings();
      const plain = randomBytes(SEED_BYTES);
      const encrypted = await run.client.call<{ cipher: Buffer }>("v1", "Encrypt", {
        version: "v1beta1",
        plain,
      });
      if (!encrypted.ok) return findings.fail(`Encrypt: ${failureText(encrypted)}`).outcome();
      const size = encrypted.value.cipher.length;
      findings.expect(
        size > 0 && size <= V1_CIPHER_MAX_BYTES,
        `cipher is ${size} bytes (1..${V1_CIPHER_MAX_BYTES}: the v1 envelope stores a 16-bit length)`,
      );
      const decrypted = await run.client.call<{ plain: Buffer }>("v1", "Decrypt", {
        version: "v1beta1",
        cipher: encrypted.value.cipher,
      });
      if (!decrypted.ok) findings.fail(`Decrypt: ${failureText(decrypted)}`);
      else
        findings.expect(
          decrypted.value.plain.equals(plain),
          `Decrypt returned ${decrypted.value.plain.equals(plain) ? "the DEK" : "other bytes"}`,
        );
      return findings.outcome();
    },
  },
  {
    id: "decrypt.tamper",
    title: "a modified ciphertext is refused with an error status",
    async check(run) {
      const first = await run.firstEncrypt();
      if (!first.result.ok) return skipped("no Encrypt answer (see encrypt.answers)");
      const answer = first.result.value;
      const findings = new Findings();
      const original = answer.ciphertext;
      for (const [label, index] of [
        ["first", 0],
        ["middle", Math.floor(original.length / 2)],
        ["last", original.length - 1],
      ] as const) {
        const tampered = Buffer.from(original);
        tampered[index] = (tampered[index] ?? 0) ^ 0x01;
        const decrypted = await run.decrypt(answer, tampered);
        if (!decrypted.ok) findings.note(`${label} byte flipped: ${failureText(decrypted)}`);
        else if (decrypted.value.equals(first.seed))
          findings.warn(
            `${label} byte flipped: Decrypt still returned the seed (that bit is not authenticated)`,
          );
        else
          findings.fail(
            `${label} byte flipped: Decrypt returned ${decrypted.value.length} other bytes instead of an error`,
          );
        if (!(await stillAnswers(run, findings, "a tampered Decrypt"))) break;
      }
      return findings.outcome();
    },
  },
  {
    id: "decrypt.garbage",
    title: "garbage ciphertexts and requests get an error status and the plugin keeps answering",
    async check(run) {
      const first = await run.firstStatus();
      const keyId = first.ok ? first.value.key_id : "";
      const findings = new Findings();
      const garbage: [string, () => Promise<CallResult<unknown>>][] = [
        ...(
          [
            ["empty", 0],
            ["1-byte", 1],
            ["64-byte random", 64],
            ["2048-byte random", 2048],
          ] as const
        ).map(
          ([label, size]) =>
            [
              `${label} ciphertext`,
              () => run.decrypt({ ciphertext: randomBytes(size), key_id: keyId, annotations: {} }),
            ] as [string, () => Promise<CallResult<unknown>>],
        ),
        [
          "a request that is not protobuf",
          () => run.client.callRaw("Decrypt", Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])),
        ],
      ];
      for (const [label, call] of garbage) {
        const result = await call();
        if (result.ok) findings.fail(`${label}: answered OK instead of an error`);
        else findings.note(`${label}: ${failureText(result)}`);
        if (!(await stillAnswers(run, findings, `the ${label}`))) break;
      }
      return findings.outcome();
    },
  },
];

/**
 * Runs the contract against one plugin socket. When Status does not answer at all, the rules
 * after it are skipped: there is nothing to judge, and one failure says why.
 */
export async function runPluginConformance(options: PluginRunOptions): Promise<ConformanceReport> {
  const startedAt = new Date();
  const run = new PluginRun(options);
  const results: RuleResult[] = [];
  try {
    for (const rule of PLUGIN_RULES) {
      const unreachable = results[0]?.id === "status.answers" && results[0].status === "fail";
      results.push(
        unreachable
          ? { id: rule.id, title: rule.title, ...unreachableOutcome(), durationMs: 0 }
          : await runRule(rule, run),
      );
    }
  } finally {
    run.close();
  }
  return buildReport("plugin", options.endpoint, startedAt, results);
}

function unreachableOutcome(): RuleOutcome {
  return skipped("the plugin did not answer Status (see status.answers)");
}
