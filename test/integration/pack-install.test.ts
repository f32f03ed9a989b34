import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { gitText } from '../../src/git/run.js';
import { sourcesDigest } from '../../src/gitsync/sources-digest.js';
import { verifySignedBundle } from '../../src/gitsync/verify-bundle.js';
import { packageRoot } from '../../src/paths.js';
import { readBundle } from '../../src/policy/bundle.js';
import { VERSION } from '../../src/version.js';
import { decisionEvent, openTrail } from '../helpers/audit-repo.js';
import { GitHubEmulator } from '../helpers/github-emulator.js';
import { opa } from '../helpers/policy.js';
import { SOAK } from '../helpers/soak.js';
import { type StepResult, WorkflowRunner } from '../helpers/workflow-runner.js';

/**
 * The first day of a policy author, for real: gitgate packed with `npm pack`,
 * installed from the tarball into an empty folder, `gitgate init policy-repo`,
 * then the generated workflow run step by step (its `uses:` of gitgate's own
 * action expanded into the action's steps, which install gitgate from a checkout
 * of this repository). Slow: two npm installs and a TypeScript build.
 */

const run = promisify(execFile);
const OWNER = 'acme';
const ACTION = `${OWNER}/gitgate@v${VERSION}`;

/** The environment of a child that should not see this test runner (vitest's loader, its variables). */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !/^(VITEST|NODE_OPTIONS|TSX|npm_)/i.test(k)) env[k] = v;
  // Packages come from the registry through npm's cache, preferring what it already holds.
  return {
    ...env,
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    ...extra,
  };
}

const summary = (results: readonly StepResult[]) =>
  results.map((r) => `${r.status.padEnd(7)} ${r.name}${r.why ? `  (${r.why})` : ''}`).join('\n');
const outputOf = (results: readonly StepResult[], name: RegExp) =>
  results
    .filter((r) => name.test(r.name))
    .map((r) => r.output)
    .join('\n');

// npm pack and a real install take minutes: this file runs in the soak suite only.
describe.runIf(SOAK)('npm pack → install → gitgate init policy-repo → the generated workflow, step by step', () => {
  let root: string;
  let checkout: string;
  let installed: string;
  let origin: string;
  let audit: string;
  let gh: GitHubEmulator;
  let runnerDir: string;
  let opaBin: string;
  let signing: { priv: string; pub: string };
  const timings: string[] = [];
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      timings.push(`${what}: ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
  };

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'gitgate-pack-'));
    opaBin = await opa();
    // A checkout of this repository as GitHub would hand it to the action (tracked and new files, nothing ignored).
    checkout = path.join(root, 'gitgate');
    const { stdout } = await run('git', ['ls-files', '-co', '--exclude-standard', '-z'], {
      cwd: packageRoot,
      maxBuffer: 16 * 1024 * 1024,
    });
    for (const f of stdout.split('\0').filter(Boolean)) {
      if (!existsSync(path.join(packageRoot, f))) continue; // deleted in the work tree
      mkdirSync(path.dirname(path.join(checkout, f)), { recursive: true });
      cpSync(path.join(packageRoot, f), path.join(checkout, f));
    }
    // npm pack (prepack builds dist/) from a clean install, then the tarball into an empty folder.
    const packs = path.join(root, 'packs');
    mkdirSync(packs);
    await timed('npm ci + npm pack', async () => {
      await run('npm', ['ci'], { cwd: checkout, env: cleanEnv(), maxBuffer: 64 * 1024 * 1024 });
      await run('npm', ['pack', '--pack-destination', packs], {
        cwd: checkout,
        env: cleanEnv(),
        maxBuffer: 64 * 1024 * 1024,
      });
    });
    const tarball = path.join(packs, readdirSync(packs).find((f) => f.endsWith('.tgz'))!);
    installed = path.join(root, 'empty');
    mkdirSync(installed);
    await timed('npm install <tarball> (runtime deps only)', () =>
      run('npm', ['install', '--omit=dev', tarball], { cwd: installed, env: cleanEnv(), maxBuffer: 64 * 1024 * 1024 }),
    );

    // Signed bundles on main; an audit repo the gateway pushed; GitHub for the PR comment.
    const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
    signing = {
      priv: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      pub: pair.publicKey.export({ format: 'pem', type: 'spki' }).toString(),
    };
    // Decisions recorded two days ago and yesterday, in two session streams.
    const trail = await openTrail(mkdtempSync(path.join(tmpdir(), 'gitgate-pack-audit-')));
    for (const [stream, n, daysAgo] of [
      ['sessions/a/s1', 4, 2],
      ['sessions/b/s2', 3, 1],
    ] as const) {
      const ts = new Date(Date.now() - daysAgo * 86_400_000).toISOString();
      for (let i = 0; i < n; i++) await trail.log.append(stream, decisionEvent(`${stream}-${i}`), { ts });
    }
    await trail.committer.commit();
    await trail.log.close();
    audit = trail.store.dir;
    gh = await new GitHubEmulator(OWNER, 'policies').start();
    runnerDir = path.join(root, 'runner');
  }, 600_000);

  afterAll(async () => {
    await gh?.close();
    // The report wants to know: this file is slow because of the installs.
    process.stderr.write(`pack-install timings: ${timings.join('; ')}\n`);
  });

  const bin = () => path.join(installed, 'node_modules', '.bin', 'gitgate');
  let bad = 0;

  /** Clone origin into a fresh workspace on `branch` (what actions/checkout with fetch-depth 0 does). */
  const workspace = async (branch: string): Promise<string> => {
    const ws = mkdtempSync(path.join(root, 'ws-'));
    await gitText(root, ['clone', '--quiet', '--branch', 'main', origin, ws]);
    if (branch !== 'main') await gitText(ws, ['checkout', '--quiet', '-b', branch]);
    return ws;
  };
  const commitAll = async (ws: string, msg: string) => {
    await gitText(ws, ['add', '-A']);
    await gitText(ws, ['commit', '-q', '-m', msg]);
    return (await gitText(ws, ['rev-parse', 'HEAD'])).trim();
  };

  const runWorkflow = async (ws: string, event: 'pull_request' | 'push', sha: string): Promise<StepResult[]> => {
    const runner = new WorkflowRunner({
      workspace: ws,
      event:
        event === 'pull_request'
          ? { name: 'pull_request', payload: { pull_request: { number: 7, labels: [], base: { ref: 'main' } } } }
          : { name: 'push', payload: { ref: 'refs/heads/main' } },
      github: {
        base_ref: event === 'pull_request' ? 'main' : '',
        sha,
        repository: `${OWNER}/policies`,
        token: 'ghs_test',
        api_url: gh.url,
      },
      vars: { AUDIT_REPO_URL: audit },
      secrets: { POLICY_SIGNING_KEY: signing.priv, AUDIT_REPO_TOKEN: '' },
      // The pinned opa is found through GITGATE_OPA, as a cached one would be (no go install here).
      env: cleanEnv({ GITGATE_OPA: opaBin, GITHUB_API_URL: gh.url, GITHUB_REPOSITORY: `${OWNER}/policies` }),
      runnerDir,
      actions: { [ACTION]: checkout },
    });
    return runner.runWorkflow(path.join(ws, '.github', 'workflows', 'policy.yml'));
  };

  it("the installed tarball scaffolds a repo whose workflow uses this version of gitgate's own action", async () => {
    const r = await run(bin(), ['init', 'policy-repo', path.join(root, 'policy-repo'), '--action-owner', OWNER], {
      env: cleanEnv(),
    });
    expect(r.stdout).toContain(`uses ${ACTION}`);
    const wf = YAML.parse(
      readFileSync(path.join(root, 'policy-repo', '.github', 'workflows', 'policy.yml'), 'utf8'),
    ) as { jobs: { policy: { steps: { uses?: string; run?: string }[] } } };
    expect(wf.jobs.policy.steps.map((s) => s.uses).filter(Boolean)).toEqual(['actions/checkout@v4', ACTION]);
    expect(JSON.stringify(wf)).not.toContain('npm install');
    origin = path.join(root, 'origin.git');
    await gitText(root, ['clone', '--quiet', '--bare', path.join(root, 'policy-repo'), origin]);
  }, 60_000);

  it("a pull request: every step passes (policy test, build, impact with its PR comment), gitgate installed from the action's checkout", async () => {
    const ws = await workspace('pr-1');
    const data = JSON.parse(readFileSync(path.join(ws, 'policies', 'config', 'data.json'), 'utf8')) as {
      upstreams: Record<string, { public_tools: string[] }>;
    };
    data.upstreams.search = { ...data.upstreams.demo!, public_tools: ['query'] };
    writeFileSync(path.join(ws, 'policies', 'config', 'data.json'), `${JSON.stringify(data, null, 2)}\n`);
    const sha = await commitAll(ws, 'policy: a search upstream, query is public');
    const results = await timed('workflow on a pull request (first run: installs gitgate)', () =>
      runWorkflow(ws, 'pull_request', sha),
    );
    process.stderr.write(
      `pull_request run:\n${summary(results)}\n${outputOf(results, /gitgate policy (test|build|impact)$/)}\n`,
    );
    expect(
      results.filter((r) => r.status === 'failed' || r.status === 'not run'),
      summary(results) + results.map((r) => r.output).join('\n'),
    ).toEqual([]);
    const ran = results.filter((r) => r.status === 'ok').map((r) => r.name);
    for (const step of [
      'install gitgate',
      'the pinned opa',
      'gitgate policy test',
      'gitgate policy build',
      'gitgate policy impact',
    ])
      expect(
        ran.some((n) => n.includes(step)),
        step,
      ).toBe(true);
    expect(results.filter((r) => r.status === 'skipped').map((r) => r.why)).toEqual(
      expect.arrayContaining([
        expect.stringContaining('actions/checkout only sets up the machine'),
        expect.stringContaining("github.event_name == 'push'"),
      ]),
    );
    expect(outputOf(results, /pinned opa/)).toContain(`opa: ${opaBin}`);
    expect(outputOf(results, /policy test/)).toMatch(/ok {3}coverage >= 90%: coverage 100\.0%/);
    expect(outputOf(results, /policy build/)).toContain('built ');
    const impact = outputOf(results, /policy impact/);
    expect(impact).toContain('Replayed **7** recorded decision(s)');
    expect(impact).toContain('from 2 stream(s) over 2 day(s)');
    expect(impact).toContain('impact comment created on acme/policies#7');
    expect(gh.comments.filter((c) => c.issue === 7)).toHaveLength(1);
    expect(gh.violations).toEqual([]);
  }, 600_000);

  it('on main: the bundle is built, signed with the repository secret, committed and pushed; a gateway would verify it', async () => {
    const ws = await workspace('main');
    const sha = (await gitText(ws, ['rev-parse', 'HEAD'])).trim();
    const results = await runWorkflow(ws, 'push', sha);
    process.stderr.write(`push run:\n${summary(results)}\n`);
    expect(
      results.filter((r) => r.status === 'failed' || r.status === 'not run'),
      summary(results) + results.map((r) => r.output).join('\n'),
    ).toEqual([]);
    expect(results.find((r) => r.name.includes('gitgate policy impact'))?.status).toBe('skipped');
    expect(outputOf(results, /^run: if \[ -z "\$POLICY_SIGNING_KEY"/)).toContain('signed');
    // What the gateway fetches: the pushed commit carries a bundle signed by the key, built from its sources.
    const check = await workspace('main');
    const bundle = await readBundle(readFileSync(path.join(check, 'policies', 'bundle.tar.gz')));
    await verifySignedBundle(bundle.files, { publicKey: signing.pub, algorithm: 'RS256' });
    // The revision a gateway checks: the sources and the routes file beside them (what the signature covers).
    expect(bundle.manifest.revision).toBe(
      sourcesDigest(path.join(check, 'policies'), readFileSync(path.join(check, 'gitgate.routes.yaml'))),
    );
    expect(await gitText(check, ['log', '-1', '--format=%s'])).toContain(
      `build: signed policy bundle for ${sha.slice(0, 12)}`,
    );
  }, 300_000);

  it.each([
    [
      'a change that lowers coverage below the gate (untested rules) fails policy test, naming the lines',
      (ws: string) =>
        writeFileSync(
          path.join(ws, 'policies', 'gitgate', 'extra.rego'),
          `package gitgate\n\n${Array.from({ length: 20 }, (_, i) => `extra_${i} if input.mcp.tool == "t${i}"`).join('\n\n')}\n`,
        ),
      /gitgate policy test$/,
      /FAIL coverage >= 90%[\s\S]*not covered by any test[\s\S]*gitgate\/extra\.rego: 3, 5, 7/,
    ],
    [
      'a change that uses a builtin the WASM runtime lacks (crypto.sha256) passes opa test but fails policy build',
      (ws: string) => {
        writeFileSync(
          path.join(ws, 'policies', 'gitgate', 'digest.rego'),
          'package gitgate\n\ncall_digest := crypto.sha256(json.marshal(input.mcp.arguments))\n',
        );
        writeFileSync(
          path.join(ws, 'policies', 'gitgate', 'digest_test.rego'),
          'package gitgate_test\n\nimport data.gitgate\n\ntest_call_digest if gitgate.call_digest with input as {"mcp": {"arguments": {}}}\n',
        );
      },
      /gitgate policy build$/,
      /crypto\.sha256/,
    ],
  ])(
    '%s',
    async (_name, change, failing, why) => {
      const ws = await workspace(`pr-bad-${++bad}`);
      change(ws);
      const sha = await commitAll(ws, 'a policy change');
      const results = await runWorkflow(ws, 'pull_request', sha);
      process.stderr.write(`${_name}:\n${summary(results)}\n`);
      const failed = results.filter((r) => r.status === 'failed');
      expect(
        failed.map((r) => r.name),
        summary(results),
      ).toHaveLength(1);
      expect(failed[0]!.name).toMatch(failing);
      expect(failed[0]!.output).toMatch(why);
      expect(results.at(-1)!.status).toBe('not run');
    },
    300_000,
  );
});
