import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import {
  checkMessage,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  parseMessage,
} from '../../src/mcp/jsonrpc.js';

describe('JSON-RPC messages as MCP uses them', () => {
  it.each([
    [{ jsonrpc: '2.0', id: 1, method: 'ping' }, undefined],
    [{ jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'x' } }, undefined],
    [{ jsonrpc: '2.0', method: 'notifications/initialized' }, undefined],
    [{ jsonrpc: '2.0', id: 1, result: {} }, undefined],
    [{ jsonrpc: '2.0', id: 1, error: { code: -1, message: 'm' } }, undefined],
    [[{ jsonrpc: '2.0', id: 1, method: 'ping' }], /batches are not supported/],
    ['str', /must be a JSON object/],
    [null, /must be a JSON object/],
    [{ id: 1, method: 'ping' }, /jsonrpc must be "2.0"/],
    [{ jsonrpc: '2.0', id: 1, method: '' }, /non-empty string/],
    [{ jsonrpc: '2.0', id: 1.5, method: 'ping' }, /string or an integer/],
    [{ jsonrpc: '2.0', id: true, method: 'ping' }, /string or an integer/],
    [{ jsonrpc: '2.0', id: 1, method: 'ping', params: [] }, /params must be an object/],
    [{ jsonrpc: '2.0', id: 1 }, /exactly one of result and error/],
    [{ jsonrpc: '2.0', id: 1, result: 1, error: { code: 1, message: '' } }, /exactly one of result and error/],
    [{ jsonrpc: '2.0', id: 1, error: { code: 'x', message: 'm' } }, /error must be/],
    [{ jsonrpc: '2.0', result: {} }, /must be a response with an id/],
  ])('%j → %s', (msg, problem) => {
    const got = checkMessage(msg);
    if (problem === undefined) expect(got).toBeUndefined();
    else expect(got).toMatch(problem);
  });

  it('classifies requests, notifications and responses', () => {
    const req = parseMessage('{"jsonrpc":"2.0","id":0,"method":"ping"}');
    const note = parseMessage('{"jsonrpc":"2.0","method":"notifications/progress"}');
    const res = parseMessage('{"jsonrpc":"2.0","id":0,"result":{}}');
    expect([isRequest(req), isNotification(req), isResponse(req)]).toEqual([true, false, false]);
    expect([isRequest(note), isNotification(note), isResponse(note)]).toEqual([false, true, false]);
    expect([isRequest(res), isNotification(res), isResponse(res)]).toEqual([false, false, true]);
  });

  it('parse errors and invalid requests are GatewayErrors with the JSON-RPC codes', () => {
    const parse = (t: string) => {
      try {
        parseMessage(t);
      } catch (e) {
        return e as GatewayError;
      }
      throw new Error('expected a throw');
    };
    expect(parse('{').rpcCode).toBe(-32700);
    expect(parse('{').status).toBe(400);
    const inv = parse('{"jsonrpc":"1.0","id":4,"method":"x"}');
    expect(inv.rpcCode).toBe(-32600);
    expect(inv.data).toEqual({ id: 4 });
  });

  it('error responses carry the stable gitgate code in data', () => {
    const err = new GatewayError('POLICY_DENIED', 'no', { data: { reasons: ['r'] } });
    expect(errorResponse(3, err)).toEqual({
      jsonrpc: '2.0',
      id: 3,
      error: { code: -32010, message: 'no', data: { gitgate: 'POLICY_DENIED', reasons: ['r'] } },
    });
  });
});
