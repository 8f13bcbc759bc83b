/**
 * A SoftHSM2 owned by one test process: its own configuration and token directory in a
 * temporary directory (SOFTHSM2_CONF points there, so no system token is touched), tokens made
 * with softhsm2-util and AES keys made with pkcs11-tool, as the README tells operators to. The
 * binaries come from Debian's softhsm2 and opensc packages, and python3 holds the locks that
 * make a token hang (scripts/install-system-packages.sh installs all three).
 *
 * SoftHSM2 reads SOFTHSM2_CONF when the module is initialised, and a module is initialised
 * once per process, so a process has one SoftHSM (one test file, one `startSoftHsm`).
 *
 * For what the tools cannot do (a key with CKA_ENCRYPT false, turning a key's usage off and on,
 * finalising the module under the provider) `admin` opens the same module through pkcs11js in
 * this process: it is the same library, so it shares the provider's module state.
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { promisify } from "node:util";
import pkcs11js from "pkcs11js";

const run = promisify(execFile);

/** Where Debian's softhsm2 package puts its PKCS#11 module. */
export const SOFTHSM_MODULE = [
  "/usr/lib/softhsm/libsofthsm2.so",
  "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
].find((path) => existsSync(path));

/** The user PIN every test token gets. */
export const USER_PIN = "4711-kmse";

/** A SoftHSM2 in a temporary directory. */
export interface SoftHsm {
  readonly directory: string;
  readonly module: string;
  /** A file holding USER_PIN, mode 0600. */
  readonly pinFile: string;
  /** A new token with USER_PIN; returns its label. */
  initToken(label: string): Promise<string>;
  /** An AES-256 key made by pkcs11-tool --keygen (CKA_ENCRYPT and CKA_DECRYPT true). */
  generateKey(token: string, label: string): Promise<void>;
  /** A key reference for `object` on `token`, with this SoftHSM's module and PIN file. */
  keyRef(token: string, object: string, query?: string): string;
  /** Copies a token's directory aside, as an operator backs a SoftHSM2 token up. */
  backup(token: string): Promise<() => Promise<void>>;
  /** softhsm2-util --delete-token. */
  deleteToken(token: string): Promise<void>;
  /**
   * Makes the token hang: another process holds POSIX locks on every file of the token's
   * directory for `milliseconds` (or until the returned function is called), and SoftHSM2 waits
   * for them in its next call that reads the key, as a module waits on a hung HSM.
   */
  stall(token: string, milliseconds: number): Promise<() => void>;
  /** Administrative calls through the module itself. */
  readonly admin: SoftHsmAdmin;
  /** Removes the directory. */
  stop(): Promise<void>;
}

/** Calls into the module in this process, with a session logged in as the user. */
export interface SoftHsmAdmin {
  /** A new AES key (32 bytes unless `bytes` says) with the given usage (C_GenerateKey). */
  generateKey(
    token: string,
    label: string,
    usage: { encrypt: boolean; decrypt: boolean; bytes?: number },
  ): void;
  /** Sets CKA_ENCRYPT and CKA_DECRYPT of a key (C_SetAttributeValue). */
  setUsage(token: string, label: string, allowed: boolean): void;
  /** C_Finalize: every session and handle of the module in this process is gone. */
  finalize(): void;
}

export async function startSoftHsm(): Promise<SoftHsm> {
  if (SOFTHSM_MODULE === undefined) {
    throw new Error(
      "no SoftHSM2 module (libsofthsm2.so): run `bash scripts/install-system-packages.sh`",
    );
  }
  const module = SOFTHSM_MODULE;
  const directory = await mkdtemp(join(tmpdir(), "kms-envelope-softhsm-"));
  const tokens = join(directory, "tokens");
  await run("mkdir", ["-m", "0700", tokens]);
  const config = join(directory, "softhsm2.conf");
  await writeFile(
    config,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  process.env.SOFTHSM2_CONF = config;
  const pinFile = join(directory, "pin");
  await writeFile(pinFile, `${USER_PIN}\n`, { mode: 0o600 });
  const env = { ...process.env, SOFTHSM2_CONF: config };
  const tool = (command: string, args: string[]) => run(command, args, { env });
  const tokenDirectory = async (label: string): Promise<string> => {
    const { stdout } = await tool("softhsm2-util", ["--show-slots"]);
    // Token directories are named after the token's UUID-form serial: find it by label.
    const blocks = stdout.split(/\nSlot /);
    const block = blocks.find((text) => new RegExp(`Label:\\s+${label} *(?:\\n|$)`).test(text));
    const serial = /Serial number:\s+([0-9a-f]+)/.exec(block ?? "")?.[1];
    if (serial === undefined) throw new Error(`no token ${label} in ${stdout}`);
    const match = readdirSync(tokens).find((name) => name.replaceAll("-", "").endsWith(serial));
    if (match === undefined) throw new Error(`no directory for token ${label} (${serial})`);
    return join(tokens, match);
  };

  let admin: pkcs11js.PKCS11 | undefined;
  const loaded = (): pkcs11js.PKCS11 => {
    if (admin === undefined) {
      admin = new pkcs11js.PKCS11();
      admin.load(module);
    }
    return admin;
  };
  // Initialised again whenever the provider (or finalize) finalised the shared module state.
  const session = (token: string): Buffer => {
    const api = loaded();
    try {
      api.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
    } catch (error) {
      if (!String((error as Error).message).startsWith("CKR_CRYPTOKI_ALREADY_INITIALIZED"))
        throw error;
    }
    const slot = api
      .C_GetSlotList(true)
      .find((candidate) => api.C_GetTokenInfo(candidate).label.trimEnd() === token);
    if (slot === undefined) throw new Error(`no token ${token}`);
    const opened = api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      api.C_Login(opened, pkcs11js.CKU_USER, USER_PIN);
    } catch (error) {
      if (!String((error as Error).message).startsWith("CKR_USER_ALREADY_LOGGED_IN")) throw error;
    }
    return opened;
  };
  const withSession = <T>(token: string, call: (api: pkcs11js.PKCS11, session: Buffer) => T) => {
    const opened = session(token);
    const api = loaded();
    try {
      return call(api, opened);
    } finally {
      api.C_CloseSession(opened);
    }
  };
  const findKey = (api: pkcs11js.PKCS11, opened: Buffer, label: string): Buffer => {
    api.C_FindObjectsInit(opened, [{ type: pkcs11js.CKA_LABEL, value: label }]);
    const [key] = api.C_FindObjects(opened, 2);
    api.C_FindObjectsFinal(opened);
    if (key === undefined) throw new Error(`no key ${label}`);
    return key;
  };

  return {
    directory,
    module,
    pinFile,
    async initToken(label) {
      await tool("softhsm2-util", [
        "--init-token",
        "--free",
        "--label",
        label,
        "--so-pin",
        "so-4711",
        "--pin",
        USER_PIN,
      ]);
      return label;
    },
    async generateKey(token, label) {
      await tool("pkcs11-tool", [
        "--module",
        module,
        "--token-label",
        token,
        "--login",
        "--pin",
        USER_PIN,
        "--keygen",
        "--key-type",
        "AES:32",
        "--label",
        label,
        "--sensitive",
        "--private",
      ]);
    },
    keyRef(token, object, query = "") {
      return `pkcs11:token=${encodeURIComponent(token)};object=${encodeURIComponent(object)}?module-path=${module}&pin-source=file:${pinFile}${query}`;
    },
    async backup(token) {
      const source = await tokenDirectory(token);
      // Outside the token directory, where SoftHSM2 would take the copy for a second token.
      const copy = join(directory, `backup-${basename(source)}`);
      await cp(source, copy, { recursive: true });
      return async () => {
        await rm(source, { recursive: true, force: true });
        await cp(copy, source, { recursive: true });
      };
    },
    async stall(token, milliseconds) {
      const source = await tokenDirectory(token);
      const files = readdirSync(source).map((name) => join(source, name));
      // Python's fcntl.lockf takes the same kind of lock SoftHSM2 waits on (fcntl F_SETLKW).
      const holder = spawn(
        "python3",
        [
          "-c",
          "import fcntl, sys, time\nheld = [open(p, 'r+') for p in sys.argv[2:]]\nfor f in held: fcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(float(sys.argv[1]))",
          String(milliseconds / 1000),
          ...files,
        ],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      await new Promise<void>((resolve, reject) => {
        holder.stdout.once("data", () => resolve());
        holder.once("error", reject);
        holder.once("exit", (code) => reject(new Error(`the lock holder exited with ${code}`)));
      });
      return () => {
        holder.kill();
      };
    },
    async deleteToken(token) {
      await tool("softhsm2-util", ["--delete-token", "--token", token]);
    },
    admin: {
      generateKey(token, label, usage) {
        withSession(token, (api, opened) =>
          api.C_GenerateKey(opened, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
            { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
            { type: pkcs11js.CKA_VALUE_LEN, value: usage.bytes ?? 32 },
            { type: pkcs11js.CKA_LABEL, value: label },
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: false },
            { type: pkcs11js.CKA_ENCRYPT, value: usage.encrypt },
            { type: pkcs11js.CKA_DECRYPT, value: usage.decrypt },
            { type: pkcs11js.CKA_WRAP, value: true },
            { type: pkcs11js.CKA_UNWRAP, value: true },
          ]),
        );
      },
      setUsage(token, label, allowed) {
        withSession(token, (api, opened) =>
          api.C_SetAttributeValue(opened, findKey(api, opened, label), [
            { type: pkcs11js.CKA_ENCRYPT, value: allowed },
            { type: pkcs11js.CKA_DECRYPT, value: allowed },
          ]),
        );
      },
      finalize() {
        try {
          loaded().C_Finalize();
        } catch {
          // Not initialised in this process: there is nothing to finalise.
        }
      },
    },
    async stop() {
      await rm(directory, { recursive: true, force: true });
    },
  };
}
