import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import { SharedUpstreamSession } from '../../src/mcp/upstream/shared-session.js';
import type { UpstreamConnector, UpstreamSession } from '../../src/mcp/upstream/types.js';
import { ManualClock } from '../helpers/clock.js';

const info = { name: 'gitgate', version: '0' };

/**
 * A connector whose opens fail while `down` is set; its sessions answer initialize, and a
 * tools/call first with a sampling request (then, once answered, with the result).
 */
function fakeUpstream() {
  const state = { down: true, opens: 0, sessions: [] as { closed: boolean }[] };
  const connector: UpstreamConnector = {
    name: 'u',
    transport: 'stdio',
    async open() {
      state.opens++;
      if (state.down) throw new GatewayError('UPSTREAM_UNAVAILABLE', 'upstream u is unreachable');
      // Answers to the sampling requests, given and taken (an answer may come before it is waited on).
      let given = 0;
      let taken = 0;
      let wake: (() => void) | undefined;
      const s = {
        closed: false as boolean,
        async *request(msg: JsonRpcRequest): AsyncGenerator<JsonRpcMessage> {
          if (msg.method === 'initialize') {
            yield {
              jsonrpc: '2.0',
              id: msg.id,
              result: { protocolVersion: '2025-11-25', capabilities: {}, serverInfo: { name: 'u' } },
            };
            return;
          }
          yield { jsonrpc: '2.0', id: 'srv-1', method: 'sampling/createMessage', params: {} };
          while (taken >= given)
            await new Promise<void>((r) => {
              wake = r;
            });
          taken++;
          yield { jsonrpc: '2.0', id: msg.id, result: { content: [] } };
        },
        async send(m: JsonRpcMessage) {
          if ('id' in m && m.id === 'srv-1') {
            given++;
            wake?.();
          }
        },
        listen: async () => undefined,
        async close() {
          s.closed = true;
        },
      } satisfies UpstreamSession;
      state.sessions.push(s);
      return s;
    },
    shutdown: async () => undefined,
  };
  return { connector, state };
}

async function refusal(p: Promise<unknown>): Promise<GatewayError | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err as GatewayError;
  }
}

async function collect(it: AsyncIterable<JsonRpcMessage>): Promise<JsonRpcMessage[]> {
  const out: JsonRpcMessage[] = [];
  for await (const m of it) out.push(m);
  return out;
}

describe('the shared upstream session, on its clock', () => {
  it('reopens after failures with a growing backoff (250 ms, 1 s, 5 s), refusing with retry-after meanwhile', async () => {
    const clock = new ManualClock();
    const { connector, state } = fakeUpstream();
    const shared = new SharedUpstreamSession(connector, info, undefined, {}, clock);

    expect((await refusal(shared.ready()))?.message).toMatch(/unreachable/);
    expect(state.opens).toBe(1);
    for (const [wait, retryAfter] of [
      [250, '1'],
      [1000, '1'],
      [5000, '5'],
    ] as const) {
      clock.advance(wait - 1);
      const early = await refusal(shared.ready());
      expect(early?.code).toBe('UPSTREAM_UNAVAILABLE');
      expect(early?.message).toMatch(/restarting/);
      expect(early?.headers?.['retry-after']).toBe(retryAfter);
      const before = state.opens;
      clock.advance(1);
      expect((await refusal(shared.ready()))?.message).toMatch(/unreachable/);
      expect(state.opens).toBe(before + 1);
    }

    // 15 s from then on; once it opens, the count starts again.
    clock.advance(14_999);
    expect((await refusal(shared.ready()))?.message).toMatch(/restarting/);
    clock.advance(1);
    state.down = false;
    const { init } = await shared.ready();
    expect(init.protocolVersion).toBe('2025-11-25');
    state.sessions[0]!.closed = true;
    state.down = true;
    expect((await refusal(shared.ready()))?.message).toMatch(/unreachable/);
    clock.advance(249);
    expect((await refusal(shared.ready()))?.message).toMatch(/restarting/);
    clock.advance(1);
    state.down = false;
    await shared.ready();
    expect(state.opens).toBe(7);
    await shared.close();
  });

  it('a parked request waits 10 minutes for its caller’s retry, then its requestState is refused', async () => {
    const clock = new ManualClock();
    const { connector, state } = fakeUpstream();
    state.down = false;
    const shared = new SharedUpstreamSession(connector, info, undefined, {}, clock);
    const call = (id: number, extra: Record<string, unknown> = {}): JsonRpcRequest => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: {
        name: 't',
        _meta: { 'io.modelcontextprotocol/clientCapabilities': { sampling: {} } },
        ...extra,
      },
    });
    const park = async (id: number) => {
      const [first] = await collect(shared.request(call(id), 'alice'));
      const result = (first as { result: { resultType: string; requestState: string } }).result;
      expect(result.resultType).toBe('input_required');
      return result.requestState;
    };
    const retry = (id: number, requestState: string) =>
      collect(shared.request(call(id, { requestState, inputResponses: { upstream_request: {} } }), 'alice'));

    // Within the 10 minutes: the retry goes on with the held stream.
    const kept = await park(1);
    clock.advance(10 * 60_000);
    const answer = await retry(2, kept);
    expect(answer).toEqual([
      {
        jsonrpc: '2.0',
        id: 2,
        result: { content: [], resultType: 'complete', _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'u' } } },
      },
    ]);

    // Past them: refused.
    const stale = await park(3);
    clock.advance(10 * 60_000 + 1);
    const err = await refusal(retry(4, stale));
    expect(err?.code).toBe('INVALID_PARAMS');
    expect(err?.message).toMatch(/unknown, expired/);
    await shared.close();
  });
});
