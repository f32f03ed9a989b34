import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { BIN } from '../helpers/cli.js';

describe('gitgate serve output', () => {
  it('gitgate serve writes only JSON log lines to stdout; the banner goes to stderr', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gitgate-serve-'));
    const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data-dir', dataDir], {
      cwd: packageRoot,
      env: { ...process.env, GITGATE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const stdout: string[] = [];
      for await (const line of createInterface({ input: child.stdout })) {
        stdout.push(line);
        if (line.includes('"msg":"gitgate listening"')) break;
      }
      for (const line of stdout) expect(() => JSON.parse(line), line).not.toThrow();
      const listening = JSON.parse(stdout.at(-1)!) as { url: string; upstreams: Record<string, string> };
      expect(listening.upstreams.demo).toBe(`${listening.url}/mcp/demo`);
      await expect.poll(() => stderr, { timeout: 10_000 }).toContain(`gitgate listening on ${listening.url}`);
      expect(stderr).toContain(`upstream demo: ${listening.url}/mcp/demo`);
      expect(stderr).toContain('dev issuer: get a token with');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
