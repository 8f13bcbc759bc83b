import { errorMessage } from "../../errors.js";

/**
 * The parts of Go's net/url.Parse that decide a KMS endpoint's fate in kube-apiserver: whether
 * parsing fails (and with which message), the scheme (Go lowercases it) and the unescaped
 * path, which k8s.io/kms ParseEndpoint uses as the socket path. Query and fragment are parsed
 * only as far as Go can reject them.
 */

type GoUrlResult =
  | { readonly ok: true; readonly scheme: string; readonly path: string }
  | { readonly ok: false; readonly error: string };

type Mode = "path" | "host" | "userinfo" | "fragment";

class GoUrlError extends Error {}

const quote = (s: string): string => JSON.stringify(s);
const isAlpha = (c: string): boolean => /^[A-Za-z]$/.test(c);
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9A-Fa-f]$/.test(c);

/** Characters a host may hold unescaped besides alphanumerics (Go's shouldEscape, encodeHost). */
const HOST_SAFE = new Set("!$&'()*+,;=:[]<>\"-_.~");
/** Go's validUserinfo set besides alphanumerics. */
const USERINFO_SAFE = new Set("-._:~!$&'()*+,;=%@");

export function parseGoUrl(raw: string): GoUrlResult {
  const hash = raw.indexOf("#");
  const beforeFragment = hash < 0 ? raw : raw.slice(0, hash);
  let result: { scheme: string; path: string };
  try {
    result = parseWithoutFragment(beforeFragment);
  } catch (error) {
    return { ok: false, error: `parse ${quote(beforeFragment)}: ${errorMessage(error)}` };
  }
  if (hash >= 0) {
    try {
      unescapeUrl(raw.slice(hash + 1), "fragment");
    } catch (error) {
      return { ok: false, error: `parse ${quote(raw)}: ${errorMessage(error)}` };
    }
  }
  return { ok: true, ...result };
}

function parseWithoutFragment(raw: string): { scheme: string; path: string } {
  if ([...raw].some((c) => c < " " || c === "\x7f")) {
    throw new GoUrlError("net/url: invalid control character in URL");
  }
  if (raw === "*") return { scheme: "", path: "*" };

  const [scheme, afterScheme] = splitScheme(raw);
  let rest = afterScheme;
  const question = rest.indexOf("?");
  if (rest.endsWith("?") && question === rest.length - 1) {
    rest = rest.slice(0, -1);
  } else if (question >= 0) {
    rest = rest.slice(0, question);
  }

  if (!rest.startsWith("/")) {
    // "unix:relative" is an opaque URL: no path at all.
    if (scheme !== "") return { scheme, path: "" };
    const firstSegment = rest.split("/", 1)[0] ?? "";
    if (firstSegment.includes(":")) {
      throw new GoUrlError("first path segment in URL cannot contain colon");
    }
  }
  if ((scheme !== "" || !rest.startsWith("///")) && rest.startsWith("//")) {
    const slash = rest.indexOf("/", 2);
    const authority = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
    rest = slash < 0 ? "" : rest.slice(slash);
    parseAuthority(authority);
  }
  return { scheme, path: unescapeUrl(rest, "path") };
}

function splitScheme(raw: string): [scheme: string, rest: string] {
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charAt(i);
    if (isAlpha(c)) continue;
    if (/^[0-9+\-.]$/.test(c)) {
      if (i === 0) return ["", raw];
      continue;
    }
    if (c === ":") {
      if (i === 0) throw new GoUrlError("missing protocol scheme");
      return [raw.slice(0, i).toLowerCase(), raw.slice(i + 1)];
    }
    return ["", raw]; // any other character: no scheme, the whole string is a path
  }
  return ["", raw];
}

function parseAuthority(authority: string): void {
  const at = authority.lastIndexOf("@");
  parseHost(at < 0 ? authority : authority.slice(at + 1));
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    for (const c of userinfo) {
      if (!/^[A-Za-z0-9]$/.test(c) && !USERINFO_SAFE.has(c)) {
        throw new GoUrlError("net/url: invalid userinfo");
      }
    }
    unescapeUrl(userinfo, "userinfo");
  }
}

function parseHost(host: string): void {
  if (host.startsWith("[")) {
    const close = host.lastIndexOf("]");
    if (close < 0) throw new GoUrlError("missing ']' in host");
    checkPort(host.slice(close + 1));
  } else {
    const colon = host.lastIndexOf(":");
    if (colon >= 0) checkPort(host.slice(colon));
  }
  unescapeUrl(host, "host");
}

function checkPort(colonPort: string): void {
  if (colonPort !== "" && !/^:[0-9]*$/.test(colonPort)) {
    throw new GoUrlError(`invalid port ${quote(colonPort)} after host`);
  }
}

/** Go's unescape: %XX must be well-formed; hosts also refuse most ASCII punctuation. */
function unescapeUrl(s: string, mode: Mode): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, "utf8");
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i] as number;
    if (b === 0x25 /* % */) {
      const h1 = String.fromCharCode(raw[i + 1] ?? 0);
      const h2 = String.fromCharCode(raw[i + 2] ?? 0);
      if (i + 2 >= raw.length || !isHex(h1) || !isHex(h2)) {
        const badEscape = raw.subarray(i, i + 3).toString("utf8");
        throw new GoUrlError(`invalid URL escape ${quote(badEscape)}`);
      }
      const value = Number.parseInt(h1 + h2, 16);
      if (mode === "host" && value < 0x80 && `${h1}${h2}` !== "25") {
        throw new GoUrlError(`invalid URL escape ${quote(`%${h1}${h2}`)}`);
      }
      bytes.push(value);
      i += 2;
      continue;
    }
    if (mode === "host" && b < 0x80) {
      const c = String.fromCharCode(b);
      if (!/^[A-Za-z0-9]$/.test(c) && !HOST_SAFE.has(c)) {
        throw new GoUrlError(`invalid character ${quote(c)} in host name`);
      }
    }
    bytes.push(b);
  }
  return Buffer.from(bytes).toString("utf8");
}
