import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { clientError } from "./errors.js";

/** Static credentials the emulator accepts (what the SDK signs with). */
export interface EmulatorCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Temporary credentials, as STS or a credentials endpoint issued them, with their expiry. */
export interface KnownCredentials extends EmulatorCredentials {
  expiresAt?: Date;
}

/** Finds the credentials of an access key id (static or issued), or undefined. */
export type CredentialLookup = (accessKeyId: string) => KnownCredentials | undefined;

/** What the verifier needs of one HTTP request. */
export interface SignedRequest {
  method: string;
  /** Path and query as sent on the wire (`req.url`). */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const ALGORITHM = "AWS4-HMAC-SHA256";
const AUTHORIZATION =
  /^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*$/;
const AMZ_DATE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;
// The real service's window; outside it the SDK sees "Signature expired" (aws-sdk-js-v3#6400).
const MAX_SKEW_MS = 5 * 60 * 1000;

/** The message KMS (and every JSON-protocol AWS service) sends for a wrong secret. */
export const SIGNATURE_MISMATCH_MESSAGE =
  "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";
const INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid.";
const EXPIRED_TOKEN_MESSAGE = "The security token included in the request is expired";

const invalidSignature = (message: string) => clientError("InvalidSignatureException", message);
const incomplete = (message: string) => clientError("IncompleteSignatureException", message);

/**
 * Verifies an AWS Signature Version 4 `Authorization` header the way the service does:
 * rebuilds the canonical request, the string to sign and the HMAC chain from the secret,
 * and compares signatures in constant time. Throws the KMS error the SDK would receive.
 * Reference: "Create a signed AWS API request" (AWS IAM user guide, SigV4).
 */
export function verifySignature(
  request: SignedRequest,
  credentials: EmulatorCredentials | CredentialLookup,
  region: string,
  service: string,
  now: Date = new Date(),
): void {
  const authorization = header(request.headers, "authorization");
  if (authorization === undefined) {
    throw clientError("MissingAuthenticationTokenException", "Missing Authentication Token");
  }
  const parsed = AUTHORIZATION.exec(authorization);
  if (parsed === null) {
    throw incomplete(
      `Authorization header requires '${ALGORITHM}' with 'Credential', 'SignedHeaders' and 'Signature' parameters.`,
    );
  }
  const [, credential = "", signedHeaderList = "", signature = ""] = parsed;
  const scopeParts = credential.split("/");
  if (scopeParts.length !== 5 || scopeParts[4] !== "aws4_request") {
    throw incomplete(
      "Credential must have exactly 5 slash-delimited elements, ending in aws4_request.",
    );
  }
  const [accessKeyId, scopeDate, scopeRegion, scopeService] = scopeParts as [
    string,
    string,
    string,
    string,
  ];
  const known: KnownCredentials | undefined =
    typeof credentials === "function"
      ? credentials(accessKeyId)
      : accessKeyId === credentials.accessKeyId
        ? credentials
        : undefined;
  if (known === undefined) throw clientError("UnrecognizedClientException", INVALID_TOKEN_MESSAGE);
  if (
    known.sessionToken !== undefined &&
    header(request.headers, "x-amz-security-token") !== known.sessionToken
  ) {
    throw clientError("UnrecognizedClientException", INVALID_TOKEN_MESSAGE);
  }
  if (known.expiresAt !== undefined && now.getTime() >= known.expiresAt.getTime()) {
    throw clientError("ExpiredTokenException", EXPIRED_TOKEN_MESSAGE);
  }
  const amzDate = header(request.headers, "x-amz-date");
  const signedAt = amzDate === undefined ? undefined : parseAmzDate(amzDate);
  if (amzDate === undefined || signedAt === undefined) {
    throw incomplete("Authorization header requires existence of a valid 'X-Amz-Date' header.");
  }
  if (scopeDate !== amzDate.slice(0, 8)) {
    throw invalidSignature(
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}'`,
    );
  }
  if (scopeRegion !== region)
    throw invalidSignature("Credential should be scoped to a valid region.");
  if (scopeService !== service)
    throw invalidSignature(`Credential should be scoped to correct service: '${service}'.`);
  checkClock(amzDate, signedAt, now);

  const signedHeaders = signedHeaderList.split(";");
  if (!signedHeaders.includes("host")) {
    throw incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  }
  const scope = `${scopeDate}/${scopeRegion}/${scopeService}/aws4_request`;
  const expected = sign(
    known.secretAccessKey,
    scope,
    amzDate,
    canonicalRequest(request, signedHeaders),
  );
  const given = Buffer.from(signature, "hex");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw invalidSignature(SIGNATURE_MISMATCH_MESSAGE);
  }
}

function checkClock(amzDate: string, signedAt: Date, now: Date): void {
  const format = (date: Date) =>
    date
      .toISOString()
      .replace(/[-:]/g, "")
      .replace(/\.\d{3}/, "");
  if (signedAt.getTime() < now.getTime() - MAX_SKEW_MS) {
    throw invalidSignature(
      `Signature expired: ${amzDate} is now earlier than ${format(new Date(now.getTime() - MAX_SKEW_MS))} (${format(now)} - 5 min.)`,
    );
  }
  if (signedAt.getTime() > now.getTime() + MAX_SKEW_MS) {
    throw invalidSignature(
      `Signature not yet current: ${amzDate} is still later than ${format(new Date(now.getTime() + MAX_SKEW_MS))} (${format(now)} + 5 min.)`,
    );
  }
}

/** The canonical request (method, path, query, headers, signed header list, payload hash). */
export function canonicalRequest(request: SignedRequest, signedHeaders: string[]): string {
  const queryStart = request.url.indexOf("?");
  const path = queryStart === -1 ? request.url : request.url.slice(0, queryStart);
  const query = queryStart === -1 ? "" : request.url.slice(queryStart + 1);
  const headerLines = signedHeaders.map(
    (name) => `${name}:${canonicalHeaderValue(header(request.headers, name))}\n`,
  );
  const payloadHash = createHash("sha256").update(request.body).digest("hex");
  return [
    request.method.toUpperCase(),
    canonicalPath(path),
    canonicalQuery(query),
    headerLines.join(""),
    signedHeaders.join(";"),
    payloadHash,
  ].join("\n");
}

/** HMAC chain: kSecret → date → region → service → "aws4_request", then the signature. */
function sign(secret: string, scope: string, amzDate: string, canonical: string): Buffer {
  const stringToSign = [
    ALGORITHM,
    amzDate,
    scope,
    createHash("sha256").update(canonical).digest("hex"),
  ].join("\n");
  let key: Buffer = Buffer.from(`AWS4${secret}`, "utf8");
  for (const part of scope.split("/")) key = createHmac("sha256", key).update(part).digest();
  return createHmac("sha256", key).update(stringToSign).digest();
}

// Non-S3 services double-encode: the signer URI-escapes the (already wire-encoded) path.
function canonicalPath(path: string): string {
  const segments: string[] = [];
  for (const segment of path.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") segments.pop();
    else segments.push(segment);
  }
  const normalized = `/${segments.join("/")}${segments.length > 0 && path.endsWith("/") ? "/" : ""}`;
  return escapeUri(normalized).replace(/%2F/g, "/");
}

function canonicalQuery(query: string): string {
  if (query === "") return "";
  return query
    .split("&")
    .filter((pair) => pair !== "")
    .map((pair) => {
      const [name = "", value = ""] = pair.split("=", 2);
      return [escapeUri(decodeURIComponent(name)), escapeUri(decodeURIComponent(value))] as const;
    })
    .sort(([a, x], [b, y]) => (a === b ? (x < y ? -1 : 1) : a < b ? -1 : 1))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function canonicalHeaderValue(value: string | undefined): string {
  return (value ?? "")
    .replace(/[\r\n]/g, " ")
    .replace(/[ \t]+/g, " ")
    .trim();
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

function parseAmzDate(value: string): Date | undefined {
  const match = AMZ_DATE.exec(value);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  const date = new Date(Date.UTC(year ?? 0, (month ?? 1) - 1, day, hour, minute, second));
  return Number.isNaN(date.getTime()) ? undefined : date;
}
