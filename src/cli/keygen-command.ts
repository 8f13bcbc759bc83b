import { randomBytes } from "node:crypto";
import { Command } from "commander";

/** `kms-envelope keygen`: prints a fresh master key for ENCRYPTION_MASTER_KEY. */
export function keygenCommand(): Command {
  return new Command("keygen")
    .description("print a new random 32-byte master key, base64, for ENCRYPTION_MASTER_KEY")
    .action(() => {
      const key = randomBytes(32);
      process.stdout.write(`${key.toString("base64")}\n`);
      key.fill(0);
    });
}
