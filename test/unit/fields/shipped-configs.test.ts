import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
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

describe("shipped deployment samples", () => {
  it("point every kms endpoint at the socket the static pod serves", async () => {
    const pod = parse(
      await readFile(join(PACKAGE_ROOT, "config/kms-envelope-static-pod.yaml"), "utf8"),
    ) as { spec: { containers: { args: string[] }[] } };
    const socketFlag = pod.spec.containers[0]?.args.find((arg) => arg.startsWith("--socket="));
    assert.equal(socketFlag, "--socket=unix:///var/run/kmsplugin/kms-envelope.sock");
    for (const name of ["encryption-configuration.yaml", "encryption-configuration-obot.yaml"]) {
      const config = await loadEncryptionConfiguration(join(PACKAGE_ROOT, "config", name));
      const endpoints = config.rules.flatMap((rule) =>
        rule.providers.flatMap((provider) =>
          provider.type === "kms" ? [provider.socketPath] : [],
        ),
      );
      assert.ok(endpoints.length > 0, `${name} has a kms provider`);
      for (const endpoint of endpoints)
        assert.equal(endpoint, "/var/run/kmsplugin/kms-envelope.sock", name);
    }
  });
});
