/**
 * Rewrap progress: a bar (cli-progress) when the output is a terminal, and plain lines at most
 * every few seconds otherwise, so logs of a long run show it advancing without drowning.
 * Only resource names and counts are shown.
 */
import cliProgress from "cli-progress";
import type { RewrapProgress } from "./rewrap.js";

/** Spacing of plain progress lines. */
const LINE_INTERVAL_MS = 5_000;

/** A bar on a terminal, lines otherwise. */
export function progressFor(stream: NodeJS.WriteStream): RewrapProgress {
  return stream.isTTY ? new BarProgress(stream) : new LineProgress(stream);
}

class BarProgress implements RewrapProgress {
  readonly #bar: cliProgress.SingleBar;
  #value = 0;
  #total = 0;
  #started = 0;

  constructor(stream: NodeJS.WriteStream) {
    this.#bar = new cliProgress.SingleBar(
      {
        stream,
        format:
          "rewrap {resource} [{bar}] {percentage}% | {value}/{total} records | {rate} records/s | ETA {eta_formatted}",
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  begin(resource: string, total: number): void {
    this.#value = 0;
    this.#total = total;
    this.#started = Date.now();
    this.#bar.start(total, 0, { resource, rate: 0 });
  }

  advance(records: number): void {
    this.#value = Math.min(this.#total, this.#value + records);
    const seconds = (Date.now() - this.#started) / 1000;
    this.#bar.update(this.#value, { rate: seconds > 0 ? Math.round(this.#value / seconds) : 0 });
  }

  end(): void {
    this.#bar.stop();
  }
}

class LineProgress implements RewrapProgress {
  readonly #stream: NodeJS.WritableStream;
  #resource = "";
  #total = 0;
  #value = 0;
  #started = 0;
  #lastLine = 0;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
  }

  begin(resource: string, total: number): void {
    this.#resource = resource;
    this.#total = total;
    this.#value = 0;
    this.#started = Date.now();
    this.#lastLine = this.#started;
    this.#line();
  }

  advance(records: number): void {
    this.#value = Math.min(this.#total, this.#value + records);
    if (Date.now() - this.#lastLine >= LINE_INTERVAL_MS) this.#line();
  }

  end(): void {
    this.#line();
  }

  #line(): void {
    this.#lastLine = Date.now();
    const seconds = (this.#lastLine - this.#started) / 1000;
    const percent = this.#total === 0 ? 100 : Math.floor((100 * this.#value) / this.#total);
    const rate = seconds > 0 ? Math.round(this.#value / seconds) : 0;
    this.#stream.write(
      `rewrap: ${this.#resource} ${this.#value}/${this.#total} records (${percent}%), ${rate} records/s\n`,
    );
  }
}
