import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords } from '../../src/audit/read.js';
import { loadDevIssuer } from '../../src/identity/dev-issuer.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { verifyRepo } from '../helpers/audit-repo.js';
import { serveProcess } from '../helpers/cli.js';
import { makePolicyDir } from '../helpers/policy.js';
import { soakSize, testSeed } from '../helpers/soak.js';

const CRASHES = soakSize(3, 20);
const SEED = testSeed('audit-crash');
const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** One client session sending echo calls until the gateway dies; returns the messages whose responses arrived. */
async function client(url: string, token: string, tag: string, onAnswer: () => void): Promise<string[]> {
  const got: string[] = [];
  try {
    const init = await fetch(url, {
      method: 'POST',
      headers: { ...HEADERS, authorization: `Bearer ${token}` },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'crash', version: '1' } },
      }),
    });
    await init.text();
    const sid = init.headers.get('mcp-session-id');
    if (sid === null) return got;
    for (let i = 0; i < 10_000; i++) {
      const message = `${tag}-${i}`;
      const res = await fetch(url, {
        method: 'POST',
        headers: { ...HEADERS, authorization: `Bearer ${token}`, 'mcp-session-id': sid },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: i + 1,
          method: 'tools/call',
          params: { name: 'echo', arguments: { message } },
        }),
      });
      const text = await res.text();
      if (res.status === 200 && text.includes(`echo: ${message}`)) {
        got.push(message);
        onAnswer();
      }
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
      // The kill comes after a seeded number of answers, while the other clients are mid-request:
      // a random moment of the load, not of the wall clock.
      const killAt = 2 + ((Math.imul(SEED ^ (crash + 1), 2_654_435_761) >>> 0) % 40);
      let answers = 0;
      const exited = once(gw.child, 'exit');
      const kill = () => {
        if (++answers === killAt) gw.child.kill('SIGKILL');
      };
      const load = Promise.all([0, 1, 2, 3].map((w) => client(url, token, `c${crash}w${w}`, kill)));
      await exited;
      for (const got of await load) answered.push(...got);
      expect(answers).toBeGreaterThanOrEqual(killAt);
    }

    // A last start recovers the WAL; a graceful stop commits everything.
    const last = await serveProcess(['--config', config, '--port', '0']);
    last.child.kill('SIGTERM');
    const [code, sig] = (await once(last.child, 'exit')) as [number, string];
    if (code !== 0) console.log('EXIT', code, sig, last.output().slice(-3000));
    expect(code).toBe(0);

    const repo = path.join(dataDir, 'audit');
    const report = await verifyRepo(repo);
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

/**
 * An MCP upstream over HTTP that, on receiving a tools/call, SIGKILLs the gateway
 * process before answering: the call ran, and the gateway never got to answer.
 */
async function killingUpstream(): Promise<{
  url: string;
  target: { child?: ChildProcess };
  calls: string[];
  close(): Promise<void>;
}> {
  const target: { child?: ChildProcess } = {};
  const calls: string[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (req.method !== 'POST') return void res.writeHead(405).end();
    const msg = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      id?: number;
      method?: string;
      params?: { arguments?: { message?: string } };
    };
    if (msg.method === 'initialize') {
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'upstream-session' });
      return void res.end(
        JSON.stringify({
          jsonrpc: '2.0',
          id: msg.id,
          result: {
            protocolVersion: '2025-11-25',
            capabilities: { tools: {} },
            serverInfo: { name: 'killer', version: '1' },
          },
        }),
      );
    }
    if (msg.method === 'tools/call') {
      // The side effect happens here; then the gateway dies before any answer.
      calls.push(msg.params?.arguments?.message ?? '');
      target.child?.kill('SIGKILL');
      return; // never answered (the socket closes when the gateway dies)
    }
    if (msg.id === undefined) return void res.writeHead(202).end();
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: {} }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`,
    target,
    calls,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

describe('crash safety: the upstream runs the call, then the gateway dies before answering', () => {
  const TRIES = 3;

  it(`the call's allow decision is in the audit trail after a restart (${TRIES} tries)`, async () => {
    const upstream = await killingUpstream();
    const dataDir = mkdtempSync(path.join(tmpdir(), 'gitgate-killed-'));
    const config = path.join(dataDir, 'gitgate.yaml');
    writeFileSync(
      config,
      `dataDir: ${dataDir}\npolicy:\n  dir: ${await makePolicyDir()}\nupstreams:\n  http:\n    url: ${upstream.url}\n`,
    );
    try {
      for (let t = 0; t < TRIES; t++) {
        const gw = await serveProcess(['--config', config, '--port', '0']);
        upstream.target.child = gw.child;
        const exited = once(gw.child, 'exit');
        const token = await (await loadDevIssuer(dataDir)).mint({ sub: `killed-${t}`, audience: 'gitgate' });
        const url = `${gw.url}/mcp/http`;
        const auth = { ...HEADERS, authorization: `Bearer ${token}` };
        const init = await fetch(url, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 0,
            method: 'initialize',
            params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'killed', version: '1' } },
          }),
        });
        await init.text();
        const sid = init.headers.get('mcp-session-id');
        expect(sid).not.toBeNull();
        const call = fetch(url, {
          method: 'POST',
          headers: { ...auth, 'mcp-session-id': sid! },
          body: JSON.stringify({
            jsonrpc: '2.0',
            id: 1,
            method: 'tools/call',
            params: { name: 'echo', arguments: { message: `ran-${t}` } },
          }),
        });
        // The client never gets an answer: the gateway is killed while the upstream holds the call.
        await expect(call).rejects.toThrow();
        await exited;
      }
      expect(upstream.calls).toEqual(Array.from({ length: TRIES }, (_, t) => `ran-${t}`));

      // A restart recovers the WAL into the repo; a graceful stop commits everything.
      const last = await serveProcess(['--config', config, '--port', '0']);
      last.child.kill('SIGTERM');
      const [code] = (await once(last.child, 'exit')) as [number];
      expect(code, last.output().slice(-2000)).toBe(0);

      const repo = path.join(dataDir, 'audit');
      const report = await verifyRepo(repo);
      expect(report.error).toBeUndefined();
      const allowed = new Set<string>();
      for await (const r of readRecords(repo)) {
        const d = r.data as { allow?: boolean; input?: { mcp?: { arguments?: { message?: string } } } } | undefined;
        if (
          r.type === 'decision' &&
          r.tool === 'echo' &&
          d?.allow === true &&
          d.input?.mcp?.arguments?.message !== undefined
        )
          allowed.add(d.input.mcp.arguments.message);
      }
      expect(upstream.calls.filter((m) => !allowed.has(m))).toEqual([]);
    } finally {
      await upstream.close();
    }
  }, 120_000);
});
