import { ConfigError } from "../src/errors.js";

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
