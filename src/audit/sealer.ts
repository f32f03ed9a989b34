import { leafHashHex, type RecordParts, recordText } from './record.js';
import type { HashFile } from './tlog/hash-file.js';
import { treeHash } from './tlog/merkle.js';
import { type Checkpoint, checkpointText } from './tlog/note.js';
import type { WalEntry, WriteAheadLog } from './wal.js';

/**
 * One record for the sealer. The log has assigned its stream and seq and
 * written its JSON except `prev`, which the sealer fills in from its own
 * chain: the log never waits for a write to number the next record.
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
   * stopped after a write it could not report left leaves nobody was told of: later entries win them).
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
  /** A note's text (a checkpoint's), signed where the log key is (its own thread): the signed note. */
  sign(text: string): Promise<string>;
  open(): HashFile;
  /** Told each checkpoint signed (to keep the latest beside the WAL). */
  saved?(note: string): void;
  /** Resolves once what `saved` started is written. */
  idle?(): Promise<void>;
  /** Let the signer go (the log closed). */
  close?(): Promise<void>;
}

interface Sealed {
  readonly id: number;
  readonly entry: WalEntry;
  readonly epoch: number;
}

/**
 * Chains, numbers and durably writes audit records, and has the log's
 * checkpoints signed. It runs on the gateway's event loop: it hashes each line
 * once (the leaf hash, a few µs) and hands each WAL group to the thread pool as
 * one O_DSYNC write, so the disk's wait never blocks the loop; the log key is
 * on its own thread (a checkpoint is signed there, never a record). Each record
 * gets the next leaf index of the log's Merkle tree in the order the WAL makes
 * records durable; the leaves of a group go into the stored-hash file once the
 * group is durable. A checkpoint (tree size + root, a C2SP signed note) is
 * signed when the WAL rolls (every commit), and on close.
 *
 * One write is in flight at a time: the records sealed while it is written
 * form the next group, written as soon as it ends. Messages are handled in
 * order (a roll waits for the writes before it; the records after it wait for
 * the roll).
 *
 * Failure: when a write fails, every record of that group and of the group
 * gathered behind it fails (they chain to the failed ones), the sealer forgets
 * its chains and refuses records of that epoch or older (the log already
 * numbered some of them after the failed ones). The log, told of the failure,
 * moves to the next epoch and resends each stream's last durable hash as `prev`.
 */
export class Sealer {
  readonly #chains = new Map<string, { seq: number; hash: string }>();
  /** Sealed, to be written when the write in flight ends (or now, when none is). */
  #group: Sealed[] = [];
  #writing: Promise<void> | undefined;
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
   * The checkpoint over every durable record, or over the first `size` (a backlog's commit, its root
   * read from the stored hashes), to be signed. Call it with no write in flight.
   */
  #checkpointOf(size?: number): Checkpoint {
    const t = this.#tree();
    if (size !== undefined && !(Number.isSafeInteger(size) && size >= 0 && size <= t.size))
      throw new Error(`no checkpoint at ${size}: the tree holds ${t.size} leaves`);
    const whole = size === undefined || size === t.size;
    const root = whole ? t.root() : treeHash((l, i) => t.read(l, i), size);
    return { origin: this.tree.origin, size: size ?? t.size, root, extensions: [] };
  }

  /** Signed; only a checkpoint of the whole tree is saved as the latest. */
  async #sign(c: Checkpoint, whole: boolean): Promise<string> {
    const note = await this.tree.sign(checkpointText(c));
    if (whole) this.tree.saved?.(note);
    return note;
  }

  /** Handle one message; `seal` starts a write when none is in flight, the others wait for the writes first. */
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
        this.flush();
        return;
      case 'epoch':
        if (msg.min > this.#minEpoch) {
          this.#minEpoch = msg.min;
          this.#chains.clear();
        }
        if (msg.tree !== undefined && this.#tree().size > msg.tree) {
          await this.drained();
          this.#tree().truncate(msg.tree);
          this.#nextLeaf = msg.tree;
        }
        return;
      case 'sync':
        await this.drained();
        this.send({ kind: 'done', id: msg.id });
        return;
      case 'checkpoint': {
        await this.drained();
        const c = this.#checkpointOf(msg.size);
        this.send({ kind: 'done', id: msg.id, checkpoint: await this.#sign(c, c.size === this.#tree().size) });
        return;
      }
      case 'roll': {
        await this.drained();
        // The tree and the segment are cut at the same point; later records wait only for this, not for the signature.
        const c = this.#checkpointOf();
        const segment = this.wal.roll();
        void this.#sign(c, true).then(
          (checkpoint) => this.send({ kind: 'done', id: msg.id, segment, checkpoint }),
          (err: unknown) =>
            this.send({ kind: 'done', id: msg.id, error: err instanceof Error ? err.message : String(err) }),
        );
        return;
      }
      case 'close': {
        await this.drained();
        const checkpoint = await this.#sign(this.#checkpointOf(), true);
        await this.wal.close();
        this.#hashes?.close();
        this.#hashes = undefined;
        // Answered only once the latest checkpoint's file is written: the log may stop next.
        await this.tree.idle?.();
        await this.tree.close?.();
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

  /** Start writing what was sealed as one group (one durable write), unless a write is in flight: then it follows that one. */
  flush(): void {
    if (this.#writing !== undefined || this.#group.length === 0) return;
    const group = this.#group;
    this.#group = [];
    const started = this.now();
    this.#writing = this.wal
      .append(group.map((g) => g.entry))
      .then(() => this.#tree().append(group.map((g) => Buffer.from(g.entry.hash, 'hex'))))
      .then(
        () => {
          this.#writing = undefined;
          this.send({
            kind: 'durable',
            writeMs: this.now() - started,
            ids: group.map((g) => g.id),
            hashes: group.map((g) => g.entry.hash),
            leaves: group.map((g) => g.entry.leaf),
          });
          this.flush();
        },
        (err: unknown) => {
          // The group gathered behind it chains to the failed records: it fails with them.
          const failed = [...group, ...this.#group];
          this.#group = [];
          const epoch = Math.max(...failed.map((g) => g.epoch));
          this.#minEpoch = epoch + 1;
          this.#chains.clear();
          // Not durable: their leaf indexes go to the next records.
          this.#nextLeaf = this.#tree().size;
          this.#writing = undefined;
          this.send({
            kind: 'failed',
            ids: failed.map((g) => g.id),
            epoch,
            error: err instanceof Error ? err.message : String(err),
          });
        },
      );
  }

  /** Resolves once nothing sealed so far is unwritten (each written or failed). */
  async drained(): Promise<void> {
    this.flush();
    while (this.#writing !== undefined) {
      await this.#writing;
      this.flush();
    }
  }
}

/**
 * Drive a sealer from a stream of messages, handled in order: the records of
 * one `seal` message start a write when none is in flight, and those that
 * arrive while one is join the next group.
 */
export function serveSealer(sealer: Sealer): (msg: ToSealer) => void {
  let chain = Promise.resolve();
  return (msg) => {
    chain = chain.then(() => sealer.receive(msg));
  };
}
