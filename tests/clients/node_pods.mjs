// orc driven by @kubernetes/client-node 1.x: Exec and Log on a real pod, Metrics, topNodes
// and topPods (metrics.k8s.io).
//
// Run by tests/clients.rs as `node node_pods.mjs KUBECONFIG POD NAMESPACE` (ORC_NODE_CLIENT
// naming the client's entry file) against a server with its agent, once the pod (a
// busybox printing numbered lines, with resource requests and limits) runs. The exit
// status is the number of failed checks.

import { PassThrough, Writable } from 'node:stream';

const k8s = await import(process.env.ORC_NODE_CLIENT);
const [kubeconfig, POD, NS] = process.argv.slice(2);
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
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function collector() {
  const chunks = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

const kc = new k8s.KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(k8s.CoreV1Api);

// Runs `command` in the pod; its stdout, stderr and the final Status.
async function exec(command, stdin = null) {
  const out = collector();
  const err = collector();
  let status = null;
  const ws = await new k8s.Exec(kc).exec(NS, POD, 'app', command, out.stream, err.stream, stdin, false, (s) => {
    status = s;
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`exec ${command} did not end`)), 15000);
    ws.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return { out: out.text(), err: err.text(), status };
}

check('Exec', async () => {
  const r = await exec(['sh', '-c', 'echo hello from $(hostname); echo to-stderr >&2']);
  expect(r.out === `hello from ${POD}\n` && r.err === 'to-stderr\n', r);
  expect(r.status && r.status.status === 'Success', r.status);
  const stdin = new PassThrough();
  const pending = exec(['sh', '-c', 'read line; echo got:$line; exit 3'], stdin);
  stdin.write('ping\n');
  const r2 = await pending;
  expect(r2.out === 'got:ping\n', r2);
  expect(r2.status && r2.status.status === 'Failure' && r2.status.reason === 'NonZeroExitCode', r2.status);
  const code = r2.status.details.causes.find((c) => c.reason === 'ExitCode');
  expect(code && code.message === '3', r2.status);
});

check('Log', async () => {
  // This client's Log never calls its `done` callback: the end of the log is the end
  // of the stream it pipes into.
  const all = collector();
  let finished = false;
  all.stream.on('finish', () => {
    finished = true;
  });
  await new k8s.Log(kc).log(NS, POD, 'app', all.stream, { tailLines: 3 });
  await waitFor('the log to be read', () => finished);
  const lines = all.text().trim().split('\n');
  expect(lines.length === 3 && lines.every((l) => l.startsWith('line ')), lines);
  // Follow: lines keep coming until the request is aborted.
  const followed = collector();
  const req = await new k8s.Log(kc).log(NS, POD, 'app', followed.stream, () => {}, { follow: true, tailLines: 1 });
  await waitFor('followed lines', () => followed.text().split('\n').filter(Boolean).length >= 4, 15000);
  req.abort();
  const numbers = followed.text().split('\n').filter(Boolean).map((l) => Number(l.split(' ')[1]));
  expect(numbers.every((n, i) => i === 0 || n === numbers[i - 1] + 1), numbers);
});

check('Metrics, topNodes, topPods', async () => {
  const metrics = new k8s.Metrics(kc);
  let last;
  await waitFor('pod metrics', async () => {
    try {
      last = await metrics.getPodMetrics(NS);
      return last.items.some((i) => i.metadata.name === POD);
    } catch (e) {
      last = e;
      return false;
    }
  }, 60000).catch((e) => {
    throw new Error(`${e.message}; last answer: ${JSON.stringify(last)}`);
  });
  const pm = await metrics.getPodMetrics(NS);
  const mine = pm.items.find((i) => i.metadata.name === POD);
  expect(pm.kind === 'PodMetricsList' && mine && mine.containers[0].name === 'app', pm);
  expect(/^\d+(n|u|m)?$/.test(mine.containers[0].usage.cpu) && /^\d+(Ki|Mi)?$/.test(mine.containers[0].usage.memory), mine);
  const nm = await metrics.getNodeMetrics();
  expect(nm.items.length === 1 && nm.items[0].usage.memory, nm);
  const nodes = await k8s.topNodes(core);
  expect(nodes.length === 1, nodes);
  const n = nodes[0];
  expect(Number(n.CPU.Capacity) > 0 && Number(n.Memory.Capacity) > 0, n);
  // The pod's requests count on the node.
  expect(Number(n.CPU.RequestTotal) >= 0.05 && Number(n.Memory.RequestTotal) >= 16 * 1024 * 1024, n);
  const pods = await k8s.topPods(core, metrics, NS);
  const p = pods.find((s) => s.Pod.metadata.name === POD);
  expect(p && p.Containers.length === 1 && p.Containers[0].Container === 'app', pods);
  expect(Number(p.Memory.CurrentUsage) > 0 && Number(p.Memory.LimitTotal) === 64 * 1024 * 1024, p.Memory);
  expect(Number(p.CPU.RequestTotal) === 0.05, p.CPU);
});

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
console.log(`node pods: ${checks.length - failed} of ${checks.length} checks passed`);
process.exit(failed);
