// Summarize a V8 .cpuprofile (from `node --cpu-prof`, e.g. BENCH_CPU_PROF=dir npm run bench):
// self time by area (gitgate folder, dependency, node internals, GC, idle) and the top functions
// by self and by inclusive time, as a share of the busy (non-idle) samples.
//   node bench/profile-summary.mjs <file.cpuprofile> [top=25]
import { readFileSync } from 'node:fs';

const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
if (file === undefined) {
  console.error('usage: node bench/profile-summary.mjs <file.cpuprofile> [top]');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

// Time per sample: timeDeltas[i] is the gap before sample i.
const self = new Map();
for (const [i, id] of prof.samples.entries()) self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));

function area(cf) {
  const url = cf.url ?? '';
  if (cf.functionName === '(idle)') return '(idle)';
  if (cf.functionName === '(garbage collector)') return '(gc)';
  if (cf.functionName === '(program)') return '(program: native, not attributed)';
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return `dep ${nm[1]}`;
  const gg = /\/(?:dist|src)\/(?:src\/)?([^/]+)\//.exec(url);
  if (gg && !url.includes('node_modules')) return `gitgate ${gg[1]}`;
  if (/\/(?:dist|src)\/(?:src\/)?[^/]+\.js$/.test(url)) return `gitgate ${url.split('/').pop()}`;
  if (url.startsWith('node:') || url === '')
    return `node ${
      url
        .replace(/^node:/, '')
        .split('/')
        .slice(0, 2)
        .join('/') || '(native)'
    }`;
  return url;
}
const name = (cf) =>
  `${cf.functionName || '(anonymous)'} ${(cf.url ?? '').replace(/^.*\/(node_modules|dist|src)\//, '$1/')}:${cf.lineNumber + 1}`;

let total = 0;
let idle = 0;
const areas = new Map();
const selfFn = new Map();
const inclFn = new Map();
for (const [id, t] of self) {
  const n = byId.get(id);
  total += t;
  const a = area(n.callFrame);
  if (a === '(idle)') {
    idle += t;
    continue;
  }
  areas.set(a, (areas.get(a) ?? 0) + t);
  const k = name(n.callFrame);
  selfFn.set(k, (selfFn.get(k) ?? 0) + t);
  // Inclusive: each distinct function on the stack once.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const kk = name(byId.get(cur).callFrame);
    if (seen.has(kk)) continue;
    seen.add(kk);
    inclFn.set(kk, (inclFn.get(kk) ?? 0) + t);
  }
}
const busy = total - idle;
const row = ([k, t]) => `${((t / busy) * 100).toFixed(1).padStart(5)} %  ${(t / 1000).toFixed(0).padStart(7)} ms  ${k}`;
console.log(
  `${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy (${((busy / total) * 100).toFixed(0)} %)`,
);
console.log('\nself time by area (share of busy):');
for (const e of [...areas].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(row(e));
console.log('\ntop functions, self:');
for (const e of [...selfFn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(row(e));
console.log('\ntop functions, inclusive:');
for (const e of [...inclFn].sort((a, b) => b[1] - a[1]).slice(0, top * 2)) console.log(row(e));
