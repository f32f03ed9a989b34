import { randomUUID } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { InFlight } from './in-flight.js';
import type { UpstreamAuth, UpstreamSession } from './upstream/types.js';

export interface GatewaySession {
  readonly id: string;
  readonly upstream: string;
  /** The caller that opened it: a session is never usable by another subject. */
  readonly owner: string;
  readonly protocolVersion: string;
  readonly upstreamSession: UpstreamSession;
  /** Credentials for gitgate's own calls in this session (closing it). */
  readonly auth: (purpose: string) => UpstreamAuth;
  readonly createdAt: number;
  lastSeen: number;
  /** Requests in flight both ways: what a client notification or response may refer to. */
  readonly inFlight: InFlight;
}

/**
 * Sessions the gateway issued (its own Mcp-Session-Id, never the upstream's),
 * bound to the caller who opened them, capped per upstream, closed when idle.
 */
export class SessionStore {
  readonly #sessions = new Map<string, GatewaySession>();
  readonly #sweeper: NodeJS.Timeout;

  /** Called for every session that ends, with why. */
  onDelete: ((session: GatewaySession, reason: string) => void) | undefined;

  constructor(private readonly limits: (upstream: string) => { maxSessions: number; idleTimeoutMs: number }) {
    this.#sweeper = setInterval(() => void this.sweep(), 10_000);
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#sessions.size;
  }

  countFor(upstream: string): number {
    let n = 0;
    for (const s of this.#sessions.values()) if (s.upstream === upstream) n++;
    return n;
  }

  /** Throws SESSION_LIMIT when the upstream already has its maximum of sessions. */
  assertCapacity(upstream: string): void {
    const { maxSessions } = this.limits(upstream);
    if (this.countFor(upstream) >= maxSessions) {
      throw new GatewayError('SESSION_LIMIT', `upstream ${upstream} already has ${maxSessions} sessions; close one or retry later`, {
        headers: { 'retry-after': '5' },
      });
    }
  }

  create(upstream: string, owner: string, protocolVersion: string, upstreamSession: UpstreamSession, auth: (purpose: string) => UpstreamAuth): GatewaySession {
    const now = Date.now();
    const s: GatewaySession = { id: randomUUID(), upstream, owner, protocolVersion, upstreamSession, auth, createdAt: now, lastSeen: now, inFlight: new InFlight() };
    this.#sessions.set(s.id, s);
    return s;
  }

  /** The caller's live session on this upstream, or SESSION_UNKNOWN (also for someone else's session). */
  get(id: string, upstream: string, owner: string): GatewaySession {
    const s = this.#sessions.get(id);
    if (s === undefined || s.upstream !== upstream || s.owner !== owner || s.upstreamSession.closed) {
      if (s !== undefined && s.upstreamSession.closed) this.#sessions.delete(id);
      throw new GatewayError('SESSION_UNKNOWN', `Unknown session ${id}: it expired, was closed, or belongs to someone else; send initialize to start a new one`);
    }
    s.lastSeen = Date.now();
    return s;
  }

  async delete(id: string, reason = 'closed by the client'): Promise<void> {
    const s = this.#sessions.get(id);
    if (s === undefined) return;
    this.#sessions.delete(id);
    this.onDelete?.(s, reason);
    await s.upstreamSession.close(s.auth('session/close'));
  }

  async sweep(now = Date.now()): Promise<number> {
    const stale = [...this.#sessions.values()].filter((s) => s.upstreamSession.closed || now - s.lastSeen > this.limits(s.upstream).idleTimeoutMs);
    await Promise.all(stale.map((s) => this.delete(s.id, s.upstreamSession.closed ? 'the upstream ended it' : 'idle')));
    return stale.length;
  }

  async closeAll(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all([...this.#sessions.keys()].map((id) => this.delete(id, 'gateway shutdown')));
  }
}
