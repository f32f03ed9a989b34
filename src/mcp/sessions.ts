import { randomUUID } from 'node:crypto';
import { GatewayError } from '../errors.js';
import { InFlight } from './in-flight.js';
import { ReplayBuffer } from './replay.js';
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
  /** What gitgate wrote on this session's SSE streams, for a client that reconnects with Last-Event-ID. */
  readonly replay: ReplayBuffer;
  /** Ends the session's live GET stream (and its upstream GET): a session has one; a new one replaces it. */
  getStream?: AbortController;
}

export interface SessionLimits {
  /** Sessions on the upstream, all callers together. */
  readonly maxSessions: number;
  /** Sessions one caller may hold on the upstream (default: maxSessions). */
  readonly maxSessionsPerCaller?: number;
  readonly idleTimeoutMs: number;
}

/** A slot claimed for a session being opened; give it back with release() (create() does not). */
export interface SessionSlot {
  release(): void;
}

/**
 * Sessions the gateway issued (its own Mcp-Session-Id, never the upstream's),
 * bound to the caller who opened them, capped per upstream and per caller on
 * each upstream, closed when idle. A caller at its quota is refused
 * (SESSION_QUOTA); none of its sessions is closed to make room.
 */
export class SessionStore {
  readonly #sessions = new Map<string, GatewaySession>();
  /** Slots claimed by initializes still in flight, per upstream and per upstream+caller. */
  readonly #opening = new Map<string, number>();
  readonly #sweeper: NodeJS.Timeout;

  /** Called for every session that ends, with why. */
  onDelete: ((session: GatewaySession, reason: string) => Promise<void> | void) | undefined;

  constructor(private readonly limits: (upstream: string) => SessionLimits) {
    this.#sweeper = setInterval(() => void this.sweep(), 10_000);
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#sessions.size;
  }

  countFor(upstream: string, owner?: string): number {
    let n = 0;
    for (const s of this.#sessions.values())
      if (s.upstream === upstream && (owner === undefined || s.owner === owner)) n++;
    return n;
  }

  #key(upstream: string, owner?: string): string {
    return owner === undefined ? upstream : `${upstream}\u0000${owner}`;
  }

  #inUse(upstream: string, owner?: string): number {
    return this.countFor(upstream, owner) + (this.#opening.get(this.#key(upstream, owner)) ?? 0);
  }

  /**
   * Throws SESSION_LIMIT when the upstream already has its maximum of sessions
   * and, given the caller, SESSION_QUOTA when the caller holds its maximum on it.
   * Sessions being opened count.
   */
  assertCapacity(upstream: string, owner?: string): void {
    const { maxSessions, maxSessionsPerCaller } = this.limits(upstream);
    if (
      owner !== undefined &&
      maxSessionsPerCaller !== undefined &&
      this.#inUse(upstream, owner) >= maxSessionsPerCaller
    ) {
      throw new GatewayError(
        'SESSION_QUOTA',
        `caller ${owner} already holds ${maxSessionsPerCaller} sessions on upstream ${upstream} (upstreams.${upstream}.maxSessionsPerCaller); end one with DELETE or wait until one idles out`,
        { data: { quota: 'maxSessionsPerCaller', limit: maxSessionsPerCaller } },
      );
    }
    if (this.#inUse(upstream) >= maxSessions) {
      throw new GatewayError(
        'SESSION_LIMIT',
        `upstream ${upstream} already has ${maxSessions} sessions; close one or retry later`,
        {
          headers: { 'retry-after': '5' },
        },
      );
    }
  }

  /**
   * Claim a slot for a session `owner` is opening on `upstream` (SESSION_QUOTA
   * or SESSION_LIMIT when there is none), so concurrent initializes cannot all
   * pass the check before any of them is created.
   */
  reserve(upstream: string, owner: string): SessionSlot {
    this.assertCapacity(upstream, owner);
    const keys = [this.#key(upstream), this.#key(upstream, owner)];
    for (const k of keys) this.#opening.set(k, (this.#opening.get(k) ?? 0) + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        for (const k of keys) {
          const n = (this.#opening.get(k) ?? 1) - 1;
          if (n <= 0) this.#opening.delete(k);
          else this.#opening.set(k, n);
        }
      },
    };
  }

  create(
    upstream: string,
    owner: string,
    protocolVersion: string,
    upstreamSession: UpstreamSession,
    auth: (purpose: string) => UpstreamAuth,
  ): GatewaySession {
    const now = Date.now();
    const s: GatewaySession = {
      id: randomUUID(),
      upstream,
      owner,
      protocolVersion,
      upstreamSession,
      auth,
      createdAt: now,
      lastSeen: now,
      inFlight: new InFlight(),
      replay: new ReplayBuffer(),
    };
    this.#sessions.set(s.id, s);
    return s;
  }

  /** The caller's live session on this upstream, or SESSION_UNKNOWN (also for someone else's session). */
  get(id: string, upstream: string, owner: string): GatewaySession {
    const s = this.#sessions.get(id);
    if (s === undefined || s.upstream !== upstream || s.owner !== owner || s.upstreamSession.closed) {
      if (s?.upstreamSession.closed) this.#sessions.delete(id);
      throw new GatewayError(
        'SESSION_UNKNOWN',
        `Unknown session ${id}: it expired, was closed, or belongs to someone else; send initialize to start a new one`,
      );
    }
    s.lastSeen = Date.now();
    return s;
  }

  async delete(id: string, reason = 'closed by the client'): Promise<void> {
    const s = this.#sessions.get(id);
    if (s === undefined) return;
    this.#sessions.delete(id);
    const recorded = this.onDelete?.(s, reason);
    await s.upstreamSession.close(s.auth('session/close'));
    // The caller hears that its session ended only once that is recorded.
    await recorded;
  }

  async sweep(now = Date.now()): Promise<number> {
    const stale = [...this.#sessions.values()].filter(
      (s) => s.upstreamSession.closed || now - s.lastSeen > this.limits(s.upstream).idleTimeoutMs,
    );
    // A record that cannot be written is the audit log's to report (it turns unhealthy); the session ends regardless.
    await Promise.all(
      stale.map((s) =>
        this.delete(s.id, s.upstreamSession.closed ? 'the upstream ended it' : 'idle').catch(() => undefined),
      ),
    );
    return stale.length;
  }

  async closeAll(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all(
      [...this.#sessions.keys()].map((id) => this.delete(id, 'gateway shutdown').catch(() => undefined)),
    );
  }
}
