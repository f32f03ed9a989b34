/**
 * gitgate benchmark: tools/call through gitgate and through its peers, against the same SDK
 * upstream with the same lean raw-HTTP load generator (bench/load.ts), interleaved in rounds
 * (medians), at 1 and 16 concurrent sessions; then 1 KiB and 64 KiB responses with masking;
 * then policy evaluation alone. All traffic stays on 127.0.0.1; every loop is bounded.
 *
 * Targets: direct (no proxy); bare Node passthrough (bench/passthrough.mjs); hoop mcpproxyd
 * v0.1.1 anonymous, and with OIDC against a loopback issuer (bench/oidc-issuer.mjs) plus a tool
 * allow/deny policy; gitgate with audit off, and with everything on (OIDC caller, Rego policy,
 * JIT credential per call, masking rules present, audit on). Both gitgates and hoop-oidc verify
 * the same caller token.
 *
 *   npm run bench                                   (the real run: a quiet machine, defaults)
 *   BENCH_REQUESTS=300 BENCH_ROUNDS=1 npm run bench (smoke: well under a minute once tools are built)
 *
 * Env: BENCH_REQUESTS (tools/call per run, 3000), BENCH_ROUNDS (interleaved rounds, 5),
 * BENCH_PAYLOAD_REQUESTS (calls per payload run, BENCH_REQUESTS/5 and >= 50; 0 skips them), BENCH_CONCURRENCY
 * ("1,16"), BENCH_TARGETS (comma-separated target names to run, default all), BENCH_CPU_PROF
 * (a folder: run the gitgates under `node --cpu-prof` and write their profiles there on exit),
 * GITGATE_BENCH_MCPPROXYD (a prebuilt mcpproxyd v0.1.1; default: tools/mcpproxyd, built on demand),
 * BENCH_GITGATE_BASE (another gitgate's bin/gitgate.js, e.g. a copy of the build before a change: adds
 * the target "gitgate base audit off", interleaved with the others, for an A/B in one run), AUDIT_RECORDS
 * (records of the audit-log-alone part, 1 000 000; 0 skips it),
 * BENCH_REPLICAS=1 (then also bench/replicas.ts: file mode, one and three replicas on PostgreSQL; off by
 * default, it starts a PostgreSQL cluster).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  fsyncSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';
import { buildPolicyBundle } from '../src/policy/build.js';
import { readBundle } from '../src/policy/bundle.js';
import { instantiate } from '../src/policy/engine.js';
import type { PolicyInput } from '../src/policy/input.js';
import { ensureOpa } from '../src/policy/opa-binary.js';
import { ensureMcpproxyd, HOOP_VERSION } from './hoop.js';
import { type Call, percentile, type RunResult, run, type Target } from './load.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PAYLOAD_REQUESTS = Number(process.env.BENCH_PAYLOAD_REQUESTS ?? Math.max(50, Math.floor(REQUESTS / 5)));
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,16').split(',').map(Number);
const ONLY = process.env.BENCH_TARGETS?.split(',').map((s) => s.trim());
const CPU_PROF = process.env.BENCH_CPU_PROF;
const AUDIENCE = 'gitgate-bench';
const children: ChildProcess[] = [];

/** The process behind each started URL (for CPU accounting). */
const pidOf = new Map<string, number>();

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, echo = true): Promise<string> {
  const child = spawn(cmd, args, {
    cwd: packageRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    // gitgate announces itself on stderr (stdout is its JSON log); the bench helpers on stdout.
    const seen = (c: Buffer) => {
      if (out.length < 16_384) out += c.toString();
      const m = /listening (?:on )?(http:\/\/\S+)/.exec(out);
      if (m) {
        pidOf.set(new URL(m[1]!).origin, child.pid!);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', (c: Buffer) => {
      if (echo) process.stderr.write(c);
      seen(c);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}`)));
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** hoop's mcpproxyd on a free loopback port; it logs every audit event to stderr (drained, not echoed). */
async function startHoop(bin: string, dir: string, name: string, body: string): Promise<string> {
  const port = await freePort();
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, `listen: 127.0.0.1:${port}\n${body}`);
  const child = spawn(bin, ['-config', file], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr.on('data', (c: Buffer) => {
    err = (err + c.toString()).slice(-4096);
  });
  let exited: number | null | undefined;
  child.once('exit', (code) => (exited = code));
  const origin = `http://127.0.0.1:${port}`;
  // Bounded: 200 polls, 50 ms apart.
  for (let i = 0; i < 200 && exited === undefined; i++) {
    if (
      await fetch(`${origin}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    ) {
      pidOf.set(origin, child.pid!);
      return `${origin}/mcp`;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`mcpproxyd ${name} did not come up: ${err}`);
}

async function policyDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-bench-policy-'));
  await cp(path.join(packageRoot, 'policies', 'gitgate'), path.join(dir, 'gitgate'), { recursive: true });
  const data = JSON.parse(await readFile(path.join(packageRoot, 'policies', 'config', 'data.json'), 'utf8')) as {
    upstreams: Record<string, unknown>;
  };
  // Masking rules present on every call (echo's answer has nothing to mask; blob's has an email every ~500 bytes).
  data.upstreams.bench = {
    full_access_groups: ['eng'],
    public_tools: ['echo', 'blob'],
    high_risk_tools: {},
    credential_ttl_seconds: 60,
    mask: [{ path: '$.result.content[*].text', detectors: ['email', 'aws_access_key'] }],
  };
  await mkdir(path.join(dir, 'config'));
  await writeFile(path.join(dir, 'config', 'data.json'), JSON.stringify(data));
  return dir;
}
async function policyOnly(dir: string): Promise<{ medianUs: number; p99Us: number }> {
  const opa = await ensureOpa();
  const built = await buildPolicyBundle({
    opa,
    srcDir: dir,
    outDir: await mkdtemp(path.join(tmpdir(), 'gitgate-bench-build-')),
  });
  const p = await instantiate(await readBundle(await readFile(built.path)), { source: dir });
  const input: PolicyInput = {
    identity: { sub: 'bench', groups: ['eng'], issuer: 'bench' },
    mcp: {
      kind: 'request',
      method: 'tools/call',
      tool: 'echo',
      arguments: { message: 'benchmark payload' },
      protocol_version: '2025-11-25',
      era: 'legacy',
    },
    upstream: { name: 'bench', transport: 'http' },
    request: { id: 'r', time_ns: 0 },
  };
  for (let i = 0; i < 2000; i++) p.evaluate(input);
  const samples: number[] = [];
  for (let b = 0; b < 20; b++) {
    const n = 2000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) p.evaluate(input);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e3 / n);
  }
  samples.sort((a, b) => a - b);
  return { medianUs: percentile(samples, 50), p99Us: percentile(samples, 99) };
}

/** Wait until a gateway has committed its audit backlog, so it does not steal CPU from the next measurement. */
async function settle(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const r = (await (await fetch(`${url}/readyz`)).json()) as { audit?: { uncommitted?: number } };
    if ((r.audit?.uncommitted ?? 0) === 0) return;
    await new Promise((res) => setTimeout(res, 100));
  }
}

/**
 * CPU a process has used, in µs (Linux /proc; undefined elsewhere): its main
 * thread (the event loop), all its threads, and its children: those it waited for (git), and
 * those still running (the audit's git helper process, with the git runs it waited for).
 */
function cpuOf(
  pid: number,
): { main: number; threads: number; children: number; perThread: Map<string, number> } | undefined {
  try {
    const fields = (file: string) => readFileSync(file, 'utf8').split(') ')[1]!.split(' ').map(Number);
    const tick = 1e6 / 100; // USER_HZ
    const p = fields(`/proc/${pid}/stat`);
    let live = 0;
    for (const child of childrenOf(pid)) {
      try {
        const c = fields(`/proc/${child}/stat`);
        live += c[11]! + c[12]! + c[13]! + c[14]!;
      } catch {
        // exited meanwhile: the parent waited for it, so it is in its children's time
      }
    }
    const perThread = new Map<string, number>();
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const t = fields(`/proc/${pid}/task/${tid}/stat`);
        perThread.set(tid, (t[11]! + t[12]!) * tick);
      } catch {
        // the thread ended
      }
    }
    const main = perThread.get(String(pid));
    if (main === undefined) return undefined;
    return {
      main,
      threads: (p[11]! + p[12]!) * tick,
      perThread,
      children: (p[13]! + p[14]! + live) * tick,
    };
  } catch {
    return undefined;
  }
}

/** The running children of a process (every thread's /proc children list). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(' '))
        if (c !== '') out.push(Number(c));
    } catch {
      // the thread ended
    }
  }
  return out;
}

interface Measured extends RunResult {
  /** CPU per call in µs: the main thread (a Node proxy's event loop) and the whole process with its waited-for children. */
  readonly cpu?: { readonly main: number; readonly all: number; readonly children: number };
  /** CPU per call in µs of the busiest threads other than the main one (the sealer, the thread pool, GC helpers). */
  readonly others?: readonly number[];
  /** CPU per call in µs of what every target shares: the SDK upstream and this process (the load generator). */
  readonly rest?: number;
  /** The share of the machine's CPU time in use during the run (every process, /proc/stat). */
  readonly machineBusy?: number;
  /** Audit on: records made durable per WAL write (group commit), during the run. */
  readonly recordsPerWrite?: number;
  /** Audit on: the median time of one WAL write during the run (ms), from the gateway's histogram. */
  readonly walWriteP50?: number;
}

interface WalCounters {
  readonly records: number;
  readonly writes: number;
  /** gitgate_audit_wal_write_seconds: cumulative count per upper bound (s). */
  readonly buckets: readonly (readonly [number, number])[];
}

/** A gitgate's audit counters (records made durable, WAL writes, their times), from its /metrics; undefined for others. */
async function walCounters(t: Target): Promise<WalCounters | undefined> {
  if (!t.name.startsWith('gitgate')) return undefined;
  const text = await (await fetch(`${new URL(t.url).origin}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
  const records = value('gitgate_audit_records_appended_total');
  const writes = value('gitgate_audit_wal_writes_total');
  const buckets = [...text.matchAll(/^gitgate_audit_wal_write_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)]
    .map((m) => [Number(m[1]), Number(m[2])] as const)
    .filter(([le]) => Number.isFinite(le));
  return Number.isFinite(records) && Number.isFinite(writes) ? { records, writes, buckets } : undefined;
}

/** The median of the writes between two histogram readings (ms), interpolated within its bucket. */
function walWriteMedian(before: WalCounters, after: WalCounters): number | undefined {
  const counts = after.buckets.map(([le, n], i) => [le, n - (before.buckets[i]?.[1] ?? 0)] as const);
  const total = after.writes - before.writes;
  if (total <= 0) return undefined;
  let lower = 0;
  let below = 0;
  for (const [le, n] of counts) {
    if (n >= total / 2) return (lower + ((total / 2 - below) / Math.max(1, n - below)) * (le - lower)) * 1000;
    lower = le;
    below = n;
  }
  return undefined;
}

/** The machine's CPU time so far, busy and total, in /proc/stat ticks (undefined off Linux). */
function machineTicks(): { busy: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: total - f[3]! - f[4]!, total };
  } catch {
    return undefined;
  }
}

/** The SDK upstream's pid (set once it is started): its CPU is part of every target's run. */
let upstreamPid: number | undefined;

/** One run, with the target's CPU per request (and, audit on, records per WAL write). */
async function measured(t: Target, conc: number, n: number, warmup: number, call?: Call): Promise<Measured> {
  const pid = pidOf.get(new URL(t.url).origin);
  const before = pid !== undefined ? cpuOf(pid) : undefined;
  const walBefore = await walCounters(t);
  const upBefore = upstreamPid !== undefined ? cpuOf(upstreamPid) : undefined;
  const selfBefore = process.cpuUsage();
  const ticksBefore = machineTicks();
  const r = await run(t, conc, n, warmup, call);
  const ticksAfter = machineTicks();
  const self = process.cpuUsage(selfBefore);
  const upAfter = upstreamPid !== undefined ? cpuOf(upstreamPid) : undefined;
  const after = pid !== undefined ? cpuOf(pid) : undefined;
  const walAfter = await walCounters(t);
  const median = walBefore !== undefined && walAfter !== undefined ? walWriteMedian(walBefore, walAfter) : undefined;
  const perWrite =
    walBefore !== undefined && walAfter !== undefined && walAfter.writes > walBefore.writes
      ? {
          recordsPerWrite: (walAfter.records - walBefore.records) / (walAfter.writes - walBefore.writes),
          ...(median !== undefined ? { walWriteP50: median } : {}),
        }
      : {};
  // The run's requests: the measured ones, the warm-up, and each session's initialize + initialized.
  const requests = n + warmup + 2 * conc;
  const shared = {
    ...(upBefore !== undefined && upAfter !== undefined
      ? { rest: (upAfter.threads - upBefore.threads + self.user + self.system) / requests }
      : {}),
    ...(ticksBefore !== undefined && ticksAfter !== undefined && ticksAfter.total > ticksBefore.total
      ? { machineBusy: (ticksAfter.busy - ticksBefore.busy) / (ticksAfter.total - ticksBefore.total) }
      : {}),
  };
  if (before === undefined || after === undefined) return { ...r, ...perWrite, ...shared };
  const others = [...after.perThread]
    .filter(([tid]) => tid !== String(pid))
    .map(([tid, us]) => (us - (before.perThread.get(tid) ?? 0)) / requests)
    .sort((a, b) => b - a)
    .slice(0, 3);
  return {
    ...r,
    ...perWrite,
    ...shared,
    others,
    cpu: {
      main: (after.main - before.main) / requests,
      all: (after.threads - before.threads + after.children - before.children) / requests,
      children: (after.children - before.children) / requests,
    },
  };
}

const med = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Medians over rounds, each metric on its own. */
function summary(rs: readonly Measured[]): Measured {
  const cpus = rs.map((r) => r.cpu).filter((c) => c !== undefined);
  return {
    rps: med(rs.map((r) => r.rps)),
    p50: med(rs.map((r) => r.p50)),
    p99: med(rs.map((r) => r.p99)),
    ...(rs.every((r) => r.rest !== undefined) ? { rest: med(rs.map((r) => r.rest!)) } : {}),
    ...(rs.every((r) => r.machineBusy !== undefined) ? { machineBusy: med(rs.map((r) => r.machineBusy!)) } : {}),
    ...(rs.every((r) => r.others !== undefined)
      ? { others: (rs[0]?.others ?? []).map((_, i) => med(rs.map((r) => r.others?.[i] ?? 0))) }
      : {}),
    ...(cpus.length > 0
      ? {
          cpu: {
            main: med(cpus.map((c) => c.main)),
            all: med(cpus.map((c) => c.all)),
            children: med(cpus.map((c) => c.children)),
          },
        }
      : {}),
    ...(rs.some((r) => r.recordsPerWrite !== undefined)
      ? { recordsPerWrite: med(rs.flatMap((r) => (r.recordsPerWrite !== undefined ? [r.recordsPerWrite] : []))) }
      : {}),
    ...(rs.some((r) => r.walWriteP50 !== undefined)
      ? { walWriteP50: med(rs.flatMap((r) => (r.walWriteP50 !== undefined ? [r.walWriteP50] : []))) }
      : {}),
  };
}

/**
 * Every target once per round, the order rotated each round, then medians: the machine is shared
 * and noisy, so a slow moment hits all targets alike rather than one.
 */
async function interleaved(
  targets: readonly Target[],
  rounds: number,
  conc: number,
  n: number,
  call: Call | undefined,
  after: (t: Target) => Promise<void>,
): Promise<Map<string, Measured[]>> {
  const out = new Map<string, Measured[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(i + round) % targets.length]!;
      out.get(t.name)!.push(await measured(t, conc, n, Math.min(500, Math.floor(n / 4)), call));
      await after(t);
    }
  }
  return out;
}

/**
 * What one durable WAL write costs this disk, measured apart from any gateway: `n` O_DSYNC writes of
 * a 2 KiB group (a decision's record, about) over a preallocated file in `dir`, as the WAL writes its
 * segments; their median wall time in ms. Run between rounds, so it sees the same disk moment.
 */
function dsyncProbe(dir: string, n = 200): number {
  const file = path.join(dir, `dsync-probe-${process.pid}.bin`);
  const block = Buffer.alloc(2048, 0x61);
  writeFileSync(file, Buffer.alloc(block.length * n));
  const pre = openSync(file, 'r+');
  fsyncSync(pre);
  closeSync(pre);
  const fd = openSync(file, constants.O_WRONLY | constants.O_DSYNC);
  const times: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      writeSync(fd, block, 0, block.length, i * block.length);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
  return med(times);
}

const pct = (x: number, of: number) => `${((x / of) * 100).toFixed(0)} %`;
const ms = (x: number) => `${x.toFixed(2)} ms`;
const us = (x: number | undefined) => (x === undefined ? '–' : `${x.toFixed(0)} µs`);

async function main(): Promise<void> {
  const upstreamUrl = await start(process.execPath, [
    path.join(packageRoot, 'test', 'fixtures', 'demo-server.mjs'),
    'http',
  ]);
  upstreamPid = pidOf.get(new URL(upstreamUrl).origin);
  const passUrl = await start(process.execPath, [path.join(packageRoot, 'bench', 'passthrough.mjs'), upstreamUrl]);
  const issuer = await start(process.execPath, [path.join(packageRoot, 'bench', 'oidc-issuer.mjs')]);
  const tokenRes = await fetch(`${issuer}/token?sub=bench&aud=${AUDIENCE}`);
  if (!tokenRes.ok) throw new Error(`the bench issuer answered ${tokenRes.status}`);
  const token = await tokenRes.text();
  const auth = { authorization: `Bearer ${token}` };
  const want = (name: string) => ONLY === undefined || ONLY.includes(name);

  const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-bench-data-'));
  const hoop = want('hoop anonymous') || want('hoop oidc+policy') ? await ensureMcpproxyd(console.error) : undefined;
  const backend = `backends:\n  bench:\n    transport: streamable-http\n    url: ${upstreamUrl}\n`;
  // hoop's tool policy: allow/deny globs (deny wins), the same tools gitgate's policy lets the caller use.
  const hoopPolicy = `policy:\n  allowed_tools: ["echo", "blob"]\n  denied_tools: ["secret", "*delete*"]\n`;
  const hoopAnon =
    hoop !== undefined && want('hoop anonymous')
      ? await startHoop(hoop, dataDir, 'hoop-anonymous', `inbound:\n  mode: anonymous\n${backend}`)
      : undefined;
  const hoopOidc =
    hoop !== undefined && want('hoop oidc+policy')
      ? await startHoop(
          hoop,
          dataDir,
          'hoop-oidc',
          `inbound:\n  mode: oidc\n  issuer: ${issuer}\n  audience: ${AUDIENCE}\n${backend}${hoopPolicy}`,
        )
      : undefined;

  const dir = await policyDir();
  const gitgate = async (
    name: string,
    audit: boolean,
    bin = path.join(packageRoot, 'bin', 'gitgate.js'),
  ): Promise<string> => {
    const cfg = path.join(dataDir, `${name}.yaml`);
    await writeFile(
      cfg,
      [
        `dataDir: ${path.join(dataDir, name)}`,
        `policy:\n  dir: ${dir}`,
        `log:\n  level: warn`,
        `identity:\n  mode: oidc\n  issuer: ${issuer}\n  audience: ${AUDIENCE}`,
        // The JIT credential travels in Authorization (the default for url upstreams).
        `upstreams:\n  bench:\n    url: ${upstreamUrl}\n    maxSessions: 1000\n    maxSessionsPerCaller: 1000`,
        `audit:\n  enabled: ${audit}`,
        '',
      ].join('\n'),
    );
    const prof = CPU_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${path.join(CPU_PROF, name)}`] : [];
    const url = await start(process.execPath, [...prof, bin, 'serve', '--config', cfg, '--port', '0']);
    return url;
  };
  const gwOff = want('gitgate audit off') ? await gitgate('gitgate-audit-off', false) : undefined;
  const gwOn = want('gitgate all on') ? await gitgate('gitgate-all-on', true) : undefined;
  const BASE = process.env.BENCH_GITGATE_BASE;
  // The build before a change, beside the others: audit off, or on with BENCH_GITGATE_BASE_AUDIT=1.
  const baseAudit = process.env.BENCH_GITGATE_BASE_AUDIT === '1';
  const baseName = baseAudit ? 'gitgate base all on' : 'gitgate base audit off';
  const gwBase =
    BASE !== undefined ? await gitgate(baseName.replaceAll(' ', '-'), baseAudit, path.resolve(BASE)) : undefined;

  const all: (Target | undefined)[] = [
    { name: 'direct', url: upstreamUrl, headers: {} },
    { name: 'passthrough', url: passUrl, headers: {} },
    hoopAnon !== undefined ? { name: 'hoop anonymous', url: hoopAnon, headers: {} } : undefined,
    hoopOidc !== undefined ? { name: 'hoop oidc+policy', url: hoopOidc, headers: auth } : undefined,
    gwOff !== undefined ? { name: 'gitgate audit off', url: `${gwOff}/mcp/bench`, headers: auth } : undefined,
    gwOn !== undefined ? { name: 'gitgate all on', url: `${gwOn}/mcp/bench`, headers: auth } : undefined,
    gwBase !== undefined ? { name: baseName, url: `${gwBase}/mcp/bench`, headers: auth } : undefined,
  ];
  const targets = all.filter((t): t is Target => t !== undefined && (want(t.name) || t.name === baseName));
  const after = async (t: Target) => {
    if (t.name === 'gitgate all on' && gwOn !== undefined) await settle(gwOn);
    if (t.name === 'gitgate base all on' && gwBase !== undefined) await settle(gwBase);
  };
  console.log(
    `gitgate bench — ${new Date().toISOString()}, node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, hoop mcpproxyd v${HOOP_VERSION}\n` +
      `${REQUESTS} tools/call per run (echo), ${ROUNDS} interleaved rounds, medians; CPU per call = the proxy process (all threads + children)`,
  );

  const results = new Map<number, Map<string, Measured>>();
  // The disk's own durable-write time, probed after every run at the lowest concurrency (where it bounds the p50).
  const dsync: number[] = [];
  const lowest = Math.min(...CONCURRENCY);
  for (const conc of CONCURRENCY) {
    const rounds = await interleaved(targets, ROUNDS, conc, REQUESTS, undefined, async (t) => {
      await after(t);
      if (conc === lowest) dsync.push(dsyncProbe(dataDir));
    });
    const m = new Map([...rounds].map(([k, v]) => [k, summary(v)]));
    results.set(conc, m);
    console.log(`\nconcurrency ${conc}`);
    for (const t of targets) {
      const r = m.get(t.name)!;
      console.log(
        `  ${t.name.padEnd(22)} ${r.rps.toFixed(0).padStart(6)} calls/s   p50 ${ms(r.p50).padStart(9)}   p99 ${ms(r.p99).padStart(9)}   CPU/call ${us(r.cpu?.all).padStart(8)}${t.name.startsWith('hoop') ? '' : ` (main thread ${us(r.cpu?.main)}, children ${us(r.cpu?.children)}, busiest other threads ${(r.others ?? []).map((x) => x.toFixed(0)).join('/')} µs${r.recordsPerWrite !== undefined ? `, ${r.recordsPerWrite.toFixed(1)} records/WAL write${r.walWriteP50 !== undefined ? ` of ${ms(r.walWriteP50)} p50` : ''}` : ''})`}${r.rest !== undefined ? `   upstream+load ${us(r.rest)}` : ''}${r.machineBusy !== undefined ? `   machine ${(r.machineBusy * 100).toFixed(0)} % busy` : ''}   rounds: ${rounds
          .get(t.name)!
          .map((x) => x.rps.toFixed(0))
          .join(' ')}`,
      );
    }
  }

  // The table of issue 16: share of direct at the highest concurrency, p50 at the lowest, CPU per call.
  const hi = Math.max(...CONCURRENCY);
  const lo = Math.min(...CONCURRENCY);
  const direct = (c: number) => results.get(c)?.get('direct');
  console.log(
    `\n| target, tools/call | ${hi} clients, calls/s | share of direct | ${hi} clients, p99 | ${lo} client, p50 | ${lo} client, p99 | proxy CPU per call, ${hi} clients |`,
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const t of targets) {
    const h = results.get(hi)!.get(t.name)!;
    const l = results.get(lo)!.get(t.name)!;
    const d = direct(hi);
    console.log(
      `| ${t.name} | ${h.rps.toFixed(0)} | ${d !== undefined ? pct(h.rps, d.rps) : '–'} | ${ms(h.p99)} | ${ms(l.p50)} | ${ms(l.p99)} | ${t.name === 'direct' ? '–' : us(h.cpu?.all)} |`,
    );
  }

  // The goals of issues 12 and 16, judged on this run.
  const at = (c: number, name: string) => results.get(c)?.get(name);
  const off = at(hi, 'gitgate audit off');
  const on = at(hi, 'gitgate all on');
  const hoopHi = at(hi, 'hoop oidc+policy');
  const off1 = at(lo, 'gitgate audit off');
  const on1 = at(lo, 'gitgate all on');
  const hoop1 = at(lo, 'hoop oidc+policy');
  if (on !== undefined && off !== undefined)
    console.log(
      `\naudit cost at ${hi} clients: ${pct(off.rps - on.rps, off.rps)} of throughput (goal ≤ 10 %), ${us((on.cpu?.all ?? 0) - (off.cpu?.all ?? 0))} of CPU per exchange`,
    );
  const fsync = dsync.length > 0 ? med(dsync) : undefined;
  if (fsync !== undefined)
    console.log(
      `the disk: one O_DSYNC write of 2 KiB takes ${ms(fsync)} (median of ${dsync.length} probes of 200, between the ${lo}-client runs)`,
    );
  if (on1 !== undefined && off1 !== undefined && fsync !== undefined)
    console.log(
      `audit at ${lo} client: +${ms(on1.p50 - off1.p50)} of p50; the two durable writes the rules need (${ms(fsync)} each, probed) + 0.3 ms = ${ms(2 * fsync + 0.3)} allowed`,
    );
  if (on !== undefined && hoopHi !== undefined)
    console.log(
      `gitgate all on vs hoop oidc+policy at ${hi} clients: ${pct(on.rps, hoopHi.rps)} of its calls/s (goal ≥ 100 %)`,
    );
  if (on !== undefined && hoopHi !== undefined && on.rest !== undefined && on.cpu !== undefined) {
    // Every target shares the machine with the upstream and the load generator: at hoop's rate, what is left per call.
    const budget = (cpus().length * 1e6) / hoopHi.rps - on.rest;
    console.log(
      `  on this machine (${cpus().length} cores${hoopHi.machineBusy !== undefined ? `, hoop's run ${(hoopHi.machineBusy * 100).toFixed(0)} % busy` : ''}): hoop's ${hoopHi.rps.toFixed(0)} calls/s leave at most ${us(budget)} of CPU per call for the proxy (${cpus().length} cores / ${hoopHi.rps.toFixed(0)} − ${us(on.rest)} of upstream and load generator); gitgate all on uses ${us(on.cpu.all)}${off?.cpu !== undefined ? `, audit off ${us(off.cpu.all)}` : ''}`,
    );
  }
  if (on1 !== undefined && hoop1 !== undefined && fsync !== undefined)
    console.log(
      `at ${lo} client: p50 ${ms(on1.p50)} vs hoop's ${ms(hoop1.p50)} + two durable writes = ${ms(hoop1.p50 + 2 * fsync)} allowed`,
    );

  // Payload sizes: hoop's daemon has no redaction hook (masking is for hosts embedding it), so it runs unmasked.
  const sized = targets.filter((t) => t.name !== 'passthrough' && t.name !== 'hoop anonymous');
  for (const size of PAYLOAD_REQUESTS > 0 ? [1024, 65536] : []) {
    const call: Call = { name: 'blob', arguments: { size }, expect: 'lorem ipsum' };
    const n = size > 4096 ? Math.max(50, Math.floor(PAYLOAD_REQUESTS / 2)) : PAYLOAD_REQUESTS;
    const rounds = await interleaved(sized, ROUNDS, 1, n, call, after);
    const direct1 = rounds.get('direct');
    const d = direct1 !== undefined ? summary(direct1) : undefined;
    console.log(
      `\n${size / 1024} KiB responses, 1 client, ${n} calls × ${ROUNDS} rounds (gitgate masks an email every ~500 bytes; hoop does not mask)`,
    );
    for (const t of sized) {
      const r = summary(rounds.get(t.name)!);
      console.log(
        `  ${t.name.padEnd(22)} ${r.rps.toFixed(0).padStart(6)} calls/s (${(d !== undefined ? pct(r.rps, d.rps) : '–').padStart(5)} of direct)   p50 ${ms(r.p50).padStart(9)}   p99 ${ms(r.p99).padStart(9)}   CPU/call ${us(r.cpu?.all)}`,
      );
    }
  }

  const pol = await policyOnly(dir);
  console.log(
    `\npolicy evaluation alone (WASM, tools/call input): median ${pol.medianUs.toFixed(1)} µs/decision, p99 of batches ${pol.p99Us.toFixed(1)} µs`,
  );

  // The audit log alone: AUDIT_RECORDS (default 1 M) records, heap over the run, checkpoint
  // signature, proof generation and verification, and a full verify with its peak memory.
  if (process.env.AUDIT_RECORDS === '0') return;
  console.log(`\naudit log alone (bench/audit.ts, ${process.env.AUDIT_RECORDS ?? '1000000'} records):`);
  await new Promise<void>((resolve, reject) => {
    const c = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(packageRoot, 'bench/audit.ts')], {
      stdio: 'inherit',
    });
    children.push(c);
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bench/audit.ts exited with ${code}`))));
  });

  // Several replicas on PostgreSQL (issue 17): only when asked, it needs a PostgreSQL server and takes a while.
  if (process.env.BENCH_REPLICAS === '1') {
    const { replicasBench } = await import('./replicas.js');
    await replicasBench();
  }
}

/** Stop every child and wait (bounded) for it to exit, so a gitgate under --cpu-prof writes its profile. */
async function stopAll(): Promise<void> {
  await Promise.all(
    children.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const t = setTimeout(() => {
            c.kill('SIGKILL');
            resolve();
          }, 15_000);
          c.once('exit', () => {
            clearTimeout(t);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(stopAll);
