import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { Anchors } from './anchors.js';
import type { AuditLog, StreamTail } from './log.js';
import type { AuditStore } from './store.js';
import { HashFile } from './tlog/hash-file.js';
import type { WalDamage, WalEntry, WalFiles } from './wal.js';

export interface CommitterStatus {
  readonly commits: number;
  readonly lastCommitAt?: string;
  readonly lastError?: string;
  /** ms between the oldest uncommitted record's durability and its commit, last commit. */
  readonly lastLagMs?: number;
  /**
   * Set while the records cannot go into the repo as they are (a gap, a fork, a broken chain):
   * nothing is committed, everything stays in the WAL, until the repo or the WAL is repaired.
   */
  readonly blocked?: string;
  /** What recovery found damaged in the WAL on start (and recovered around), for operators. */
  readonly walDamage?: readonly string[];
}

export interface Recovery {
  /** Entries replayed from the WAL (those already in the repo included). */
  readonly recovered: number;
  readonly damage: readonly WalDamage[];
}

const describe = (d: WalDamage) => `${d.segment}:${d.line}: ${d.kind}: ${d.why}`;

/**
 * Moves durable WAL entries into the audit repo every N records or T ms:
 * roll the WAL segment, append to stream files, checkpoint, commit, then drop
 * the committed segments. A failed commit leaves everything in the WAL.
 */
export class AuditCommitter {
  #timer: Timer | undefined;
  #running: Promise<void> | undefined;
  #status: {
    commits: number;
    lastCommitAt?: string;
    lastError?: string;
    lastLagMs?: number;
    blocked?: string;
    walDamage?: readonly string[];
  } = { commits: 0 };
  #oldest: number | undefined;
  readonly #clock: Clock;

  constructor(
    private readonly log: AuditLog,
    private readonly wal: WalFiles,
    private readonly store: AuditStore,
    private readonly opts: {
      everyRecords: number;
      everyMs: number;
      onError?: (err: unknown) => void;
      /** The log's stored-hash file (the sealer's), reconciled with the repo and the WAL on recovery. */
      treeFile?: string;
      /** Where each committed checkpoint is also published. */
      anchors?: Anchors;
      /** The clock of the every-T-ms commit and of the status times (default: the system's). */
      clock?: Clock;
    },
  ) {
    this.#clock = opts.clock ?? systemClock;
  }

  /**
   * Before the sealer numbers a record: the stored hashes hold exactly the repo's leaves and
   * then the WAL's (a crash can leave the file short of, or past, what is durable).
   */
  #reconcileTree(entries: readonly WalEntry[]): void {
    const file = this.opts.treeFile;
    if (file === undefined) return;
    const hf = HashFile.open(file);
    try {
      const size = this.store.treeSize();
      const root = this.store.treeRoot?.();
      let matches = hf.size >= size;
      if (matches && root !== undefined && size > 0) {
        hf.truncate(size);
        matches = hf.root().equals(root);
      }
      if (!matches) {
        hf.truncate(0);
        hf.append(this.store.leafHashes?.() ?? []);
        if (hf.size !== size)
          throw new GatewayError(
            'AUDIT_UNAVAILABLE',
            `audit repo: its records make a tree of ${hf.size}, its checkpoint says ${size}`,
          );
      }
      hf.truncate(size);
      const fresh = entries.filter((e) => e.leaf >= size);
      fresh.forEach((e, i) => {
        if (e.leaf !== size + i)
          throw new GatewayError(
            'AUDIT_UNAVAILABLE',
            `audit WAL recovery refused: leaf ${e.leaf} does not continue the log's tree of ${size + i} (a gap: say the repo was restored from an older backup)`,
          );
      });
      hf.append(fresh.map((e) => Buffer.from(e.hash, 'hex')));
    } finally {
      hf.close();
    }
  }

  /**
   * Replay the WAL into the store (idempotent), seed the log's chains, commit, drop old segments.
   * Refuses (AUDIT_UNAVAILABLE, touching neither the WAL nor the repo) when an acknowledged record
   * is lost in the WAL, or when the WAL does not continue the repo's streams exactly (a gap, a fork).
   */
  async recover(): Promise<Recovery> {
    const { entries, damage } = this.wal.recover();
    const lost = damage.filter((d) => d.kind === 'lost');
    if (lost.length > 0) {
      throw new GatewayError(
        'AUDIT_UNAVAILABLE',
        `audit WAL recovery refused: ${lost.map(describe).join('; ')}. Nothing was replayed and the WAL is left as it is: restore the segment from a backup, or set it aside to accept the loss.`,
      );
    }
    if (damage.length > 0) this.#status = { ...this.#status, walDamage: damage.map(describe) };
    this.#reconcileTree(entries);
    // The sealer opens the tree now, and signs a checkpoint over everything the WAL holds.
    const { segment, checkpoint, size } = await this.log.rollWal();
    this.store.append(entries);
    const last = new Map<string, StreamTail>();
    for (const e of entries) {
      const t = this.store.tail(e.stream);
      if (t !== undefined) last.set(e.stream, t);
    }
    for (const [stream, tail] of last) this.log.seed(stream, tail);
    await this.store.commit(`audit: recovered ${entries.length} record(s) from the write-ahead log`, checkpoint);
    void this.opts.anchors?.publish(checkpoint);
    this.wal.drop(segment);
    this.log.committed(size);
    return { recovered: entries.length, damage };
  }

  start(): void {
    this.#timer = this.#clock.every(this.opts.everyMs, () => void this.commit());
    this.log.onDurable((n) => {
      this.#oldest ??= this.#clock.now();
      if (n >= this.opts.everyRecords) void this.commit();
    });
  }

  status(): CommitterStatus {
    return { ...this.#status };
  }

  /** Commit what is durable now (one commit at a time). */
  commit(): Promise<void> {
    if (this.#running !== undefined) return this.#running;
    this.#running = this.#commit().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #commit(): Promise<void> {
    let segment: number;
    let checkpoint: string;
    let size: number;
    try {
      ({ segment, checkpoint, size } = await this.log.rollWal());
    } catch (err) {
      // The sealer is not running (it is restarted): nothing moves, the next commit tries again.
      this.#failed(err);
      return;
    }
    const oldest = this.#oldest;
    this.#oldest = undefined;
    await this.#commitSegments(segment, checkpoint, size, oldest);
  }

  /** Store and commit entries with the checkpoint over them, publish it, drop the segments they came from. */
  async #store(entries: readonly WalEntry[], checkpoint: string, segment: number): Promise<void> {
    this.store.append(entries);
    const streams = new Set(entries.map((e) => e.stream)).size;
    await this.store.commit(`audit: ${entries.length} record(s) in ${streams} stream(s)`, checkpoint);
    void this.opts.anchors?.publish(checkpoint);
    this.wal.drop(segment);
  }

  #committed(oldest: number | undefined): void {
    const stored = (stream: string, seq: number) => (this.store.tail(stream)?.seq ?? -1) >= seq;
    this.log.prune(30 * 60_000, stored);
    this.log.evict(10_000, stored);
    const { walDamage } = this.#status;
    this.#status = {
      commits: this.#status.commits + 1,
      lastCommitAt: new Date(this.#clock.now()).toISOString(),
      ...(oldest !== undefined ? { lastLagMs: this.#clock.now() - oldest } : {}),
      ...(walDamage !== undefined ? { walDamage } : {}),
    };
  }

  /**
   * The records below `size`, read back from the rolled segments (the log holds no line), one
   * segment per git commit, each with a checkpoint over the tree up to its last record (the rolled
   * one for the last), so no more than one segment (SEGMENT_BYTES) is in memory at once. The
   * segments were synced; a lost record in one is refused. A failure leaves the
   * segments not committed yet; the next commit reads them again.
   */
  async #commitSegments(segment: number, checkpoint: string, size: number, oldest: number | undefined): Promise<void> {
    try {
      for (const s of this.wal.list(segment)) {
        const { entries, damage } = this.wal.read(s);
        // As at recovery: a torn end (a write that failed or was cut short, never acknowledged) is
        // discarded; only an acknowledged record that does not check out stops the commit.
        const bad = damage.filter((d) => d.kind === 'lost');
        if (bad.length > 0)
          throw new GatewayError(
            'AUDIT_UNAVAILABLE',
            `audit WAL read back for commit: ${bad.map(describe).join('; ')}`,
          );
        const mine = entries.filter((e) => e.leaf < size);
        if (mine.length > 0) {
          const end = mine[mine.length - 1]!.leaf + 1;
          await this.#store(mine, end === size ? checkpoint : await this.log.checkpointAt(end), s);
          this.log.committed(end);
          this.#committed(oldest);
        } else this.wal.drop(s);
      }
      this.log.committed(size);
    } catch (err) {
      this.#oldest ??= oldest;
      // The store's own refusals (a gap, a fork, a file changed behind its back) last until repaired: say so.
      if (err instanceof GatewayError) this.#status = { ...this.#status, blocked: err.message };
      this.#failed(err);
    }
  }

  #failed(err: unknown): void {
    this.#status = { ...this.#status, lastError: err instanceof Error ? err.message : String(err) };
    this.opts.onError?.(err);
  }

  /** Final commit of everything (shutdown). */
  async stop(): Promise<void> {
    this.#timer?.cancel();
    await this.log.flush();
    await this.#running;
    await this.commit();
    await this.opts.anchors?.idle();
  }
}
