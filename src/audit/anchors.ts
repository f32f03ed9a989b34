import path from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { checkpointSize } from './store.js';
import { HashFile } from './tlog/hash-file.js';
import { consistencyProof } from './tlog/merkle.js';

/**
 * Places outside the audit repo where each committed checkpoint is also published, so a
 * rewritten repo is caught by comparing with any of them (`audit verify --checkpoint`):
 * - `file`: the latest checkpoint, written whole (atomic rename) to a path;
 * - `url`: a C2SP tlog-witness `add-checkpoint` endpoint: POST of `old <size>`, the consistency
 *   proof from that size, a blank line and the checkpoint; a 409 answer names the size the
 *   witness holds, and the request is sent once more from there.
 * (A git remote is `audit.remote`: the checkpoint is committed and pushed with the records.)
 * Publishing never blocks or fails a commit: a failure is logged and the next commit tries again.
 */
export type AnchorConfig = { readonly file: string } | { readonly url: string };

const TIMEOUT_MS = 10_000;
const MAX_RESPONSE = 64 * 1024;

export class Anchors {
  /** Per witness: the tree size it is known to hold. */
  readonly #witnessed = new Map<string, number>();
  #chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly anchors: readonly AnchorConfig[],
    /** The log's stored-hash file (proofs are read from it). */
    private readonly treeFile: string,
    private readonly log: (msg: string) => void,
  ) {}

  /** Publish a checkpoint to every anchor, in order with earlier ones; resolves once done (failures logged). */
  publish(note: string): Promise<void> {
    this.#chain = this.#chain.then(() => this.#publish(note));
    return this.#chain;
  }

  /** Resolves once everything asked so far was published (or failed). */
  idle(): Promise<void> {
    return this.#chain;
  }

  async #publish(note: string): Promise<void> {
    for (const a of this.anchors) {
      try {
        if ('file' in a) await writeFileAtomic(path.resolve(a.file), note, { mode: 0o644 });
        else await this.#witness(a.url, note);
      } catch (err) {
        this.log(`audit anchor ${'file' in a ? a.file : a.url}: ${(err as Error).message}`);
      }
    }
  }

  async #witness(url: string, note: string): Promise<void> {
    const size = checkpointSize(note);
    let old = Math.min(this.#witnessed.get(url) ?? 0, size);
    for (let attempt = 0; attempt < 2; attempt++) {
      const proof = old === 0 || old === size ? [] : this.#proof(old, size);
      const body = `old ${old}\n${proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${note}`;
      const res = await fetch(url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      });
      const text = (await res.text()).slice(0, MAX_RESPONSE);
      if (res.ok) {
        this.#witnessed.set(url, size);
        return;
      }
      const held = /^(0|[1-9]\d{0,15})\n?$/.exec(text);
      if (res.status === 409 && held !== null && Number(held[1]) !== old && Number(held[1]) <= size) {
        old = Number(held[1]);
        continue;
      }
      throw new Error(`witness answered ${res.status}: ${text.slice(0, 200).replace(/\s+/g, ' ')}`);
    }
    throw new Error('witness keeps refusing the previous size');
  }

  #proof(old: number, size: number) {
    const hf = HashFile.openReadOnly(this.treeFile);
    try {
      if (hf.size < size) throw new Error(`the stored hashes hold ${hf.size} leaves, the checkpoint ${size}`);
      return consistencyProof((l, i) => hf.read(l, i), old, size);
    } finally {
      hf.close();
    }
  }
}
