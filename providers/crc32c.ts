/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, RFC 3720 §B.4), the checksum Cloud KMS
 * uses for its end-to-end integrity fields. `zlib.crc32` is the IEEE polynomial, not this one.
 */

const POLYNOMIAL = 0x82f63b78;

// The classic byte-at-a-time table: entry n is the CRC of the single byte n.
const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let byte = 0; byte < 256; byte += 1) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL : crc >>> 1;
    table[byte] = crc >>> 0;
  }
  return table;
})();

/** CRC-32C of `data` as an unsigned 32-bit integer (0 for empty input). */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
