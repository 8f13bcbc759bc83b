import { type LevelWithSilent, type Logger, pino } from "pino";

/** Log levels the daemon accepts on its command line. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/**
 * JSON logs on stdout with ISO timestamps. Redaction is a second line of defence: no code path
 * passes key material or plaintext to the logger, but if one ever did, these paths are masked.
 */
export function createLogger(level: LevelWithSilent, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: "kms-envelope" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ["plaintext", "ciphertext", "masterKey", "key", "token", "*.plaintext", "*.key"],
        censor: "[redacted]",
      },
    },
    destination ?? process.stdout,
  );
}

export type { Logger };
