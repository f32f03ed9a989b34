import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApprovalRecord } from '../../src/approvals/types.js';
import { approvalsList } from '../../src/cli/approvals.js';
import { PgApprovalStore } from '../../src/store/approvals.js';
import { PgStore } from '../../src/store/postgres.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';

const approval = (id: string, status: ApprovalRecord['status'], tool: string): ApprovalRecord => ({
  id,
  callHash: `hash-${id}`,
  generation: 1,
  status,
  createdAt: new Date(Date.UTC(2026, 11, 1, 12, Number(id.slice(-1)))).toISOString(),
  expiresAt: new Date(Date.UTC(2026, 11, 1, 13)).toISOString(),
  requester: { sub: 'alice', login: 'alice-gh' },
  call: { upstream: 'gh', method: 'tools/call', tool, arguments: { message: id } },
  approvers: ['@acme/security'],
  minApprovals: 1,
  reasons: [],
  risk: 'high',
  policy: { revision: null, bundleDigest: 'd' },
  approvals: [],
  remote: { ref: id.slice(-1), url: `https://github.example/acme/approvals/pull/${id.slice(-1)}`, headSha: 'head' },
});

/** The operator CLI in multi-replica mode reads the shared PostgreSQL store, not the data dir's files. */
describe('gitgate approvals list with store.postgres', () => {
  let db: TestPostgres;
  let config: string;

  beforeAll(async () => {
    db = await startPostgres();
    const store = await PgStore.open({ url: db.url, schema: 'cli', poolMax: 1, replicaId: 'r1' });
    try {
      const approvals = new PgApprovalStore(store);
      expect(await approvals.create(approval('ap-1', 'pending', 'echo'))).toBe(true);
      expect(await approvals.create(approval('ap-2', 'executed', 'delete'))).toBe(true);
    } finally {
      await store.close();
    }
    const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-cli-pg-'));
    config = path.join(dir, 'gitgate.yaml');
    // A data dir that holds no approvals at all: only the shared store does (another replica parked them).
    await writeFile(
      config,
      JSON.stringify({
        dataDir: path.join(dir, 'data'),
        upstreams: { gh: { url: 'http://127.0.0.1:1/mcp' } },
        store: { postgres: { url: { fromEnv: 'GITGATE_TEST_PG_URL' }, schema: 'cli', replicaId: 'r2' } },
      }),
    );
    process.env.GITGATE_TEST_PG_URL = db.url;
  }, 60_000);

  afterAll(async () => {
    delete process.env.GITGATE_TEST_PG_URL;
    await db?.destroy();
  });

  const list = async (all: boolean) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await approvalsList(
      { config, ...(all ? { all } : {}) },
      (l) => out.push(l),
      (l) => err.push(l),
    );
    return { code, out, err };
  };

  it('lists the pending approvals every replica shares; --all adds the decided ones', async () => {
    const pending = await list(false);
    expect(pending.code).toBe(0);
    expect(pending.err).toEqual([`gitgate: shared store, schema cli (store.postgres of ${config})`]);
    expect(pending.out).toEqual([
      'ap-1  pending  alice-gh → gh tools/call echo {"message":"ap-1"}',
      '    needs 1 from @acme/security; expires 2026-12-01T13:00:00.000Z; https://github.example/acme/approvals/pull/1',
    ]);
    const all = await list(true);
    expect(all.out.filter((l) => !l.startsWith(' '))).toEqual([
      'ap-1  pending  alice-gh → gh tools/call echo {"message":"ap-1"}',
      'ap-2  executed alice-gh → gh tools/call delete {"message":"ap-2"}',
    ]);
    expect(all.err.join('\n')).not.toContain(db.url);
  });
});
