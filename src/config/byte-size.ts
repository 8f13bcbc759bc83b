import { z } from "zod";

const UNIT_BYTES = { "": 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 } as const;

/** A byte count such as "4194304", "512KiB", "16MiB" or "1GiB" (binary units only). */
export const byteSizeSchema = z
  .string()
  .trim()
  .regex(/^\d+(?:KiB|MiB|GiB)?$/, "must be a whole number of bytes, or KiB, MiB or GiB (16MiB)")
  .transform((text) => {
    const [, amount = "0", unit = ""] = /^(\d+)(KiB|MiB|GiB)?$/.exec(text) ?? [];
    return Number(amount) * UNIT_BYTES[unit as keyof typeof UNIT_BYTES];
  });
