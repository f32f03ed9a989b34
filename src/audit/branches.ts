import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { git, gitText } from '../git/run.js';
import { REPLICA_REFS } from './pusher.js';

/** An audit log to read: a repo's work tree, and how to name it in output. */
export interface AuditLogDir {
  readonly dir: string;
  readonly name: string;
}

/**
 * The logs the given repos hold: a shared audit repo (multi-replica mode: a branch `replica/<id>` per
 * replica, bare or not) stands for each of its replica branches, each cloned alone into a temporary work
 * tree (exactly that branch's HEAD, which is what verify and the impact replay read); any other repo
 * stands for itself. `cleanup` removes the clones.
 */
export async function auditLogDirs(repos: readonly string[]): Promise<{ logs: AuditLogDir[]; cleanup: () => void }> {
  const logs: AuditLogDir[] = [];
  const temps: string[] = [];
  const cleanup = () => {
    for (const t of temps) rmSync(t, { recursive: true, force: true });
  };
  try {
    for (const repo of repos) {
      const branches = await replicaBranches(path.resolve(repo));
      if (branches.length === 0) {
        logs.push({ dir: path.resolve(repo), name: repo });
        continue;
      }
      const tmp = mkdtempSync(path.join(tmpdir(), 'gitgate-audit-'));
      temps.push(tmp);
      for (const [i, branch] of branches.entries()) {
        const dir = path.join(tmp, String(i));
        await git(tmp, ['clone', '-q', '--single-branch', '--branch', branch, '--', path.resolve(repo), dir]);
        logs.push({ dir, name: `${repo} ${branch}` });
      }
    }
    return { logs, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

/** The replica branches of a repo (`replica/<id>`, sorted), none when it is not a shared audit repo. */
async function replicaBranches(repo: string): Promise<string[]> {
  if (!existsSync(repo)) return [];
  const refs = await gitText(repo, ['for-each-ref', '--format=%(refname)', REPLICA_REFS]).catch(() => '');
  return refs
    .split('\n')
    .filter((r) => r.startsWith(REPLICA_REFS))
    .map((r) => r.slice('refs/heads/'.length))
    .sort();
}
