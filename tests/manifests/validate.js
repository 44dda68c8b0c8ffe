// Validates every manifest under deploy/kubernetes/ (run by tests/manifests/run.sh in `make test`):
//   - each document against its Kubernetes / Prometheus Operator schema with npm's kubernetes-models (Debian's
//     kubectl 1.20 is too old for these APIs), plus a check those schemas leave out: no field they do not know
//     (a misspelt `readinesProbe` would otherwise pass and be dropped by the API server);
//   - LeaderWorkerSet, which has no package: its structure, required fields and known keys here, its pod templates
//     with kubernetes-models;
//   - what ties the files together: probes point at server.health_listen, the Services' and ServiceMonitor's
//     ports and selectors exist on the pods, the LWS workers dial the leader's parallel.worker_listen.
// Usage: node validate.js DEPLOY_DIR          validate the tree (exit 1 and one line per problem otherwise)
//        node validate.js --self-test DIR     check that broken copies of its manifests are rejected
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

// apiVersion -> the module whose exports are the kinds of that group/version.
const MODULES = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};

// Wraps `root` so that every property the schema validator reads is recorded (per object): the compiled
// validators read each property their schema knows, so an own key never read is one the schema does not know.
function tracked(root) {
  const read = new WeakMap();
  const proxies = new WeakMap();
  const wrap = (obj) => {
    if (obj === null || typeof obj !== 'object') return obj;
    if (proxies.has(obj)) return proxies.get(obj);
    read.set(obj, new Set());
    const p = new Proxy(obj, {
      get(t, k, r) {
        if (typeof k === 'string') read.get(t).add(k);
        return wrap(Reflect.get(t, k, r));
      },
      ownKeys(t) {  // a map (labels, ConfigMap data) is iterated: every key counts as known
        for (const k of Reflect.ownKeys(t)) if (typeof k === 'string') read.get(t).add(k);
        return Reflect.ownKeys(t);
      },
    });
    proxies.set(obj, p);
    return p;
  };
  const unknown = (obj, at, out) => {
    if (obj === null || typeof obj !== 'object') return out;
    if (Array.isArray(obj)) {
      obj.forEach((v, i) => unknown(v, `${at}[${i}]`, out));
      return out;
    }
    const seen = read.get(obj) || new Set();
    for (const k of Object.keys(obj)) {
      if (!seen.has(k)) out.push(`${at}.${k}: unknown field`);
      else unknown(obj[k], `${at}.${k}`, out);
    }
    return out;
  };
  return { proxy: wrap(root), unknown: () => unknown(root, '', []) };
}

function schemaErrors(Model, doc) {
  const errors = [];
  const model = new Model(doc);
  const t = tracked(model);
  try {
    t.proxy.validate();
  } catch (e) {
    errors.push(String(e.message || e).replace(/\s+/g, ' '));
  }
  for (const u of t.unknown()) if (!u.startsWith('.status')) errors.push(u.slice(1));
  return errors;
}

// LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): the fields of its CRD this example may use.
const LWS_KEYS = {
  '': ['apiVersion', 'kind', 'metadata', 'spec'],
  spec: ['replicas', 'leaderWorkerTemplate', 'rolloutStrategy', 'startupPolicy', 'networkConfig'],
  'spec.leaderWorkerTemplate': ['leaderTemplate', 'workerTemplate', 'size', 'restartPolicy', 'subGroupPolicy'],
};
function lwsErrors(doc) {
  const errors = [];
  const v1 = require('kubernetes-models/v1');
  const meta = require('@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta');
  for (const [at, keys] of Object.entries(LWS_KEYS)) {
    const obj = at === '' ? doc : at.split('.').reduce((o, k) => (o || {})[k], doc);
    if (obj === undefined) continue;
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      errors.push(`${at}: must be a mapping`);
      continue;
    }
    for (const k of Object.keys(obj)) if (!keys.includes(k)) errors.push(`${at ? at + '.' : ''}${k}: unknown field`);
  }
  if (!doc.metadata || typeof doc.metadata.name !== 'string' || !doc.metadata.name)
    errors.push('metadata.name: required');
  else errors.push(...schemaErrors(meta.IoK8sApimachineryPkgApisMetaV1ObjectMeta, doc.metadata).map((e) => `metadata: ${e}`));
  const spec = doc.spec || {};
  if (spec.replicas !== undefined && !(Number.isInteger(spec.replicas) && spec.replicas >= 0))
    errors.push('spec.replicas: must be an integer >= 0');
  if (spec.startupPolicy !== undefined && !['LeaderCreated', 'LeaderReady'].includes(spec.startupPolicy))
    errors.push('spec.startupPolicy: must be LeaderCreated or LeaderReady');
  const lwt = spec.leaderWorkerTemplate;
  if (!lwt) return errors.concat('spec.leaderWorkerTemplate: required');
  if (!(Number.isInteger(lwt.size) && lwt.size >= 1)) errors.push('spec.leaderWorkerTemplate.size: required, an integer >= 1');
  if (lwt.restartPolicy !== undefined && !['RecreateGroupOnPodRestart', 'None', 'Default'].includes(lwt.restartPolicy))
    errors.push('spec.leaderWorkerTemplate.restartPolicy: must be RecreateGroupOnPodRestart or None');
  if (!lwt.workerTemplate) errors.push('spec.leaderWorkerTemplate.workerTemplate: required');
  for (const t of ['leaderTemplate', 'workerTemplate']) {
    if (!lwt[t]) continue;
    if (!lwt[t].spec || !Array.isArray(lwt[t].spec.containers)) errors.push(`spec.leaderWorkerTemplate.${t}.spec.containers: required`);
    errors.push(...schemaErrors(v1.PodTemplateSpec, lwt[t]).map((e) => `spec.leaderWorkerTemplate.${t}: ${e}`));
  }
  return errors;
}

function validateDoc(doc) {
  if (!doc || typeof doc !== 'object') return ['not a mapping'];
  if (doc.apiVersion === 'leaderworkerset.x-k8s.io/v1' && doc.kind === 'LeaderWorkerSet') return lwsErrors(doc);
  const mod = MODULES[doc.apiVersion];
  if (!mod) return [`apiVersion ${doc.apiVersion}: no schema known here (tests/manifests/validate.js MODULES)`];
  const Model = require(mod)[doc.kind];
  if (typeof Model !== 'function') return [`kind ${doc.kind}: not in ${doc.apiVersion}`];
  return schemaErrors(Model, doc);
}

// Every document of every *.yaml under `dir`, as {file, index, doc}.
function loadTree(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name))
        yaml.loadAll(fs.readFileSync(p, 'utf8'), null, { filename: p }).forEach((doc, index) => {
          if (doc !== null && doc !== undefined) out.push({ file: path.relative(dir, p), index, doc });
        });
    }
  };
  walk(dir);
  return out;
}

const byKind = (docs, kind) => docs.filter((d) => d.doc && d.doc.kind === kind);
const port = (hostPort) => Number(String(hostPort).split(':').pop());
const podsOf = (docs) => [
  ...byKind(docs, 'Deployment').map((d) => ({ at: d, tmpl: d.doc.spec.template })),
  ...byKind(docs, 'LeaderWorkerSet').flatMap((d) =>
    ['leaderTemplate', 'workerTemplate'].filter((t) => d.doc.spec.leaderWorkerTemplate[t])
      .map((t) => ({ at: d, tmpl: d.doc.spec.leaderWorkerTemplate[t], role: t }))),
];

// The zeroinfer configuration a ConfigMap holds (its config.yaml), by ConfigMap name.
function configs(docs) {
  const out = {};
  for (const d of byKind(docs, 'ConfigMap'))
    if (d.doc.data && d.doc.data['config.yaml']) out[d.doc.metadata.name] = yaml.load(d.doc.data['config.yaml']);
  return out;
}

// What ties the files of one folder together.
function consistencyErrors(docs) {
  const errors = [];
  const cfgs = configs(docs);
  for (const { at, tmpl, role } of podsOf(docs)) {
    const where = `${at.file}${role ? ' ' + role : ''}`;
    const spec = tmpl.spec;
    const cmVolume = (spec.volumes || []).find((v) => v.configMap);
    const cfg = cmVolume && cfgs[cmVolume.configMap.name];
    for (const c of spec.containers) {
      const args = c.args || [];
      if (args[0] === 'serve') {
        if (!cfg) {
          errors.push(`${where}: container ${c.name} serves, but no ConfigMap of this folder holding config.yaml is mounted`);
          continue;
        }
        const server = cfg.server || {};
        if (!server.health_listen) errors.push(`${where}: the config has no server.health_listen for the probes`);
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          if (!c[probe]) errors.push(`${where}: container ${c.name} has no ${probe}`);
          else if (!c[probe].grpc || c[probe].grpc.port !== port(server.health_listen))
            errors.push(`${where}: ${c.name}.${probe} must be a grpc probe on server.health_listen's port ${port(server.health_listen)}`);
        }
        const ports = Object.fromEntries((c.ports || []).map((p) => [p.name, p.containerPort]));
        if (ports.grpc !== port(server.listen)) errors.push(`${where}: port grpc must be server.listen's ${port(server.listen)}`);
        if (ports.metrics !== port(server.metrics_listen))
          errors.push(`${where}: port metrics must be server.metrics_listen's ${port(server.metrics_listen)}`);
      }
      if (args[0] === 'worker') {
        const lws = byKind(docs, 'LeaderWorkerSet')[0];
        const leaderCfg = Object.values(cfgs).find((x) => x.parallel && x.parallel.workers === 'external');
        const flag = (f) => args[args.indexOf(f) + 1];
        if (!lws) errors.push(`${where}: ${c.name} runs zeroinfer worker outside a LeaderWorkerSet`);
        if (!leaderCfg) {
          errors.push(`${where}: no ConfigMap of this folder sets parallel.workers: external`);
          continue;
        }
        const wl = leaderCfg.parallel.worker_listen;
        if (flag('--coordinator') !== `$(LWS_LEADER_ADDRESS):${port(wl)}`)
          errors.push(`${where}: ${c.name} must dial --coordinator $(LWS_LEADER_ADDRESS):${port(wl)} (parallel.worker_listen)`);
        if (flag('--rank') !== '$(LWS_WORKER_INDEX)') errors.push(`${where}: ${c.name} --rank must be $(LWS_WORKER_INDEX)`);
        if (flag('--world') !== '$(LWS_GROUP_SIZE)') errors.push(`${where}: ${c.name} --world must be $(LWS_GROUP_SIZE)`);
        if (lws && leaderCfg.parallel.num_gpus !== lws.doc.spec.leaderWorkerTemplate.size)
          errors.push(`${where}: parallel.num_gpus (${leaderCfg.parallel.num_gpus}) must equal the group size ` +
                      `${lws.doc.spec.leaderWorkerTemplate.size} (one rank, one GPU per pod)`);
      }
    }
  }
  // Services and ServiceMonitors select pods of this folder, on ports those pods name.
  const pods = podsOf(docs).map((p) => p.tmpl);
  const matches = (sel, labels) => Object.entries(sel || {}).every(([k, v]) => (labels || {})[k] === v);
  for (const s of byKind(docs, 'Service')) {
    const sel = pods.filter((t) => matches(s.doc.spec.selector, t.metadata && t.metadata.labels));
    if (sel.length === 0) errors.push(`${s.file}: Service ${s.doc.metadata.name} selects no pod of this folder`);
    const named = new Set(sel.flatMap((t) => t.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name))));
    for (const p of s.doc.spec.ports)
      if (typeof p.targetPort === 'string' && !named.has(p.targetPort))
        errors.push(`${s.file}: Service ${s.doc.metadata.name} targets port ${p.targetPort}, which its pods do not name`);
  }
  for (const m of byKind(docs, 'ServiceMonitor')) {
    const svcs = byKind(docs, 'Service').filter((s) => matches(m.doc.spec.selector.matchLabels, s.doc.metadata.labels));
    for (const e of m.doc.spec.endpoints)
      if (!svcs.some((s) => s.doc.spec.ports.some((p) => p.name === e.port)))
        errors.push(`${m.file}: ServiceMonitor ${m.doc.metadata.name} scrapes port ${e.port}, which no Service it selects has`);
  }
  for (const h of byKind(docs, 'HorizontalPodAutoscaler')) {
    const ref = h.doc.spec.scaleTargetRef;
    if (!docs.some((d) => d.doc.kind === ref.kind && d.doc.metadata.name === ref.name))
      errors.push(`${h.file}: scales ${ref.kind}/${ref.name}, which is not in this folder`);
  }
  return errors;
}

// Every problem of the tree under `dir`, one string each.
function check(dir) {
  const docs = loadTree(dir);
  const errors = [];
  for (const { file, index, doc } of docs)
    for (const e of validateDoc(doc)) errors.push(`${file}#${index} (${doc.kind} ${(doc.metadata || {}).name}): ${e}`);
  const folders = [...new Set(docs.map((d) => path.dirname(d.file)))];
  for (const f of folders) errors.push(...consistencyErrors(docs.filter((d) => path.dirname(d.file) === f)));
  return { docs, errors };
}

// Breaks one document at a time in a copy of the tree and expects check() to notice: the checks can fail.
function selfTest(dir) {
  const { docs } = check(dir);
  const edits = [
    ['Deployment', 'misspelt probe', (d) => { d.spec.template.spec.containers[0].readinesProbe = { grpc: { port: 8081 } }; }],
    ['Deployment', 'container without a name', (d) => { delete d.spec.template.spec.containers[0].name; }],
    ['Deployment', 'probe on the TLS port', (d) => { d.spec.template.spec.containers[0].readinessProbe.grpc.port = 50051; }],
    ['Service', 'port as a string', (d) => { d.spec.ports[0].port = 'fifty'; }],
    ['ServiceMonitor', 'unknown field', (d) => { d.spec.endpoint = d.spec.endpoints; }],
    ['PodDisruptionBudget', 'unknown field', (d) => { d.spec.maxUnavaliable = 1; }],
    ['HorizontalPodAutoscaler', 'bad metric type', (d) => { d.spec.metrics[0].pods.target.averageValue = { x: 1 }; }],
    ['LeaderWorkerSet', 'no size', (d) => { delete d.spec.leaderWorkerTemplate.size; }],
    ['LeaderWorkerSet', 'unknown field', (d) => { d.spec.leaderWorkerTemplate.workerTemplates = {}; }],
    ['LeaderWorkerSet', 'bad pod template', (d) => { d.spec.leaderWorkerTemplate.workerTemplate.spec.containers[0].image = 5; }],
    ['LeaderWorkerSet', 'wrong worker port', (d) => {
      const a = d.spec.leaderWorkerTemplate.workerTemplate.spec.containers[0].args;
      a[a.indexOf('--coordinator') + 1] = '$(LWS_LEADER_ADDRESS):1';
    }],
  ];
  const failures = [];
  for (const [kind, what, edit] of edits) {
    const target = docs.find((d) => d.doc.kind === kind);
    if (!target) {
      failures.push(`no ${kind} in the tree to break (${what})`);
      continue;
    }
    const broken = docs.map((d) => (d === target ? { ...d, doc: JSON.parse(JSON.stringify(d.doc)) } : d));
    edit(broken.find((d) => d.file === target.file && d.index === target.index).doc);
    const errs = [];
    for (const d of broken) errs.push(...validateDoc(d.doc));
    const folder = path.dirname(target.file);
    errs.push(...consistencyErrors(broken.filter((d) => path.dirname(d.file) === folder)));
    if (errs.length === 0) failures.push(`${kind} with ${what}: accepted`);
  }
  return failures;
}

function main() {
  const args = process.argv.slice(2);
  const self = args[0] === '--self-test';
  const dir = self ? args[1] : args[0];
  if (!dir) {
    console.error('usage: validate.js [--self-test] DEPLOY_KUBERNETES_DIR');
    process.exit(2);
  }
  if (self) {
    const failures = selfTest(dir);
    for (const f of failures) console.error(`self-test: ${f}`);
    console.log(`self-test: ${failures.length === 0 ? 'every broken manifest was rejected' : failures.length + ' accepted'}`);
    process.exit(failures.length === 0 ? 0 : 1);
  }
  const { docs, errors } = check(dir);
  for (const e of errors) console.error(e);
  console.log(`${docs.length} manifests, ${errors.length} problems`);
  process.exit(errors.length === 0 && docs.length > 0 ? 0 : 1);
}

main();
