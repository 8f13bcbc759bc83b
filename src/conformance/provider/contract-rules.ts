import { providerNameSchema } from "../../config/schemas.js";
import { Findings, type Rule } from "../report.js";
import { exposedText, findSecret } from "../secret-scan.js";
import { CONTEXT, type ProviderRun, seen, wrapped } from "./run.js";

export const describeRule: Rule<ProviderRun> = {
  id: "provider.describe",
  title: "name and describe() are valid, public and stable",
  async check(run) {
    const findings = new Findings();
    const provider = await run.provider();
    const named = providerNameSchema.safeParse(provider.name).success;
    findings.expect(
      named,
      `name ${JSON.stringify(provider.name)} ${named ? "is" : "is not"} a provider name, lowercase and at most 32 characters (the key-id prefix)`,
    );
    const first = provider.describe();
    findings.expect(
      first.provider === provider.name,
      `describe().provider is ${JSON.stringify(first.provider)}, name is ${JSON.stringify(provider.name)}`,
    );
    findings.expect(
      typeof first.keyRef === "string" && first.keyRef.length > 0 && first.keyRef.length <= 2048,
      `describe().keyRef is a ${typeof first.keyRef} of ${String(first.keyRef).length} characters (1..2048 wanted)`,
    );
    const text = JSON.stringify(first);
    const key = run.newKey(32);
    const wrap = await run.attempt(() => provider.wrapKey(key, CONTEXT));
    if (wrap.ok) await run.attempt(() => provider.unwrapKey(wrap.value, CONTEXT));
    await run.attempt(() => provider.checkHealth());
    const again = JSON.stringify(provider.describe());
    findings.expect(
      again === text,
      `describe() after wrap, unwrap and checkHealth: ${again === text ? "unchanged" : `changed to ${again.slice(0, 200)}`}`,
    );
    const other = JSON.stringify((await run.provider()).describe());
    findings.expect(
      other === text,
      `a second instance for the same key describes ${other === text ? "the same key" : `another: ${other.slice(0, 200)}`}`,
    );
    return findings.outcome();
  },
};

export const closeRule: Rule<ProviderRun> = {
  id: "provider.close",
  title: "close() can be called twice; later calls are refused",
  async check(run) {
    const findings = new Findings();
    const setup = await wrapped(run, findings);
    if (setup === undefined) return findings.outcome();
    for (const label of ["first", "second"]) {
      const closed = await run.attempt(() =>
        withDeadline(setup.provider.close(), 5000, `${label} close()`),
      );
      findings.expect(closed.ok, `${label} close() ${seen(closed)}`);
    }
    const calls: [string, () => Promise<unknown>][] = [
      ["wrapKey", () => setup.provider.wrapKey(run.newKey(32), CONTEXT)],
      ["unwrapKey", () => setup.provider.unwrapKey(setup.wrapped, CONTEXT)],
    ];
    for (const [operation, call] of calls) {
      const after = await run.attempt(() =>
        withDeadline(call(), 5000, `${operation} after close()`),
      );
      // Legal: the daemon never calls a closed provider; answering with wiped key material
      // would still be a trap for other callers, so it is worth a warning.
      if (after.ok) findings.warn(`${operation} after close() succeeded`);
      else findings.note(`${operation} after close() ${seen(after)}`);
    }
    return findings.outcome();
  },
};

export const noSecretsRule: Rule<ProviderRun> = {
  id: "provider.no-secrets",
  title: "no key material in errors or output (checked over the whole run)",
  async check(run) {
    const findings = new Findings();
    // A few more failures with key material in play, in case the rules above saw none.
    const provider = await run.provider();
    const key = run.newKey(32);
    await run.attempt(() => provider.unwrapKey(key, CONTEXT));
    await run.attempt(() => provider.wrapKey(run.newKey(7), CONTEXT));
    for (const error of run.errors) {
      const leak = findSecret(exposedText(error), run.secrets);
      if (leak !== undefined)
        // The leaking message itself is not quoted: the report would repeat the leak.
        findings.fail(
          `an error (${error instanceof Error ? error.name : typeof error}) exposes ${leak}`,
        );
    }
    const leak = findSecret(run.output.join(""), run.secrets);
    if (leak !== undefined) findings.fail(`stdout/stderr during the run contain ${leak}`);
    const description = findSecret(JSON.stringify(provider.describe()), run.secrets);
    if (description !== undefined) findings.fail(`describe() contains ${description}`);
    findings.note(
      `${run.errors.length} errors and ${run.output.length} output writes searched for ${run.secrets.length} keys`,
    );
    return findings.outcome();
  },
};

function withDeadline<T>(promise: Promise<T>, milliseconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${milliseconds} ms`)),
      milliseconds,
    );
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
