import { GatewayError } from '../errors.js';
import { hashLine, signRecord, type AuditEvent, type AuditRecord, type AuditSigner } from './record.js';
import type { WalEntry, WriteAheadLog } from './wal.js';

export interface StreamTail {
  readonly seq: number;
  readonly hash: string;
}

/** Where a stream's last stored record is found when the log has not seen the stream yet. */
export type TailLookup = (stream: string) => StreamTail | undefined;

export interface AuditStatus {
  readonly healthy: boolean;
  readonly lastError?: string;
  /** Durable records not yet committed to git. */
  readonly uncommitted: number;
  readonly appended: number;
}

const RETRY_AFTER_FAILURE_MS = 2_000;

/**
 * The audit log: assigns each event its stream's next seq and the hash of the
 * previous line, signs it, and appends it to the WAL in group commits. A
 * caller awaits durability before answering its client. When the WAL cannot
 * be written the log is unhealthy and the gateway stops forwarding.
 */
export class AuditLog {
  readonly #tails = new Map<string, StreamTail & { used: number }>();
  /** The last record of each stream known to be in the WAL (what the chain falls back to after a failed write). */
  readonly #durable = new Map<string, StreamTail>();
  #queue: { entry: WalEntry; done: (err?: unknown) => void }[] = [];
  #flushing: Promise<void> | undefined;
  #scheduled = false;
  #rolling = false;
  #uncommitted: WalEntry[] = [];
  /** Entries a commit in progress took: still uncommitted until it confirms. */
  #taken = 0;
  #appended = 0;
  #lastError: { message: string; at: number } | undefined;
  #listeners: ((n: number) => void)[] = [];

  constructor(
    private readonly wal: WriteAheadLog,
    private readonly signer: AuditSigner,
    private readonly tailOf: TailLookup,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** Seed the chain from what recovery found (stream tails after the WAL was replayed). */
  seed(stream: string, tail: StreamTail): void {
    this.#tails.set(stream, { ...tail, used: Date.now() });
    this.#durable.set(stream, tail);
  }

  /**
   * Sign and enqueue one event; the promise resolves once it is durable in the WAL.
   * `defer`: do not start a group commit for it; it becomes durable with the next
   * one (the decision of an exchange rides with its answer: one fsync, not two).
   */
  append(stream: string, event: AuditEvent, opts: { defer?: boolean } = {}): Promise<void> {
    const tail = this.#tails.get(stream) ?? this.tailOf(stream);
    const record: AuditRecord = {
      ...event,
      v: 1,
      stream,
      seq: tail === undefined ? 0 : tail.seq + 1,
      ts: event.ts ?? this.now().toISOString(),
      prev: tail === undefined ? null : tail.hash,
    };
    const line = signRecord(this.signer, record);
    const hash = hashLine(line);
    // Delete first: Map order is then least recently used first (for evict()).
    this.#tails.delete(stream);
    this.#tails.set(stream, { seq: record.seq, hash, used: Date.now() });
    const entry: WalEntry = { stream, seq: record.seq, line, hash };
    const durable = new Promise<void>((resolve, reject) => this.#queue.push({ entry, done: (err) => (err === undefined ? resolve() : reject(err)) }));
    if (opts.defer !== true) this.#schedule();
    return durable;
  }

  /** Throws AUDIT_UNAVAILABLE while the WAL is failing (retried every couple of seconds). */
  assertWritable(): void {
    const e = this.#lastError;
    if (e !== undefined && Date.now() - e.at < RETRY_AFTER_FAILURE_MS) {
      throw new GatewayError('AUDIT_UNAVAILABLE', `Audit log unavailable (${e.message}); gitgate forwards nothing it cannot record`, { headers: { 'retry-after': '2' } });
    }
  }

  status(): AuditStatus {
    return {
      healthy: this.#lastError === undefined,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError.message } : {}),
      uncommitted: this.#uncommitted.length + this.#taken,
      appended: this.#appended,
    };
  }

  /**
   * Start a new WAL segment between two group commits; returns the closed
   * segment. Every entry in it is then among the uncommitted entries.
   */
  async rollWal(wal: WriteAheadLog): Promise<number> {
    // Hold new group commits first: under steady load one always follows the last.
    this.#rolling = true;
    try {
      while (this.#flushing !== undefined) await this.#flushing;
      return await wal.roll();
    } finally {
      this.#rolling = false;
      this.#schedule();
    }
  }

  /** Durable entries not yet committed; the committer takes them. */
  takeUncommitted(): WalEntry[] {
    const out = this.#uncommitted;
    this.#uncommitted = [];
    this.#taken = out.length;
    return out;
  }

  /** The entries last taken are in the repo now. */
  confirmCommitted(): void {
    this.#taken = 0;
  }

  /** Put entries back after a failed commit (they stay first in line). */
  restoreUncommitted(entries: readonly WalEntry[]): void {
    this.#taken = 0;
    this.#uncommitted = [...entries, ...this.#uncommitted];
  }

  /** Called with the number of uncommitted entries after each group commit. */
  onDurable(listener: (uncommitted: number) => void): void {
    this.#listeners.push(listener);
  }

  /** Wait until everything appended so far is durable. */
  async flush(): Promise<void> {
    while (this.#flushing !== undefined || this.#queue.length > 0) {
      this.#schedule();
      await (this.#flushing ?? new Promise((r) => setImmediate(r)));
    }
  }

  /** Forget chain state of streams that ended or went quiet (they are read back from storage if used again). */
  forget(stream: string): void {
    this.#tails.delete(stream);
    this.#durable.delete(stream);
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
      this.#tails.delete(s);
      this.#durable.delete(s);
      excess--;
    }
  }

  prune(idleMs: number, now = Date.now()): void {
    for (const [s, t] of this.#tails) {
      if (now - t.used > idleMs) {
        this.#tails.delete(s);
        this.#durable.delete(s);
      }
    }
  }

  /**
   * Start a group commit at the end of this turn of the event loop, so every
   * record appended in the same turn (all the answers the loop is handling
   * right now) shares one write and one fdatasync.
   */
  #schedule(): void {
    if (this.#scheduled || this.#flushing !== undefined || this.#rolling || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    if (this.#flushing !== undefined || this.#rolling || this.#queue.length === 0) return;
    const batch = this.#queue;
    this.#queue = [];
    this.#flushing = this.wal
      .append(batch.map((b) => b.entry))
      .then(
        () => {
          this.#lastError = undefined;
          this.#appended += batch.length;
          for (const b of batch) this.#durable.set(b.entry.stream, { seq: b.entry.seq, hash: b.entry.hash });
          for (const b of batch) this.#uncommitted.push(b.entry);
          for (const b of batch) b.done();
          for (const l of this.#listeners) l(this.#uncommitted.length);
        },
        (err: unknown) => {
          this.#lastError = { message: err instanceof Error ? err.message : String(err), at: Date.now() };
          // Entries queued behind the failed batch chain onto records that were never stored: fail them too,
          // and point every affected stream back at its last durable record.
          const failed = [...batch, ...this.#queue];
          this.#queue = [];
          for (const b of failed) {
            const d = this.#durable.get(b.entry.stream) ?? this.tailOf(b.entry.stream);
            if (d === undefined) this.#tails.delete(b.entry.stream);
            else this.#tails.set(b.entry.stream, { ...d, used: Date.now() });
          }
          const ge = new GatewayError('AUDIT_UNAVAILABLE', `Audit log unavailable: ${this.#lastError.message}`, { cause: err });
          for (const b of failed) b.done(ge);
        },
      )
      .finally(() => {
        this.#flushing = undefined;
        this.#schedule();
      });
  }
}
