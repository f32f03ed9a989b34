import { leafHashHex, type RecordParts, recordText } from './record.js';
import type { HashFile } from './tlog/hash-file.js';
import { treeHash } from './tlog/merkle.js';
import { type NoteSigner, signCheckpoint } from './tlog/note.js';
import type { WalEntry, WriteAheadLog } from './wal.js';

/**
 * One record for the sealer. The log has assigned its stream and seq and
 * written its JSON except `prev`, which the sealer fills in from its own
 * chain: the log never waits for a signature to number the next record.
 */
export interface SealRequest extends RecordParts {
  readonly id: number;
  /** The log's failure epoch when it sent the record (see Sealer). */
  readonly epoch: number;
  readonly stream: string;
  readonly seq: number;
  /** The previous line's hash (null at seq 0) when the sealer cannot know it: a stream it has not chained yet, or after a failure. */
  readonly prev?: string | null;
}

/** Records to seal, in order, and streams whose chain state the sealer may drop (the log reads them back from storage). */
export type SealItem = SealRequest | { readonly forget: string };

export type ToSealer =
  | { readonly kind: 'seal'; readonly items: readonly SealItem[] }
  /**
   * Refuse records of epochs below `min` (the log has moved past a failure; a new sealer learns it
   * first). `tree`: the leaves the log knows durable; a new sealer numbers from there (a sealer that
   * died after a write it could not report left leaves nobody was told of: later entries win them).
   */
  | { readonly kind: 'epoch'; readonly min: number; readonly tree?: number }
  /** Write everything, then close the segment; answered with a checkpoint signed over the tree then. */
  | { readonly kind: 'roll'; readonly id: number }
  /** Write everything. */
  | { readonly kind: 'sync'; readonly id: number }
  /** A checkpoint signed over the first `size` leaves (a commit of part of the tree: the backlog read back in segments). */
  | { readonly kind: 'checkpoint'; readonly id: number; readonly size: number }
  | { readonly kind: 'close'; readonly id: number };

export type FromSealer =
  /** Durable in the WAL, in the order sealed; `writeMs`: how long the group's write took. */
  | {
      readonly kind: 'durable';
      readonly writeMs: number;
      readonly ids: number[];
      readonly hashes: string[];
      readonly leaves: number[];
    }
  /** Not recorded; `epoch` is the epoch of the records whose write failed (or that were refused). */
  | { readonly kind: 'failed'; readonly ids: number[]; readonly epoch: number; readonly error: string }
  | {
      readonly kind: 'done';
      readonly id: number;
      readonly segment?: number;
      /** With `roll` and `close`: the signed checkpoint note of the tree of every durable record. */
      readonly checkpoint?: string;
      readonly error?: string;
    };

/** The log's Merkle tree as the sealer keeps it: the stored-hash file, opened when first needed (after recovery reconciled it). */
export interface SealerTree {
  readonly origin: string;
  readonly signer: NoteSigner;
  open(): HashFile;
  /** Told each checkpoint signed (to keep the latest beside the WAL). */
  saved?(note: string): void;
  /** Resolves once what `saved` started is written: the thread is not stopped in the middle of a write. */
  idle?(): Promise<void>;
}

/**
 * Chains, numbers and durably writes audit records, and signs the log's
 * checkpoints; it holds the log key and runs on its own thread
 * (seal-worker.ts), so neither hashing, signing nor the disk's wait ever
 * blocks the gateway's event loop. It hashes each line once (the leaf hash);
 * a WAL group is one O_DSYNC write. No record is signed. Each record gets the next leaf index
 * of the log's Merkle tree in the order the WAL makes records durable; the
 * leaves of a group go into the stored-hash file once the group is durable. A
 * checkpoint (tree size + root, a C2SP signed note) is signed when the WAL
 * rolls (every commit), and on close.
 *
 * Messages are handled in order; all the records that arrive while a group is
 * being written form the next group.
 *
 * Failure: when a write fails, every record of that group fails, the sealer
 * forgets its chains and refuses records of that epoch or older (the log
 * already numbered some of them after the failed ones). The log, told of the
 * failure, moves to the next epoch and resends each stream's last durable
 * hash as `prev`.
 */
export class Sealer {
  readonly #chains = new Map<string, { seq: number; hash: string }>();
  /** Sealed, to be written at the end of this turn. */
  #group: { id: number; entry: WalEntry; epoch: number }[] = [];
  #minEpoch = 0;
  #hashes: HashFile | undefined;
  /** The leaf index the next sealed record gets. */
  #nextLeaf = 0;

  /** `now`: a monotonic clock in ms, to time the WAL's writes (default performance.now). */
  constructor(
    private readonly tree: SealerTree,
    private readonly wal: WriteAheadLog,
    private readonly send: (msg: FromSealer) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  #tree(): HashFile {
    if (this.#hashes === undefined) {
      this.#hashes = this.tree.open();
      this.#nextLeaf = this.#hashes.size;
    }
    return this.#hashes;
  }

  /**
   * A checkpoint over every durable record, signed now; or over the first `size` (a backlog's
   * commit), its root read from the stored hashes. Only the whole tree's is saved as the latest.
   */
  #checkpoint(size?: number): string {
    const t = this.#tree();
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0 && size <= t.size))
      throw new Error(`no checkpoint at ${size}: the tree holds ${t.size} leaves`);
    const whole = size === undefined || size === t.size;
    const root = whole ? t.root() : treeHash((l, i) => t.read(l, i), size);
    const note = signCheckpoint(
      { origin: this.tree.origin, size: size ?? t.size, root, extensions: [] },
      this.tree.signer,
    );
    if (whole) this.tree.saved?.(note);
    return note;
  }

  /** Handle one message; `seal` only queues (call flush at the end of the turn), the others flush first. */
  async receive(msg: ToSealer): Promise<void> {
    try {
      await this.#receive(msg);
    } catch (err) {
      if ('id' in msg) this.send({ kind: 'done', id: msg.id, error: err instanceof Error ? err.message : String(err) });
    }
  }

  async #receive(msg: ToSealer): Promise<void> {
    switch (msg.kind) {
      case 'seal':
        for (const item of msg.items) {
          if ('forget' in item) this.#chains.delete(item.forget);
          else this.#seal(item);
        }
        return;
      case 'epoch':
        if (msg.min > this.#minEpoch) {
          this.#minEpoch = msg.min;
          this.#chains.clear();
        }
        if (msg.tree !== undefined && this.#tree().size > msg.tree) {
          this.#tree().truncate(msg.tree);
          this.#nextLeaf = msg.tree;
        }
        return;
      case 'sync':
        this.flush();
        this.send({ kind: 'done', id: msg.id });
        return;
      case 'checkpoint':
        this.flush();
        this.send({ kind: 'done', id: msg.id, checkpoint: this.#checkpoint(msg.size) });
        return;
      case 'roll': {
        this.flush();
        const checkpoint = this.#checkpoint();
        this.send({ kind: 'done', id: msg.id, segment: this.wal.roll(), checkpoint });
        return;
      }
      case 'close': {
        this.flush();
        const checkpoint = this.#checkpoint();
        await this.wal.close();
        this.#hashes?.close();
        this.#hashes = undefined;
        // Answered only once the latest checkpoint's file is written: the log stops the thread next.
        await this.tree.idle?.();
        this.send({ kind: 'done', id: msg.id, checkpoint });
      }
    }
  }

  #seal(r: SealRequest): void {
    if (r.epoch < this.#minEpoch) {
      this.send({ kind: 'failed', ids: [r.id], epoch: r.epoch, error: 'an earlier audit write failed' });
      return;
    }
    const chain = this.#chains.get(r.stream);
    let prev: string | null;
    if (r.prev !== undefined) prev = r.prev;
    else if (chain !== undefined && chain.seq === r.seq - 1) prev = chain.hash;
    else {
      this.send({
        kind: 'failed',
        ids: [r.id],
        epoch: r.epoch,
        error: `no chain state for ${r.stream} before seq ${r.seq}`,
      });
      return;
    }
    this.#tree();
    const leaf = this.#nextLeaf++;
    const line = recordText(r, prev, leaf);
    const hash = leafHashHex(line);
    this.#chains.set(r.stream, { seq: r.seq, hash });
    this.#group.push({ id: r.id, entry: { stream: r.stream, seq: r.seq, leaf, line, hash }, epoch: r.epoch });
  }

  /** Write what was sealed, as one group (one durable write), and report it. */
  flush(): void {
    if (this.#group.length === 0) return;
    const group = this.#group;
    this.#group = [];
    const started = this.now();
    try {
      this.wal.append(group.map((g) => g.entry));
    } catch (err) {
      const epoch = Math.max(...group.map((g) => g.epoch));
      this.#minEpoch = epoch + 1;
      this.#chains.clear();
      // Not durable: their leaf indexes go to the next records.
      this.#nextLeaf = this.#tree().size;
      this.send({
        kind: 'failed',
        ids: group.map((g) => g.id),
        epoch,
        error: err instanceof Error ? err.message : String(err),
      });
      return;
    }
    this.#tree().append(group.map((g) => Buffer.from(g.entry.hash, 'hex')));
    this.send({
      kind: 'durable',
      writeMs: this.now() - started,
      ids: group.map((g) => g.id),
      hashes: group.map((g) => g.entry.hash),
      leaves: group.map((g) => g.entry.leaf),
    });
  }
}

/**
 * Drive a sealer from a stream of messages: messages are handled in order,
 * and the records of everything that arrived in one turn of the thread's
 * event loop are written as one group.
 */
export function serveSealer(sealer: Sealer): (msg: ToSealer) => void {
  let chain = Promise.resolve();
  let scheduled = false;
  const endOfTurn = () => {
    scheduled = false;
    sealer.flush();
  };
  return (msg) => {
    chain = chain.then(() => sealer.receive(msg));
    if (!scheduled) {
      scheduled = true;
      setImmediate(() => void chain.then(endOfTurn));
    }
  };
}
