import { z } from "zod";

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;

/** A Go-style duration such as "500ms", "30s", "5m" or "1h", parsed to milliseconds. */
export const durationSchema = z
  .string()
  .trim()
  .regex(/^\d+(?:\.\d+)?(?:ms|s|m|h)$/, "must be a duration such as 500ms, 30s, 5m or 1h")
  .transform((text) => {
    const [, amount = "0", unit = "ms"] = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text) ?? [];
    return Math.round(Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS]);
  });
