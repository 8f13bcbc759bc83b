/**
 * The metric names a PromQL expression reads, found by tokenizing it: what is left once
 * strings, numbers, durations, label matchers, grouping label lists, functions, aggregations
 * and keywords are set aside. promtool (Debian's 2.42) parses PromQL but cannot list the
 * selectors it found; this does, and promtool still checks that each expression parses.
 */

type Token =
  | { kind: "identifier"; text: string }
  | { kind: "string"; text: string }
  | { kind: "number" }
  | { kind: "punctuation"; text: string };

const AGGREGATIONS = new Set([
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  "limitk",
  "limit_ratio",
]);
// Each takes a parenthesised list of label names, which are not metrics.
const LABEL_LISTS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"]);

function unquote(quoted: string): string {
  if (quoted.startsWith("`")) return quoted.slice(1, -1);
  return quoted.slice(1, -1).replace(/\\(.)/g, "$1");
}

/** Splits PromQL into tokens; throws on an unterminated string. */
export function tokenize(expression: string): Token[] {
  const tokens: Token[] = [];
  let rest = expression;
  while (rest.length > 0) {
    const space = /^(?:\s+|#[^\n]*)/.exec(rest);
    if (space !== null) {
      rest = rest.slice(space[0].length);
      continue;
    }
    const quote = rest[0] as string;
    if (quote === '"' || quote === "'" || quote === "`") {
      const pattern =
        quote === "`" ? /^`[^`]*`/ : new RegExp(`^${quote}(?:[^${quote}\\\\]|\\\\.)*${quote}`);
      const string = pattern.exec(rest);
      if (string === null) throw new Error(`unterminated string in ${expression}`);
      tokens.push({ kind: "string", text: unquote(string[0]) });
      rest = rest.slice(string[0].length);
      continue;
    }
    // Numbers, hex, exponents and durations (5m, 1h30m) all start with a digit or a dot.
    const number = /^(?:[0-9]|\.[0-9])[0-9a-zA-Z_.]*(?:[eE][+-][0-9]+)?/.exec(rest);
    if (number !== null) {
      tokens.push({ kind: "number" });
      rest = rest.slice(number[0].length);
      continue;
    }
    const identifier = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(rest);
    if (identifier !== null) {
      tokens.push({ kind: "identifier", text: identifier[0] });
      rest = rest.slice(identifier[0].length);
      continue;
    }
    tokens.push({ kind: "punctuation", text: rest[0] as string });
    rest = rest.slice(1);
  }
  return tokens;
}

/** Index just past the bracket that closes the one at `open`. */
function skipGroup(tokens: Token[], open: number, opening: string, closing: string): number {
  let depth = 0;
  for (let index = open; index < tokens.length; index++) {
    const token = tokens[index] as Token;
    if (token.kind !== "punctuation") continue;
    if (token.text === opening) depth++;
    else if (token.text === closing && --depth === 0) return index + 1;
  }
  throw new Error(`unbalanced ${opening}${closing}`);
}

function isPunctuation(token: Token | undefined, text: string): boolean {
  return token?.kind === "punctuation" && token.text === text;
}

/** Every metric name `expression` selects, `{__name__="…"}` matchers included. */
export function metricNames(expression: string): Set<string> {
  const tokens = tokenize(expression);
  const names = new Set<string>();
  let index = 0;
  while (index < tokens.length) {
    const token = tokens[index] as Token;
    if (isPunctuation(token, "{")) {
      const end = skipGroup(tokens, index, "{", "}");
      for (let inner = index + 1; inner < end; inner++) {
        const label = tokens[inner];
        const value = tokens[inner + 2];
        if (
          label?.kind === "identifier" &&
          label.text === "__name__" &&
          isPunctuation(tokens[inner + 1], "=") &&
          value?.kind === "string"
        )
          names.add(value.text);
      }
      index = end;
      continue;
    }
    if (isPunctuation(token, "[")) {
      index = skipGroup(tokens, index, "[", "]");
      continue;
    }
    if (token.kind !== "identifier") {
      index++;
      continue;
    }
    const next = tokens[index + 1];
    const word = token.text.toLowerCase();
    if (LABEL_LISTS.has(word)) {
      index = isPunctuation(next, "(") ? skipGroup(tokens, index + 1, "(", ")") : index + 1;
      continue;
    }
    const isCall = isPunctuation(next, "(");
    const isAggregation =
      AGGREGATIONS.has(word) &&
      next?.kind === "identifier" &&
      ["by", "without"].includes(next.text.toLowerCase());
    if (!isCall && !isAggregation && !KEYWORDS.has(word)) names.add(token.text);
    index++;
  }
  return names;
}

/** The metric name and label names of one series in `name{label="value", …}` notation. */
export function seriesShape(series: string): { name: string; labels: string[] } {
  const tokens = tokenize(series);
  const first = tokens[0];
  if (first?.kind !== "identifier") throw new Error(`not a series: ${series}`);
  const labels: string[] = [];
  for (let index = 1; index < tokens.length; index++) {
    const token = tokens[index] as Token;
    if (token.kind === "identifier" && isPunctuation(tokens[index + 1], "="))
      labels.push(token.text);
  }
  return { name: first.text, labels: labels.sort() };
}
