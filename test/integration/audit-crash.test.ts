import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import { verifyAuditRepo } from '../../src/audit/verify.js';
import { loadDevIssuer } from '../../src/identity/dev-issuer.js';
import { serveProcess } from '../helpers/cli.js';
import { makePolicyDir } from '../helpers/policy.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';

const CRASHES = 20;
const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** One client session sending echo calls until the gateway dies; returns the messages whose responses arrived. */
async function client(url: string, token: string, tag: string): Promise<string[]> {
  const got: string[] = [];
  try {
    const init = await fetch(url, {
      method: 'POST',
      headers: { ...HEADERS, authorization: `Bearer ${token}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'crash', version: '1' } } }),
    });
    await init.text();
    const sid = init.headers.get('mcp-session-id');
    if (sid === null) return got;
    for (let i = 0; i < 10_000; i++) {
      const message = `${tag}-${i}`;
      const res = await fetch(url, {
        method: 'POST',
        headers: { ...HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': sid },
        body: JSON.stringify({ jsonrpc: '2.0', id: i + 1, method: 'tools/call', params: { name: 'echo', arguments: { message } } }),
      });
      const text = await res.text();
      if (res.status === 200 && text.includes(`echo: ${message}`)) got.push(message);
    }
  } catch {
    // the gateway was killed
  }
  return got;
}

describe('crash safety: SIGKILL at random moments under load', () => {
  let upstream: { url: string; close(): Promise<void> };
  let dataDir: string;
  let config: string;

  beforeAll(async () => {
    upstream = await startHttpServer();
    dataDir = mkdtempSync(path.join(tmpdir(), 'gitgate-crash-'));
    config = path.join(dataDir, 'gitgate.yaml');
    writeFileSync(
      config,
      `dataDir: ${dataDir}\npolicy:\n  dir: ${await makePolicyDir()}\naudit:\n  commitEveryMs: 150\n  commitEveryRecords: 50\nupstreams:\n  http:\n    url: ${upstream.url}\n`,
    );
  });
  afterAll(() => upstream.close());

  it(`every answered exchange survives ${CRASHES} crashes and the repo verifies`, async () => {
    const answered: string[] = [];
    for (let crash = 0; crash < CRASHES; crash++) {
      const gw = await serveProcess(['--config', config, '--port', '0']);
      const issuer = await loadDevIssuer(dataDir);
      const token = await issuer.mint({ sub: `crash-${crash}`, audience: 'gitgate' });
      const url = `${gw.url}/mcp/http`;
      const load = Promise.all([0, 1, 2, 3].map((w) => client(url, token, `c${crash}w${w}`)));
      await new Promise((r) => setTimeout(r, 100 + Math.floor(Math.random() * 500)));
      gw.child.kill('SIGKILL');
      await once(gw.child, 'exit');
      for (const got of await load) answered.push(...got);
    }
    expect(answered.length).toBeGreaterThan(CRASHES * 4);

    // A last start recovers the WAL; a graceful stop commits everything.
    const last = await serveProcess(['--config', config, '--port', '0']);
    last.child.kill('SIGTERM');
    const [code, sig] = (await once(last.child, 'exit')) as [number, string];
    if (code !== 0) console.log('EXIT', code, sig, last.output().slice(-3000));
    expect(code).toBe(0);

    const repo = path.join(dataDir, 'audit');
    const report = await verifyAuditRepo(repo);
    expect(report.error).toBeUndefined();
    expect(report.ok).toBe(true);
    const recorded = new Set<string>();
    for await (const r of readRecords(repo)) {
      if (r.type !== 'response' || r.tool !== 'echo') continue;
      const m = /echo: (c\d+w\d-\d+)/.exec(JSON.stringify(r.data));
      if (m) recorded.add(m[1]!);
    }
    const missing = answered.filter((m) => !recorded.has(m));
    expect(missing).toEqual([]);
  }, 240_000);
});
