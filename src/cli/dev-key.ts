import { randomBytes } from "node:crypto";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { KmsEnvelopeError } from "../errors.js";

/** File name of the development master key inside the run directory. */
export const DEV_KEY_FILE_NAME = "dev-master-key";

/**
 * Returns the development master key (base64), creating it 0600 on first use and reusing it
 * afterwards so data sealed in one dev session still opens in the next. A key file others can
 * read is refused rather than silently used.
 */
export async function loadOrCreateDevKey(
  runDir: string,
): Promise<{ key: string; path: string; created: boolean }> {
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const path = join(runDir, DEV_KEY_FILE_NAME);
  const fresh = randomBytes(32);
  try {
    await writeFile(path, `${fresh.toString("base64")}\n`, { mode: 0o600, flag: "wx" });
    return { key: fresh.toString("base64"), path, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    fresh.fill(0);
  }
  const { mode } = await stat(path);
  if ((mode & 0o077) !== 0) {
    throw new KmsEnvelopeError(
      "INVALID_MASTER_KEY",
      `${path} is readable by other users (mode ${(mode & 0o777).toString(8)}): run \`chmod 600 ${path}\``,
    );
  }
  return { key: (await readFile(path, "utf8")).trim(), path, created: false };
}
