import { once } from "node:events";

/** Writes to a stream, waiting for it to drain so a large output never piles up in memory. */
export function drainingWriter(stream: NodeJS.WritableStream): (chunk: string) => Promise<void> {
  return async (chunk) => {
    if (!stream.write(chunk)) await once(stream, "drain");
  };
}
