import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { providersFor } from "../../../../src/engine/config/resource-lookup.js";
import type { ProviderConfig } from "../../../../src/engine/config/types.js";
import { document, parse } from "./helpers.js";

/** A kms v2 provider whose name tells which rule matched. */
const kms = (name: string) => ({
  kms: { apiVersion: "v2", name, endpoint: `unix:///run/${name}.sock` },
});
const names = (providers: readonly ProviderConfig[]): string[] =>
  providers.map((p) => (p.type === "kms" ? p.name : p.type));

const config = parse(
  document([
    { resources: ["secrets", "deployments.apps"], providers: [kms("exact"), { identity: {} }] },
    { resources: ["users.obot.obot.ai"], providers: [kms("obot-users")] },
    { resources: ["*."], providers: [kms("core")] },
    { resources: ["*.apps", "*.obot.obot.ai"], providers: [kms("group")] },
    { resources: ["*.*"], providers: [kms("everything")] },
  ]),
);

describe("providersFor", () => {
  test("an exact resource wins over every wildcard", () => {
    assert.deepEqual(names(providersFor(config, "secrets")), ["exact", "identity"]);
    assert.deepEqual(names(providersFor(config, "deployments.apps")), ["exact", "identity"]);
    assert.deepEqual(names(providersFor(config, "users.obot.obot.ai")), ["obot-users"]);
  });

  test("then *.group, with the group everything after the first dot", () => {
    assert.deepEqual(names(providersFor(config, "statefulsets.apps")), ["group"]);
    assert.deepEqual(names(providersFor(config, "identities.obot.obot.ai")), ["group"]);
    // group "obot.ai" is another group: only *.* covers it.
    assert.deepEqual(names(providersFor(config, "users.obot.ai")), ["everything"]);
  });

  test("*. covers the core group: resources without a dot", () => {
    assert.deepEqual(names(providersFor(config, "configmaps")), ["core"]);
    assert.deepEqual(names(providersFor(config, "configmaps.")), ["core"]);
    assert.deepEqual(names(providersFor(config, "secrets.")), ["exact", "identity"]);
  });

  test("then *.*", () => {
    assert.deepEqual(names(providersFor(config, "leases.coordination.k8s.io")), ["everything"]);
  });

  test("else identity alone", () => {
    const narrow = parse(document([{ resources: ["secrets"], providers: [kms("only")] }]));
    assert.deepEqual(providersFor(narrow, "configmaps"), [{ type: "identity" }]);
    assert.deepEqual(providersFor(narrow, "deployments.apps"), [{ type: "identity" }]);
    assert.ok(Object.isFrozen(providersFor(narrow, "pods")), "identity list is frozen");
  });

  test("*. does not cover other groups", () => {
    const core = parse(document([{ resources: ["*."], providers: [kms("core")] }]));
    assert.deepEqual(names(providersFor(core, "pods")), ["core"]);
    assert.deepEqual(providersFor(core, "deployments.apps"), [{ type: "identity" }]);
  });

  test("a resource named in several entries gets all their providers, earlier first", () => {
    const twice = parse(
      document([
        { resources: ["secrets"], providers: [kms("first")] },
        { resources: ["configmaps", "secrets"], providers: [kms("second"), { identity: {} }] },
      ]),
    );
    assert.deepEqual(names(providersFor(twice, "secrets")), ["first", "second", "identity"]);
    assert.deepEqual(names(providersFor(twice, "configmaps")), ["second", "identity"]);
  });

  test("returns the configuration's own provider objects, frozen", () => {
    const providers = providersFor(config, "secrets");
    assert.equal(providers[0], config.rules[0]?.providers[0]);
    assert.ok(Object.isFrozen(providers), "frozen list");
    assert.equal(providersFor(config, "secrets"), providers, "the lookup is indexed once");
  });
});
