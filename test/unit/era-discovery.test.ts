import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import { EraDiscovery } from '../../src/mcp/upstream/discovery.js';
import type { RequestOptions, UpstreamConnector, UpstreamSession } from '../../src/mcp/upstream/types.js';
import { ManualClock } from '../helpers/clock.js';

/** An in-memory connector whose sessions answer each request with `answer(msg)`. */
function fakeConnector(answer: (msg: JsonRpcRequest) => JsonRpcMessage | Error, transport: 'http' | 'stdio' = 'http') {
  const seen: { msg: JsonRpcRequest; opts: RequestOptions | undefined }[] = [];
  const connector: UpstreamConnector = {
    name: 'u',
    transport,
    open: async () =>
      ({
        closed: false,
        async *request(msg: JsonRpcRequest, opts?: RequestOptions) {
          seen.push({ msg, opts });
          const a = answer(msg);
          if (a instanceof Error) throw a;
          yield a;
        },
        send: async () => undefined,
        listen: async () => undefined,
        close: async () => undefined,
      }) satisfies UpstreamSession,
    shutdown: async () => undefined,
  };
  return { connector, seen };
}

const info = { name: 'gitgate', version: '0' };
const auth = () => ({ headers: { authorization: 'Bearer own' } });

describe('which era an upstream speaks', () => {
  it('modern when server/discover lists 2026-07-28; asked with gitgate’s own envelope and headers, then remembered', async () => {
    const { connector, seen } = fakeConnector((m) => ({
      jsonrpc: '2.0',
      id: m.id,
      result: { supportedVersions: ['2026-07-28'] },
    }));
    const d = new EraDiscovery(connector, info, auth);
    expect(await d.era()).toBe('modern');
    expect(await d.era()).toBe('modern');
    expect(seen).toHaveLength(1);
    expect(seen[0]!.msg.params?._meta).toEqual({
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientCapabilities': {},
      'io.modelcontextprotocol/clientInfo': info,
    });
    expect(seen[0]!.opts?.headers).toEqual({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'server/discover' });
    expect(seen[0]!.opts?.auth).toEqual(auth());
  });

  it('legacy on a JSON-RPC error, a result without 2026-07-28, or an HTTP 4xx refusal', async () => {
    for (const answer of [
      (m: JsonRpcRequest): JsonRpcMessage => ({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'no' } }),
      (m: JsonRpcRequest): JsonRpcMessage => ({
        jsonrpc: '2.0',
        id: m.id,
        result: { supportedVersions: ['2099-01-01'] },
      }),
      () => new GatewayError('UPSTREAM_UNAVAILABLE', 'answered HTTP 400', { cause: { httpStatus: 400 } }),
    ]) {
      expect(await new EraDiscovery(fakeConnector(answer).connector, info, auth).era()).toBe('legacy');
    }
  });

  it('an upstream that is down fails the request and is asked again next time (never guessed)', async () => {
    let down = true;
    const { connector, seen } = fakeConnector((m) =>
      down
        ? new GatewayError('UPSTREAM_UNAVAILABLE', 'unreachable')
        : { jsonrpc: '2.0', id: m.id, result: { supportedVersions: ['2026-07-28'] } },
    );
    const d = new EraDiscovery(connector, info, auth);
    await expect(d.era()).rejects.toMatchObject({ code: 'UPSTREAM_UNAVAILABLE' });
    down = false;
    expect(await d.era()).toBe('modern');
    expect(seen).toHaveLength(2);
  });

  it('is asked again once the remembered era is old (an upgraded upstream shows)', async () => {
    const clock = new ManualClock();
    let versions = ['2025-11-25'];
    const { connector } = fakeConnector((m) => ({ jsonrpc: '2.0', id: m.id, result: { supportedVersions: versions } }));
    const d = new EraDiscovery(connector, info, auth, clock);
    expect(await d.era()).toBe('legacy');
    versions = ['2026-07-28'];
    clock.advance(5 * 60_000);
    expect(await d.era()).toBe('legacy');
    clock.advance(1);
    expect(await d.era()).toBe('modern');
  });

  it('stdio upstreams are session-era, never asked', async () => {
    const { connector, seen } = fakeConnector(() => new Error('not asked'), 'stdio');
    expect(await new EraDiscovery(connector, info, auth).era()).toBe('legacy');
    expect(seen).toHaveLength(0);
  });
});
