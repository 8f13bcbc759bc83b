import { createInterface } from "node:readline";
import { InvalidRequestError } from "../errors.js";
import type { JsonObject, JsonValue } from "../fields/field-codec.js";

/** One line of NDJSON input, numbered from 1 as an editor numbers it. */
export interface NumberedLine {
  readonly number: number;
  readonly text: string;
}

/**
 * A JSON object read from `text`; `where` ("line 7", "the input") names it in errors, which
 * never quote the text, since it may hold the very secrets about to be encrypted.
 */
export function parseDocument(text: string, where: string): JsonObject {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch {
    throw new InvalidRequestError(`${where} is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new InvalidRequestError(`${where} must be a JSON object`);
  return value;
}

/** The non-blank lines of `input`, numbered as in the file (blank lines count too). */
export async function* numberedLines(input: NodeJS.ReadableStream): AsyncGenerator<NumberedLine> {
  let number = 0;
  for await (const text of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    number++;
    if (text.trim() !== "") yield { number, text };
  }
}
