import { KmsEnvelopeError } from "../src/errors.js";

/** An integer option within its limits, or INVALID_CONFIG naming the option. */
export function integerOption(
  option: string,
  value: number,
  minimum: number,
  maximum: number,
): number {
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw invalidConfig(
      `aws provider option ${option} must be an integer from ${minimum} to ${maximum}, not ${value}`,
    );
  }
  return value;
}

/** Refuses an endpoint override that is not an http(s) URL, with an example of one. */
export function checkEndpoint(endpoint: string): void {
  let url: URL | undefined;
  try {
    url = new URL(endpoint);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== "https:" && url.protocol !== "http:")) {
    throw invalidConfig(
      `AWS KMS endpoint ${JSON.stringify(endpoint)} is not an http(s) URL: give e.g. https://kms.eu-west-1.amazonaws.com`,
    );
  }
}

function invalidConfig(message: string): KmsEnvelopeError {
  return new KmsEnvelopeError("INVALID_CONFIG", message);
}
