import { resolve } from "node:path";
import { z } from "zod";
import { STANDARD_BASE64 } from "../crypto/canonical-base64.js";
import { keyIdProblem } from "../engine/kms/kms-v2-rules.js";
import { MAX_SOCKET_PATH_BYTES } from "../wire/socket-address.js";

/**
 * A custody provider's name, the prefix of its key ids (`aws:…`, SPEC.md §3). The registry
 * refuses a module whose name is longer than 32 characters, so a keyring may not name one.
 */
export const providerNameSchema = z
  .string()
  .regex(
    /^[a-z][a-z0-9-]{0,31}$/,
    "must be a provider name such as aws, azure, gcp or local (a lowercase letter, then at most 31 lowercase letters, digits or -)",
  );

/**
 * A master-key version's key id. The daemon hands it to kube-apiserver as the KMS v2 keyID,
 * so it obeys the apiserver's rule (KMS-CONTRACT.md §2.1): 1 to 1024 bytes of UTF-8.
 */
export const keyIdSchema = z.string().superRefine((keyId, context) => {
  const problem = keyIdProblem(keyId);
  if (problem !== undefined) context.addIssue({ code: "custom", message: problem });
});

/** Key material written as text (a wrapped master key): standard padded base64, not empty. */
export const base64Schema = z.string().regex(STANDARD_BASE64, "must be standard base64").min(4);

/**
 * The daemon's socket as operators write it — a path, or `unix:///path` as in an
 * EncryptionConfiguration — resolved to an absolute path. Abstract sockets (`@name`) are
 * refused: they have no file, so nothing carries the 0600 permission that keeps other users
 * out. Each refusal says what to write instead (the issue's `remedy`).
 */
export const socketPathSchema = z.string().transform((value, context) => {
  const refuse = (problem: string, remedy: string) => {
    context.addIssue({ code: "custom", message: problem, params: { remedy } });
    return z.NEVER;
  };
  let rest = value.trim();
  if (rest === "")
    return refuse("is empty", "give a path such as /var/run/kmsplugin/kms-envelope.sock");
  if (rest.includes("://")) {
    if (!rest.startsWith("unix://")) {
      return refuse(
        `only unix:// endpoints are supported, not ${JSON.stringify(value)}`,
        "give a socket path or unix:///path/to/socket",
      );
    }
    rest = rest.slice("unix://".length);
    if (rest === "")
      return refuse(`${JSON.stringify(value)} has no path`, "write unix:///path/to/socket");
  }
  if (rest.startsWith("@") || rest.startsWith("/@")) {
    return refuse(
      `abstract sockets such as ${JSON.stringify(value)} are not supported`,
      "give a socket file path",
    );
  }
  const path = resolve(rest);
  // sun_path holds 108 bytes with its NUL: a longer path cannot be bound or dialled as written.
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    return refuse(
      `${path} is ${bytes} bytes long; Unix socket paths are limited to ${MAX_SOCKET_PATH_BYTES} bytes`,
      "choose a shorter path or --run-dir",
    );
  }
  return path;
});
