/**
 * The checks kube-apiserver applies to what a KMS v2 plugin returns and to every stored
 * EncryptedObject (KMS-CONTRACT.md §2.1). Each returns a problem text, or undefined when the
 * value is acceptable, so the engine can throw and the conformance runner can report.
 */

const KEY_ID_MAX_BYTES = 1024;
/** Status.version values kube-apiserver accepts (and then pins for the plugin's lifetime). */
export const ACCEPTED_VERSIONS: readonly string[] = ["v2", "v2beta1"];
export const ENCRYPTED_DEK_SOURCE_MAX_BYTES = 1024;
export const ANNOTATIONS_MAX_BYTES = 32 * 1024;

const LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);

export function keyIdProblem(keyId: string): string | undefined {
  if (keyId.length === 0) return "keyID is empty";
  const bytes = Buffer.byteLength(keyId, "utf8");
  if (bytes > KEY_ID_MAX_BYTES)
    return `keyID is ${bytes} bytes, more than the ${KEY_ID_MAX_BYTES} allowed`;
  return undefined;
}

export function encryptedDekSourceProblem(source: Uint8Array): string | undefined {
  if (source.length === 0) return "encryptedDEKSource is empty";
  if (source.length > ENCRYPTED_DEK_SOURCE_MAX_BYTES)
    return `encryptedDEKSource is ${source.length} bytes, more than the ${ENCRYPTED_DEK_SOURCE_MAX_BYTES} allowed`;
  return undefined;
}

/**
 * apimachinery's `validation.IsFullyQualifiedDomainName`, which kube-apiserver applies to every
 * annotation key: non-empty; one trailing dot dropped; a DNS-1123 subdomain (≤253 characters);
 * at least two labels, each at most 63 characters. Returns why a key is refused, or undefined.
 */
export function fqdnProblem(key: string): string | undefined {
  if (key.length === 0) return "is empty";
  const name = key.endsWith(".") ? key.slice(0, -1) : key;
  if (name.length > 253) return `is ${name.length} characters long (at most 253)`;
  if (!DNS1123_SUBDOMAIN.test(name)) {
    return "is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending alphanumeric)";
  }
  const labels = name.split(".");
  if (labels.length < 2) return "needs at least two dot-separated labels";
  const long = labels.find((label) => label.length > 63);
  if (long !== undefined) return `has a ${long.length}-character label (at most 63)`;
  return undefined;
}

export function annotationsProblem(
  annotations: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>,
): string | undefined {
  let total = 0;
  const entries = annotations instanceof Map ? [...annotations] : Object.entries(annotations);
  for (const [key, value] of entries) {
    const problem = fqdnProblem(key);
    if (problem !== undefined)
      return `annotation key ${JSON.stringify(key.slice(0, 80))} ${problem}`;
    total += Buffer.byteLength(key, "utf8") + value.length;
  }
  if (total > ANNOTATIONS_MAX_BYTES)
    return `annotations total ${total} bytes, more than the ${ANNOTATIONS_MAX_BYTES} allowed`;
  return undefined;
}
