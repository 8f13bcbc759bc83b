import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { resourceOfEtcdKey } from "../../../src/engine/etcd-key.js";

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
