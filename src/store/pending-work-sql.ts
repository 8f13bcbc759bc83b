/**
 * The SQL both backends run to find what rewrap has to do, written once for both dialects:
 * fields whose stamp names another writer, lookup fields without a token under the primary
 * master-key version, and values at encrypted paths that have no stamp at all (plaintext left
 * from before the field map listed them).
 */
import type { RewrapTarget } from "./repository.js";

type Dialect = "sqlite" | "postgres";

/**
 * Parameters in the order the SQL text uses them, rendered as SQLite's positional `?` or
 * PostgreSQL's numbered `$n`, so one builder serves both.
 */
class Parameters {
  readonly values: unknown[] = [];
  readonly #dialect: Dialect;

  constructor(dialect: Dialect) {
    this.#dialect = dialect;
  }

  add(value: unknown): string {
    this.values.push(value);
    return this.#dialect === "sqlite" ? "?" : `$${this.values.length}`;
  }
}

// Lookup tokens are `kmsl:v1:<key id>:<tag>` (SPEC.md §2.1); the store reads the key id only.
const TOKEN_PREFIX = "kmsl:v1:";

/**
 * The key id of `kmsl:v1:<key id>:<22-character tag>` as SQL over the `token` column (the same
 * in SQLite and PostgreSQL): the text between the 8-character prefix and the last 23 characters.
 * A token too short for that shape (only a hand-edited row) counts under the empty key id, so it
 * is reported as not under the primary version (and rewrap replaces it) instead of failing the
 * count: PostgreSQL refuses a negative substring length.
 */
export const TOKEN_KEY_ID_SQL =
  "CASE WHEN length(token) > 31 THEN substr(token, 9, length(token) - 31) ELSE '' END";

/**
 * A correlated subquery kept as one: PostgreSQL would otherwise turn it into a join planned from
 * statistics, and on tables filled since they were last analyzed it chose a nested loop over
 * every row of the other table for each row (a count over 100,000 records did not finish in five
 * minutes). An OFFSET keeps it a per-row probe of the primary key, whatever the statistics say.
 * SQLite always runs it as a probe.
 */
function probe(dialect: Dialect, subquery: string): string {
  return dialect === "postgres" ? `(${subquery} OFFSET 0)` : `(${subquery})`;
}

/**
 * Over kmse_field_stamps: a stamp at one of the target's paths written by someone else, or at
 * one of its lookup paths with no token under the primary version.
 */
function staleStamp(dialect: Dialect, target: RewrapTarget, parameters: Parameters): string {
  const clauses = target.writers.map(
    (writer) =>
      `(path = ${parameters.add(writer.path)} AND (provider <> ${parameters.add(writer.provider)} OR key_id <> ${parameters.add(writer.keyId)}))`,
  );
  for (const version of target.tokens ?? []) {
    const prefix = `${TOKEN_PREFIX}${version.keyId}:`;
    // A stamp at a lookup path means the value is present, so a token belongs beside it; the
    // token's key id is compared by prefix, since it is only part of the token's text.
    clauses.push(
      `(path = ${parameters.add(version.path)} AND NOT EXISTS ${probe(dialect, `SELECT 1 FROM kmse_lookup_tokens t WHERE t.resource = kmse_field_stamps.resource AND t.record_id = kmse_field_stamps.record_id AND t.path = kmse_field_stamps.path AND substr(t.token, 1, length(CAST(${parameters.add(prefix)} AS TEXT))) = CAST(${parameters.add(prefix)} AS TEXT)`)})`,
    );
  }
  return clauses.length === 0 ? "FALSE" : `(${clauses.join(" OR ")})`;
}

/**
 * Over kmse_records `r`: a present, non-null value at `path` with no stamp there, i.e. a value
 * the store holds in the clear. Field-map paths are names of letters, digits, `_` and `-`, so
 * each step can be quoted in a SQLite JSON path as it is.
 */
function plaintextAt(dialect: Dialect, path: string, parameters: Parameters): string {
  const steps = path.split(".");
  // The stamp is probed first (CASE keeps that order): most records have one at every
  // encrypted path, and the probe is an index lookup where the JSON test parses the document.
  const stamped = `EXISTS ${probe(dialect, `SELECT 1 FROM kmse_field_stamps s WHERE s.resource = r.resource AND s.record_id = r.id AND s.path = ${parameters.add(path)}`)}`;
  const type =
    dialect === "sqlite"
      ? `json_type(r.document, ${parameters.add(`$${steps.map((step) => `."${step}"`).join("")}`)})`
      : `jsonb_typeof(r.document::jsonb #> ${parameters.add(steps)}::text[])`;
  return `(CASE WHEN ${stamped} THEN FALSE ELSE coalesce(${type}, 'null') <> 'null' END)`;
}

/** A query and its parameters. */
export interface Query {
  readonly sql: string;
  readonly parameters: unknown[];
}

/** The id range of a page, as conditions on `column`. */
function range(
  page: { afterId: string; throughId?: string } | undefined,
  column: string,
  parameters: Parameters,
): string {
  if (page === undefined) return "";
  const after = ` AND ${column} > ${parameters.add(page.afterId)}`;
  return page.throughId === undefined
    ? after
    : `${after} AND ${column} <= ${parameters.add(page.throughId)}`;
}

/**
 * The ids (column `record_id`) of records of `resource` that need rewrap under `target`, after
 * `afterId` (and up to `throughId` when given) in id order, at most `limit`; or, without `page`,
 * how many there are (column `count`).
 */
export function recordsNotUnderQuery(
  dialect: Dialect,
  resource: string,
  target: RewrapTarget,
  page?: { afterId: string; throughId?: string; limit: number },
): Query {
  const parameters = new Parameters(dialect);
  const count = dialect === "sqlite" ? "count(*)" : "count(*)::int";
  const plaintext = target.plaintext ?? [];
  if (plaintext.length === 0) {
    // Stamps alone say what needs work: an index scan of kmse_field_stamps, no document read.
    const select =
      page === undefined
        ? `${count} AS count FROM (SELECT DISTINCT record_id`
        : "SELECT DISTINCT record_id";
    const where = `WHERE resource = ${parameters.add(resource)}${range(page, "record_id", parameters)} AND ${staleStamp(dialect, target, parameters)}`;
    return {
      sql:
        page === undefined
          ? `SELECT ${select} FROM kmse_field_stamps ${where}) pending`
          : `${select} FROM kmse_field_stamps ${where} ORDER BY record_id LIMIT ${parameters.add(page.limit)}`,
      parameters: parameters.values,
    };
  }
  const head = `FROM kmse_records r WHERE r.resource = ${parameters.add(resource)}${range(page, "r.id", parameters)}`;
  const stale = `EXISTS ${probe(dialect, `SELECT 1 FROM kmse_field_stamps WHERE kmse_field_stamps.resource = r.resource AND kmse_field_stamps.record_id = r.id AND ${staleStamp(dialect, target, parameters)}`)}`;
  const clear = plaintext.map((path) => plaintextAt(dialect, path, parameters));
  const condition = `(${[stale, ...clear].join(" OR ")})`;
  return {
    sql:
      page === undefined
        ? `SELECT ${count} AS count ${head} AND ${condition}`
        : `SELECT r.id AS record_id ${head} AND ${condition} ORDER BY r.id LIMIT ${parameters.add(page.limit)}`,
    parameters: parameters.values,
  };
}

/** How many records of `resource` hold `path` in the clear (column `count`). */
export function plaintextCountQuery(dialect: Dialect, resource: string, path: string): Query {
  const parameters = new Parameters(dialect);
  const count = dialect === "sqlite" ? "count(*)" : "count(*)::int";
  const sql = `SELECT ${count} AS count FROM kmse_records r WHERE r.resource = ${parameters.add(resource)} AND ${plaintextAt(dialect, path, parameters)}`;
  return { sql, parameters: parameters.values };
}

/**
 * How many records of `resource` hold a value at the lookup field `path` (it has a stamp) but no
 * token there under any version (column `count`).
 */
export function missingTokensQuery(dialect: Dialect, resource: string, path: string): Query {
  const parameters = new Parameters(dialect);
  const count = dialect === "sqlite" ? "count(*)" : "count(*)::int";
  const sql = `SELECT ${count} AS count FROM kmse_field_stamps s WHERE s.resource = ${parameters.add(resource)} AND s.path = ${parameters.add(path)} AND NOT EXISTS ${probe(dialect, "SELECT 1 FROM kmse_lookup_tokens t WHERE t.resource = s.resource AND t.record_id = s.record_id AND t.path = s.path")}`;
  return { sql, parameters: parameters.values };
}
