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
    m.watchAudit(() => ({ healthy: true, uncommitted: 0, appended: 0, walWrites: 0, commits: 0 }));
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

  it("every test an invariant names (`file` › title, or a title under its section's file) is a test of that file", () => {
    const doc = readFileSync(path.join(packageRoot, 'docs', 'security.md'), 'utf8');
    // `bypass`, `bypass.test.ts` or `test/integration/audit-crash.test.ts`; a bare name is looked for in each test folder.
    const sourceOf = (file: string) => {
      const name = file.replace(/(\.test\.ts)?$/, '.test.ts');
      const found = (file.includes('/') ? [name] : ['security', 'integration', 'unit'].map((d) => `test/${d}/${name}`))
        .map((f) => path.join(packageRoot, f))
        .find((f) => existsSync(f));
      expect(found, `${file} is a test file`).toBeDefined();
      return readFileSync(found!, 'utf8');
    };
    const missing: string[] = [];
    let sectionFiles: string[] = [];
    for (const line of doc.split('\n')) {
      if (line.startsWith('## ')) sectionFiles = [...line.matchAll(/`([^`]+\.test\.ts)`/g)].map((m) => m[1]!);
      if (!line.startsWith('| ') || line.startsWith('|---')) continue;
      const cell = line.split(' | ').at(-1)!.replace(/ ?\|$/, '');
      if (cell === 'test') continue;
      // Segments: `file` › titles, or bare titles of the section's file (a row's cell may start with either).
      const segments: { files: string[]; text: string }[] = [];
      const re = /`([^`]+)`( ›)?/g;
      let at = 0;
      let files = sectionFiles;
      for (let m = re.exec(cell); m !== null; m = re.exec(cell)) {
        const before = cell.slice(at, m.index).replace(/^[;,\s]+|[;,\s]+$/g, '');
        if (before !== '') segments.push({ files, text: before });
        files = [m[1]!];
        if (m[2] === undefined) segments.push({ files, text: '' });
        at = re.lastIndex;
      }
      const rest = cell.slice(at).replace(/^[;,\s]+|[;,\s]+$/g, '');
      if (rest !== '') segments.push({ files, text: rest });
      for (const { files: fs, text } of segments) {
        if (text === '' || /^\([^)]*\)$/.test(text)) continue; // a remark about the file, not a title
        const sources = fs.map(sourceOf).join('\n');
        // Titles are separated by ", " or "; " (which titles may contain too): take the longest run that is found.
        const pieces = text.split(/(?<=[,;]) /);
        for (let i = 0; i < pieces.length; ) {
          let j = pieces.length;
          const found = (k: number) =>
            pieces
              .slice(i, k)
              .join(' ')
              .replace(/[,;]$/, '')
              .split('…')
              .map((c) => c.trim())
              .every((c) => c === '' || sources.includes(c));
          while (j > i && !found(j)) j--;
          if (j === i) {
            missing.push(`${fs.join(' or ')} › ${pieces[i]}`);
            j = i + 1;
          }
          i = j;
        }
      }
    }
    expect(missing).toEqual([]);
  });
});
