import { describe, expect, it } from 'vitest';
import { InFlight, MAX_PENDING_SERVER_REQUESTS } from '../../src/mcp/in-flight.js';

describe('what is in flight on a session', () => {
  it('remembers the server requests shown, forgetting the oldest past the cap; an answered one is gone', () => {
    const f = new InFlight();
    const show = (id: number) =>
      f.shown({ jsonrpc: '2.0', id, method: 'sampling/createMessage', params: { _meta: { progressToken: `p${id}` } } });
    for (let id = 0; id < MAX_PENDING_SERVER_REQUESTS; id++) show(id);
    // Shown again: the newest now, so it outlives the ones after it.
    show(0);
    show(MAX_PENDING_SERVER_REQUESTS);
    expect(f.serverRequest(0)).toEqual({ method: 'sampling/createMessage', progressToken: 'p0' });
    expect(f.serverRequest(1)).toBeUndefined();
    expect(f.hasProgressToken('p1')).toBe(false);
    expect(f.serverRequest(MAX_PENDING_SERVER_REQUESTS)).toBeDefined();
    expect(f.hasProgressToken(`p${MAX_PENDING_SERVER_REQUESTS}`)).toBe(true);
    f.answered(0);
    expect(f.serverRequest(0)).toBeUndefined();
    expect(f.serverRequest(null)).toBeUndefined();
  });
});
