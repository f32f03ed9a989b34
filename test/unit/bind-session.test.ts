import { describe, expect, it } from 'vitest';
import type { GatewayError } from '../../src/errors.js';
import { type Route, refuseSharedState } from '../../src/mcp/bind-session.js';

const stateless: Route = { kind: 'stateless', protocolVersion: '2026-07-28' };
const refusal = (route: Route, method: string): GatewayError | undefined => {
  try {
    refuseSharedState(route, { jsonrpc: '2.0', id: 9, method });
  } catch (e) {
    return e as GatewayError;
  }
  return undefined;
};

describe('methods at 2026-07-28', () => {
  it.each(['initialize', 'ping', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe'])(
    'the removed %s is -32601 with HTTP 404, never decided',
    (method) => {
      const e = refusal(stateless, method);
      expect([e?.code, e?.status, e?.rpcCode, e?.data]).toEqual(['METHOD_NOT_FOUND', 404, -32601, { id: 9 }]);
      expect(e?.message).toMatch(/removed in protocol 2026-07-28/);
    },
  );

  it.each(['nonexistent/method', 'notifications/initialized', 'sampling/createMessage'])(
    'a method 2026-07-28 does not define (%s) is not found',
    (method) => {
      const e = refusal(stateless, method);
      expect([e?.code, e?.status]).toEqual(['METHOD_NOT_FOUND', 404]);
      expect(e?.message).toMatch(/not a method of protocol 2026-07-28/);
    },
  );

  it.each(['server/discover', 'subscriptions/listen', 'tools/call', 'tasks/get', 'completion/complete'])(
    '%s goes on to the policy',
    (method) => expect(refusal(stateless, method)).toBeUndefined(),
  );

  it('the session era keeps its methods', () => {
    expect(refusal({ kind: 'initialize', protocolVersion: '2025-11-25' }, 'initialize')).toBeUndefined();
  });
});
