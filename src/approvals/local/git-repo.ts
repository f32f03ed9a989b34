import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { gitText as git } from '../../git/run.js';

/**
 * The local approvals repo: a bare git repo written with plumbing only (no work
 * tree, a private index per commit), so the CLI and the gateway never contend for one.
 */
export class LocalGitRepo {
  private constructor(readonly dir: string) {}

  static async open(dir: string): Promise<LocalGitRepo> {
    mkdirSync(dir, { recursive: true });
    const repo = new LocalGitRepo(dir);
    if (!existsSync(path.join(dir, 'HEAD'))) {
      await git(dir, ['init', '--bare', '-b', 'main']);
      await repo.commit(
        'main',
        { 'README.md': '# gitgate approvals\n\nOne branch per approval request; decisions are recorded on main.\n' },
        'init',
        undefined,
      );
    }
    return repo;
  }

  async head(ref: string): Promise<string | undefined> {
    const out = await git(this.dir, ['rev-parse', '--verify', '-q', `refs/heads/${ref}`]).catch(() => '');
    return out.trim() || undefined;
  }

  /** The files under `dir` at `ref` (none if either is missing). */
  async list(ref: string, dir: string): Promise<string[]> {
    const out = await git(this.dir, ['ls-tree', '-r', '--name-only', `refs/heads/${ref}`, '--', `${dir}/`]).catch(
      () => '',
    );
    return out.split('\n').filter(Boolean);
  }

  async read(ref: string, file: string): Promise<string | undefined> {
    return git(this.dir, ['show', `refs/heads/${ref}:${file}`]).then(
      (s) => s,
      () => undefined,
    );
  }

  /** Commit files onto `branch` (created from `from` when new) through a private index. */
  async commit(
    branch: string,
    files: Record<string, string>,
    message: string,
    from: string | undefined,
    extraParent?: string,
    author?: string,
  ): Promise<string> {
    const parent = (await this.head(branch)) ?? (from !== undefined ? await this.head(from) : undefined);
    const index = path.join(this.dir, `index.gitgate-${process.pid}-${randomBytes(8).toString('hex')}`);
    const env = {
      GIT_INDEX_FILE: index,
      ...(author ? { GIT_AUTHOR_NAME: author, GIT_AUTHOR_EMAIL: `${author}@users.noreply.localhost` } : {}),
    };
    try {
      await git(this.dir, parent !== undefined ? ['read-tree', parent] : ['read-tree', '--empty'], env);
      for (const [file, content] of Object.entries(files)) {
        const blob = (await git(this.dir, ['hash-object', '-w', '--stdin'], env, content)).trim();
        await git(this.dir, ['update-index', '--add', '--cacheinfo', `100644,${blob},${file}`], env);
      }
      const tree = (await git(this.dir, ['write-tree'], env)).trim();
      const args = ['commit-tree', tree, '-m', message];
      if (parent !== undefined) args.push('-p', parent);
      if (extraParent !== undefined) args.push('-p', extraParent);
      const sha = (await git(this.dir, args, env)).trim();
      // Compare-and-swap: fails if someone moved the branch meanwhile ('' = must not exist yet).
      const current = await this.head(branch);
      await git(this.dir, ['update-ref', `refs/heads/${branch}`, sha, current === parent ? (parent ?? '') : '']);
      return sha;
    } finally {
      rmSync(index, { force: true });
    }
  }
}
