import { describe, expect, it } from 'vitest';
import { trackConnector } from '../../src/gitsync/tracked-connector.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import type { UpstreamConnector, UpstreamSession } from '../../src/mcp/upstream/types.js';
import { ManualClock } from '../helpers/clock.js';

/** A connector whose answers the test releases by hand. */
function fakeConnector() {
  const gates: (() => void)[] = [];
  const opened: { closed: boolean }[] = [];
  let shutdowns = 0;
  const connector: UpstreamConnector = {
    name: 'fake',
    transport: 'http',
    async open(): Promise<UpstreamSession> {
      const state = { closed: false };
      opened.push(state);
      return {
        get closed() {
          return state.closed;
        },
        async *request(msg: JsonRpcRequest): AsyncGenerator<JsonRpcMessage> {
          await new Promise<void>((r) => gates.push(r));
          if (msg.method === 'fail') throw new Error('connection reset');
          yield msg.method === 'bad'
            ? { jsonrpc: '2.0', id: msg.id, error: { code: -1, message: 'no' } }
            : { jsonrpc: '2.0', id: msg.id, result: {} };
        },
        send: async () => undefined,
        listen: async () => undefined,
        async close() {
          state.closed = true;
        },
      };
    },
    async shutdown() {
      shutdowns++;
    },
  };
  return { connector, gates, opened, shutdowns: () => shutdowns };
}

const drain = async (it: AsyncIterable<JsonRpcMessage>) => {
  const out: JsonRpcMessage[] = [];
  for await (const m of it) out.push(m);
  return out;
};
const tick = () => new Promise((r) => setImmediate(r));

describe('tracked upstream connectors', () => {
  it('time every request to its answer with the injected clock, by outcome', async () => {
    const f = fakeConnector();
    const clock = new ManualClock();
    const seen: [number, string][] = [];
    const c = trackConnector(f.connector, { clock, observe: (s, o) => seen.push([s, o]) });
    const s = await c.open();
    for (const [method, ms] of [
      ['ok', 250],
      ['bad', 40],
      ['fail', 5],
    ] as const) {
      const r = drain(s.request({ jsonrpc: '2.0', id: 1, method }));
      await tick();
      clock.advance(ms);
      f.gates.shift()!();
      await r.catch(() => undefined);
    }
    expect(seen).toEqual([
      [0.25, 'ok'],
      [0.04, 'error'],
      [0.005, 'failed'],
    ]);
  });

  it('retired: idle sessions report closed at once, busy ones when their last request ends; then retire resolves; no new sessions', async () => {
    const f = fakeConnector();
    const c = trackConnector(f.connector);
    const idle = await c.open();
    const busy = await c.open();
    const inflight = drain(busy.request({ jsonrpc: '2.0', id: 1, method: 'ok' }));
    await tick();
    let resolved = false;
    const retired = c.retire().then(() => (resolved = true));
    expect(idle.closed).toBe(true);
    expect(busy.closed).toBe(false);
    expect(c.inFlight).toBe(1);
    await tick();
    expect(resolved).toBe(false);
    await expect(c.open()).rejects.toThrow(/replaced by a new route; retry/);
    f.gates.shift()!();
    expect(await inflight).toHaveLength(1);
    await retired;
    expect(busy.closed).toBe(true);
    expect(c.retire()).toBe(c.retire());
    await Promise.all([c.shutdown(), c.shutdown()]);
    expect(f.shutdowns()).toBe(1);
  });

  it('many sessions: closed ones are forgotten, and a retire waits exactly for the busy one', async () => {
    const f = fakeConnector();
    const c = trackConnector(f.connector);
    const sessions = [];
    for (let i = 0; i < 150; i++) sessions.push(await c.open());
    // Half close themselves (their upstream went away), a third are closed by the gateway.
    for (let i = 0; i < 150; i += 2) f.opened[i]!.closed = true;
    for (let i = 1; i < 150; i += 3) await sessions[i]!.close();
    const busy = sessions[149]!;
    const inflight = drain(busy.request({ jsonrpc: '2.0', id: 1, method: 'ok' }));
    await tick();
    let resolved = false;
    const retired = c.retire().then(() => (resolved = true));
    expect(sessions.filter((s) => !s.closed)).toEqual([busy]);
    await tick();
    expect(resolved).toBe(false);
    f.gates.shift()!();
    await inflight;
    await retired;
    expect(busy.closed).toBe(true);
  });
});
