import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfigText, validateConfig } from '../../src/config/load.js';
import { packageRoot } from '../../src/paths.js';

const MINIMAL = { upstreams: { docs: { url: 'http://127.0.0.1:3001/mcp' } } };

describe('the embedded default is examples/demo/gitgate.yaml', () => {
  const file = path.join(packageRoot, 'examples', 'demo', 'gitgate.yaml');

  it('loads the demo file: its approver directory, policies and demo upstream; the data dir stays where gitgate runs', () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'gitgate-embedded-cfg-'));
    const c = loadConfig(undefined, {}, cwd);
    expect(c.source).toContain(file);
    expect(c.approvals.local.teams).toEqual({ eng: ['alice', 'carol', 'dave'] });
    expect(c.approvals.local.teams).toEqual(
      (parseConfigText(readFileSync(file, 'utf8'), file).approvals as { local: { teams: unknown } }).local.teams,
    );
    expect(c.policy.dir).toBe(path.join(packageRoot, 'policies'));
    expect(c.dataDir).toBe(path.join(cwd, '.gitgate'));
    expect(c.upstreams.demo?.stdio).toMatchObject({ command: process.execPath, cwd: path.dirname(file) });
  });

  it('is shipped in the package, and runs as a config file of its own', () => {
    const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('examples');
    const c = loadConfig(file);
    expect(c.approvals.local.teams).toEqual({ eng: ['alice', 'carol', 'dave'] });
    expect(c.policy.dir).toBe(path.join(packageRoot, 'policies'));
  });

  it('a config of your own has no approver directory unless it lists one', () => {
    expect(validateConfig(MINIMAL, {}, '/srv', 'gitgate.yaml').approvals.local.teams).toEqual({});
  });
});
