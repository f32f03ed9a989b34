import { describe, expect, it } from 'vitest';
import type { GatewayError } from '../../src/errors.js';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.js';
import {
  classifyProtocol,
  decodeHeaderValue,
  encodeHeaderValue,
  stripEnvelope,
  toModernResult,
} from '../../src/mcp/protocol.js';

const env = {
  'io.modelcontextprotocol/protocolVersion': '2026-07-28',
  'io.modelcontextprotocol/clientInfo': { name: 'c' },
  'io.modelcontextprotocol/clientCapabilities': {},
  progressToken: 5,
};
const call = (name: string): JsonRpcMessage => ({
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name, _meta: env },
});
const thrown = (f: () => unknown): GatewayError => {
  try {
    f();
  } catch (e) {
    return e as GatewayError;
  }
  throw new Error('expected a throw');
};

describe('protocol era and 2026-07-28 header validation', () => {
  it('legacy messages: no envelope, optional supported version header', () => {
    expect(classifyProtocol({}, { jsonrpc: '2.0', id: 1, method: 'ping' })).toEqual({
      era: 'legacy',
      version: undefined,
    });
    expect(
      classifyProtocol({ 'mcp-protocol-version': '2025-06-18' }, { jsonrpc: '2.0', id: 1, method: 'ping' }),
    ).toEqual({ era: 'legacy', version: '2025-06-18' });
    expect(
      thrown(() =>
        classifyProtocol({ 'mcp-protocol-version': '2024-01-01' }, { jsonrpc: '2.0', id: 1, method: 'ping' }),
      ).code,
    ).toBe('UNSUPPORTED_PROTOCOL_VERSION');
  });

  it('modern requests need MCP-Protocol-Version, Mcp-Method and (for named methods) Mcp-Name that match the body', () => {
    const good = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' };
    expect(classifyProtocol(good, call('echo'))).toEqual({ era: 'modern', version: '2026-07-28' });
    for (const [headers, why] of [
      [{ ...good, 'mcp-name': 'other' }, /does not match params.name/],
      [{ ...good, 'mcp-method': 'tools/list' }, /does not match body method/],
      [{ 'mcp-protocol-version': '2026-07-28', 'mcp-name': 'echo' }, /Mcp-Method header is required/],
      [{ 'mcp-method': 'tools/call', 'mcp-name': 'echo' }, /MCP-Protocol-Version header is required/],
    ] as const) {
      const e = thrown(() => classifyProtocol(headers, call('echo')));
      expect(e.code).toBe('HEADER_MISMATCH');
      expect(e.status).toBe(400);
      expect(e.rpcCode).toBe(-32020);
      expect(e.message).toMatch(why);
    }
  });

  it('a 2026-07-28 request without its envelope is -32602 (HTTP 400) with its id', () => {
    const h = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' };
    const list = (params?: Record<string, unknown>): JsonRpcMessage => ({
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/list',
      ...(params ? { params } : {}),
    });
    for (const [msg, why] of [
      [list(), /needs params._meta/],
      [list({ _meta: [] }), /must be an object/],
      [list({ _meta: { 'io.modelcontextprotocol/clientCapabilities': {} } }), /protocolVersion"\] must be a string/],
      [list({ _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } }), /clientCapabilities"\] must be/],
      [
        list({
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': 1,
          },
        }),
        /clientCapabilities"\] must be/,
      ],
    ] as const) {
      const e = thrown(() => classifyProtocol(h, msg));
      expect(e.code).toBe('META_INVALID');
      expect([e.status, e.rpcCode, e.data]).toEqual([400, -32602, { id: 7 }]);
      expect(e.message).toMatch(why);
    }
  });

  it('an unsupported version is -32022 naming what is supported and what was requested', () => {
    const msg: JsonRpcMessage = {
      jsonrpc: '2.0',
      id: 'x',
      method: 'tools/list',
      params: {
        _meta: {
          'io.modelcontextprotocol/protocolVersion': '2099-01-01',
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    };
    const e = thrown(() => classifyProtocol({ 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' }, msg));
    expect([e.code, e.status, e.rpcCode]).toEqual(['UNSUPPORTED_PROTOCOL_VERSION', 400, -32022]);
    // What server/discover lists: the per-request revision.
    expect(e.data).toEqual({ id: 'x', supported: ['2026-07-28'], requested: '2099-01-01' });
    const legacy = thrown(() =>
      classifyProtocol({ 'mcp-protocol-version': '2099-01-01' }, { jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    );
    expect(legacy.data).toEqual({
      id: 2,
      supported: ['2026-07-28', '2025-11-25', '2025-06-18', '2025-03-26'],
      requested: '2099-01-01',
    });
  });

  it('Mcp-Name is refused on methods that do not define it', () => {
    const e = thrown(() =>
      classifyProtocol(
        { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list', 'mcp-name': 'x' },
        { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: env } },
      ),
    );
    expect(e.message).toMatch(/not defined for tools\/list/);
  });

  it('resources/read mirrors params.uri', () => {
    const msg: JsonRpcMessage = {
      jsonrpc: '2.0',
      id: 1,
      method: 'resources/read',
      params: { uri: 'file:///ü', _meta: env },
    };
    const b64 = `=?base64?${Buffer.from('file:///ü').toString('base64')}?=`;
    expect(
      classifyProtocol({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'resources/read', 'mcp-name': b64 }, msg)
        .era,
    ).toBe('modern');
  });

  it('decodes the base64 sentinel and leaves plain values alone', () => {
    expect(decodeHeaderValue('=?base64?aMOpbGxv?=')).toBe('héllo');
    expect(decodeHeaderValue('plain')).toBe('plain');
    expect(decodeHeaderValue('=?base64?not base64?=')).toBe('=?base64?not base64?=');
  });

  it('encodes what is not plain printable ASCII, and a value that reads as the sentinel: every value decodes to itself', () => {
    for (const v of ['echo', 'héllo', ' padded ', '=?base64?Z2V0LWVudg==?=', '=?base64??=', '=?base64?not base64?='])
      expect(decodeHeaderValue(encodeHeaderValue(v))).toBe(v);
    expect(encodeHeaderValue('echo')).toBe('echo');
    // A tool named like the sentinel is sent encoded, never as a header an upstream decodes to get-env.
    expect(encodeHeaderValue('=?base64?Z2V0LWVudg==?=')).not.toBe('=?base64?Z2V0LWVudg==?=');
    expect(encodeHeaderValue('=?base64?not base64?=')).toBe('=?base64?not base64?=');
  });

  it('strips only the envelope keys from _meta', () => {
    expect(stripEnvelope({ name: 'x', _meta: env })).toEqual({ name: 'x', _meta: { progressToken: 5 } });
    expect(stripEnvelope({ _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } })).toEqual({});
    expect(stripEnvelope(undefined)).toBeUndefined();
  });

  it('re-shapes results for modern clients', () => {
    expect(toModernResult('tools/list', { tools: [], ttlMs: 5000, cacheScope: 'public' }, { name: 's' })).toEqual({
      tools: [],
      resultType: 'complete',
      ttlMs: 5000,
      cacheScope: 'private',
      _meta: { 'io.modelcontextprotocol/serverInfo': { name: 's' } },
    });
    expect(toModernResult('tools/call', { content: [], _meta: { a: 1 } })).toEqual({
      content: [],
      resultType: 'complete',
      _meta: { a: 1 },
    });
  });
});
