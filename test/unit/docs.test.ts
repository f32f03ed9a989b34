import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors.js';
import { packageRoot } from '../../src/paths.js';

describe('docs/errors.md', () => {
  it('lists every error code with the status and JSON-RPC code of src/errors.ts', () => {
    const doc = readFileSync(path.join(packageRoot, 'docs', 'errors.md'), 'utf8');
    const rows = new Map(
      [...doc.matchAll(/^\| ([A-Z_]+) \| (\d+) \| (-\d+) \|/gm)].map((m) => [
        m[1]!,
        { status: Number(m[2]), rpc: Number(m[3]) },
      ]),
    );
    for (const [code, e] of Object.entries(ERRORS))
      expect({ code, ...rows.get(code) }).toEqual({ code, status: e.status, rpc: e.rpc });
    expect([...rows.keys()].sort()).toEqual(Object.keys(ERRORS).sort());
  });
});

describe('docs/operations.md', () => {
  it('lists every metric /metrics exposes, with its type, and no other', async () => {
    const { GatewayMetrics } = await import('../../src/metrics/metrics.js');
    const m = new GatewayMetrics();
    m.watchAudit(() => ({ healthy: true, uncommitted: 0, appended: 0, commits: 0 }));
    m.watchApprovals(() => []);
    const exposed = new Map((await m.registry.getMetricsAsJSON()).map((x) => [x.name, String(x.type)]));
    const doc = readFileSync(path.join(packageRoot, 'docs', 'operations.md'), 'utf8');
    const documented = new Map(
      [...doc.matchAll(/^\| `(gitgate_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)].map((r) => [r[1]!, r[2]!]),
    );
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(exposed));
  });
});

describe('docs/security.md', () => {
  it('names every file of the adversarial suite, and every test file it names exists', () => {
    const doc = readFileSync(path.join(packageRoot, 'docs', 'security.md'), 'utf8');
    const dir = path.join(packageRoot, 'test', 'security');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.test.ts')))
      expect({ f, named: doc.includes(f) }).toEqual({ f, named: true });
    for (const [, file] of doc.matchAll(/`((?:test\/[a-z-]+\/)?[a-z-]+\.test\.ts)`/g)) {
      const p = file!.includes('/') ? path.join(packageRoot, file!) : path.join(dir, file!);
      expect({ file, exists: existsSync(p) }).toEqual({ file, exists: true });
    }
  });
});
