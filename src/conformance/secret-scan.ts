import { inspect } from "node:util";

/**
 * Looks for key material in text a provider exposes (error messages, stacks, causes, output).
 * A fragment is enough to leak, so besides the whole key in hex, base64 and base64url, every
 * 8-byte window (step 4) is searched in hex.
 */
export function findSecret(text: string, secrets: readonly Uint8Array[]): string | undefined {
  for (const secret of secrets) {
    const bytes = Buffer.from(secret);
    for (const encoding of ["hex", "base64", "base64url"] as const) {
      if (text.includes(bytes.toString(encoding))) return `the whole key in ${encoding}`;
    }
    const hex = text.toLowerCase();
    for (let start = 0; start + 8 <= bytes.length; start += 4) {
      if (hex.includes(bytes.subarray(start, start + 8).toString("hex"))) {
        return `key bytes ${start}..${start + 7} in hex`;
      }
    }
  }
  return undefined;
}

/** Every text form of an error a log line or a caller could show: message, stack, causes. */
export function exposedText(error: unknown): string {
  return inspect(error, { depth: 6, breakLength: Number.POSITIVE_INFINITY });
}

/**
 * Records what the process writes to stdout and stderr while `run` runs, passing it through
 * unchanged, so a provider that prints (console, a logger on the standard streams) is caught.
 * Loggers that write to the file descriptors directly bypass this.
 */
export async function captureOutput<T>(run: () => Promise<T>, sink: string[]): Promise<T> {
  const streams = [process.stdout, process.stderr];
  const originals = streams.map((stream) => stream.write);
  streams.forEach((stream, index) => {
    const original = originals[index] as typeof stream.write;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      sink.push(typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString());
      return (original as (...args: unknown[]) => boolean).call(stream, chunk, ...rest);
    }) as typeof stream.write;
  });
  try {
    return await run();
  } finally {
    streams.forEach((stream, index) => {
      stream.write = originals[index] as typeof stream.write;
    });
  }
}
