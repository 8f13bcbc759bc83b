/**
 * Shapes of credentials that end up pasted into fields meant for prose (a title, a goal): the
 * pitfall the seed platform warns about. Each detector answers yes or no for a string and never
 * returns the matching text, so callers have nothing secret to log.
 */

/**
 * Names of the detectors, as configuration and findings spell them: `api-key` (OpenAI,
 * Anthropic, Stripe, Google API keys), `aws-access-key` (AKIA and ASIA key ids), `github-token`,
 * `slack-token`, `private-key` (PEM blocks), `bearer-token`, `jwt`, `url-password`
 * (`scheme://user:password@host`) and `high-entropy` (long random-looking tokens; UUIDs and
 * words are not flagged).
 */
export const DETECTOR_NAMES = [
  "api-key",
  "aws-access-key",
  "github-token",
  "slack-token",
  "private-key",
  "bearer-token",
  "jwt",
  "url-password",
  "high-entropy",
] as const;
/** One of {@link DETECTOR_NAMES}. */
export type DetectorName = (typeof DETECTOR_NAMES)[number];

// Vendor prefixes of secret keys: OpenAI and Anthropic (sk-…), Stripe (sk_/rk_ live or test),
// Google API keys (AIza…).
const API_KEY =
  /(?<![A-Za-z0-9_-])(?:sk-(?:proj-|ant-[a-z0-9]+-)?[A-Za-z0-9_-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}|AIza[A-Za-z0-9_-]{35})/;
// AWS access key ids: long-term (AKIA) and temporary (ASIA), 20 upper-case characters.
const AWS_ACCESS_KEY = /(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])/;
// GitHub personal, OAuth, user-to-server, server-to-server and refresh tokens, and fine-grained PATs.
const GITHUB_TOKEN = /(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})/;
// Slack bot, user, app and refresh tokens.
const SLACK_TOKEN = /(?<![A-Za-z0-9])xox[abeposr]-[A-Za-z0-9-]{10,}/;
// PEM blocks of any private key (PKCS#8, RSA, EC, OpenSSH, encrypted).
const PRIVATE_KEY = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----/;
const BEARER_TOKEN = /\bBearer\s+[A-Za-z0-9._~+/-]{16,}=*/i;
// A JWS/JWT: base64url JSON header and payload (both start with "{"), then a signature.
const JWT = /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}/;
// scheme://user:password@host
const URL_PASSWORD = /\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@]+:[^\s/@]+@[^\s/@]+/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Shannon entropy of a string in bits per character. */
function shannonEntropy(text: string): number {
  const counts = new Map<string, number>();
  for (const character of text) counts.set(character, (counts.get(character) ?? 0) + 1);
  let entropy = 0;
  for (const count of counts.values()) {
    const share = count / text.length;
    entropy -= share * Math.log2(share);
  }
  return entropy;
}

/**
 * A token of at least `minLength` characters from a key alphabet that looks random: mixed
 * letters and digits with entropy near that of random base64 (≥ 4.2 bits per character) or,
 * for hexadecimal, of random hex (≥ 3.5). Identifiers such as UUIDs and ordinary words are not
 * flagged; thresholds follow the usual secret scanners' base64/hex limits.
 */
function looksHighEntropy(text: string, minLength: number): boolean {
  for (const token of text.split(/[\s"'`,;:()<>[\]{}|]+/)) {
    if (token.length < minLength || UUID.test(token)) continue;
    if (!/^[A-Za-z0-9+/=_.-]+$/.test(token)) continue;
    if (!/[0-9]/.test(token) || !/[A-Za-z]/.test(token)) continue;
    const hex = /^[0-9a-fA-F]+$/.test(token);
    if (shannonEntropy(token) >= (hex ? 3.5 : 4.2)) return true;
  }
  return false;
}

/** Options of the detectors that have any. */
interface ShapeOptions {
  /** Shortest token the high-entropy detector considers (default 32). */
  readonly minEntropyLength?: number;
}

/** The detectors (among `enabled`) that recognise a credential in `text`, in a fixed order. */
export function credentialShapes(
  text: string,
  enabled: ReadonlySet<DetectorName>,
  options: ShapeOptions = {},
): DetectorName[] {
  const tests: Record<DetectorName, () => boolean> = {
    "api-key": () => API_KEY.test(text),
    "aws-access-key": () => AWS_ACCESS_KEY.test(text),
    "github-token": () => GITHUB_TOKEN.test(text),
    "slack-token": () => SLACK_TOKEN.test(text),
    "private-key": () => PRIVATE_KEY.test(text),
    "bearer-token": () => BEARER_TOKEN.test(text),
    jwt: () => JWT.test(text),
    "url-password": () => URL_PASSWORD.test(text),
    "high-entropy": () => looksHighEntropy(text, options.minEntropyLength ?? 32),
  };
  return DETECTOR_NAMES.filter((name) => enabled.has(name) && tests[name]());
}
