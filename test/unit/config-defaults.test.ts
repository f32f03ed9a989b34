import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { schemasDir } from '../../src/paths.js';

/**
 * Config defaults live once, in schemas/config.schema.json (filled by Ajv): every
 * default the schema states is what a config that leaves the key out gets.
 */
type Schema = Record<string, unknown>;
const schema = JSON.parse(readFileSync(path.join(schemasDir, 'config.schema.json'), 'utf8')) as Schema;

/** Every `default` on a plain property path (not inside a oneOf/anyOf alternative), `<name>` for map entries. */
function defaults(s: Schema, prefix: string, out: [string, unknown][] = []): [string, unknown][] {
  for (const [k, sub] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    if ('default' in sub) out.push([p, sub.default]);
    defaults(sub, p, out);
  }
  const extra = s.additionalProperties;
  if (extra !== null && typeof extra === 'object') defaults(extra as Schema, `${prefix}.<name>`, out);
  return out;
}

function at(v: unknown, p: string): unknown {
  return p
    .split('.')
    .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k === '<name>' ? 'u' : k], v);
}

/** Keys whose value the loader resolves (a path made absolute) rather than copies. */
const RESOLVED = new Set(['dataDir', 'policy.dir']);
/** Sections that are a different shape in the loaded config, and keys the document below sets. */
const RESHAPED = new Set(['approvals.webhookSecret', 'approvals.provider']);

afterEach(() => vi.unstubAllEnvs());

describe('config defaults come from the schema alone', () => {
  it('every schema default is what a config that leaves the key out gets', () => {
    vi.stubEnv('GITGATE_TEST_DEFAULTS_KEY', 'k');
    vi.stubEnv('GITGATE_LOG_LEVEL', undefined);
    const base = '/nonexistent-base';
    const config = validateConfig(
      {
        upstreams: { u: { stdio: { command: 'node' } } },
        store: { postgres: { url: { fromEnv: 'GITGATE_TEST_DEFAULTS_KEY' } } },
        policy: {
          repo: {
            url: 'https://example.test/p.git',
            verification: { publicKey: { fromEnv: 'GITGATE_TEST_DEFAULTS_KEY' } },
          },
        },
        approvals: {
          provider: 'github',
          github: { owner: 'o', repo: 'r', token: { fromEnv: 'GITGATE_TEST_DEFAULTS_KEY' } },
        },
      },
      {},
      base,
      'test',
    );
    const all = defaults(schema, '');
    expect(all.length).toBeGreaterThan(40);
    const checked = all.filter(([p]) => !RESOLVED.has(p) && ![...RESHAPED].some((r) => p.startsWith(r)));
    for (const [p, value] of checked) {
      const got = at(config, p);
      // An empty object or list default is a section: its own keys are checked one by one.
      if (value !== null && typeof value === 'object' && Object.keys(value).length === 0) {
        expect(got, p).toBeTypeOf('object');
        continue;
      }
      expect(got, p).toEqual(value);
    }
    expect(config.dataDir).toBe(path.resolve(base, at(Object.fromEntries(all), 'dataDir') as string));
  });
});
