import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import { type AuditEvent, type RawMember, recordParts } from './record.js';
import type { FromSealer, SealItem } from './sealer.js';
import type { SealerPort } from './sealer-port.js';

export interface StreamTail {
  readonly seq: number;
  readonly hash: string;
  /** The record's ts, when known: the stream's next record is never older. */
  readonly ts?: string;
}

/** Where a stream's last stored record is found when the log has not seen the stream yet. */
export type TailLookup = (stream: string) => StreamTail | undefined;

export interface AuditStatus {
  readonly healthy: boolean;
  readonly lastError?: string;
  /** Durable records not yet committed to git. */
  readonly uncommitted: number;
  readonly appended: number;
  /** Durable WAL writes (groups) since start. */
  readonly walWrites: number;
}

const RETRY_AFTER_FAILURE_MS = 2_000;
/** At most how long the log holds a record nobody waits for before sending it to be written (a parked call's decision, say). */
const HOLD_MS = 100;
/** How long after its sealer stopped (a port that reports its exit) the log starts a new one. */
const RESTART_SEALER_MS = 1_000;

/** Where the log's chain of a stream stands: its last seq, and the hash the sealer must be told (first use, or after a failure). */
interface Tail {
  seq: number;
  prev?: string | null;
  used: number;
  /** The ts of the stream's last record, when known. */
  ts?: string;
}

interface Waiting {
  readonly stream: string;
  readonly seq: number;
  readonly ts: string;
  /** When it was appended (ms). */
  readonly at: number;
  readonly done: (err?: unknown) => void;
}

export interface AuditLogOptions {
  /** The clock (tests inject one; default the system's): ts, the stall watchdog, the hold, the retry window, the sealer restart, idle tails. */
  readonly clock?: Clock;
  /**
   * A record not durable after this long means the WAL has stalled (a hung
   * disk): the log reports itself unavailable, so nothing new is forwarded,
   * until the writes complete again. Default 5 s.
   */
  readonly stallMs?: number;
}

const STALL_MS = 5_000;

/**
 * The audit log: assigns each event its stream's next seq, writes the
 * record's JSON and hands it to the sealer (through a SealerPort), which
 * chains, hashes and durably writes it to the WAL in group commits, and has
 * the log's checkpoints signed. A caller awaits durability before answering
 * its client. When the WAL cannot be written the log is unhealthy and the
 * gateway stops forwarding.
 *
 * Records appended in one turn of the loop go to the sealer in one message;
 * the disk's wait and signing happen off the event loop.
 */
export class AuditLog {
  readonly #tails = new Map<string, Tail>();
  /** Streams that ended (forget), whose chain state goes once they are stored. */
  readonly #ended = new Set<string>();
  /** The last record of each stream known to be in the WAL (what the chain falls back to after a failed write). */
  readonly #durable = new Map<string, StreamTail>();
  readonly #waiting = new Map<number, Waiting>();
  readonly #replies = new Map<number, (msg: { segment?: number; checkpoint?: string; error?: string }) => void>();
  #port: SealerPort | undefined;
  #outbox: SealItem[] = [];
  #scheduled = false;
  #holdTimer: Timer | undefined;
  #nextId = 1;
  /** Bumped by every failure: the sealer refuses records numbered before it. */
  #epoch = 0;
  /**
   * Leaves in the repo (the committer says so): the durable records past them are uncommitted, in
   * the WAL segments only, where the committer reads them back. No line is held in memory for it.
   */
  #committed = 0;
  #appended = 0;
  #walWrites = 0;
  #lastError: { message: string; at: number } | undefined;
  #listeners: ((n: number) => void)[] = [];
  #writeListeners: ((ms: number) => void)[] = [];
  #health: ((healthy: boolean, why?: string) => void)[] = [];
  #closed = false;
  /** Leaves known durable (from checkpoints and durable reports): where a restarted sealer numbers from. */
  #treeSize: number | undefined;

  /** The log's clock: every time it reads or waits (record ts, stall watchdog, hold, retry window, sealer restart, idle tails). */
  readonly #clock: Clock;
  readonly #stallMs: number;
  readonly #watchdog: Timer;

  constructor(
    private readonly openSealer: () => SealerPort,
    private readonly tailOf: TailLookup,
    opts: AuditLogOptions = {},
  ) {
    this.#clock = opts.clock ?? systemClock;
    this.#stallMs = opts.stallMs ?? STALL_MS;
    this.#start();
    this.#watchdog = this.#clock.every(Math.max(10, Math.min(1_000, this.#stallMs / 2)), () => this.#checkStalled());
  }

  #ms(): number {
    return this.#clock.now();
  }

  /** The oldest record still waiting (the map keeps append order) tells whether writes have stalled. */
  #checkStalled(): void {
    const oldest = this.#waiting.values().next().value;
    if (oldest === undefined) return;
    const waited = this.#ms() - oldest.at;
    if (waited > this.#stallMs)
      this.#unavailable(`audit WAL write stalled: a record has waited ${Math.round(waited)} ms to become durable`);
  }

  #start(): void {
    const port = this.openSealer();
    this.#port = port;
    port.listen(
      (msg) => this.#receive(msg),
      (err) => {
        if (this.#port !== port) return;
        this.#port = undefined;
        this.#fail(this.#epoch, [...this.#waiting.keys()], `audit sealer stopped: ${err.message}`);
        for (const reply of this.#replies.values()) reply({ error: err.message });
        this.#replies.clear();
        this.#clock.after(RESTART_SEALER_MS, () => {
          if (this.#closed) return;
          this.#start();
          this.#port?.post({
            kind: 'epoch',
            min: this.#epoch,
            ...(this.#treeSize !== undefined ? { tree: this.#treeSize } : {}),
          });
        });
      },
    );
  }

  /** Seed the chain from what recovery found (stream tails after the WAL was replayed). */
  seed(stream: string, tail: StreamTail): void {
    this.#tails.set(stream, {
      seq: tail.seq,
      prev: tail.hash,
      used: this.#ms(),
      ...(tail.ts !== undefined ? { ts: tail.ts } : {}),
    });
    this.#durable.set(stream, tail);
  }

  /**
   * Number and enqueue one event; the promise resolves once it is durable in
   * the WAL. `defer`: nobody waits for it now; it becomes durable with the next
   * group someone waits for (the decision of an exchange rides with its
   * answer: one fsync, not two), or within HOLD_MS. `ts`: when it happened
   * (default: the event's, else now), never before the stream's last record
   * (a clock stepped back records the stream's last ts until it catches up).
   * `raw`: the last member of its data, as JSON.
   */
  append(
    stream: string,
    event: AuditEvent,
    opts: { defer?: boolean; ts?: string; raw?: RawMember } = {},
  ): Promise<void> {
    let tail = this.#tails.get(stream);
    if (tail === undefined) {
      const stored = this.tailOf(stream);
      tail =
        stored === undefined
          ? { seq: -1, prev: null, used: 0 }
          : { seq: stored.seq, prev: stored.hash, used: 0, ...(stored.ts !== undefined ? { ts: stored.ts } : {}) };
    }
    const seq = tail.seq + 1;
    const prev = tail.prev;
    const at = opts.ts ?? event.ts ?? new Date(this.#ms()).toISOString();
    const ts = tail.ts !== undefined && at < tail.ts ? tail.ts : at;
    // Delete first: Map order is then least recently used first (for evict()).
    this.#tails.delete(stream);
    this.#tails.set(stream, { seq, used: this.#ms(), ts });
    const id = this.#nextId++;
    const { head, rest } = recordParts(stream, seq, ts, event, opts.raw);
    this.#outbox.push({ id, epoch: this.#epoch, stream, seq, head, rest, ...(prev !== undefined ? { prev } : {}) });
    const durable = new Promise<void>((resolve, reject) =>
      this.#waiting.set(id, {
        stream,
        seq,
        ts,
        at: this.#ms(),
        done: (err) => (err === undefined ? resolve() : reject(err)),
      }),
    );
    if (opts.defer === true) this.#hold();
    else this.#schedule();
    return durable;
  }

  /**
   * Send what is held (deferred records) with this turn's message instead of
   * with the next answer: a record that must be durable before the gateway
   * acts on it (a decision before its call is forwarded). Everything appended
   * in this turn still goes to the sealer as one message and shares one fsync.
   */
  sendNow(): void {
    if (this.#outbox.length > 0) this.#schedule();
  }

  /** Throws AUDIT_UNAVAILABLE while the WAL is failing (retried every couple of seconds). */
  assertWritable(): void {
    const e = this.#lastError;
    if (e !== undefined && this.#ms() - e.at < RETRY_AFTER_FAILURE_MS) {
      throw new GatewayError(
        'AUDIT_UNAVAILABLE',
        `Audit log unavailable (${e.message}); gitgate forwards nothing it cannot record`,
        { headers: { 'retry-after': '2' } },
      );
    }
  }

  status(): AuditStatus {
    return {
      healthy: this.#lastError === undefined,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError.message } : {}),
      uncommitted: this.#uncommittedCount(),
      appended: this.#appended,
      walWrites: this.#walWrites,
    };
  }

  /**
   * Start a new WAL segment; returns the closed segment, the checkpoint signed over the tree then,
   * and its size. Everything appended before is then durable (or failed), in the segments up to
   * the closed one.
   */
  async rollWal(): Promise<{ segment: number; checkpoint: string; size: number }> {
    const r = await this.#ask('roll');
    if (r.segment === undefined || r.checkpoint === undefined)
      throw new Error(`audit WAL roll failed: ${r.error ?? 'no segment'}`);
    const size = Number(r.checkpoint.split('\n')[1]);
    if (!Number.isSafeInteger(size)) throw new Error('audit WAL roll failed: the checkpoint has no tree size');
    this.#treeSize = Math.max(this.#treeSize ?? 0, size);
    return { segment: r.segment, checkpoint: r.checkpoint, size };
  }

  /** A checkpoint signed over the first `size` leaves (all durable): what a commit of part of the tree carries. */
  async checkpointAt(size: number): Promise<string> {
    const r = await this.#ask('checkpoint', size);
    if (r.checkpoint === undefined) throw new Error(`audit checkpoint at ${size} failed: ${r.error ?? 'none'}`);
    return r.checkpoint;
  }

  /** The first `size` leaves are in the repo now (their records are the committer's no more). */
  committed(size: number): void {
    this.#committed = Math.max(this.#committed, size);
  }

  #uncommittedCount(): number {
    return Math.max(0, (this.#treeSize ?? 0) - this.#committed);
  }

  /** Called when the log becomes unavailable (with why) and when it records again. */
  onHealth(listener: (healthy: boolean, why?: string) => void): void {
    this.#health.push(listener);
  }

  /** Nothing can be recorded now: refuse new exchanges for a while, and say so once. */
  #unavailable(message: string): void {
    const was = this.#lastError;
    this.#lastError = { message, at: this.#ms() };
    if (was === undefined) for (const l of this.#health) l(false, message);
  }

  /** Called with how long each WAL write (one group) took, in ms. */
  onWalWrite(listener: (ms: number) => void): void {
    this.#writeListeners.push(listener);
  }

  /** Called with the number of uncommitted entries after each group commit. */
  onDurable(listener: (uncommitted: number) => void): void {
    this.#listeners.push(listener);
  }

  /** Wait until everything appended so far is durable (or failed). */
  async flush(): Promise<void> {
    await this.#ask('sync');
  }

  /** Flush, then stop the sealer; resolves with the checkpoint it signed last (over every durable record). */
  async close(): Promise<string | undefined> {
    if (this.#closed) return undefined;
    const r = await this.#ask('close');
    this.#closed = true;
    this.#watchdog.cancel();
    const port = this.#port;
    this.#port = undefined;
    await port?.terminate();
    return r.checkpoint;
  }

  /**
   * The stream ended (its session closed): its chain state goes once its last
   * record is stored (see prune). Not before: a record still to come (a call
   * in flight when its session closed) would continue from the store's tail,
   * behind records only in the WAL, and reuse their seq.
   */
  forget(stream: string): void {
    if (this.#tails.has(stream)) this.#ended.add(stream);
  }

  #drop(stream: string): void {
    this.#ended.delete(stream);
    this.#tails.delete(stream);
    this.#durable.delete(stream);
    this.#outbox.push({ forget: stream });
    this.#hold();
  }

  /**
   * Keep chain state for at most `max` streams: the least recently used go
   * first, but only those whose newest record is already stored (the store is
   * then where their chain continues from).
   */
  evict(max: number, stored: (stream: string, seq: number) => boolean): void {
    if (this.#tails.size <= max) return;
    let excess = this.#tails.size - max;
    for (const [s, t] of this.#tails) {
      if (excess <= 0) break;
      if (!stored(s, t.seq)) continue;
      this.#drop(s);
      excess--;
    }
  }

  /** Drop chain state of streams that ended or were idle for idleMs, once their newest record is stored. */
  prune(idleMs: number, stored: (stream: string, seq: number) => boolean, now = this.#ms()): void {
    for (const [s, t] of this.#tails)
      if ((this.#ended.has(s) || now - t.used > idleMs) && stored(s, t.seq)) this.#drop(s);
  }

  /** Send what was appended in this turn of the event loop to the sealer, as one message. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#post();
    });
  }

  /**
   * Items nobody waits for (deferred records, forgotten streams) go with the
   * next message someone waits for: one wake-up of the sealer, not two, for a
   * decision and its answer. Sent after HOLD_MS at the latest.
   */
  #hold(): void {
    if (this.#holdTimer !== undefined) return;
    this.#holdTimer = this.#clock.after(HOLD_MS, () => {
      this.#holdTimer = undefined;
      this.#post();
    });
  }

  #post(): void {
    if (this.#holdTimer !== undefined) {
      this.#holdTimer.cancel();
      this.#holdTimer = undefined;
    }
    if (this.#outbox.length === 0) return;
    const items = this.#outbox;
    this.#outbox = [];
    if (this.#port === undefined) {
      const ids = items.flatMap((i) => ('id' in i ? [i.id] : []));
      this.#fail(this.#epoch, ids, this.#lastError?.message ?? 'audit sealer not running');
      return;
    }
    this.#port.post({ kind: 'seal', items });
  }

  /** Ask the sealer for `sync`, `roll`, `close` or a `checkpoint` at `size`, after everything appended so far. */
  #ask(
    kind: 'sync' | 'roll' | 'close' | 'checkpoint',
    size = 0,
  ): Promise<{ segment?: number; checkpoint?: string; error?: string }> {
    this.#post();
    const port = this.#port;
    if (port === undefined) return Promise.resolve({ error: this.#lastError?.message ?? 'audit sealer not running' });
    const id = this.#nextId++;
    return new Promise((resolve) => {
      this.#replies.set(id, resolve);
      port.post(kind === 'checkpoint' ? { kind, id, size } : { kind, id });
    });
  }

  #receive(msg: FromSealer): void {
    switch (msg.kind) {
      case 'durable': {
        if (this.#lastError !== undefined) {
          this.#lastError = undefined;
          for (const l of this.#health) l(true);
        }
        this.#appended += msg.ids.length;
        this.#walWrites++;
        for (const l of this.#writeListeners) l(msg.writeMs);
        for (const leaf of msg.leaves) if (leaf >= (this.#treeSize ?? 0)) this.#treeSize = leaf + 1;
        for (let i = 0; i < msg.ids.length; i++) {
          const w = this.#waiting.get(msg.ids[i]!);
          if (w === undefined) continue;
          this.#waiting.delete(msg.ids[i]!);
          this.#durable.set(w.stream, { seq: w.seq, hash: msg.hashes[i]!, ts: w.ts });
          w.done();
        }
        for (const l of this.#listeners) l(this.#uncommittedCount());
        return;
      }
      case 'failed':
        this.#fail(msg.epoch, msg.ids, msg.error);
        return;
      case 'done': {
        const reply = this.#replies.get(msg.id);
        this.#replies.delete(msg.id);
        reply?.(msg);
      }
    }
  }

  /**
   * Records that were not written. A failure in the current epoch starts the
   * next one: every stream's chain goes back to its last durable record,
   * which the sealer is told with the stream's next record.
   */
  #fail(epoch: number, ids: readonly number[], message: string): void {
    if (epoch >= this.#epoch) {
      this.#unavailable(message);
      this.#epoch = epoch + 1;
      for (const [s, t] of this.#tails) {
        const d = this.#durable.get(s) ?? this.tailOf(s);
        if (d === undefined) this.#tails.delete(s);
        // The stream's ts stays where it got to: records numbered after a failure are never older than those before it.
        else
          this.#tails.set(s, { seq: d.seq, prev: d.hash, used: t.used, ...(t.ts !== undefined ? { ts: t.ts } : {}) });
      }
      this.#port?.post({ kind: 'epoch', min: this.#epoch });
    }
    const ge = new GatewayError('AUDIT_UNAVAILABLE', `Audit log unavailable: ${message}`);
    for (const id of ids) {
      const w = this.#waiting.get(id);
      this.#waiting.delete(id);
      w?.done(ge);
    }
  }
}
