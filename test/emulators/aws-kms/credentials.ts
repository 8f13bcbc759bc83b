import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { EmulatorCredentials, KnownCredentials } from "./sigv4.js";

/** Where issued credentials came from: STS for a web identity (IRSA), or the Pod Identity agent. */
export type CredentialSource = "webIdentity" | "container";

/** One credential request the emulator answered (or refused). */
export interface RecordedCredentialRequest {
  readonly source: CredentialSource;
  readonly status: number;
  /** When refused, the error code sent. */
  readonly code: string | undefined;
}

/** The path of the container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI). */
export const CONTAINER_CREDENTIALS_PATH = "/v1/credentials";

const STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/";
const MAX_ISSUED = 1_000;
const MAX_RECORDED = 1_000;

/**
 * The short-lived credential sources of an EKS pod, in their wire forms, for the SDK's default
 * chain to use unmodified:
 * - STS `AssumeRoleWithWebIdentity` (IRSA): the AWS query protocol — a form-encoded POST with
 *   `Action`, `Version`, `RoleArn`, `RoleSessionName`, `WebIdentityToken` — answered in XML with
 *   `Credentials` (`AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`), errors as an
 *   `ErrorResponse` with `Type`, `Code`, `Message` (InvalidIdentityToken, AccessDenied);
 * - the container credentials endpoint (EKS Pod Identity, ECS): `GET /v1/credentials` with the
 *   agent's token in `Authorization`, answered with JSON `AccessKeyId`, `SecretAccessKey`,
 *   `Token`, `Expiration` (RFC 3339), errors as JSON `Code` and `Message`.
 * Issued credentials live `lifetimeMs` and are then refused by KMS with ExpiredTokenException;
 * revoke() makes every one issued so far unknown to it.
 */
export class CredentialIssuer {
  /** The role a web identity may assume. */
  readonly roleArn: string;
  /** How long issued credentials live; a test shortens it to see them renewed. */
  lifetimeMs = 3_600_000;
  /** Credentials issued, by source. */
  readonly issued: Record<CredentialSource, number> = { webIdentity: 0, container: 0 };
  /** Requests signed with credentials past their expiry. */
  expiredUses = 0;
  /** The most recent credential requests, oldest first (bounded). */
  readonly requests: RecordedCredentialRequest[] = [];
  #webIdentityToken: string | undefined;
  #containerToken: string | undefined;
  readonly #sessions = new Map<string, KnownCredentials>();

  constructor(accountId: string) {
    this.roleArn = `arn:aws:iam::${accountId}:role/kms-envelope`;
  }

  /** The projected service-account token STS accepts now (undefined: none). */
  acceptWebIdentityToken(token: string | undefined): void {
    this.#webIdentityToken = token;
  }

  /** The Pod Identity agent token the container endpoint accepts now (undefined: none). */
  acceptContainerToken(token: string | undefined): void {
    this.#containerToken = token;
  }

  /** Forgets every credential issued so far: KMS no longer recognises them. */
  revoke(): void {
    this.#sessions.clear();
  }

  /** The issued credentials of an access key id, counting a use past their expiry. */
  lookup(accessKeyId: string, now = Date.now()): KnownCredentials | undefined {
    const session = this.#sessions.get(accessKeyId);
    if (session?.expiresAt !== undefined && now >= session.expiresAt.getTime())
      this.expiredUses += 1;
    return session;
  }

  /** Whether a request is one of this issuer's, which `answer` then serves. */
  handles(request: IncomingMessage, body: Buffer): boolean {
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    if (request.method === "GET" && url.pathname === CONTAINER_CREDENTIALS_PATH) return true;
    return (
      request.method === "POST" &&
      (request.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded") &&
      new URLSearchParams(body.toString("utf8")).get("Action") === "AssumeRoleWithWebIdentity"
    );
  }

  /** Answers a request `handles` accepted. */
  answer(request: IncomingMessage, body: Buffer, response: ServerResponse): void {
    if (request.method === "GET") this.#container(request, response);
    else this.#assumeRoleWithWebIdentity(new URLSearchParams(body.toString("utf8")), response);
  }

  #assumeRoleWithWebIdentity(form: URLSearchParams, response: ServerResponse): void {
    const requestId = randomUUID();
    const refuse = (status: number, code: string, message: string) => {
      this.#record({ source: "webIdentity", status, code });
      sendXml(
        response,
        status,
        requestId,
        `<ErrorResponse xmlns="${STS_NAMESPACE}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
    };
    if (form.get("Version") !== "2011-06-15") {
      refuse(400, "InvalidAction", "Could not find operation for this version.");
      return;
    }
    const token = form.get("WebIdentityToken") ?? "";
    if (this.#webIdentityToken === undefined || token !== this.#webIdentityToken) {
      refuse(400, "InvalidIdentityToken", "The web identity token is not valid (emulator).");
      return;
    }
    if (form.get("RoleArn") !== this.roleArn) {
      refuse(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");
      return;
    }
    const session = form.get("RoleSessionName") ?? "session";
    const credentials = this.#issue("webIdentity");
    const arn = `${this.roleArn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/")}/${session}`;
    sendXml(
      response,
      200,
      requestId,
      `<AssumeRoleWithWebIdentityResponse xmlns="${STS_NAMESPACE}"><AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>system:serviceaccount:kube-system:kms-envelope</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience><AssumedRoleUser><Arn>${arn}</Arn><AssumedRoleId>AROA${randomBytes(8).toString("hex").toUpperCase()}:${session}</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>${credentials.accessKeyId}</AccessKeyId><SecretAccessKey>${credentials.secretAccessKey}</SecretAccessKey><SessionToken>${credentials.sessionToken}</SessionToken><Expiration>${credentials.expiresAt.toISOString()}</Expiration></Credentials><Provider>oidc.eks.amazonaws.com</Provider></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
    );
  }

  #container(request: IncomingMessage, response: ServerResponse): void {
    const send = (status: number, body: Record<string, string>) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    const authorization = request.headers.authorization;
    if (this.#containerToken === undefined || authorization !== this.#containerToken) {
      this.#record({ source: "container", status: 401, code: "AccessDeniedException" });
      send(401, {
        Code: "AccessDeniedException",
        Message: "The service account token is not valid for this pod.",
      });
      return;
    }
    const credentials = this.#issue("container");
    send(200, {
      AccessKeyId: credentials.accessKeyId,
      SecretAccessKey: credentials.secretAccessKey,
      Token: credentials.sessionToken,
      AccountId: this.roleArn.split(":")[4] ?? "",
      Expiration: credentials.expiresAt.toISOString().replace(/\.\d{3}Z$/, "Z"),
    });
  }

  #issue(source: CredentialSource): Required<EmulatorCredentials> & { expiresAt: Date } {
    const credentials = {
      accessKeyId: `ASIA${randomBytes(8).toString("hex").toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString("base64"),
      sessionToken: randomBytes(48).toString("base64"),
      // Whole seconds, as the services send them, so the SDK and the emulator agree on expiry.
      expiresAt: new Date(Math.ceil((Date.now() + this.lifetimeMs) / 1000) * 1000),
    };
    this.#sessions.set(credentials.accessKeyId, credentials);
    if (this.#sessions.size > MAX_ISSUED) {
      this.#sessions.delete(this.#sessions.keys().next().value as string);
    }
    this.issued[source] += 1;
    this.#record({ source, status: 200, code: undefined });
    return credentials;
  }

  #record(entry: RecordedCredentialRequest): void {
    this.requests.push(entry);
    if (this.requests.length > MAX_RECORDED) this.requests.shift();
  }
}

function sendXml(response: ServerResponse, status: number, requestId: string, xml: string): void {
  response.writeHead(status, { "content-type": "text/xml", "x-amzn-RequestId": requestId });
  response.end(xml);
}
