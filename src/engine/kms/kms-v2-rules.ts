/**
 * The checks kube-apiserver applies to what a KMS v2 plugin returns and to every stored
 * EncryptedObject (KMS-CONTRACT.md §2.1). Each returns a problem text, or undefined when the
 * value is acceptable, so the engine can throw and the conformance runner can report.
 */

export const KEY_ID_MAX_BYTES = 1024;
export const ENCRYPTED_DEK_SOURCE_MAX_BYTES = 1024;
export const ANNOTATIONS_MAX_BYTES = 32 * 1024;

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

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

/** apimachinery's IsFullyQualifiedDomainName: a DNS-1123 subdomain with at least two labels. */
export function fullyQualifiedDomainNameProblem(name: string): string | undefined {
  if (name.length === 0) return "must not be empty";
  const trimmed = name.endsWith(".") ? name.slice(0, -1) : name;
  if (trimmed.length > 253 || !DNS1123_SUBDOMAIN.test(trimmed))
    return "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)";
  const labels = trimmed.split(".");
  if (labels.length < 2) return "should be a domain with at least two segments separated by dots";
  for (const label of labels)
    if (label.length > 63 || !DNS1123_LABEL.test(label))
      return `label ${JSON.stringify(label)} must be an RFC 1123 label of at most 63 characters`;
  return undefined;
}

export function annotationsProblem(
  annotations: ReadonlyMap<string, Uint8Array> | Readonly<Record<string, Uint8Array>>,
): string | undefined {
  let total = 0;
  const entries = annotations instanceof Map ? [...annotations] : Object.entries(annotations);
  for (const [key, value] of entries) {
    const problem = fullyQualifiedDomainNameProblem(key);
    if (problem !== undefined)
      return `annotation key ${JSON.stringify(key.slice(0, 80))} ${problem}`;
    total += Buffer.byteLength(key, "utf8") + value.length;
  }
  if (total > ANNOTATIONS_MAX_BYTES)
    return `annotations total ${total} bytes, more than the ${ANNOTATIONS_MAX_BYTES} allowed`;
  return undefined;
}
