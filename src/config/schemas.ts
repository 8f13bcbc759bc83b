import { z } from "zod";
import { STANDARD_BASE64 } from "../crypto/canonical-base64.js";
import { keyIdProblem } from "../engine/kms/kms-v2-rules.js";

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
