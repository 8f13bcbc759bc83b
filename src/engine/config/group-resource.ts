/**
 * Resource names as the apiserver reads them from an EncryptionConfiguration:
 * `resource.group`, split at the FIRST dot (apimachinery schema.ParseGroupResource). So
 * `users.obot.obot.ai` is resource `users` in group `obot.obot.ai`, `secrets` and `secrets.`
 * are both the core-group `secrets`, `*.` is every core resource and `*.*` everything.
 */
export interface GroupResource {
  readonly group: string;
  readonly resource: string;
}

export const ANY_GROUP_ANY_RESOURCE: GroupResource = Object.freeze({ group: "*", resource: "*" });

export function parseGroupResource(text: string): GroupResource {
  const dot = text.indexOf(".");
  return dot < 0
    ? { group: "", resource: text }
    : { group: text.slice(dot + 1), resource: text.slice(0, dot) };
}

/** The `*.group` rule that covers every resource of `gr`'s group. */
export function anyResourceIn(gr: GroupResource): GroupResource {
  return { group: gr.group, resource: "*" };
}

export function sameGroupResource(a: GroupResource, b: GroupResource): boolean {
  return a.group === b.group && a.resource === b.resource;
}

/** A collision-free map key (groups and resources may both contain any character). */
export function groupResourceKey(gr: GroupResource): string {
  return JSON.stringify([gr.group, gr.resource]);
}

/** How the apiserver names a rule in messages: `*.` for the core wildcard, else `resource[.group]`. */
export function formatGroupResource(gr: GroupResource): string {
  if (gr.group === "" && gr.resource === "*") return "*.";
  return gr.group === "" ? gr.resource : `${gr.resource}.${gr.group}`;
}
