import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { etcdKeyReadings, resourceOfEtcdKey } from "../../../src/engine/etcd-key.js";

describe("resourceOfEtcdKey", () => {
  const cases: [string, string][] = [
    ["/registry/secrets/default/db", "secrets"],
    ["/registry/configmaps/kube-system/x", "configmaps"],
    ["/registry/deployments/default/web", "deployments.apps"],
    ["/registry/jobs/default/j", "jobs.batch"],
    ["/registry/ingress/default/i", "ingresses.networking.k8s.io"],
    ["/registry/minions/node-1", "nodes"],
    ["/registry/controllers/default/rc", "replicationcontrollers"],
    ["/registry/services/specs/default/svc", "services"],
    ["/registry/services/endpoints/default/svc", "endpoints"],
    ["/registry/example.com/widgets/default/w", "widgets.example.com"],
    ["/registry/obot.obot.ai/users/u1", "users.obot.obot.ai"],
  ];
  for (const [key, resource] of cases)
    it(`${key} → ${resource}`, () => assert.equal(resourceOfEtcdKey(key), resource));

  it("honours a custom etcd prefix and refuses keys outside it", () => {
    assert.equal(resourceOfEtcdKey("/cluster-a/secrets/ns/x", "/cluster-a"), "secrets");
    assert.throws(
      () => resourceOfEtcdKey("/other/secrets/ns/x"),
      /is not under \/registry\/: pass --etcd-prefix or --resource/,
    );
    assert.throws(() => resourceOfEtcdKey("/registry/"), /names no resource/);
    assert.throws(
      () => resourceOfEtcdKey("/registry/example.com"),
      /names a group but no resource/,
    );
  });

  it("a resource named like a member of Object.prototype is its own name", () => {
    // These used to come back as "function Object() { [native code] }.function Object() …"
    // and "[object Object].[object Object]".
    assert.equal(resourceOfEtcdKey("/registry/constructor/x"), "constructor");
    assert.equal(resourceOfEtcdKey("/registry/__proto__/x"), "__proto__");
    assert.equal(resourceOfEtcdKey("/registry/toString/x"), "toString");
  });
});

describe("etcdKeyReadings: a key under an --etcd-prefix nobody gave", () => {
  const first = (key: string) => etcdKeyReadings(key)[0];

  it("the default /registry reading comes first when the key has one", () => {
    assert.deepEqual(first("/registry/secrets/ns/db"), {
      prefix: "/registry",
      resource: "secrets",
      plausible: true,
    });
    assert.equal(first("/registry/example.com/widgets/ns/w")?.resource, "widgets.example.com");
    assert.equal(first("/registry/services/endpoints/ns/s")?.resource, "endpoints");
  });

  it("under any other prefix, of any depth and with dots, the resource kube-apiserver writes is found first", () => {
    const cases: [string, string, string][] = [
      ["/cluster-a/secrets/ns/db", "/cluster-a", "secrets"],
      ["/registry/cluster-a/secrets/ns/db", "/registry/cluster-a", "secrets"],
      ["/kubernetes.io/secrets/ns/db", "/kubernetes.io", "secrets"],
      ["/a/b/clusterroles/admin", "/a/b", "clusterroles.rbac.authorization.k8s.io"],
      ["/a/b/deployments/ns/web", "/a/b", "deployments.apps"],
      ["/a/example.com/widgets/w", "/a", "widgets.example.com"],
      ["/a/example.com/widgets/ns/w", "/a", "widgets.example.com"],
      ["/a/services/specs/ns/s", "/a", "services"],
      ["/a/minions/node-1", "/a", "nodes"],
    ];
    for (const [key, prefix, resource] of cases)
      assert.deepEqual(first(key), { prefix, resource, plausible: true }, key);
  });

  it("every other reading the layouts allow follows, for a configuration to tell apart", () => {
    assert.deepEqual(
      etcdKeyReadings("/a/b/clusterroles/admin").map(({ prefix, resource }) => [prefix, resource]),
      [
        ["/a/b", "clusterroles.rbac.authorization.k8s.io"],
        ["/a", "b"],
      ],
    );
  });

  it("keys no apiserver writes have no reading", () => {
    for (const key of [
      "",
      "/",
      "secrets/ns/db",
      "/registry/secrets",
      "/registry//secrets/db",
      "/registry/secrets/ns/db/",
      "/a/b.c/d.e/f",
    ])
      assert.deepEqual(etcdKeyReadings(key), [], JSON.stringify(key));
  });
});
