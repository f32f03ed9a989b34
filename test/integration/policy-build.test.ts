import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import { packageRoot } from '../../src/paths.js';
import { buildPolicyBundle } from '../../src/policy/build.js';
import { readBundle } from '../../src/policy/bundle.js';
import { instantiate, PolicyHolder, SMOKE_INPUT } from '../../src/policy/engine.js';
import type { PolicyInput } from '../../src/policy/input.js';
import { testPolicies } from '../../src/policy/opa-test.js';
import { ManualClock } from '../helpers/clock.js';
import { makePolicyDir, opa } from '../helpers/policy.js';

async function policyFolder(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-rego-'));
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
  return dir;
}

async function build(dir: string) {
  const out = await mkdtemp(path.join(tmpdir(), 'gitgate-out-'));
  const built = await buildPolicyBundle({ opa: await opa(), srcDir: dir, outDir: out });
  return readBundle(await readFile(built.path));
}

const input = (over: Partial<PolicyInput['mcp']> = {}, groups: string[] = []): PolicyInput => ({
  identity: { sub: 'alice', groups, issuer: 'test' },
  mcp: {
    kind: 'request',
    method: 'tools/call',
    tool: 'echo',
    arguments: {},
    protocol_version: '2025-11-25',
    era: 'legacy',
    ...over,
  },
  upstream: { name: 'demo', transport: 'stdio' },
  request: { id: 'r', time_ns: 0 },
});

describe('policies compiled by the pinned opa and evaluated in WASM', () => {
  beforeAll(async () => {
    await opa();
  });

  it('the repo default policy passes opa fmt, check --strict and opa test with >= 90% coverage', async () => {
    const report = await testPolicies(await opa(), path.join(packageRoot, 'policies'), 90);
    expect(report.steps.filter((s) => !s.ok)).toEqual([]);
    expect(report.coverage).toBeGreaterThanOrEqual(90);
  });

  it('the coverage gate and the fmt check can fail', async () => {
    const dir = await policyFolder({
      'p.rego':
        'package gitgate\n\ndecision := {"allow": true, "reasons": []} if input.x\n\ndecision := {"allow": false, "reasons": []} if not input.x\n',
      'p_test.rego':
        'package gitgate_test\n\nimport data.gitgate\n\ntest_x if gitgate.decision.allow with input as {"x": true}\n',
      'ugly.rego': 'package other\nx:=1\n',
    });
    const report = await testPolicies(await opa(), dir, 90);
    expect(report.ok).toBe(false);
    expect(report.steps.find((s) => s.name === 'opa fmt')?.ok).toBe(false);
    expect(report.steps.find((s) => s.name.startsWith('coverage'))?.ok).toBe(false);
  });

  it('a policy folder with its CI-built bundle.tar.gz beside the sources still passes (the bundle is not loaded twice)', async () => {
    const dir = await makePolicyDir();
    await cp(
      path.join(packageRoot, 'policies', 'gitgate', 'decision_test.rego'),
      path.join(dir, 'gitgate', 'decision_test.rego'),
    );
    await writeFile(
      path.join(dir, 'config', 'data.json'),
      await readFile(path.join(packageRoot, 'policies', 'config', 'data.json')),
    );
    await buildPolicyBundle({ opa: await opa(), srcDir: dir, outDir: dir });
    await rm(path.join(dir, 'capabilities.json'));
    const report = await testPolicies(await opa(), dir, 90);
    expect(report.steps.filter((s) => !s.ok)).toEqual([]);
  });

  it('an empty policy folder, or one without tests, does not pass', async () => {
    const empty = await policyFolder({ 'config/data.json': '{}' });
    const e = await testPolicies(await opa(), empty, 90);
    expect(e.ok).toBe(false);
    expect(e.steps.find((s) => s.name === 'opa test')?.detail).toMatch(/^no test ran in .*: add \*_test\.rego files/);
    expect(e.steps.find((s) => s.name.startsWith('coverage'))?.detail).toMatch(
      /no policy rules in .*is --dir the policy folder\?/,
    );
    const untested = await testPolicies(
      await opa(),
      await policyFolder({ 'p.rego': 'package gitgate\n\ndecision := {"allow": true, "reasons": []}\n' }),
      0,
    );
    expect(untested.steps.filter((s) => !s.ok).map((s) => s.name)).toEqual(['opa test']);
  });

  it('the coverage gate counts the policy, not its _test.rego files, and lists the lines no test reaches', async () => {
    // 2 of 5 policy lines covered (40%); the many covered test lines made it ~95% when they counted.
    const tests = Array.from(
      { length: 40 },
      (_, i) => `test_allow_${i} if gitgate.decision.allow with input as {"x": true}`,
    ).join('\n\n');
    const dir = await policyFolder({
      'gitgate/p.rego':
        'package gitgate\n\ndecision := {"allow": true, "reasons": []} if input.x\n\ndecision := {"allow": false, "reasons": []} if not input.x\n\nextra := 1 if {\n\tinput.z\n}\n',
      'gitgate/p_test.rego': `package gitgate_test\n\nimport data.gitgate\n\n${tests}\n`,
    });
    const report = await testPolicies(await opa(), dir, 90);
    const gate = report.steps.find((s) => s.name.startsWith('coverage'))!;
    expect(report.steps.filter((s) => !s.ok).map((s) => s.name)).toEqual(['coverage >= 90%']);
    expect(report.coverage).toBeCloseTo(40, 5);
    expect(gate.detail).toContain('coverage 40.0% (2 of 5 policy lines; _test.rego files not counted)');
    expect(gate.detail).toContain('gitgate/p.rego: 5, 7-8');
  });

  it('the default policy decides the demo contract', async () => {
    const holder = new PolicyHolder();
    holder.swap(await instantiate(await build(path.join(packageRoot, 'policies')), { source: 'repo' }));
    const p = holder.current()!;
    expect(p.evaluate(input({ tool: 'echo' })).allow).toBe(true);
    // Pre-serialized input (the gateway and impact replay path) decides exactly the same.
    for (const i of [input({ tool: 'echo' }), input({ tool: 'get-env' }, ['eng']), input({ tool: 'get-tiny-image' })]) {
      expect(p.evaluateJson(new TextEncoder().encode(JSON.stringify(i)).buffer as ArrayBuffer)).toEqual(p.evaluate(i));
    }
    expect(p.evaluate(input({ tool: 'get-sum' })).allow).toBe(true);
    const denied = p.evaluate(input({ tool: 'get-tiny-image' }));
    expect(denied).toMatchObject({
      allow: false,
      valid: true,
      reasons: ['tools/call of get-tiny-image denied: alice (groups: []) may only call echo, get-sum'],
    });
    expect(p.evaluate(input({ tool: 'get-tiny-image' }, ['eng'])).allow).toBe(true);
    const env = p.evaluate(input({ tool: 'get-env' }, ['eng']));
    expect(env).toMatchObject({
      allow: true,
      risk: 'high',
      approval: { required: true, approvers: ['eng'], min_approvals: 1 },
    });
    const detectors = [
      'email',
      'aws_access_key',
      'aws_secret_key',
      'github_token',
      'private_key',
      'jwt',
      'bearer_token',
    ];
    // Responses, relayed errors, the params of upstream notifications and requests, and the params the audit log records.
    expect(p.evaluate(input({ tool: 'echo' })).mask).toEqual(
      ['$.result', '$.error', '$.params'].map((path) => ({ path, detectors })),
    );
  });

  it('a policy that needs a builtin the runtime lacks fails at build time, naming it', async () => {
    const dir = await policyFolder({
      'p.rego':
        'package gitgate\n\ndecision := {"allow": r.status_code == 200, "reasons": []} if {\n\tr := http.send({"method": "GET", "url": "http://127.0.0.1:1"})\n}\n',
    });
    const err = await build(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('POLICY_BUILD_FAILED');
    expect((err as GatewayError).message).toMatch(/http\.send/);
  });

  it('gitgate supplies time.now_ns to the WASM module: the request’s time, else its clock’s', async () => {
    const dir = await policyFolder({
      'p.rego':
        'package gitgate\n\ndecision := {"allow": time.now_ns() > 1700000000000000000, "reasons": [sprintf("now=%d", [time.now_ns()])]}\n',
    });
    const clock = new ManualClock();
    const p = await instantiate(await build(dir), { source: 'test' }, clock);
    expect(p.revision.loadedAt).toBe(clock.date().toISOString());
    const reported = (d: { reasons: readonly string[] }) => Number(/now=(\d+)/.exec(d.reasons[0]!)![1]);
    // The smoke input carries no request time: the clock's.
    clock.advance(1000);
    const smoke = p.evaluate(SMOKE_INPUT);
    expect(smoke.allow).toBe(true);
    expect(reported(smoke)).toBe(clock.now() * 1e6);
    // A request's: its own time, also as JSON (replays), whatever the clock says meanwhile.
    const at = Date.UTC(2031, 5, 1) * 1e6;
    const req = { ...input(), request: { id: 'r', time_ns: at } };
    clock.advance(60_000);
    expect(reported(p.evaluate(req))).toBe(at);
    expect(reported(p.evaluateJson(new TextEncoder().encode(JSON.stringify(req)).buffer as ArrayBuffer))).toBe(at);
  });

  it('an invalid decision is a deny that says why; an undefined decision too', async () => {
    const bad = await policyFolder({
      'p.rego':
        'package gitgate\n\ndecision := {"allow": "yes", "reasons": []} if input.mcp.method == "tools/call"\n\ndecision := {"allow": true, "reasons": []} if input.mcp.method == "ping"\n',
    });
    const p = await instantiate(await build(bad), { source: 'test' });
    const d = p.evaluate(input());
    expect(d).toMatchObject({ allow: false, valid: false });
    expect(d.reasons[0]).toMatch(/policy decision invalid: allow: must be boolean/);
    const undef = p.evaluate(input({ method: 'tools/list' }));
    expect(undef).toMatchObject({ allow: false, valid: false, reasons: [expect.stringMatching(/no decision/)] });
    // The pre-serialized path (the result set read as the WASM wrote it) says the same, twice (remembered).
    const json = (i: PolicyInput) => new TextEncoder().encode(JSON.stringify(i)).buffer as ArrayBuffer;
    for (let n = 0; n < 2; n++) {
      expect(p.evaluateJson(json(input()))).toEqual(d);
      expect(p.evaluateJson(json(input({ method: 'tools/list' })))).toEqual(undef);
      expect(p.evaluateJson(json(input({ method: 'ping' })))).toEqual(p.evaluate(input({ method: 'ping' })));
    }
  });

  it('a pre-serialized input larger than the WASM memory grows it and decides as the object does', async () => {
    const p = await instantiate(await build(path.join(packageRoot, 'policies')), { source: 'repo' });
    const big = input({ tool: 'echo', arguments: { text: 'x'.repeat(3 * 1024 * 1024) } });
    const d = p.evaluateJson(new TextEncoder().encode(JSON.stringify(big)).buffer as ArrayBuffer);
    expect(d).toEqual(p.evaluate(big));
    expect(d.allow).toBe(true);
    // And the memory still serves small inputs afterwards.
    const small = input({ tool: 'get-tiny-image' });
    expect(p.evaluateJson(new TextEncoder().encode(JSON.stringify(small)).buffer as ArrayBuffer)).toEqual(
      p.evaluate(small),
    );
  });

  it('a policy whose smoke decision is invalid is refused before it can serve', async () => {
    const dir = await policyFolder({ 'p.rego': 'package gitgate\n\ndecision := {"allow": true}\n' });
    await expect(instantiate(await build(dir), { source: 'test' })).rejects.toThrow(/smoke decision failed/);
  });

  it('swaps atomically: a captured instance keeps deciding with its own revision', async () => {
    const holder = new PolicyHolder();
    const a = await instantiate(
      await build(
        await policyFolder({ 'p.rego': 'package gitgate\n\ndecision := {"allow": true, "reasons": ["A"]}\n' }),
      ),
      { source: 'a' },
    );
    const b = await instantiate(
      await build(
        await policyFolder({ 'p.rego': 'package gitgate\n\ndecision := {"allow": false, "reasons": ["B"]}\n' }),
      ),
      { source: 'b' },
    );
    const swaps: string[] = [];
    holder.onSwap((rev) => swaps.push(rev.source));
    holder.swap(a);
    const inFlight = holder.current()!;
    holder.swap(b);
    expect(inFlight.evaluate(SMOKE_INPUT).reasons).toEqual(['A']);
    expect(holder.current()!.evaluate(SMOKE_INPUT).reasons).toEqual(['B']);
    expect(swaps).toEqual(['a', 'b']);
    expect(a.revision.bundleDigest).not.toBe(b.revision.bundleDigest);
  });

  it('test data drives the same Rego (helper sanity)', async () => {
    const p = await instantiate(await build(await makePolicyDir()), { source: 'test' });
    expect(p.evaluate({ ...input({ tool: 'add' }), upstream: { name: 'http', transport: 'http' } }).allow).toBe(true);
  });
});
