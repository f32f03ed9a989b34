import { randomUUID } from 'node:crypto';
import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import { InFlight } from './in-flight.js';
import { ReplayBuffer } from './replay.js';
import type { UpstreamAuth, UpstreamSession } from './upstream/types.js';

export interface GatewaySession {
  readonly id: string;
  /** Several replicas: the session's slot in the shared caps (src/store/session-caps.ts). */
  readonly slot?: string;
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

/** What a session needs to continue on any replica (sealed inside its id: src/store/session-seal.ts). */
export interface SealedSession {
  /** Its slot in the shared caps, when they are shared. */
  readonly slot?: string;
  readonly upstream: string;
  readonly owner: string;
  readonly protocolVersion: string;
  readonly upstreamId: string;
  readonly createdAt: number;
}

/** Seals session ids (several replicas); open() answers undefined for anything it did not seal, or altered. */
export interface SessionSeal {
  seal(s: SealedSession): string;
  open(id: string): SealedSession | undefined;
}

/** How this replica continues a session on an upstream (HTTP upstreams: resume by the upstream's session id). */
export interface SessionResumer {
  resume(upstreamId: string, protocolVersion: string): UpstreamSession;
  auth(purpose: string): UpstreamAuth;
}

/** A slot claimed for a session being opened; give it back with release() (create() does not). */
export interface SessionSlot {
  release(): void;
  /** The slot's id in the shared caps (several replicas). */
  readonly id?: string;
}

/**
 * Session caps counted across replicas: claim() a slot under the caps (or say which cap is full), touch() one
 * in use (an idle slot stops counting after the upstream's idleTimeoutMs), release() one that ended.
 */
export interface SharedSessionCaps {
  claim(slot: string, upstream: string, owner: string, limits: SessionLimits): Promise<'ok' | 'limit' | 'quota'>;
  /** Keep a slot counted (a live one only: one that idled out everywhere stays out). */
  touch(slot: string, limits: SessionLimits): void;
  /** Whether a slot is still counted (seen within idleTimeoutMs on some replica), touching it if so. */
  renew(slot: string, limits: SessionLimits): Promise<boolean>;
  release(slot: string): void;
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
  readonly #sweeper: Timer;

  /** Several replicas: session ids are sealed, and a sealed id another replica issued is continued here. */
  seal: SessionSeal | undefined;
  resumer: ((upstream: string, owner: string) => SessionResumer | undefined) | undefined;
  /** Sessions continued here that another replica opened: forgotten when idle here, never closed upstream for it. */
  readonly #adopted = new Set<string>();
  /** Adopted here and not yet found still counted in the shared caps (see confirm). */
  readonly #unconfirmed = new Set<string>();

  /** Several replicas: caps and quotas are counted in the shared store instead of here. */
  caps: SharedSessionCaps | undefined;
  readonly #touched = new Map<string, number>();

  /** Called for every session that ends, with why. */
  onDelete: ((session: GatewaySession, reason: string) => Promise<void> | void) | undefined;

  constructor(
    private readonly limits: (upstream: string) => SessionLimits,
    /** The clock of idle times and of the sweep (every 10 s). */
    private readonly clock: Clock = systemClock,
  ) {
    this.#sweeper = clock.every(10_000, () => void this.sweep());
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
  reserve(upstream: string, owner: string): SessionSlot | Promise<SessionSlot> {
    if (this.caps !== undefined) return this.#reserveShared(this.caps, upstream, owner);
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

  async #reserveShared(caps: SharedSessionCaps, upstream: string, owner: string): Promise<SessionSlot> {
    const id = randomUUID();
    const limits = this.limits(upstream);
    const got = await caps.claim(id, upstream, owner, limits);
    if (got === 'quota')
      throw new GatewayError(
        'SESSION_QUOTA',
        `caller ${owner} already holds ${limits.maxSessionsPerCaller} sessions on upstream ${upstream} across all replicas (upstreams.${upstream}.maxSessionsPerCaller); end one with DELETE or wait until one idles out`,
        { data: { quota: 'maxSessionsPerCaller', limit: limits.maxSessionsPerCaller } },
      );
    if (got === 'limit')
      throw new GatewayError(
        'SESSION_LIMIT',
        `upstream ${upstream} already has ${limits.maxSessions} sessions across all replicas; close one or retry later`,
        { headers: { 'retry-after': '5' } },
      );
    let used = false;
    return {
      id,
      release: () => {
        // A slot a session now holds is the session's to give back (on its DELETE or end).
        if (!used && !this.#slotsInUse.has(id)) {
          used = true;
          caps.release(id);
        }
      },
    };
  }

  readonly #slotsInUse = new Set<string>();

  create(
    upstream: string,
    owner: string,
    protocolVersion: string,
    upstreamSession: UpstreamSession,
    auth: (purpose: string) => UpstreamAuth,
    slot?: SessionSlot,
  ): GatewaySession {
    const now = this.clock.now();
    const upstreamId = upstreamSession.upstreamId;
    const slotId = this.caps !== undefined ? slot?.id : undefined;
    if (slotId !== undefined) {
      this.#slotsInUse.add(slotId);
      this.#touched.set(slotId, now);
    }
    const s: GatewaySession = {
      ...(slotId !== undefined ? { slot: slotId } : {}),
      id:
        this.seal !== undefined && upstreamId !== undefined
          ? this.seal.seal({
              ...(slotId !== undefined ? { slot: slotId } : {}),
              upstream,
              owner,
              protocolVersion,
              upstreamId,
              createdAt: now,
            })
          : randomUUID(),
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
    const s = this.#sessions.get(id) ?? this.#adopt(id, upstream, owner);
    if (s === undefined || s.upstream !== upstream || s.owner !== owner || s.upstreamSession.closed) {
      if (s?.upstreamSession.closed) {
        this.#sessions.delete(id);
        this.#adopted.delete(id);
      }
      throw new GatewayError(
        'SESSION_UNKNOWN',
        `Unknown session ${id}: it expired, was closed, or belongs to someone else; send initialize to start a new one`,
      );
    }
    s.lastSeen = this.clock.now();
    // Shared caps: a session in use keeps its slot counted (touched at most four times per idle timeout).
    if (this.caps !== undefined && s.slot !== undefined) {
      const last = this.#touched.get(s.slot) ?? 0;
      if (s.lastSeen - last > this.limits(upstream).idleTimeoutMs / 4) {
        this.#touched.set(s.slot, s.lastSeen);
        this.caps.touch(s.slot, this.limits(upstream));
      }
    }
    return s;
  }

  async delete(id: string, reason = 'closed by the client', opts: { readonly client?: boolean } = {}): Promise<void> {
    const s = this.#sessions.get(id);
    if (s === undefined) return;
    this.#sessions.delete(id);
    this.#adopted.delete(id);
    this.#unconfirmed.delete(id);
    const recorded = Promise.resolve(this.onDelete?.(s, reason));
    // Observed at once: a close that cannot be recorded fails this call below, never an unhandled rejection meanwhile.
    recorded.catch(() => undefined);
    // A sealed session (several replicas) may go on through another replica: only the client's DELETE ends it
    // upstream; idling out or a shutdown here only forgets it here.
    if (s.slot !== undefined) {
      this.#touched.delete(s.slot);
      this.#slotsInUse.delete(s.slot);
      // Its slot is given back when the session ended for everyone (the client's DELETE, the upstream ended it);
      // one only forgotten here keeps counting until it idles out everywhere.
      if (opts.client === true || s.upstreamSession.closed || !this.#shared(s)) this.caps?.release(s.slot);
    }
    if (opts.client === true || !this.#shared(s)) await s.upstreamSession.close(s.auth('session/close'));
    // The caller hears that its session ended only once that is recorded.
    await recorded;
  }

  /**
   * A sealed id this replica did not issue: continued here when the seal opens, it names this upstream and
   * this caller, and the upstream can be resumed (HTTP). Anything else is unknown (stdio sessions live with
   * their child process on the replica that opened them: the load balancer routes them there).
   */
  #shared(s: GatewaySession): boolean {
    return this.#adopted.has(s.id) || (this.seal !== undefined && this.seal.open(s.id) !== undefined);
  }

  #adopt(id: string, upstream: string, owner: string): GatewaySession | undefined {
    const sealed = this.seal?.open(id);
    if (sealed === undefined || sealed.upstream !== upstream || sealed.owner !== owner) return undefined;
    const how = this.resumer?.(upstream, owner);
    if (how === undefined) return undefined;
    // Shared caps: the session already holds its slot (counted once, wherever it is continued).
    if (this.caps === undefined) this.assertCapacity(upstream, owner);
    const now = this.clock.now();
    if (sealed.slot !== undefined) this.#touched.set(sealed.slot, now);
    const s: GatewaySession = {
      ...(sealed.slot !== undefined ? { slot: sealed.slot } : {}),
      id,
      upstream,
      owner,
      protocolVersion: sealed.protocolVersion,
      upstreamSession: how.resume(sealed.upstreamId, sealed.protocolVersion),
      auth: how.auth,
      createdAt: sealed.createdAt,
      lastSeen: now,
      inFlight: new InFlight(),
      // Events another replica sent are not replayable here (Last-Event-ID replay is per replica).
      replay: new ReplayBuffer(),
    };
    this.#sessions.set(id, s);
    this.#adopted.add(id);
    if (this.caps !== undefined && sealed.slot !== undefined) this.#unconfirmed.add(id);
    return s;
  }

  /**
   * Before a session adopted here (a sealed id another replica issued) serves its first request: its
   * slot must still be counted in the shared caps. A sealed id never expires by itself, so one whose
   * session idled out everywhere would otherwise come back outside every cap: it is unknown instead.
   */
  confirm(s: GatewaySession): Promise<void> | undefined {
    // The common case (a session this replica opened, or confirmed already) costs no turn of the loop.
    if (!this.#unconfirmed.has(s.id) || this.caps === undefined || s.slot === undefined) return undefined;
    return this.#confirm(s, s.slot, this.caps);
  }

  async #confirm(s: GatewaySession, slot: string, caps: SharedSessionCaps): Promise<void> {
    const live = await caps.renew(slot, this.limits(s.upstream));
    this.#unconfirmed.delete(s.id);
    if (live) return;
    this.#sessions.delete(s.id);
    this.#adopted.delete(s.id);
    this.#touched.delete(slot);
    throw new GatewayError(
      'SESSION_UNKNOWN',
      `Unknown session ${s.id}: it idled out; send initialize to start a new one`,
    );
  }

  async sweep(now = this.clock.now()): Promise<number> {
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
    this.#sweeper.cancel();
    await Promise.all(
      [...this.#sessions.keys()].map((id) => this.delete(id, 'gateway shutdown').catch(() => undefined)),
    );
  }
}
