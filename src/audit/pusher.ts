import { type Clock, systemClock, type Timer } from '../clock.js';
import { git, gitText } from '../git/run.js';
import { redactUrlCredentials } from '../masking/url-credentials.js';
import { Anchors } from './anchors.js';

/** The branch of the shared audit repo a replica pushes its log to. */
export const replicaBranch = (replica: string) => `replica/${replica}`;

/** Where the branches of a shared audit repo are. */
export const REPLICA_REFS = 'refs/heads/replica/';

const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export interface AuditPushStatus {
  /** The shared audit repo (credentials redacted). */
  readonly remote: string;
  /** The branch this replica's commits go to. */
  readonly branch: string;
  /** Whether this replica's audit repo holds commits the shared repo does not have yet. */
  readonly pending: boolean;
  /** The last commit known to be on the shared repo. */
  readonly pushed: string | null;
  readonly lastPushedAt: string | null;
  /** Failed pushes since start. */
  readonly failures: number;
  /** Why the last push failed, while it is not yet pushed again. */
  readonly lastError: string | null;
}

/**
 * Multi-replica mode: each replica's audit repo (its own log) is pushed, after every commit, to its own
 * branch (`replica/<replicaId>`) of one shared repo (`audit.remote`). Only that replica writes the branch,
 * so pushes never conflict and are never forced. A failed push loses nothing (the commits are in the
 * replica's repo); it is retried with backoff (1 s doubling to 60 s) and with the next commit, and shows
 * in /readyz and /metrics until it succeeds. A push that can never succeed (the branch holds commits this
 * repo lacks: its data dir was replaced) keeps failing visibly: the operator decides, gitgate never forces.
 */
export class AuditPusher {
  #chain: Promise<void> = Promise.resolve();
  #queued = false;
  #pushed: string | null = null;
  #pushedAt: number | undefined;
  #failures = 0;
  #streak = 0;
  #lastError: string | null = null;
  #head: string | null = null;
  #retry: Timer | undefined;
  #closed = false;
  readonly #ref: string;

  constructor(
    private readonly repo: string,
    private readonly remote: string,
    readonly replica: string,
    private readonly log: (msg: string) => void,
    private readonly clock: Clock = systemClock,
  ) {
    this.#ref = `refs/heads/${replicaBranch(replica)}`;
  }

  /** Push the repo's HEAD (coalesced: asks while one runs make one more push after it). */
  push(): Promise<void> {
    if (this.#queued) return this.#chain;
    this.#queued = true;
    this.#chain = this.#chain.then(async () => {
      this.#queued = false;
      await this.#push();
    });
    return this.#chain;
  }

  /** Resolves once every push asked so far ran (succeeded or failed). */
  idle(): Promise<void> {
    return this.#chain;
  }

  close(): void {
    this.#closed = true;
    this.#retry?.cancel();
  }

  status(): AuditPushStatus {
    return {
      remote: redactUrlCredentials(this.remote),
      branch: replicaBranch(this.replica),
      pending: this.#head !== null && this.#head !== this.#pushed,
      pushed: this.#pushed,
      lastPushedAt: this.#pushedAt === undefined ? null : new Date(this.#pushedAt).toISOString(),
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  async #push(): Promise<void> {
    if (this.#closed) return;
    const head = await gitText(this.repo, ['rev-parse', '-q', '--verify', 'HEAD^{commit}']).then(
      (t) => t.trim(),
      () => null,
    );
    if (head === null) return; // nothing committed yet
    this.#head = head;
    if (head === this.#pushed) return;
    try {
      // Never forced: only this replica writes its branch, so a refusal means the branch holds what this repo lacks.
      await git(this.repo, ['push', '-q', this.remote, `${head}:${this.#ref}`]);
      this.#pushed = head;
      this.#pushedAt = this.clock.now();
      this.#lastError = null;
      this.#streak = 0;
      this.#retry?.cancel();
      this.#retry = undefined;
    } catch (err) {
      this.#failures++;
      this.#streak++;
      this.#lastError = redactUrlCredentials((err as Error).message);
      this.log(
        `audit push to ${redactUrlCredentials(this.remote)} ${replicaBranch(this.replica)} failed (the commits stay in the replica's audit repo; retried): ${this.#lastError}`,
      );
      this.#retry?.cancel();
      const wait = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(this.#streak - 1, 16));
      this.#retry = this.clock.after(wait, () => void this.push());
    }
  }
}

/**
 * The committer publishes each committed checkpoint to its anchors right after the commit: with a pusher,
 * that is also when the commit is pushed to the shared audit repo (and the committer's close waits for both).
 */
export class PushingAnchors extends Anchors {
  constructor(
    anchors: ConstructorParameters<typeof Anchors>[0],
    treeFile: string,
    warn: (msg: string) => void,
    private readonly pusher: AuditPusher,
  ) {
    super(anchors, treeFile, warn);
  }

  override publish(note: string): Promise<void> {
    const pushed = this.pusher.push();
    return Promise.all([super.publish(note), pushed]).then(() => undefined);
  }

  override idle(): Promise<void> {
    return Promise.all([super.idle(), this.pusher.idle()]).then(() => undefined);
  }
}
