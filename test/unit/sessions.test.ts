import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import { SessionStore } from '../../src/mcp/sessions.js';
import type { UpstreamSession } from '../../src/mcp/upstream/types.js';

function fakeSession(): UpstreamSession & { closes: number; closed: boolean } {
  const s = {
    closes: 0,
    closed: false,
    request: async function* () {},
    send: async () => undefined,
    listen: async () => undefined,
    async close() {
      s.closes++;
      s.closed = true;
    },
  };
  return s;
}

const noAuth = () => ({ headers: {} });

describe('SessionStore', () => {
  const store = () => new SessionStore(() => ({ maxSessions: 2, idleTimeoutMs: 1000 }));

  it('binds a session to its owner and upstream', () => {
    const st = store();
    const s = st.create('a', 'alice', '2025-11-25', fakeSession(), noAuth);
    expect(st.get(s.id, 'a', 'alice')).toBe(s);
    for (const [up, who] of [
      ['a', 'mallory'],
      ['b', 'alice'],
    ]) {
      const err = (() => {
        try {
          st.get(s.id, up!, who!);
        } catch (e) {
          return e as GatewayError;
        }
        return undefined;
      })();
      expect(err?.code).toBe('SESSION_UNKNOWN');
    }
    void st.closeAll();
  });

  it('caps sessions per upstream', () => {
    const st = store();
    st.create('a', 'x', 'v', fakeSession(), noAuth);
    st.create('a', 'y', 'v', fakeSession(), noAuth);
    expect(() => st.assertCapacity('a')).toThrow(/already has 2 sessions/);
    expect(() => st.assertCapacity('b')).not.toThrow();
    void st.closeAll();
  });

  it('closes idle sessions and forgets sessions whose upstream died', async () => {
    const st = store();
    const idle = fakeSession();
    const s = st.create('a', 'x', 'v', idle, noAuth);
    const dead = fakeSession();
    const d = st.create('a', 'y', 'v', dead, noAuth);
    dead.closed = true;
    expect(await st.sweep(Date.now() + 10)).toBe(1);
    expect(() => st.get(d.id, 'a', 'y')).toThrow(GatewayError);
    expect(await st.sweep(s.lastSeen + 2000)).toBe(1);
    expect(idle.closes).toBe(1);
    expect(st.size).toBe(0);
    await st.closeAll();
  });
});
