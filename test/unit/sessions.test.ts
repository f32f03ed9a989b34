import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import { SessionStore } from '../../src/mcp/sessions.js';
import type { UpstreamSession } from '../../src/mcp/upstream/types.js';
import { ManualClock } from '../helpers/clock.js';

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

  describe('on its clock', () => {
    /** Lets the sweep's deletes (async) finish. */
    const settle = () => new Promise<void>((r) => setImmediate(r));

    it('closes a session once it has been idle past idleTimeoutMs, on its own 10 s sweep', async () => {
      const clock = new ManualClock();
      const st = new SessionStore(() => ({ maxSessions: 2, idleTimeoutMs: 25_000 }), clock);
      const ended: string[] = [];
      st.onDelete = (s, reason) => {
        ended.push(`${s.owner}: ${reason}`);
      };
      const up = fakeSession();
      st.create('a', 'alice', 'v', up, noAuth);
      clock.advance(20_000); // sweeps at 10 s and 20 s: idle 20 s, not past 25 s
      await settle();
      expect(st.size).toBe(1);
      clock.advance(10_000); // the sweep at 30 s: idle 30 s
      await settle();
      expect(st.size).toBe(0);
      expect(up.closes).toBe(1);
      expect(ended).toEqual(['alice: idle']);
      await st.closeAll();
    });

    it('counts idle time from the last use, not from creation', async () => {
      const clock = new ManualClock();
      const st = new SessionStore(() => ({ maxSessions: 2, idleTimeoutMs: 25_000 }), clock);
      const s = st.create('a', 'alice', 'v', fakeSession(), noAuth);
      for (let i = 0; i < 4; i++) {
        clock.advance(20_000);
        st.get(s.id, 'a', 'alice');
        await settle();
      }
      expect(st.size).toBe(1);
      expect(s.lastSeen).toBe(clock.now());
      expect(s.createdAt).toBe(clock.now() - 80_000);
      clock.advance(30_000);
      await settle();
      expect(st.size).toBe(0);
      await st.closeAll();
    });

    it('stops sweeping once closed', async () => {
      const clock = new ManualClock();
      const st = new SessionStore(() => ({ maxSessions: 2, idleTimeoutMs: 1000 }), clock);
      expect(clock.pendingTimers).toBe(1);
      await st.closeAll();
      expect(clock.pendingTimers).toBe(0);
    });
  });
});
