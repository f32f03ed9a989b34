import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gitText } from '../../src/git/run.js';
import { packageRoot } from '../../src/paths.js';
import { TEST_POLICY_DATA } from './policy.js';

/** A real git repo holding a policy folder, committed to like a policy author would. */
export class PolicyRepo {
  private constructor(readonly dir: string) {}

  static async create(data: unknown = TEST_POLICY_DATA): Promise<PolicyRepo> {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-policy-repo-'));
    cpSync(path.join(packageRoot, 'policies', 'gitgate'), path.join(dir, 'policies', 'gitgate'), { recursive: true });
    mkdirSync(path.join(dir, 'policies', 'config'), { recursive: true });
    writeFileSync(path.join(dir, 'policies', 'config', 'data.json'), JSON.stringify(data, null, 2));
    await gitText(dir, ['init', '-q', '-b', 'main']);
    const repo = new PolicyRepo(dir);
    await repo.commit('initial policy');
    return repo;
  }

  write(file: string, text: string | Uint8Array): this {
    mkdirSync(path.dirname(path.join(this.dir, file)), { recursive: true });
    writeFileSync(path.join(this.dir, file), text);
    return this;
  }

  async commit(message: string): Promise<string> {
    await gitText(this.dir, ['add', '-A']);
    await gitText(this.dir, ['commit', '-q', '--allow-empty', '-m', message]);
    return (await gitText(this.dir, ['rev-parse', 'HEAD'])).trim();
  }
}
