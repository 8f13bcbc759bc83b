import { ConfigError } from "../src/errors.js";

/** A checked AWS KMS key reference. */
interface AwsKeyReference {
  /** The reference as given, trimmed: key id, key ARN, `alias/<name>` or alias ARN. */
  readonly keyRef: string;
  /** The key ARN when keyRef is one (not for an alias ARN); learnt from responses otherwise. */
  readonly keyArn: string | undefined;
  /** The region an ARN keyRef names. */
  readonly region: string | undefined;
}

const KEY_ID =
  /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$/;
const ALIAS = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;
const ARN = /^arn:(aws[a-z-]*):kms:([a-z0-9-]+):(\d{12}):(key|alias)\/(.+)$/;

/**
 * Checks a key reference, and the region given beside it (KMS keys are regional, so an ARN's
 * region must agree); rejects anything else saying what to give instead.
 */
export function parseAwsKeyRef(keyRef: string, region?: string): AwsKeyReference {
  const trimmed = keyRef.trim();
  const arn = ARN.exec(trimmed);
  if (!(KEY_ID.test(trimmed) || ALIAS.test(trimmed) || arn !== null)) {
    throw new ConfigError(
      "aws keyRef",
      `${JSON.stringify(trimmed)} is not a key id, key ARN, alias/<name> or alias ARN`,
      "give the key ARN, arn:aws:kms:<region>:<account>:key/<id>",
    );
  }
  const arnRegion = arn?.[2];
  if (region !== undefined && arnRegion !== undefined && region !== arnRegion) {
    throw new ConfigError(
      "aws region",
      `${region} does not match the region of key ${trimmed} (${arnRegion}), and KMS keys are regional`,
      `drop --region or use a key in ${region}`,
    );
  }
  return { keyRef: trimmed, keyArn: arn?.[4] === "key" ? trimmed : undefined, region: arnRegion };
}

/** Whether a value is a KMS key or alias ARN, as KMS names keys in its responses. */
export function isAwsArn(value: string): boolean {
  return ARN.test(value);
}
