import { existsSync, mkdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { writeFileAtomicSync } from '../atomic-file.js';
import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import { git, gitText } from '../git/run.js';
import { redactUrlCredentials } from '../masking/url-credentials.js';
import { buildPolicyBundle } from '../policy/build.js';
import { readBundle } from '../policy/bundle.js';
import { instantiate, type PolicyInstance } from '../policy/engine.js';
import { isRepoDir, lexists, readRepoFile, UntrustedFileError } from '../repo-file.js';
import { MAX_ROUTES_BYTES, MAX_SOURCE_BYTES, ROUTES_FILE, sourcesDigest } from './sources-digest.js';
import { checkPolicyTree } from './tree-listing.js';
import { type BundleKey, verifySignedBundle } from './verify-bundle.js';

export interface PolicyRepoConfig {
  readonly url: string;
  readonly branch: string;
  /** The policy folder inside the repo. */
  readonly dir: string;
  readonly pollMs: number;
  /** HTTPS token (sent as an extra header through the environment, never argv). */
  readonly token?: string;
  /** Path of an SSH private key file. */
  readonly sshKeyFile?: string;
  /** Compile sources with the pinned opa when a commit carries no bundle (never when verification is on). */
  readonly compile: boolean;
  readonly verification?: BundleKey;
}

/** What a commit yields: a loaded policy, and the upstream routes the repo declares (if any). */
export interface Revision {
  readonly commit: string;
  readonly instance: PolicyInstance;
  readonly routes?: Record<string, unknown>;
  /** When its bundle was signed (seconds), if it was and says. */
  readonly signedAt?: number;
}

/** The newest signing time served so far, and where: a bundle signed before it is a rollback. */
interface SignedFloor {
  readonly signedAt: number;
  readonly commit: string;
}

export interface SyncStatus {
  /** The commit serving. */
  readonly commit?: string;
  readonly bundleDigest?: string;
  readonly syncedAt?: string;
  /** The last failure of any kind (a fetch, or a refused commit); cleared when a newer commit loads. */
  readonly lastError?: { readonly commit?: string; readonly message: string; readonly at: string };
  /** The newest commit that was refused, and why; cleared when a newer commit loads. A later fetch failure does not hide it. */
  readonly refused?: { readonly commit: string; readonly message: string; readonly at: string };
  readonly attempts: number;
  readonly failures: number;
}

/** pino-shaped: structured fields first, then the message. */
export interface SyncLogger {
  info(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export interface SyncEvents {
  readonly log: SyncLogger;
  /** A commit loaded and serves. */
  loaded?(commit: string): void;
  /** A round failed: `commit` is the refused commit, undefined when the repo could not be fetched. */
  failed?(commit: string | undefined, message: string): void;
}

/**
 * Keeps a clone of the policy repo under the data dir and turns each new commit
 * of the branch into a verified, loaded, smoke-tested policy; `apply` swaps it
 * in. Any failure keeps the last good revision serving and is reported.
 */
/** One git run of the policy sync: a fetch of a large repo fits; a stalled remote does not hold the sync. */
const GIT_TIMEOUT_MS = 120_000;

export class PolicySync {
  #running: Promise<void> | undefined;
  #again = false;
  #timer: Timer | undefined;
  #status: {
    commit?: string;
    bundleDigest?: string;
    syncedAt?: string;
    lastError?: NonNullable<SyncStatus['lastError']>;
    refused?: NonNullable<SyncStatus['refused']>;
    attempts: number;
    failures: number;
  } = {
    attempts: 0,
    failures: 0,
  };
  #failedCommit: string | undefined;

  constructor(
    private readonly cfg: PolicyRepoConfig,
    private readonly clone: string,
    private readonly work: string,
    /** Where the newest signing time served is kept across restarts (verification on). */
    private readonly floorFile: string,
    private readonly opa: () => Promise<string>,
    private readonly apply: (rev: Revision) => void,
    private readonly events: SyncEvents,
    /** The clock of polling and of the times reported (default: the system clock). */
    private readonly clock: Clock = systemClock,
    /**
     * How long one git run (a fetch, the listing, the checkout) may take before it is stopped and the round
     * fails: a remote that stalls cannot hold the sync; the last good revision keeps serving.
     */
    private readonly gitTimeoutMs = GIT_TIMEOUT_MS,
  ) {}

  #floor: SignedFloor | undefined;
  #floorRead = false;

  /** The newest signing time served (read once from floorFile; a file that does not parse is a refusal, not a reset). */
  #signedFloor(): SignedFloor | undefined {
    if (this.#floorRead) return this.#floor;
    if (existsSync(this.floorFile)) {
      let f: Partial<SignedFloor> = {};
      try {
        f = JSON.parse(readFileSync(this.floorFile, 'utf8')) as Partial<SignedFloor>;
      } catch {
        // reported below as damaged
      }
      if (f === null || !Number.isSafeInteger(f.signedAt) || typeof f.commit !== 'string')
        throw new GatewayError(
          'POLICY_BUILD_FAILED',
          `${this.floorFile} is damaged: restore it or remove it knowingly`,
        );
      this.#floor = { signedAt: f.signedAt!, commit: f.commit };
    }
    this.#floorRead = true;
    return this.#floor;
  }

  /** A signed bundle signed before the newest one served is an older build put back: refused. */
  #checkNotRolledBack(commit: string, signedAt: number | undefined): void {
    const floor = this.#signedFloor();
    if (floor === undefined) return;
    const at = (t: number) => new Date(t * 1000).toISOString();
    if (signedAt === undefined)
      throw new GatewayError(
        'POLICY_BUILD_FAILED',
        `bundle at ${commit.slice(0, 12)} carries no signing time, and the one served (${floor.commit.slice(0, 12)}) was signed at ${at(floor.signedAt)}: an older build is refused (rollback); rebuild and sign it`,
      );
    if (signedAt < floor.signedAt)
      throw new GatewayError(
        'POLICY_BUILD_FAILED',
        `bundle at ${commit.slice(0, 12)} was signed at ${at(signedAt)}, before the one served (${floor.commit.slice(0, 12)}, signed at ${at(floor.signedAt)}): a rollback to an older signed bundle is refused; to go back, commit the old sources and let CI sign a new build`,
      );
  }

  #served(rev: Revision): void {
    if (rev.signedAt === undefined || (this.#floor !== undefined && rev.signedAt <= this.#floor.signedAt)) return;
    this.#floor = { signedAt: rev.signedAt, commit: rev.commit };
    writeFileAtomicSync(this.floorFile, `${JSON.stringify(this.#floor)}\n`);
  }

  /** The repo's URL as logs, errors, /readyz and /metrics show it: without the credentials a URL may carry. */
  #shownUrl(): string {
    return redactUrlCredentials(this.cfg.url);
  }

  status(): SyncStatus {
    return { ...this.#status };
  }

  #env(): Record<string, string> {
    const env: Record<string, string> = {};
    if (this.cfg.token !== undefined) {
      env.GIT_CONFIG_COUNT = '1';
      env.GIT_CONFIG_KEY_0 = 'http.extraHeader';
      env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${Buffer.from(`x-access-token:${this.cfg.token}`).toString('base64')}`;
    }
    if (this.cfg.sshKeyFile !== undefined)
      env.GIT_SSH_COMMAND = `ssh -i ${JSON.stringify(this.cfg.sshKeyFile)} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new`;
    return env;
  }

  /** Clone if needed, load the branch head (throws if the very first revision cannot be loaded), then poll. */
  async start(): Promise<void> {
    await this.sync();
    if (this.#status.commit === undefined)
      throw new GatewayError(
        'POLICY_BUILD_FAILED',
        `no usable policy in ${this.#shownUrl()}@${this.cfg.branch}: ${this.#status.lastError?.message ?? 'unknown error'}`,
      );
    this.#timer = this.clock.every(this.cfg.pollMs, () => void this.sync());
  }

  stop(): void {
    this.#timer?.cancel();
  }

  /** Fetch and apply the branch head; concurrent triggers coalesce into one more round. */
  sync(): Promise<void> {
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.#round();
      } while (this.#again);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #round(): Promise<void> {
    let commit: string | undefined;
    try {
      if (!existsSync(path.join(this.clone, '.git'))) {
        mkdirSync(path.dirname(this.clone), { recursive: true });
        await git(
          path.dirname(this.clone),
          // No checkout here: #load checks out only the policy's paths, once their listing keeps within the limits.
          [
            'clone',
            '--quiet',
            '--no-checkout',
            '--branch',
            this.cfg.branch,
            '--single-branch',
            '--no-tags',
            this.cfg.url,
            this.clone,
          ],
          this.#env(),
          undefined,
          { timeoutMs: this.gitTimeoutMs },
        );
      } else {
        await git(
          this.clone,
          [
            'fetch',
            '--quiet',
            '--no-tags',
            'origin',
            `+refs/heads/${this.cfg.branch}:refs/remotes/origin/${this.cfg.branch}`,
          ],
          this.#env(),
          undefined,
          { timeoutMs: this.gitTimeoutMs },
        );
      }
      commit = (await gitText(this.clone, ['rev-parse', `refs/remotes/origin/${this.cfg.branch}`])).trim();
      if (commit === this.#status.commit || commit === this.#failedCommit) return;
      this.#status.attempts++;
      const rev = await this.#load(commit);
      // Kept before it serves: no signed bundle serves whose signing time a restart would forget.
      this.#served(rev);
      this.apply(rev);
      this.#failedCommit = undefined;
      this.#status = {
        ...this.#status,
        commit,
        bundleDigest: rev.instance.revision.bundleDigest,
        syncedAt: new Date(this.clock.now()).toISOString(),
      };
      delete this.#status.lastError;
      delete this.#status.refused;
      this.events.log.info(
        { commit, bundle: rev.instance.revision.bundleDigest.slice(0, 12) },
        'policy revision loaded from git',
      );
      this.events.loaded?.(commit);
    } catch (err) {
      const message = redactUrlCredentials((err as Error).message);
      const at = new Date(this.clock.now()).toISOString();
      this.#status.failures++;
      this.#status.lastError = { ...(commit !== undefined ? { commit } : {}), message, at };
      const serving = this.#status.commit ?? null;
      if (commit !== undefined) {
        this.#failedCommit = commit;
        this.#status.refused = { commit, message, at };
        this.events.log.error(
          { commit, reason: message, serving, repo: this.#shownUrl(), branch: this.cfg.branch },
          `policy commit ${commit.slice(0, 12)} refused; ${serving === null ? 'no policy serves yet' : `the last good revision ${serving.slice(0, 12)} keeps serving`}: fix it with a new commit on ${this.cfg.branch}`,
        );
      } else {
        this.events.log.error(
          { reason: message, serving, repo: this.#shownUrl(), branch: this.cfg.branch },
          'policy repo fetch failed; the last good revision keeps serving, the next poll retries',
        );
      }
      this.events.failed?.(commit, message);
    }
  }

  /** A commit → verified bundle (or compiled sources) → loaded, smoke-tested instance, plus routes. */
  async #load(commit: string): Promise<Revision> {
    // Only the policy folder and the routes file are checked out, and only once git's listing of them keeps
    // within the limits: a commit cannot make the gateway write a tree of any size to its disk.
    const wanted = this.#wanted();
    const limits = { timeoutMs: this.gitTimeoutMs };
    await checkPolicyTree(this.clone, commit, wanted, this.gitTimeoutMs);
    await git(
      this.clone,
      wanted[0] === '.'
        ? ['sparse-checkout', 'disable']
        : ['sparse-checkout', 'set', '--no-cone', ...wanted.map((p) => `/${p}`)],
      {},
      undefined,
      limits,
    );
    await git(this.clone, ['checkout', '--quiet', '--force', '--detach', commit], {}, undefined, limits);
    try {
      return await this.#loadCheckout(commit);
    } catch (err) {
      // The checkout is the repo writer's: a symlink, a FIFO or an oversized file is refused, never read.
      if (err instanceof UntrustedFileError)
        throw new GatewayError('POLICY_BUILD_FAILED', `commit ${commit.slice(0, 12)}: ${err.message}`);
      throw err;
    }
  }

  /** The paths a commit's policy is read from: the policy folder and the routes file (or the whole repo). */
  #wanted(): string[] {
    const dir = path.posix.normalize(this.cfg.dir.replaceAll('\\', '/')).replace(/\/+$/, '') || '.';
    return dir === '.' ? ['.'] : [dir, ROUTES_FILE];
  }

  async #loadCheckout(commit: string): Promise<Revision> {
    const dir = path.join(this.clone, this.cfg.dir);
    const root = realpathSync(this.clone);
    const inside = (p: string) => p === root || p.startsWith(`${root}${path.sep}`);
    if (!isRepoDir(dir, this.cfg.dir) || !inside(realpathSync(dir)))
      throw new GatewayError('POLICY_BUILD_FAILED', `commit ${commit.slice(0, 12)} has no ${this.cfg.dir}/ folder`);
    const routesFile = path.join(this.clone, ROUTES_FILE);
    const routesBytes = lexists(routesFile) ? readRepoFile(routesFile, MAX_ROUTES_BYTES, ROUTES_FILE) : undefined;
    // The routes are part of what the bundle's revision names (and so of what its signature covers).
    const digest = sourcesDigest(dir, routesBytes);
    const bundleFile = path.join(dir, 'bundle.tar.gz');
    let instance: PolicyInstance;
    let signedAt: number | undefined;
    if (lexists(bundleFile)) {
      const bundle = await readBundle(readRepoFile(bundleFile, MAX_SOURCE_BYTES, `${this.cfg.dir}/bundle.tar.gz`));
      if (this.cfg.verification !== undefined) {
        ({ signedAt } = await verifySignedBundle(bundle.files, this.cfg.verification));
        this.#checkNotRolledBack(commit, signedAt);
      }
      const revision = bundle.manifest.revision;
      if (revision !== digest) {
        throw new GatewayError(
          'POLICY_BUILD_FAILED',
          `stale bundle at ${commit.slice(0, 12)}: it was built from sources ${String(revision)}, the commit has ${digest}`,
        );
      }
      instance = await instantiate(bundle, { source: this.#shownUrl(), commit }, this.clock);
    } else if (this.cfg.verification !== undefined) {
      throw new GatewayError(
        'POLICY_BUILD_FAILED',
        `commit ${commit.slice(0, 12)} carries no signed bundle, and verification is configured`,
      );
    } else if (this.cfg.compile) {
      const out = path.join(this.work, commit);
      try {
        const built = await buildPolicyBundle({ opa: await this.opa(), srcDir: dir, outDir: out, revision: digest });
        instance = await instantiate(
          await readBundle(readFileSync(built.path)),
          { source: this.#shownUrl(), commit },
          this.clock,
        );
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    } else {
      throw new GatewayError(
        'POLICY_BUILD_FAILED',
        `commit ${commit.slice(0, 12)} carries no bundle, and compile mode is off`,
      );
    }
    const signed = signedAt !== undefined ? { signedAt } : {};
    if (routesBytes === undefined) return { commit, instance, ...signed };
    const doc = YAML.parse(routesBytes.toString('utf8')) as { upstreams?: Record<string, unknown> } | null;
    return { commit, instance, routes: doc?.upstreams ?? {}, ...signed };
  }
}
