import { KmsEnvelopeError } from "../errors.js";

// Enough names to spot the intended one; a map with hundreds of resources would drown the message.
const LISTED = 12;
// Resource names are short (Kubernetes caps them at 253 characters); longer input gets no
// suggestion rather than a quadratic comparison.
const COMPARED = 253;
const QUOTED = 100;

/**
 * Raised when a resource the field map does not list is sealed, opened or stored: without this,
 * a mistyped name (`message` for `messages`) would leave every sensitive field in the clear.
 */
export class UnmappedResourceError extends KmsEnvelopeError {
  /**
   * Code `UNMAPPED_RESOURCE`. The message names the resource, the nearest known name when one
   * is a few edits away, up to 12 known names, and how to store the resource in the clear on
   * purpose.
   *
   * @param resource - The name that was given.
   * @param known - The resources the field map lists.
   */
  constructor(resource: string, known: readonly string[]) {
    const names = [...known].sort();
    const near = closest(resource, names);
    const listed = names.slice(0, LISTED).map(quote).join(", ");
    const more = names.length > LISTED ? ` and ${names.length - LISTED} more` : "";
    super(
      "UNMAPPED_RESOURCE",
      `resource ${quote(resource)} is not in the field map, so none of its fields would be encrypted` +
        (near === undefined ? "" : ` (did you mean ${quote(near)}?)`) +
        `; known resources: ${listed || "none"}${more}` +
        `; to store it in the clear on purpose, list it in the field map with no fields` +
        ` (- resource: ${quote(resource)}) or pass --allow-unmapped (allowUnmapped: true in the library)`,
    );
    this.name = "UnmappedResourceError";
  }
}

/** JSON quoting keeps the message on one line whatever the name holds. */
function quote(name: string): string {
  return name.length > QUOTED ? `${JSON.stringify(name.slice(0, QUOTED))}…` : JSON.stringify(name);
}

/**
 * The known resource nearest to a mistyped one: a few edits away (a plural, a swapped or missing
 * letter, another case), or a bare name given for a group-qualified one (`users` for
 * `users.obot.obot.ai`).
 */
function closest(resource: string, known: readonly string[]): string | undefined {
  if (resource.length > COMPARED) return undefined;
  const wanted = resource.toLowerCase();
  const tolerance = Math.max(1, Math.min(3, Math.floor(wanted.length / 4)));
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const forms = wanted.includes(".") ? [name] : [name, name.split(".")[0] ?? name];
    const distance = Math.min(...forms.map((form) => editDistance(wanted, form.toLowerCase())));
    if (distance <= tolerance && (best === undefined || distance < best.distance))
      best = { name, distance };
  }
  return best?.name;
}

/** Levenshtein distance (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = current;
  }
  return previous[b.length] as number;
}
