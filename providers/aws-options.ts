import { ConfigError } from "../src/errors.js";

/** An integer option within its limits, or a ConfigError naming the option. */
export function integerOption(
  option: string,
  value: number,
  minimum: number,
  maximum: number,
): number {
  if (!Number.isInteger(value) || value < minimum || value > maximum) {
    throw new ConfigError(
      `aws provider option ${option}`,
      `${value} is not an integer from ${minimum} to ${maximum}`,
      "give one within those limits",
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
    throw new ConfigError(
      "aws endpoint",
      `${JSON.stringify(endpoint)} is not an http(s) URL`,
      "give one such as https://kms.eu-west-1.amazonaws.com",
    );
  }
}
