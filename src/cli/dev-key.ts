import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodeMasterKey, generateMasterKey } from "../crypto/master-key.js";
import { wipe } from "../crypto/wipe.js";
import { KmsEnvelopeError } from "../errors.js";

/** File name of the development master key inside the run directory. */
export const DEV_KEY_FILE_NAME = "dev-master-key";

/**
 * Makes sure the development master key file exists, creating it 0600 on first use and reusing
 * it afterwards so data sealed in one dev session still opens in the next. A key file others
 * can read is refused rather than silently used. Only the path comes back: the daemon reads
 * the key itself (DevKeySource).
 */
export async function ensureDevKeyFile(
  runDir: string,
): Promise<{ path: string; created: boolean }> {
  await mkdir(runDir, { recursive: true, mode: 0o700 });
  const path = join(runDir, DEV_KEY_FILE_NAME);
  const fresh = generateMasterKey();
  try {
    await writeFile(path, `${encodeMasterKey(fresh)}\n`, { mode: 0o600, flag: "wx" });
    return { path, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    wipe(fresh);
  }
  const { mode } = await stat(path);
  if ((mode & 0o077) !== 0) {
    throw new KmsEnvelopeError(
      "INVALID_MASTER_KEY",
      `${path} is readable by other users (mode ${(mode & 0o777).toString(8)}): run \`chmod 600 ${path}\``,
    );
  }
  return { path, created: false };
}
