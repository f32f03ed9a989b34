import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { type Logger, pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';

interface Ready {
  ready: boolean;
  problems: string[];
  warnings: string[];
  upstreams: Record<
    string,
    {
      transport: string;
      reachable: boolean | null;
      governed: boolean | null;
      problems: string[];
      checked_at: string | null;
    }
  >;
}

/** A loopback port nothing listens on: bound, then closed. */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function logLines(): { lines: Record<string, unknown>[]; logger: Logger } {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n'))
        if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: pino({ level: 'info' }, dest) };
}

/** The conformance upstream speaking only 2026-07-28 (it refuses initialize). */
async function startModernOnly(): Promise<{ url: string; close(): void }> {
  const child = spawn(process.execPath, [path.join(packageRoot, 'test', 'fixtures', 'conformance-upstream.mjs')], {
    env: { ...process.env, PORT: '0', MODERN_ONLY: '1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`upstream exited ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/mcp`, close: () => child.kill() };
}

describe('upstream checks at start and on every policy swap', () => {
  let demo: { url: string; close(): Promise<void> };
  let html: http.Server;
  let htmlUrl: string;
  beforeAll(async () => {
    demo = await startHttpServer();
    // A web server at the configured address that is not an MCP endpoint: its HTML 404 page.
    html = http.createServer((req, res) => {
      req.resume();
      res
        .writeHead(404, { 'content-type': 'text/html' })
        .end('<!doctype html><html><body><h1>404 Not Found</h1></body></html>');
    });
    await new Promise<void>((r) => html.listen(0, '127.0.0.1', r));
    htmlUrl = `http://127.0.0.1:${(html.address() as AddressInfo).port}/wrong/path`;
  });
  afterAll(async () => {
    await demo.close();
    await new Promise<void>((r) => html.close(() => r()));
  });

  it('reports an unreachable upstream, one at a wrong path and one the policy does not govern, per upstream, in warnings and once in the log; ready stays true while one is usable', async () => {
    const { lines, logger } = logLines();
    const policyDir = await makePolicyDir();
    const port = await closedPort();
    const gw = await startGateway({
      checkUpstreams: true,
      policyDir,
      upstreams: {
        http: { url: demo.url },
        down: { url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 5000 },
        slow: { url: htmlUrl },
        ghost: { url: demo.url },
      },
      options: { logger },
    });
    try {
      await gw.gw.upstreamChecks.idle();
      const res = await fetch(`${gw.url}/readyz`);
      const ready = (await res.json()) as Ready;
      expect(res.status).toBe(200);
      expect(ready.ready).toBe(true);
      expect(ready.upstreams.http).toMatchObject({ transport: 'http', reachable: true, governed: true, problems: [] });
      expect(ready.upstreams.down).toMatchObject({ reachable: false, governed: true });
      expect(ready.upstreams.down!.problems.join()).toMatch(/unreachable: .*ECONNREFUSED/);
      expect(ready.upstreams.slow).toMatchObject({ reachable: false, governed: true });
      expect(ready.upstreams.slow!.problems.join()).toMatch(/answered HTTP 404: .*404 Not Found/);
      expect(ready.upstreams.ghost).toMatchObject({ reachable: true, governed: false });
      expect(ready.upstreams.ghost!.problems.join()).toMatch(/upstream ghost is not governed by this policy/);
      expect(ready.warnings).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^upstream down: /),
          expect.stringMatching(/^upstream slow: /),
          expect.stringMatching(/^upstream ghost: not governed/),
        ]),
      );
      expect(ready.warnings.some((w) => w.startsWith('upstream http:'))).toBe(false);

      const errors = () =>
        lines
          .filter((l) => l.msg === 'upstream check failed; calls to it will fail')
          .map((l) => l.upstream)
          .sort();
      expect(errors()).toEqual(['down', 'ghost', 'slow']);
      // A swap re-checks everything; the same problems are not logged again.
      gw.gw.policy.swap(gw.gw.policy.current()!);
      await gw.gw.upstreamChecks.idle();
      expect(errors()).toEqual(['down', 'ghost', 'slow']);
    } finally {
      await gw.close();
    }
  });

  it('an upstream that speaks only 2026-07-28 is reachable through server/discover; a 2025-only one through initialize', async () => {
    const modern = await startModernOnly();
    const gw = await startGateway({
      checkUpstreams: true,
      upstreams: { http: { url: modern.url }, demo: { url: demo.url } },
    });
    try {
      // The modern-only upstream does refuse what the check used to send.
      const init = await fetch(modern.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '0' } },
        }),
      });
      expect(init.status).toBe(400);

      const res = await fetch(`${gw.url}/readyz`);
      const ready = (await res.json()) as Ready;
      expect(res.status).toBe(200);
      expect(ready.upstreams.http).toMatchObject({ transport: 'http', reachable: true, governed: true, problems: [] });
      expect(ready.upstreams.demo).toMatchObject({ transport: 'http', reachable: true, governed: true, problems: [] });
      expect(ready.warnings).toEqual([]);
      // What the check learned is what 2026-07-28 callers' requests use.
      expect(await gw.gw.upstreams.get('http')!.discovery.era()).toBe('modern');
      expect(await gw.gw.upstreams.get('demo')!.discovery.era()).toBe('legacy');
    } finally {
      await gw.close();
      modern.close();
    }
  });

  it('stdio: spawns the child, initializes it and stops it; a command that cannot start is reported', async () => {
    const fixture = path.join(packageRoot, 'test', 'fixtures', 'demo-server.mjs');
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: { ...TEST_POLICY_DATA.upstreams, broken: TEST_POLICY_DATA.upstreams.stdio },
    });
    const gw = await startGateway({
      checkUpstreams: true,
      policyDir,
      upstreams: {
        stdio: { stdio: { command: process.execPath, args: [fixture, 'stdio'] } },
        broken: { stdio: { command: path.join(policyDir, 'no-such-server') } },
      },
    });
    try {
      const ready = (await (await fetch(`${gw.url}/readyz`)).json()) as Ready;
      expect(ready.ready).toBe(true);
      expect(ready.upstreams.stdio).toMatchObject({
        transport: 'stdio',
        reachable: true,
        governed: true,
        problems: [],
      });
      expect(ready.upstreams.broken).toMatchObject({ transport: 'stdio', reachable: false, governed: true });
      expect(ready.upstreams.broken!.problems.join()).toMatch(/ENOENT|could not start|exited/i);
    } finally {
      await gw.close();
    }
  });

  it('not ready when no upstream is usable', async () => {
    const port = await closedPort();
    const gw = await startGateway({
      checkUpstreams: true,
      upstreams: { down: { url: `http://127.0.0.1:${port}/mcp` }, ghost: { url: demo.url } },
    });
    try {
      await gw.gw.upstreamChecks.idle();
      const res = await fetch(`${gw.url}/readyz`);
      const ready = (await res.json()) as Ready;
      expect(res.status).toBe(503);
      expect(ready.ready).toBe(false);
      expect(ready.problems).toEqual([
        expect.stringMatching(/^no upstream is usable: upstream down: .*; upstream ghost: not governed/),
      ]);
    } finally {
      await gw.close();
    }
  });

  it('an upstream that accepts and never answers is reported once its timeoutMs passes (injected clock)', async () => {
    const held: http.ServerResponse[] = [];
    const silent = http.createServer((req, res) => {
      req.resume();
      held.push(res);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const deadlines: { ms: number; fire: () => void }[] = [];
    let armed!: () => void;
    const wasArmed = new Promise<void>((r) => (armed = r));
    // Checks on, but the helper does not wait for them: the test holds the deadline itself.
    const gw = await startGateway({
      upstreams: {
        http: { url: demo.url },
        slow: { url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/mcp`, timeoutMs: 600_000 },
      },
      options: {
        checkUpstreams: true,
        upstreamCheckClock: {
          now: () => Date.now(),
          after(ms, fire) {
            deadlines.push({ ms, fire });
            if (deadlines.length === 2) armed();
            return { cancel: () => undefined };
          },
          every: () => ({ cancel: () => undefined }),
        },
      },
    });
    try {
      await wasArmed;
      let ready = (await (await fetch(`${gw.url}/readyz`)).json()) as Ready;
      expect(ready.upstreams.slow).toMatchObject({ reachable: null, checked_at: null });
      deadlines.find((d) => d.ms === 600_000)!.fire();
      await gw.gw.upstreamChecks.idle();
      ready = (await (await fetch(`${gw.url}/readyz`)).json()) as Ready;
      expect(ready.upstreams.slow).toMatchObject({
        reachable: false,
        problems: ['upstream slow did not answer server/discover within 600000 ms'],
      });
    } finally {
      for (const r of held) r.destroy();
      await gw.close();
      silent.closeAllConnections();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });
});
