import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { etcdKeyReadings, resourceOfEtcdKey } from "../../../src/engine/etcd-key.js";
import { AWKWARD_CHARACTERS, outcome, PROTOTYPE_NAMES, runs } from "./fuzz-support.js";

const RENAMES = ["nodes", "replicationcontrollers", "ingresses"];
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

// Path segments as kube-apiserver writes them, and names a lookup table must not trip over.
const segment = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9]{0,12}$/),
  fc.constantFrom(
    "secrets",
    "services",
    "endpoints",
    "specs",
    "deployments",
    "ingress",
    "minions",
    "controllers",
    ...PROTOTYPE_NAMES,
  ),
);
const group = fc
  .array(fc.stringMatching(/^[a-z][a-z0-9-]{0,6}[a-z0-9]$/), { minLength: 2, maxLength: 3 })
  .map((labels) => labels.join("."));
const prefix = fc.constantFrom("/registry", "/registry/", "/cluster-a", "");

describe("fuzz: etcd keys", () => {
  it("arbitrary keys and prefixes never escape resourceOfEtcdKey as anything but InvalidRequestError", () => {
    const text = fc.oneof(
      fc.string({ unit: "binary", maxLength: 60 }),
      fc
        .array(fc.oneof(fc.constantFrom("/", "/registry", ".", ...AWKWARD_CHARACTERS), segment), {
          maxLength: 8,
        })
        .map((parts) => parts.join("")),
    );
    fc.assert(
      fc.property(text, fc.oneof(prefix, fc.string({ maxLength: 12 })), (key, root) => {
        const result = outcome(() => resourceOfEtcdKey(key, root), ["INVALID_REQUEST"]);
        if (result.ok) assert.equal(typeof result.value, "string");
      }),
      runs(2000),
    );
  });

  it("a built-in resource's key names that resource (or its rename), with at most a DNS group appended", () => {
    fc.assert(
      fc.property(prefix, segment, segment, (root, first, rest) => {
        const base = root.endsWith("/") ? root : `${root}/`;
        const resource = resourceOfEtcdKey(`${base}${first}/${rest}/x`, root);
        const [name, ...groups] = resource.split(".");
        if (first === "services") assert.ok(["services", "endpoints"].includes(resource));
        else assert.ok(name === first || RENAMES.includes(name as string), resource);
        if (groups.length > 0) assert.match(groups.join("."), DNS_SUBDOMAIN);
      }),
      runs(1000),
    );
  });

  it("every reading of any key is a split of it at a segment, and reading never throws", () => {
    const key = fc.oneof(
      fc.string({ unit: "binary", maxLength: 60 }),
      fc
        .array(fc.oneof(fc.constantFrom("/", ".", ...AWKWARD_CHARACTERS), segment, group), {
          maxLength: 10,
        })
        .map((parts) => parts.join("")),
      fc.array(fc.oneof(segment, group), { maxLength: 7 }).map((parts) => `/${parts.join("/")}`),
    );
    fc.assert(
      fc.property(key, (text) => {
        for (const reading of etcdKeyReadings(text)) {
          assert.ok(text.startsWith(`${reading.prefix}/`) && reading.prefix !== "", text);
          assert.equal(reading.resource, resourceOfEtcdKey(text, reading.prefix));
        }
      }),
      runs(2000),
    );
  });

  it("a key under a group names resource.group", () => {
    fc.assert(
      fc.property(group, segment, (groupName, resource) => {
        assert.equal(
          resourceOfEtcdKey(`/registry/${groupName}/${resource}/ns/x`),
          `${resource}.${groupName}`,
        );
      }),
      runs(500),
    );
  });
});
