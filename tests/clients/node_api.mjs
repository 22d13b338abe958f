// orc driven by @kubernetes/client-node 1.x: the API without pods.
//
// Run by tests/clients.rs as `node node_api.mjs KUBECONFIG` with ORC_NODE_CLIENT naming the
// client's entry file. Every check runs even when an earlier one failed; each failure is
// printed with its stack, and the exit status is the number of failed checks.

const k8s = await import(process.env.ORC_NODE_CLIENT);
const { PatchStrategy, setHeaderOptions } = k8s;

const NS = 'node-client';
const GROUP = 'node.orc.test';
const checks = [];
const check = (name, fn) => checks.push([name, fn]);

function expect(cond, what) {
  if (!cond) throw new Error(`expectation failed: ${typeof what === 'string' ? what : JSON.stringify(what)}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, cond, ms = 20000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// Calls fn expecting an ApiException with `code`; returns the decoded Status body.
async function apiError(code, fn) {
  try {
    await fn();
  } catch (e) {
    expect(e.code === code, `status ${e.code}, expected ${code}: ${e.body}`);
    const body = typeof e.body === 'string' ? JSON.parse(e.body) : e.body;
    expect(body.kind === 'Status', body);
    return body;
  }
  throw new Error(`succeeded, expected ${code}`);
}

const kc = new k8s.KubeConfig();
kc.loadFromFile(process.argv[2]);
const core = kc.makeApiClient(k8s.CoreV1Api);
const apps = kc.makeApiClient(k8s.AppsV1Api);
const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
const objects = k8s.KubernetesObjectApi.makeApiClient(kc);

const cm = (name, labels = {}, data = { k: 'v' }) => ({ metadata: { name, labels }, data });
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const strategic = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

check('core and apps calls', async () => {
  const made = await core.createNamespacedConfigMap({ namespace: NS, body: cm('one', { app: 'one' }) });
  expect(made.metadata.uid && made.metadata.resourceVersion, made.metadata);
  expect(made.metadata.creationTimestamp instanceof Date, 'creationTimestamp is decoded as a Date');
  const got = await core.readNamespacedConfigMap({ name: 'one', namespace: NS });
  expect(got.data.k === 'v', got);
  const listed = await core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'app=one' });
  expect(listed.items.map((i) => i.metadata.name).join() === 'one', listed);
  // The generated client's default patch type is a JSON patch.
  const jp = await core.patchNamespacedConfigMap({
    name: 'one',
    namespace: NS,
    body: [{ op: 'add', path: '/data/j', value: 'p' }],
  });
  expect(jp.data.j === 'p', jp);
  const mp = await core.patchNamespacedConfigMap({ name: 'one', namespace: NS, body: { data: { j: null } } }, merge);
  expect(JSON.stringify(mp.data) === '{"k":"v"}', mp);
  const missing = await apiError(404, () => core.readNamespacedConfigMap({ name: 'nope', namespace: NS }));
  expect(missing.reason === 'NotFound', missing);
  const status = await core.deleteNamespacedConfigMap({ name: 'one', namespace: NS });
  expect(status.kind === 'Status' && status.status === 'Success' && status.details.name === 'one', status);

  const dep = {
    metadata: { name: 'web' },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: { containers: [{ name: 'a', image: 'busybox' }, { name: 'b', image: 'busybox' }] },
      },
    },
  };
  const d = await apps.createNamespacedDeployment({ namespace: NS, body: dep });
  expect(d.spec.strategy.type === 'RollingUpdate', d.spec);
  const smp = await apps.patchNamespacedDeployment(
    {
      name: 'web',
      namespace: NS,
      body: { spec: { template: { spec: { containers: [{ name: 'b', image: 'busybox:2' }] } } } },
    },
    strategic,
  );
  expect(smp.spec.template.spec.containers.map((c) => c.image).join() === 'busybox,busybox:2', smp.spec);
  const scale = await apps.readNamespacedDeploymentScale({ name: 'web', namespace: NS });
  expect(scale.spec.replicas === 1 && scale.status.selector === 'app=web', scale);
  const scaled = await apps.patchNamespacedDeploymentScale(
    { name: 'web', namespace: NS, body: { spec: { replicas: 0 } } },
    merge,
  );
  expect(scaled.spec.replicas === 0, scaled);
  const deps = await apps.listDeploymentForAllNamespaces({ fieldSelector: `metadata.namespace=${NS}` });
  expect(deps.items.length === 1, deps);
  const gone = await apps.deleteNamespacedDeployment({ name: 'web', namespace: NS, propagationPolicy: 'Foreground' });
  expect(gone.kind === 'Deployment' || gone.kind === 'Status', gone);
  await waitFor('the deployment to go', async () => (await apps.listNamespacedDeployment({ namespace: NS })).items.length === 0);
});

check('makeInformer: list, watch, reconnect', async () => {
  await core.createNamespacedConfigMap({ namespace: NS, body: cm('before', { inf: 'yes' }) });
  // The server ends each watch after two seconds (timeoutSeconds in the path): the
  // informer must reconnect from where it was and miss nothing.
  const path = `/api/v1/namespaces/${NS}/configmaps?timeoutSeconds=2`;
  const informer = k8s.makeInformer(
    kc,
    path,
    () => core.listNamespacedConfigMap({ namespace: NS, labelSelector: 'inf=yes' }),
    'inf=yes',
  );
  const events = [];
  let connects = 0;
  const errors = [];
  informer.on('add', (o) => events.push(`add ${o.metadata.name}`));
  informer.on('update', (o) => events.push(`update ${o.metadata.name} ${o.data.k}`));
  informer.on('delete', (o) => events.push(`delete ${o.metadata.name}`));
  informer.on('connect', () => connects++);
  informer.on('error', (e) => errors.push(e));
  await informer.start();
  try {
    await waitFor('the listed object', () => events.includes('add before'));
    await core.createNamespacedConfigMap({ namespace: NS, body: cm('during', { inf: 'yes' }) });
    await core.patchNamespacedConfigMap({ name: 'during', namespace: NS, body: { data: { k: 'v2' } } }, merge);
    await waitFor('add and update', () => events.includes('update during v2'));
    // Past the server's end of the watch: the informer reconnects.
    const atStart = connects;
    await waitFor('a reconnect', () => connects > atStart, 10000);
    await core.deleteNamespacedConfigMap({ name: 'before', namespace: NS });
    await core.createNamespacedConfigMap({ namespace: NS, body: cm('other', { inf: 'no' }) });
    await waitFor('the delete after the reconnect', () => events.includes('delete before'));
    expect(errors.length === 0, `informer errors: ${errors.map(String)}`);
    expect(!events.some((e) => e.includes('other')), events);
    const cached = informer.list(NS).map((o) => o.metadata.name);
    expect(JSON.stringify(cached) === '["during"]', cached);
    expect(informer.get('during', NS).data.k === 'v2', 'cache get');
  } finally {
    await informer.stop();
  }
});

check('Watch', async () => {
  const list = await core.listNamespacedConfigMap({ namespace: NS });
  const rv = list.metadata.resourceVersion;
  const seen = [];
  let ended = null;
  const watch = new k8s.Watch(kc);
  const req = await watch.watch(
    `/api/v1/namespaces/${NS}/configmaps`,
    { resourceVersion: rv, allowWatchBookmarks: true, labelSelector: 'w=yes', timeoutSeconds: 10 },
    (type, obj) => {
      if (type !== 'BOOKMARK') seen.push(`${type} ${obj.metadata.name}`);
    },
    (err) => {
      ended = err || 'ended';
    },
  );
  await core.createNamespacedConfigMap({ namespace: NS, body: cm('watched', { w: 'yes' }) });
  await core.deleteNamespacedConfigMap({ name: 'watched', namespace: NS });
  await waitFor('two events', () => seen.length >= 2);
  expect(JSON.stringify(seen) === '["ADDED watched","DELETED watched"]', seen);
  req.abort();
  // A watch the server ends (timeoutSeconds) calls done without an error.
  ended = null;
  await watch.watch(`/api/v1/namespaces/${NS}/configmaps`, { timeoutSeconds: 1 }, () => {}, (err) => {
    ended = err || 'ended';
  });
  await waitFor('the server to end the watch', () => ended !== null, 8000);
  expect(ended === 'ended', String(ended));
});

check('KubernetesObjectApi: any kind, custom resources, server-side apply', async () => {
  await ext.createCustomResourceDefinition({
    body: {
      metadata: { name: `gadgets.${GROUP}` },
      spec: {
        group: GROUP,
        scope: 'Namespaced',
        names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget', listKind: 'GadgetList' },
        versions: [
          {
            name: 'v1',
            served: true,
            storage: true,
            subresources: { status: {} },
            schema: {
              openAPIV3Schema: {
                type: 'object',
                properties: {
                  spec: { type: 'object', properties: { size: { type: 'integer' } } },
                  status: { type: 'object', properties: { phase: { type: 'string' } } },
                },
              },
            },
          },
        ],
      },
    },
  });
  await waitFor('the CRD to be Established', async () => {
    const crd = await ext.readCustomResourceDefinition({ name: `gadgets.${GROUP}` });
    return (crd.status?.conditions || []).some((c) => c.type === 'Established' && c.status === 'True');
  });
  const svc = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'generic', namespace: NS },
    spec: { selector: { app: 'g' }, ports: [{ port: 80 }] },
  };
  const made = await objects.create(svc);
  expect(made.spec.clusterIP && made.spec.ports[0].targetPort === 80, made.spec);
  const read = await objects.read({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'generic', namespace: NS } });
  expect(read.metadata.uid === made.metadata.uid, read);
  const patched = await objects.patch(
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'generic', namespace: NS, labels: { p: 'yes' } } },
    undefined,
    undefined,
    undefined,
    undefined,
    PatchStrategy.MergePatch,
  );
  expect(patched.metadata.labels.p === 'yes', patched.metadata);
  const gadget = (size) => ({
    apiVersion: `${GROUP}/v1`,
    kind: 'Gadget',
    metadata: { name: 'g1', namespace: NS },
    spec: { size },
  });
  await waitFor('gadgets to be served', async () => {
    try {
      await objects.list(`${GROUP}/v1`, 'Gadget', NS);
      return true;
    } catch {
      return false;
    }
  });
  const g = await objects.create(gadget(1));
  expect(g.spec.size === 1 && g.metadata.uid, g);
  const listed = await objects.list(`${GROUP}/v1`, 'Gadget', NS);
  expect(listed.items.length === 1 && listed.kind === 'GadgetList', listed);
  const gp = await objects.patch(
    { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g1', namespace: NS }, spec: { size: 2 } },
    undefined,
    undefined,
    undefined,
    undefined,
    PatchStrategy.MergePatch,
  );
  expect(gp.spec.size === 2, gp);
  // Server-side apply: create by apply, then a second manager's conflict, then forced.
  const applied = await objects.patch(
    { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g2', namespace: NS }, spec: { size: 7 } },
    undefined,
    undefined,
    'node-first',
    undefined,
    PatchStrategy.ServerSideApply,
  );
  expect(applied.spec.size === 7 && applied.metadata.managedFields[0].manager === 'node-first', applied);
  const conflict = await apiError(409, () =>
    objects.patch(
      { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g2', namespace: NS }, spec: { size: 8 } },
      undefined,
      undefined,
      'node-second',
      false,
      PatchStrategy.ServerSideApply,
    ),
  );
  expect(conflict.reason === 'Conflict', conflict);
  const forced = await objects.patch(
    { apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g2', namespace: NS }, spec: { size: 8 } },
    undefined,
    undefined,
    'node-second',
    true,
    PatchStrategy.ServerSideApply,
  );
  expect(forced.spec.size === 8, forced);
  const svcApplied = await objects.patch(
    { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: NS }, data: { a: '1' } },
    undefined,
    undefined,
    'node-ssa',
    undefined,
    PatchStrategy.ServerSideApply,
  );
  expect(svcApplied.data.a === '1', svcApplied);
  // Status through the generic replace of the status subresource is not in this API:
  // the custom objects API does it.
  const custom = kc.makeApiClient(k8s.CustomObjectsApi);
  const st = await custom.patchNamespacedCustomObjectStatus(
    { group: GROUP, version: 'v1', namespace: NS, plural: 'gadgets', name: 'g1', body: { status: { phase: 'Up' } } },
    merge,
  );
  expect(st.status.phase === 'Up', st);
  const del = await objects.delete({ apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g1', namespace: NS } });
  expect(del.kind === 'Gadget' || del.kind === 'Status', del);
  await objects.delete({ apiVersion: `${GROUP}/v1`, kind: 'Gadget', metadata: { name: 'g2', namespace: NS } });
  const svcDel = await objects.delete(svc);
  expect(svcDel.kind === 'Service', svcDel);
  const cmDel = await objects.delete({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ssa', namespace: NS } });
  expect(cmDel.kind === 'Status' && cmDel.status === 'Success', cmDel);
  await ext.deleteCustomResourceDefinition({ name: `gadgets.${GROUP}` });
});

await core.createNamespace({ body: { metadata: { name: NS } } });
let failed = 0;
for (const [name, fn] of checks) {
  const began = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${((Date.now() - began) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}:\n${e.stack || e}${e.body ? `\nbody: ${e.body}` : ''}`);
  }
}
await core.deleteNamespace({ name: NS });
console.log(`node api: ${checks.length - failed} of ${checks.length} checks passed`);
process.exit(failed);
