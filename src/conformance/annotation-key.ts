/**
 * apimachinery's `validation.IsFullyQualifiedDomainName`, which kube-apiserver applies to every
 * annotation key a KMS v2 plugin returns (KMS-CONTRACT.md §2.1): non-empty; one trailing dot
 * dropped; a DNS-1123 subdomain (≤253 characters); at least two labels; each a DNS-1123 label
 * (≤63 characters). Returns why a key is refused, or undefined when it is valid.
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

const LABEL = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN = new RegExp(`^${LABEL}(?:\\.${LABEL})*$`);
