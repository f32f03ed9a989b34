import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { BIN, gitgate } from '../helpers/cli.js';

const tmp = (prefix: string) => mkdtempSync(path.join(tmpdir(), prefix));

describe('gitgate approvals says which data dir it reads', () => {
  it('names a --data-dir that holds no approvals store, on stderr, and fails', async () => {
    const dir = tmp('gitgate-nostore-');
    for (const args of [
      ['approvals', 'list'],
      ['approvals', 'approve', 'x', '--token', 'y'],
      ['approvals', 'deny', 'x', '--token', 'y'],
    ]) {
      const r = await gitgate([...args, '--data-dir', dir]);
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 1, stdout: '' });
      expect(r.stderr).toContain(`gitgate: data dir ${dir} (--data-dir)`);
      expect(r.stderr).toContain(`${dir} holds no approvals store`);
    }
  });

  it('without --data-dir or --config it says it fell back to ./.gitgate, and fails when nothing is there', async () => {
    const cwd = tmp('gitgate-cwd-');
    const r = await gitgate(['approvals', 'list'], { cwd });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`gitgate: data dir ${path.join(cwd, '.gitgate')} (default: no --data-dir or --config)`);
    expect(r.stderr).toContain('holds no approvals store');
  });

  it('names the config whose dataDir it reads; a store there lists', async () => {
    const dir = tmp('gitgate-cfgdir-');
    mkdirSync(path.join(dir, 'state', 'approvals'), { recursive: true });
    const config = path.join(dir, 'gitgate.yaml');
    writeFileSync(config, 'dataDir: state\nupstreams:\n  a: { url: http://127.0.0.1:1/mcp }\n');
    const r = await gitgate(['approvals', 'list', '--config', config]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`gitgate: data dir ${path.join(dir, 'state')} (dataDir of ${config})`);
    expect(r.stdout).toBe('no pending approvals (use --all for history)\n');
  });
});

/**
 * Runs gitgate with a stdout whose reader is already gone: the shell waits for a
 * line on stdin, which is sent only once this process has closed its end of the
 * stdout pipe, so gitgate's first write meets EPIPE (no timing involved).
 */
async function withClosedStdout(
  args: string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn('/bin/sh', ['-c', 'read go; exec "$0" "$@"', process.execPath, BIN, ...args], {
    cwd: packageRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  child.stdout!.destroy();
  await once(child.stdout!, 'close');
  child.stdin!.end('go\n');
  const [code, signal] = await exited;
  return { code, signal, stderr };
}

describe('a closed stdout (`gitgate … | head`) ends a command quietly', () => {
  it('approvals list', async () => {
    const dir = tmp('gitgate-epipe-');
    mkdirSync(path.join(dir, 'approvals'));
    const r = await withClosedStdout(['approvals', 'list', '--data-dir', dir]);
    expect(r).toEqual({ code: 0, signal: null, stderr: `gitgate: data dir ${dir} (--data-dir)\n` });
  });

  it('--help (commander writes to stdout itself)', async () => {
    const r = await withClosedStdout(['--help']);
    expect(r).toEqual({ code: 0, signal: null, stderr: '' });
  });

  it('token (writes after async work)', async () => {
    const r = await withClosedStdout(['token', '--sub', 'alice', '--data-dir', tmp('gitgate-epipe-token-')]);
    expect(r).toEqual({ code: 0, signal: null, stderr: '' });
  });
});
