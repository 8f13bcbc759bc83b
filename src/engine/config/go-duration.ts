/**
 * Go's time.ParseDuration, which kube-apiserver applies to `kms.timeout` (a metav1.Duration).
 * Reimplemented rule for rule so that exactly the same strings are accepted: a sign, then one
 * or more decimal numbers each with a unit (ns, us, µs, μs, ms, s, m, h), or the bare "0".
 */

const NANOS_PER_UNIT: ReadonlyMap<string, bigint> = new Map([
  ["ns", 1n],
  ["us", 1_000n],
  ["µs", 1_000n], // U+00B5 micro sign
  ["μs", 1_000n], // U+03BC Greek small letter mu
  ["ms", 1_000_000n],
  ["s", 1_000_000_000n],
  ["m", 60_000_000_000n],
  ["h", 3_600_000_000_000n],
]);

/** Go's durations are int64 nanoseconds; parsing fails rather than wrapping past this. */
const MAX_MAGNITUDE = 1n << 63n;

type GoDurationResult =
  | { readonly ok: true; readonly nanoseconds: bigint }
  | { readonly ok: false; readonly error: string };

const isDigit = (c: string | undefined): boolean => c !== undefined && c >= "0" && c <= "9";

/** Parses `text` as Go does; errors carry Go's wording ("time: invalid duration ..."). */
export function parseGoDuration(text: string): GoDurationResult {
  const invalid: GoDurationResult = {
    ok: false,
    error: `time: invalid duration ${JSON.stringify(text)}`,
  };
  let s = text;
  let negative = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    negative = s.startsWith("-");
    s = s.slice(1);
  }
  if (s === "0") return { ok: true, nanoseconds: 0n };
  if (s === "") return invalid;

  let total = 0n;
  while (s !== "") {
    if (!(s[0] === "." || isDigit(s[0]))) return invalid;

    let i = 0;
    let whole = 0n;
    while (isDigit(s[i])) {
      // Go's leadingInt overflow checks, in its order.
      if (whole > MAX_MAGNITUDE / 10n) return invalid;
      whole = whole * 10n + BigInt(Number(s[i]));
      if (whole > MAX_MAGNITUDE) return invalid;
      i++;
    }
    const hasWhole = i > 0;
    s = s.slice(i);

    // Go keeps fraction digits only while they fit in an int64 and then ignores the rest.
    let fraction = 0n;
    let scale = 1;
    let hasFraction = false;
    if (s.startsWith(".")) {
      s = s.slice(1);
      let overflowed = false;
      i = 0;
      while (isDigit(s[i])) {
        if (!overflowed) {
          const next = fraction * 10n + BigInt(Number(s[i]));
          if (fraction > (MAX_MAGNITUDE - 1n) / 10n || next > MAX_MAGNITUDE) {
            overflowed = true;
          } else {
            fraction = next;
            scale *= 10;
          }
        }
        i++;
      }
      hasFraction = i > 0;
      s = s.slice(i);
    }
    if (!hasWhole && !hasFraction) return invalid; // "." or ".s"

    i = 0;
    while (i < s.length && !(s[i] === "." || isDigit(s[i]))) i++;
    if (i === 0) {
      return { ok: false, error: `time: missing unit in duration ${JSON.stringify(text)}` };
    }
    const unitName = s.slice(0, i);
    s = s.slice(i);
    const unit = NANOS_PER_UNIT.get(unitName);
    if (unit === undefined) {
      return {
        ok: false,
        error: `time: unknown unit ${JSON.stringify(unitName)} in duration ${JSON.stringify(text)}`,
      };
    }

    if (whole > MAX_MAGNITUDE / unit) return invalid;
    let value = whole * unit;
    if (fraction > 0n) {
      // float64 arithmetic, truncated, exactly as Go computes the fractional part.
      value += BigInt(Math.trunc(Number(fraction) * (Number(unit) / scale)));
      if (value > MAX_MAGNITUDE) return invalid;
    }
    total += value;
    if (total > MAX_MAGNITUDE) return invalid;
  }
  if (negative) return { ok: true, nanoseconds: -total };
  if (total > MAX_MAGNITUDE - 1n) return invalid;
  return { ok: true, nanoseconds: total };
}
