import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { GatewayError } from '../../src/errors.js';
import { type SealedSession, SessionStore } from '../../src/mcp/sessions.js';
import type { UpstreamSession } from '../../src/mcp/upstream/types.js';
import { AesSessionSeal } from '../../src/store/session-seal.js';
import { testSeed } from '../helpers/soak.js';

const fields: SealedSession = {
  upstream: 'gh',
  owner: 'alice',
  protocolVersion: '2025-06-18',
  upstreamId: 'up-123',
  createdAt: 1,
};

function fakeSession(upstreamId?: string): UpstreamSession & { closes: number; closed: boolean } {
  const s = {
    closes: 0,
    closed: false,
    upstreamId,
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

describe('sealed session ids', () => {
  const seal = AesSessionSeal.withKey(randomBytes(32));

  it('open what seal made, and nothing the client can read in it', () => {
    const id = seal.seal(fields);
    expect(id).toMatch(/^gs1\.[A-Za-z0-9_-]+$/);
    expect(id).not.toContain('alice');
    expect(Buffer.from(id.slice(4), 'base64url').toString('latin1')).not.toContain('up-123');
    expect(seal.open(id)).toEqual(fields);
    expect(seal.seal(fields)).not.toBe(id); // a fresh nonce every time
  });

  it('refuses any altered byte, another key, another prefix, and oversized ids', () => {
    const seed = testSeed('session-seal');
    let state = seed >>> 0;
    const rng = () => {
      // mulberry32
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const id = seal.seal(fields);
    const raw = Buffer.from(id.slice(4), 'base64url');
    for (let i = 0; i < 64; i++) {
      const b = Buffer.from(raw);
      const at = Math.floor(rng() * b.length);
      b[at] = b[at]! ^ (1 + Math.floor(rng() * 255));
      expect(seal.open(`gs1.${b.toString('base64url')}`), `seed ${seed}, byte ${at}`).toBeUndefined();
    }
    expect(AesSessionSeal.withKey(randomBytes(32)).open(id)).toBeUndefined();
    expect(seal.open(`gs2.${id.slice(4)}`)).toBeUndefined();
    expect(seal.open('a0c4b1f0-0000-4000-8000-000000000000')).toBeUndefined();
    expect(seal.open(`gs1.${'A'.repeat(5000)}`)).toBeUndefined();
    expect(seal.open('gs1.')).toBeUndefined();
  });
});

describe('SessionStore with a seal (several replicas)', () => {
  const seal = AesSessionSeal.withKey(randomBytes(32));
  const replica = () => {
    const resumed: ReturnType<typeof fakeSession>[] = [];
    const st = new SessionStore(() => ({ maxSessions: 1, idleTimeoutMs: 1000 }));
    st.seal = seal;
    st.resumer = () => ({
      resume: (upstreamId) => {
        const s = fakeSession(upstreamId);
        resumed.push(s);
        return s;
      },
      auth: noAuth,
    });
    return { st, resumed };
  };
  const unknown = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as GatewayError).code;
    }
    return 'no error';
  };

  it('another replica continues the session for its owner only, and within its caps', async () => {
    const a = replica();
    const b = replica();
    const s = a.st.create('gh', 'alice', '2025-06-18', fakeSession('up-1'), noAuth);
    expect(unknown(() => b.st.get(s.id, 'gh', 'mallory'))).toBe('SESSION_UNKNOWN');
    expect(unknown(() => b.st.get(s.id, 'other', 'alice'))).toBe('SESSION_UNKNOWN');
    expect(b.resumed).toHaveLength(0);
    const there = b.st.get(s.id, 'gh', 'alice');
    expect(there).toMatchObject({ id: s.id, owner: 'alice', protocolVersion: '2025-06-18' });
    expect(b.resumed.map((x) => x.upstreamId)).toEqual(['up-1']);
    expect(b.st.get(s.id, 'gh', 'alice')).toBe(there);
    // Its cap counts the continued session.
    expect(() => b.st.assertCapacity('gh')).toThrow(/already has 1 sessions/);
    await a.st.closeAll();
    await b.st.closeAll();
  });

  it('idling out or shutting down forgets a shared session without ending it upstream; the client DELETE ends it', async () => {
    const a = replica();
    const b = replica();
    const up = fakeSession('up-2');
    const s = a.st.create('gh', 'alice', 'v', up, noAuth);
    b.st.get(s.id, 'gh', 'alice');
    await b.st.sweep(Date.now() + 10_000);
    expect(b.resumed[0]!.closed).toBe(false);
    await a.st.closeAll();
    expect(up.closes).toBe(0);
    b.st.get(s.id, 'gh', 'alice');
    await b.st.delete(s.id, 'closed by the client (DELETE)', { client: true });
    expect(b.resumed[1]!.closes).toBe(1);
    await b.st.closeAll();
  });

  it('without an upstream session id (stdio) the id is not sealed: it stays on its replica', async () => {
    const a = replica();
    const b = replica();
    const s = a.st.create('files', 'alice', 'v', fakeSession(), noAuth);
    expect(s.id).not.toMatch(/^gs1\./);
    expect(unknown(() => b.st.get(s.id, 'files', 'alice'))).toBe('SESSION_UNKNOWN');
    await a.st.closeAll();
  });
});
