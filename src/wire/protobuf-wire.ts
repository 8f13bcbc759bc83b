// The protobuf wire format (protobuf.dev/programming-guides/encoding) at the level the daemon's
// hot paths need it: tags, varints and length-delimited fields, read in place from the request
// buffer with no object per field. Messages with many shapes still go through protobufjs.

/** Wire types (the low three bits of a tag). */
const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

/** Thrown for bytes that are not a well-formed protobuf message. */
export class MalformedProtobufError extends Error {
  constructor(what: string) {
    super(`malformed protobuf: ${what}`);
    this.name = "MalformedProtobufError";
  }
}

// A varint is at most 10 bytes (64 bits); values past 2^53 cannot be a length or a tag here.
const MAX_VARINT_BYTES = 10;

/** A cursor over one message's bytes. Every read checks the end of the message. */
export class ProtobufReader {
  readonly bytes: Uint8Array;
  /** Where the next read starts. */
  offset: number;
  readonly #end: number;

  constructor(bytes: Uint8Array, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.offset = start;
    this.#end = end;
  }

  /** True once every byte was read. */
  get done(): boolean {
    return this.offset >= this.#end;
  }

  /** An unsigned varint; refused when truncated or above 2^53. */
  varint(): number {
    const bytes = this.bytes;
    let value = 0;
    let scale = 1;
    const last = Math.min(this.offset + MAX_VARINT_BYTES, this.#end);
    for (let at = this.offset; at < last; at++) {
      const byte = bytes[at] as number;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (value > Number.MAX_SAFE_INTEGER) throw new MalformedProtobufError("varint too large");
        this.offset = at + 1;
        return value;
      }
      scale *= 128;
    }
    throw new MalformedProtobufError("truncated varint");
  }

  /** A tag: field number × 8 + wire type. Field 0 does not exist. */
  tag(): number {
    const tag = this.varint();
    if (tag < 8) throw new MalformedProtobufError("field number 0");
    return tag;
  }

  /** The start and end of a length-delimited value; the cursor moves past it. */
  lengthDelimited(): number {
    const length = this.varint();
    const start = this.offset;
    if (length > this.#end - start) throw new MalformedProtobufError("length past the end");
    this.offset = start + length;
    return start;
  }

  /** Moves past the value of a field of this wire type (groups are refused, as proto3 has none). */
  skip(wireType: number): void {
    let next: number;
    switch (wireType) {
      case WIRE_VARINT:
        this.#skipVarint();
        return;
      case WIRE_FIXED64:
        next = this.offset + 8;
        break;
      case WIRE_LENGTH_DELIMITED:
        this.lengthDelimited();
        return;
      case WIRE_FIXED32:
        next = this.offset + 4;
        break;
      default:
        throw new MalformedProtobufError(`wire type ${wireType}`);
    }
    if (next > this.#end) throw new MalformedProtobufError("fixed-size value past the end");
    this.offset = next;
  }

  // Skipped varints may be any 64-bit value (a negative int64 takes ten bytes).
  #skipVarint(): void {
    const last = Math.min(this.offset + MAX_VARINT_BYTES, this.#end);
    for (let at = this.offset; at < last; at++) {
      if ((this.bytes[at] as number) < 0x80) {
        this.offset = at + 1;
        return;
      }
    }
    throw new MalformedProtobufError("truncated varint");
  }
}

/** Bytes a varint of `value` takes (value below 2^53). */
function varintSize(value: number): number {
  let size = 1;
  for (let rest = value; rest >= 0x80; rest = Math.floor(rest / 128)) size++;
  return size;
}

/** Bytes a length-delimited field of `length` bytes takes, tag included (field number < 16). */
export function lengthDelimitedSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/** Writes a varint at `offset`; returns where it ends. */
function writeVarint(out: Uint8Array, offset: number, value: number): number {
  let at = offset;
  let rest = value;
  while (rest >= 0x80) {
    out[at++] = (rest % 128) | 0x80;
    rest = Math.floor(rest / 128);
  }
  out[at++] = rest;
  return at;
}

/**
 * Writes field `field` (< 16) as a length-delimited header for `length` bytes at `offset`;
 * returns where the value goes.
 */
export function writeLengthDelimitedHeader(
  out: Uint8Array,
  offset: number,
  field: number,
  length: number,
): number {
  out[offset] = (field << 3) | WIRE_LENGTH_DELIMITED;
  return writeVarint(out, offset + 1, length);
}
