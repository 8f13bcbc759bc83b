import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadEncryptionConfiguration } from "../../../src/engine/config/encryption-configuration.js";
import { providersFor } from "../../../src/engine/config/resource-lookup.js";
import { loadFieldMap } from "../../../src/fields/field-map.js";
import { PACKAGE_ROOT } from "../../../src/package-info.js";

describe("shipped Obot configuration", () => {
  it("encrypts every engine resource of the Obot field map with kms v2 first", async () => {
    const config = await loadEncryptionConfiguration(
      join(PACKAGE_ROOT, "config/encryption-configuration-obot.yaml"),
    );
    const map = await loadFieldMap(join(PACKAGE_ROOT, "config/field-map-obot.yaml"));
    for (const spec of map.resources.values()) {
      assert.equal(spec.route, "engine", spec.resource);
      const [first] = providersFor(config, spec.resource);
      assert.equal(first?.type, "kms", `${spec.resource} is written by the kms provider`);
    }
  });
});
