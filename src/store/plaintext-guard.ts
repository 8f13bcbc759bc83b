/**
 * The plaintext-field guard: before a record is written, the fields that will be stored in the
 * clear (everything the field map does not encrypt) are checked for credential shapes, and the
 * write is warned about or refused. Findings name the resource, record, field and detector,
 * never the value.
 */
import { z } from "zod";
import { documentIssuesError } from "../config/issues.js";
import { KmsEnvelopeError } from "../errors.js";
import type { JsonObject, JsonValue } from "../fields/field-codec.js";
import { credentialShapes, DETECTOR_NAMES, type DetectorName } from "./credential-shapes.js";

/** One plaintext field that looks like a credential. */
export interface GuardFinding {
  /** The resource of the record being written. */
  readonly resource: string;
  /** The id of the record being written. */
  readonly recordId: string;
  /** Dot-separated path of the field (array elements by index). */
  readonly path: string;
  /** The detectors that matched, in {@link DETECTOR_NAMES} order. Never the value itself. */
  readonly detectors: readonly DetectorName[];
}

/** Configuration of the guard, as a config file or library caller gives it. */
export interface PlaintextGuardOptions {
  /**
   * `off`: no checks; `warn`: every finding goes to the sink and the write proceeds; `refuse`:
   * the write is rejected (`PLAINTEXT_CREDENTIAL`) and the sink is not called.
   */
  readonly mode: "off" | "warn" | "refuse";
  /** Detectors to run; default all of {@link DETECTOR_NAMES}. */
  readonly detectors?: readonly DetectorName[];
  /** Shortest token the high-entropy detector considers (default 32, at least 16). */
  readonly minEntropyLength?: number;
  /**
   * Plaintext paths to check per resource (a field map's `plaintextChecked`); a resource not
   * listed has every plaintext field checked.
   */
  readonly checkedPaths?: Readonly<Record<string, readonly string[]>>;
  /** `resource:path` fields never checked, e.g. a column that legitimately holds a hash. */
  readonly ignore?: readonly string[];
}

// Options come from YAML files as well as typed callers, so they are checked at run time too.
const optionsSchema = z.strictObject({
  mode: z.enum(["off", "warn", "refuse"]),
  detectors: z.array(z.enum(DETECTOR_NAMES)).optional(),
  minEntropyLength: z.number().int().min(16).optional(),
  checkedPaths: z.record(z.string(), z.array(z.string())).optional(),
  ignore: z.array(z.string().regex(/^[^:]+:.+$/, 'must be "resource:path"')).optional(),
});

/**
 * Where warnings go: a logger's warn, typically. Receives the finding only (never the value),
 * synchronously during the write; it should not throw, or the write fails with its error.
 */
export type FindingSink = (finding: GuardFinding) => void;

/**
 * Checks plaintext fields of documents about to be stored for credential shapes (see
 * {@link DETECTOR_NAMES}). Every string in the document is checked, at any depth (array
 * elements by index), except the encrypted paths and everything beneath them, `ignore`d
 * fields, and, for resources with `checkedPaths`, strings outside those paths. Numbers,
 * booleans and object keys are not checked. Stateless: one guard serves concurrent writes.
 */
export class PlaintextGuard {
  readonly #options: z.output<typeof optionsSchema>;
  readonly #detectors: ReadonlySet<DetectorName>;
  readonly #ignore: ReadonlySet<string>;
  readonly #warn: FindingSink;

  /**
   * Validates `options` (`INVALID_CONFIG` naming the setting); warnings go to `warn`.
   *
   * @param options - Mode and tuning; checked at run time too, since they often come from YAML.
   * @param warn - Receives each finding in `warn` mode.
   */
  constructor(options: PlaintextGuardOptions, warn: FindingSink) {
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      throw documentIssuesError(
        parsed.error.issues,
        "plaintext guard",
        "fix the plaintext guard options",
      );
    }
    this.#options = parsed.data;
    this.#detectors = new Set(parsed.data.detectors ?? DETECTOR_NAMES);
    this.#ignore = new Set(parsed.data.ignore ?? []);
    this.#warn = warn;
  }

  /**
   * The findings for one document, whatever the mode but `off` (which finds nothing); reports
   * nothing and refuses nothing.
   *
   * @param resource - The resource being written.
   * @param recordId - The record being written.
   * @param document - The plaintext document, before sealing.
   * @param encryptedPaths - The fields the codec will encrypt; they and their contents are
   * skipped.
   */
  inspect(
    resource: string,
    recordId: string,
    document: JsonObject,
    encryptedPaths: readonly string[],
  ): GuardFinding[] {
    if (this.#options.mode === "off") return [];
    const checked = this.#options.checkedPaths?.[resource];
    const findings: GuardFinding[] = [];
    const visit = (value: JsonValue, path: string): void => {
      if (encryptedPaths.includes(path) || this.#ignore.has(`${resource}:${path}`)) return;
      if (typeof value === "string") {
        if (checked !== undefined && !checked.some((entry) => isWithin(path, entry))) return;
        const detectors = credentialShapes(value, this.#detectors, {
          minEntropyLength: this.#options.minEntropyLength,
        });
        if (detectors.length > 0) findings.push({ resource, recordId, path, detectors });
      } else if (Array.isArray(value)) {
        value.forEach((item, index) => {
          visit(item, `${path}.${index}`);
        });
      } else if (value !== null && typeof value === "object") {
        for (const [key, item] of Object.entries(value)) visit(item, path ? `${path}.${key}` : key);
      }
    };
    visit(document, "");
    return findings;
  }

  /**
   * Warns about (mode `warn`) or refuses (mode `refuse`) a document with findings; what
   * {@link EncryptedStore} calls before every write. Parameters as for `inspect`.
   *
   * @throws `PLAINTEXT_CREDENTIAL` in `refuse` mode, naming the first field and its detectors
   * and how many more fields matched, never a value.
   */
  check(
    resource: string,
    recordId: string,
    document: JsonObject,
    encryptedPaths: readonly string[],
  ): void {
    const findings = this.inspect(resource, recordId, document, encryptedPaths);
    if (findings.length === 0) return;
    if (this.#options.mode === "warn") {
      for (const finding of findings) this.#warn(finding);
      return;
    }
    const first = findings[0] as GuardFinding;
    throw new KmsEnvelopeError(
      "PLAINTEXT_CREDENTIAL",
      `refused to store ${resource} ${JSON.stringify(recordId)}: plaintext field ${first.path} looks like a credential (${first.detectors.join(", ")})` +
        `${findings.length > 1 ? ` and ${findings.length - 1} more field(s) do too` : ""}; ` +
        "move the secret into an encrypted field (list it in the field map) or remove it",
    );
  }
}

// A checked path covers itself and everything beneath it.
function isWithin(path: string, checked: string): boolean {
  return path === checked || path.startsWith(`${checked}.`);
}
