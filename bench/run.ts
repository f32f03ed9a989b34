/**
 * gitgate benchmark: tools/call through gitgate vs directly to the same upstream
 * vs a bare passthrough proxy, at 1 and 16 concurrent sessions; and policy
 * evaluation alone. All traffic stays on 127.0.0.1; every loop is bounded.
 *
 *   npm run bench            (BENCH_REQUESTS=4000 per run, BENCH_ROUNDS=5 interleaved rounds)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';
import { buildPolicyBundle } from '../src/policy/build.js';
import { readBundle } from '../src/policy/bundle.js';
import { instantiate } from '../src/policy/engine.js';
import type { PolicyInput } from '../src/policy/input.js';
import { ensureOpa } from '../src/policy/opa-binary.js';
import { type Call, percentile, type RunResult, run, type Target } from './load.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const children: ChildProcess[] = [];

/** The process behind each started URL (for CPU accounting). */
const pidOf = new Map<string, number>();

function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
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
      out += c.toString();
      const m = /listening (?:on )?(http:\/\/\S+)/.exec(out);
      if (m) {
        pidOf.set(new URL(m[1]!).origin, child.pid!);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', (c: Buffer) => {
      process.stderr.write(c);
      seen(c);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}`)));
  });
}

async function policyDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-bench-policy-'));
  await cp(path.join(packageRoot, 'policies', 'gitgate'), path.join(dir, 'gitgate'), { recursive: true });
  const data = JSON.parse(await readFile(path.join(packageRoot, 'policies', 'config', 'data.json'), 'utf8')) as {
    upstreams: Record<string, unknown>;
  };
  const base = {
    full_access_groups: ['eng'],
    public_tools: ['echo', 'blob'],
    high_risk_tools: {},
    credential_ttl_seconds: 60,
  };
  data.upstreams.bench = { ...base, mask: [] };
  data.upstreams['bench-masked'] = { ...base, mask: [{ path: '$.result', detectors: ['email', 'aws_access_key'] }] };
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
 * thread (the event loop), all its threads, and the children it waited for (git).
 */
function cpuOf(pid: number): { main: number; threads: number; children: number } | undefined {
  try {
    const fields = (file: string) => readFileSync(file, 'utf8').split(') ')[1]!.split(' ').map(Number);
    const tick = 1e6 / 100; // USER_HZ
    const p = fields(`/proc/${pid}/stat`);
    const m = fields(`/proc/${pid}/task/${pid}/stat`);
    return { main: (m[11]! + m[12]!) * tick, threads: (p[11]! + p[12]!) * tick, children: (p[13]! + p[14]!) * tick };
  } catch {
    return undefined;
  }
}

/** One run, with the target's CPU per request (main thread, whole process, and children). */
async function measured(
  t: Target,
  conc: number,
  n: number,
  warmup: number,
): Promise<RunResult & { cpu?: { main: number; threads: number; children: number } }> {
  const pid = pidOf.get(new URL(t.url).origin);
  const before = pid !== undefined ? cpuOf(pid) : undefined;
  const r = await run(t, conc, n, warmup);
  const after = pid !== undefined ? cpuOf(pid) : undefined;
  if (before === undefined || after === undefined) return r;
  // The run's requests: the measured ones, the warm-up, and each session's initialize + initialized.
  const requests = n + warmup + 2 * conc;
  return {
    ...r,
    cpu: {
      main: (after.main - before.main) / requests,
      threads: (after.threads - before.threads) / requests,
      children: (after.children - before.children) / requests,
    },
  };
}

interface AuditReadiness {
  audit?: { appended?: number; commits?: number; lastLagMs?: number };
}

/**
 * While `work` runs, follow the gateway's audit trail through /readyz: records
 * made durable per second, and the commit lag of every commit in between.
 */
async function auditDuring<T>(
  url: string,
  work: Promise<T>,
): Promise<{ result: T; recordsPerSec: number; lags: number[] }> {
  const read = async () => ((await (await fetch(`${url}/readyz`)).json()) as AuditReadiness).audit ?? {};
  const first = await read();
  const t0 = performance.now();
  const lags: number[] = [];
  let commits = first.commits ?? 0;
  let done = false;
  const result = work.finally(() => (done = true));
  // Bounded: one poll every 200 ms while the run lasts.
  while (!done) {
    await new Promise((r) => setTimeout(r, 200));
    const a = await read();
    if ((a.commits ?? 0) !== commits && a.lastLagMs !== undefined) lags.push(a.lastLagMs);
    commits = a.commits ?? commits;
  }
  const last = await read();
  return {
    result: await result,
    recordsPerSec: (((last.appended ?? 0) - (first.appended ?? 0)) * 1000) / (performance.now() - t0),
    lags,
  };
}

/** The run with the median throughput (its latencies with it). */
function median(rs: readonly RunResult[]): RunResult {
  return [...rs].sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)]!;
}

const fmt = (r: RunResult) =>
  `${r.rps.toFixed(0).padStart(7)} req/s   p50 ${r.p50.toFixed(3).padStart(7)} ms   p99 ${r.p99.toFixed(3).padStart(7)} ms`;

async function main(): Promise<void> {
  const upstreamUrl = await start(process.execPath, [
    path.join(packageRoot, 'test', 'fixtures', 'demo-server.mjs'),
    'http',
  ]);
  const passUrl = await start(process.execPath, [path.join(packageRoot, 'bench', 'passthrough.mjs'), upstreamUrl]);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-bench-data-'));
  const dir = await policyDir();
  const cfg = path.join(dataDir, 'gitgate.yaml');
  await writeFile(
    cfg,
    `dataDir: ${dataDir}\npolicy:\n  dir: ${dir}\nlog:\n  level: warn\nupstreams:\n  bench:\n    url: ${upstreamUrl}\n    maxSessions: 1000\n    maxSessionsPerCaller: 1000\n  bench-masked:\n    url: ${upstreamUrl}\n    maxSessions: 1000\n    maxSessionsPerCaller: 1000\n`,
  );
  const gwUrl = await start(process.execPath, [
    path.join(packageRoot, 'bin', 'gitgate.js'),
    'serve',
    '--config',
    cfg,
    '--port',
    '0',
  ]);
  // The same gateway with audit off, to price the audit trail in the same run.
  const cfgOff = path.join(dataDir, 'gitgate-audit-off.yaml');
  await writeFile(
    cfgOff,
    `${(await readFile(cfg, 'utf8')).replace(`dataDir: ${dataDir}`, `dataDir: ${dataDir}-off`)}audit:\n  enabled: false\n`,
  );
  const gwOffUrl = await start(process.execPath, [
    path.join(packageRoot, 'bin', 'gitgate.js'),
    'serve',
    '--config',
    cfgOff,
    '--port',
    '0',
  ]);
  const mint = (config: string) =>
    new Promise<string>((resolve, reject) => {
      const c = spawn(
        process.execPath,
        [path.join(packageRoot, 'bin', 'gitgate.js'), 'token', '--config', config, '--sub', 'bench', '--groups', 'eng'],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error('token failed'))));
    });
  const token = await mint(cfg);
  const tokenOff = await mint(cfgOff);

  const targets: Target[] = [
    { name: 'direct', url: upstreamUrl, headers: {} },
    { name: 'passthrough', url: passUrl, headers: {} },
    { name: 'gitgate', url: `${gwUrl}/mcp/bench`, headers: { authorization: `Bearer ${token}` } },
    { name: 'audit off', url: `${gwOffUrl}/mcp/bench`, headers: { authorization: `Bearer ${tokenOff}` } },
  ];
  console.log(
    `gitgate bench — ${REQUESTS} tools/call per run, ${ROUNDS} interleaved rounds (medians), node ${process.version}, ${new Date().toISOString()}`,
  );
  const results: Record<string, Record<number, RunResult>> = {};
  for (const conc of [1, 16]) {
    console.log(`\nconcurrency ${conc}`);
    // The machine is shared and noisy: run every target once per round, in turn, and take medians,
    // so a slow moment hits all of them alike rather than one.
    const rounds: Record<string, Awaited<ReturnType<typeof measured>>[]> = {};
    const durable: number[] = [];
    const lags: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        const work = measured(t, conc, REQUESTS, Math.min(500, REQUESTS / 4));
        if (t.name === 'gitgate') {
          const a = await auditDuring(gwUrl, work);
          (rounds[t.name] ??= []).push(a.result);
          durable.push(a.recordsPerSec);
          lags.push(...a.lags);
        } else (rounds[t.name] ??= []).push(await work);
        await settle(gwUrl);
      }
    }
    for (const t of targets) {
      const r = median(rounds[t.name]!);
      (results[t.name] ??= {})[conc] = r;
      console.log(
        `  ${t.name.padEnd(12)} ${fmt(r)}   (rounds: ${rounds[t.name]!.map((x) => x.rps.toFixed(0)).join(' ')})`,
      );
    }
    durable.sort((a, b) => a - b);
    lags.sort((a, b) => a - b);
    console.log(
      `  audit trail of gitgate: ${durable[Math.floor(durable.length / 2)]!.toFixed(0)} records/s signed and durable (median of rounds, warm-up included), commit lag median ${lags.length > 0 ? `${lags[Math.floor(lags.length / 2)]!.toFixed(0)} ms, worst ${lags.at(-1)!.toFixed(0)} ms over ${lags.length} commits` : '-'}`,
    );
    const g = results.gitgate![conc]!;
    const d = results.direct![conc]!;
    const p = results.passthrough![conc]!;
    console.log(
      `  gitgate vs direct:      throughput ${((g.rps / d.rps) * 100).toFixed(1)}%   added p50 ${(g.p50 - d.p50).toFixed(3)} ms`,
    );
    console.log(
      `  gitgate vs passthrough: throughput ${((g.rps / p.rps) * 100).toFixed(1)}%   added p50 ${(g.p50 - p.p50).toFixed(3)} ms`,
    );
    const off = results['audit off']![conc]!;
    const perRound = rounds.gitgate!.map((x, i) => x.rps / rounds['audit off']![i]!.rps).sort((a, b) => a - b);
    console.log(
      `  audit on vs off:        throughput ${((g.rps / off.rps) * 100).toFixed(1)}% (cost ${(100 - (g.rps / off.rps) * 100).toFixed(1)}%)   added p50 ${(g.p50 - off.p50).toFixed(3)} ms   per-round ratios ${perRound.map((x) => `${(x * 100).toFixed(0)}%`).join(' ')}`,
    );
    // What each exchange costs the gateway in CPU: the event loop (one thread: a gateway's capacity
    // when it has a core of its own) and every thread (with the audit sealer).
    const cpu = (name: string, k: 'main' | 'threads' | 'children') => {
      const xs = rounds[name]!.map((x) => x.cpu?.[k])
        .filter((x): x is number => x !== undefined)
        .sort((a, b) => a - b);
      return xs.length === 0 ? undefined : xs[Math.floor(xs.length / 2)]!;
    };
    const [onMain, offMain, onAll, offAll, git] = [
      cpu('gitgate', 'main'),
      cpu('audit off', 'main'),
      cpu('gitgate', 'threads'),
      cpu('audit off', 'threads'),
      cpu('gitgate', 'children'),
    ];
    if (onMain !== undefined && offMain !== undefined && onAll !== undefined && offAll !== undefined) {
      console.log(
        `  CPU per exchange (medians): event loop ${offMain.toFixed(0)} µs audit off, ${onMain.toFixed(0)} µs on (+${(onMain - offMain).toFixed(0)} µs: event-loop capacity ${((offMain / onMain) * 100).toFixed(1)}%, cost ${(100 - (offMain / onMain) * 100).toFixed(1)}%);` +
          ` all threads ${offAll.toFixed(0)} / ${onAll.toFixed(0)} µs; git ${git?.toFixed(0) ?? '-'} µs`,
      );
    }
  }
  // Payload sizes, with and without masking (the mask finds an email every ~500 bytes).
  const masked: Target = { name: 'gitgate+mask', url: `${gwUrl}/mcp/bench-masked`, headers: targets[2]!.headers };
  for (const size of [1024, 65536]) {
    const call: Call = { name: 'blob', arguments: { size }, expect: 'lorem ipsum' };
    const n = size > 4096 ? Math.max(200, Math.floor(REQUESTS / 5)) : REQUESTS;
    console.log(`\n${size / 1024} KB responses, concurrency 1 (${n} calls)`);
    const rs: Record<string, RunResult> = {};
    for (const t of [targets[0]!, targets[2]!, masked]) {
      rs[t.name] = await run(t, 1, n, Math.min(200, n / 4), call);
      await settle(gwUrl);
      console.log(`  ${t.name.padEnd(12)} ${fmt(rs[t.name]!)}`);
    }
    const d = rs.direct!;
    for (const name of ['gitgate', 'gitgate+mask']) {
      const g = rs[name]!;
      console.log(
        `  ${name} vs direct: throughput ${((g.rps / d.rps) * 100).toFixed(1)}%   added p50 ${(g.p50 - d.p50).toFixed(3)} ms   p99 ${g.p99.toFixed(3)} ms`,
      );
    }
  }

  const pol = await policyOnly(dir);
  console.log(
    `\npolicy evaluation alone (WASM, tools/call input): median ${pol.medianUs.toFixed(1)} µs/decision, p99 of batches ${pol.p99Us.toFixed(1)} µs`,
  );

  // The audit log alone: AUDIT_RECORDS (default 1 M) records, heap over the run, checkpoint
  // signature, proof generation and verification, and a full verify with its peak memory.
  console.log(`\naudit log alone (bench/audit.ts, ${process.env.AUDIT_RECORDS ?? '1000000'} records):`);
  await new Promise<void>((resolve, reject) => {
    const c = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', path.join(packageRoot, 'bench/audit.ts')], {
      stdio: 'inherit',
    });
    children.push(c);
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`bench/audit.ts exited with ${code}`))));
  });
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const c of children) c.kill('SIGTERM');
  });
