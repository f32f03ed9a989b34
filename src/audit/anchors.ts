import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../atomic-file.js';
import { git, gitText } from '../git/run.js';
import { redactUrlCredentials } from '../masking/url-credentials.js';
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
 * - `git`: another git remote (URL or path): each checkpoint is committed, alone as the file
 *   `checkpoint`, on top of the last one, and pushed to `ref` (default refs/gitgate/checkpoint),
 *   never forced; the commits are made in a bare repo of their own beside the stored hashes.
 * (The audit repo's own remote is `audit.remote`: the checkpoint is committed and pushed with the records.)
 * Publishing never blocks or fails a commit: a failure is logged and the next commit tries again.
 */
export type AnchorConfig =
  | { readonly file: string }
  | { readonly url: string }
  | { readonly git: string; readonly ref?: string };

/** Where a git anchor's checkpoint goes on its remote unless configured. */
export const DEFAULT_ANCHOR_REF = 'refs/gitgate/checkpoint';

const nameOf = (a: AnchorConfig) =>
  redactUrlCredentials('file' in a ? a.file : 'url' in a ? a.url : `${a.git} ${a.ref ?? DEFAULT_ANCHOR_REF}`);

const TIMEOUT_MS = 10_000;
const MAX_RESPONSE = 64 * 1024;

export class Anchors {
  /** Per witness: the tree size it is known to hold. */
  readonly #witnessed = new Map<string, number>();
  #chain: Promise<void> = Promise.resolve();
  /** The git anchors' own bare repo, once created. */
  #repo: string | undefined;

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
        else if ('url' in a) await this.#witness(a.url, note);
        else await this.#push(a.git, a.ref ?? DEFAULT_ANCHOR_REF, note);
      } catch (err) {
        this.log(`audit anchor ${nameOf(a)}: ${redactUrlCredentials((err as Error).message)}`);
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

  /** The bare repo the git anchors' commits are made in (beside the stored hashes), created on first use. */
  async #anchorRepo(): Promise<string> {
    const dir = path.join(path.dirname(this.treeFile), 'anchor.git');
    if (this.#repo === undefined) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      await git(dir, ['init', '-q', '--bare', '.']);
      this.#repo = dir;
    }
    return dir;
  }

  async #push(remote: string, ref: string, note: string): Promise<void> {
    const dir = await this.#anchorRepo();
    // The last checkpoint pushed to this remote and ref: the next one is committed on top of it.
    const local = `refs/anchors/${createHash('sha256').update(`${remote}\n${ref}`).digest('hex').slice(0, 32)}`;
    const blob = (await gitText(dir, ['hash-object', '-w', '--stdin'], {}, note)).trim();
    const tree = (await gitText(dir, ['mktree'], {}, `100644 blob ${blob}\tcheckpoint\n`)).trim();
    const commitOn = async () => {
      const parent = await gitText(dir, ['rev-parse', '-q', '--verify', `${local}^{commit}`]).then(
        (t) => t.trim(),
        () => undefined,
      );
      const msg = `audit checkpoint: ${checkpointSize(note)} record(s)`;
      return (await gitText(dir, ['commit-tree', tree, ...(parent ? ['-p', parent] : []), '-m', msg])).trim();
    };
    let commit = await commitOn();
    try {
      await git(dir, ['push', '-q', remote, `${commit}:${ref}`]);
    } catch (err) {
      // The remote holds commits this repo does not know (it was lost, say): continue on top of them, once, never forced.
      const fetched = await git(dir, ['fetch', '-q', remote, `+${ref}:${local}`]).then(
        () => true,
        () => false,
      );
      if (!fetched) throw err;
      commit = await commitOn();
      await git(dir, ['push', '-q', remote, `${commit}:${ref}`]);
    }
    await git(dir, ['update-ref', local, commit]);
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
