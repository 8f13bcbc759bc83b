import { parentPort } from "node:worker_threads";
import { wipe } from "../src/crypto/wipe.js";
import { type TokenFacts, tokenFacts } from "./pkcs11-errors.js";
import { acquireModule, type SharedModule } from "./pkcs11-module.js";
import {
  type FromModuleThread,
  StaleConnection,
  type ToModuleThread,
  toTokenFailure,
} from "./pkcs11-protocol.js";
import { Connection, RefusedPin } from "./pkcs11-token.js";
import { type Pkcs11KeyReference, parsePkcs11Uri } from "./pkcs11-uri.js";
import { ProviderError } from "./types.js";

// The thread that owns one PKCS#11 module for the process: every call into the module runs
// here, so a token that hangs in a synchronous call holds this thread, never the daemon's
// event loop. Each provider instance has its own connection (sessions, login, key handle).

const port = parentPort;
if (port === null) throw new Error("pkcs11-worker.ts runs only as a worker thread");

/** One provider instance's view of its key. */
class Instance {
  readonly reference: Pkcs11KeyReference;
  readonly facts: TokenFacts;
  readonly environment: NodeJS.ProcessEnv;
  readonly refusedPin = new RefusedPin();
  module: SharedModule | undefined;
  pending: Promise<Connection> | undefined;
  current: Connection | undefined;

  constructor(keyRef: string, environmentPin: string | undefined) {
    this.reference = parsePkcs11Uri(keyRef);
    this.facts = tokenFacts(this.reference);
    const source = this.reference.pinSource;
    this.environment =
      source?.kind === "env" && environmentPin !== undefined
        ? { [source.variable]: environmentPin }
        : {};
  }

  /** The current connection, opened once for every request waiting on it. */
  connect(): Promise<Connection> {
    if (this.pending !== undefined) return this.pending;
    const opening = (async () => {
      // A module that did not load is tried again next time: it may have been installed since.
      this.module ??= acquireModule(this.reference.modulePath);
      const connection = await Connection.open(this.module, {
        reference: this.reference,
        facts: this.facts,
        environment: this.environment,
        refusedPin: this.refusedPin,
      });
      this.current = connection;
      return connection;
    })();
    this.pending = opening;
    // A failed opening is not kept: the next request tries again (the token may be back).
    opening.catch(() => {
      if (this.pending === opening) this.pending = undefined;
    });
    return opening;
  }

  discard(connection: Connection): void {
    if (this.current === connection) {
      this.current = undefined;
      this.pending = undefined;
    }
    connection.close();
  }

  async close(): Promise<void> {
    const pending = this.pending;
    this.pending = undefined;
    this.current = undefined;
    (await pending?.catch(() => undefined))?.close();
    const module = this.module;
    this.module = undefined;
    await module?.release();
  }
}

const instances = new Map<number, Instance>();
const cancelled = new Map<number, AbortController>();

function send(message: FromModuleThread, transfer: ArrayBuffer[] = []): void {
  (port as NonNullable<typeof port>).postMessage(message, transfer);
}

async function operate(message: Extract<ToModuleThread, { kind: "encrypt" | "decrypt" }>) {
  const controller = new AbortController();
  cancelled.set(message.id, controller);
  const remaining = message.deadline - Date.now();
  const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(Math.max(0, remaining))]);
  const input = Buffer.from(message.input.buffer, message.input.byteOffset, message.input.length);
  try {
    const instance = instances.get(message.instance);
    if (instance === undefined) throw new ProviderError("other", "the pkcs11 provider is closed");
    // Requests that waited out their caller behind a hung call are dropped, not run.
    signal.throwIfAborted();
    const connection = await instance.connect();
    try {
      const iv = Buffer.from(message.iv);
      const aad = Buffer.from(message.aad);
      const result =
        message.kind === "encrypt"
          ? await connection.encrypt(input, iv, aad, signal)
          : await connection.decrypt(input, iv, aad, signal);
      // Its own buffer, moved to the provider: no copy of an unwrapped key stays here.
      const owned = Uint8Array.from(result);
      wipe(result);
      send({ kind: "result", id: message.id, bytes: owned }, [owned.buffer as ArrayBuffer]);
    } catch (error) {
      if (error instanceof StaleConnection) instance.discard(connection);
      throw error;
    }
  } catch (error) {
    send({
      kind: "failure",
      id: message.id,
      failure: signal.aborted
        ? { kind: "final", errorClass: "other", message: "the request was given up" }
        : toTokenFailure(error),
    });
  } finally {
    cancelled.delete(message.id);
    // The plaintext key of a wrap came in this message's buffer.
    wipe(input);
  }
}

port.on("message", (message: ToModuleThread) => {
  switch (message.kind) {
    case "open":
      instances.set(message.instance, new Instance(message.keyRef, message.environmentPin));
      return;
    case "encrypt":
    case "decrypt":
      void operate(message);
      return;
    case "cancel":
      cancelled.get(message.id)?.abort();
      return;
    case "close": {
      const instance = instances.get(message.instance);
      instances.delete(message.instance);
      void (instance?.close() ?? Promise.resolve()).finally(() =>
        send({ kind: "closed", id: message.id }),
      );
      return;
    }
  }
});
