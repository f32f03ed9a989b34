import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseConfigText, validateConfig } from '../../src/config/load.js';
import { packageRoot, schemasDir } from '../../src/paths.js';

/**
 * Every ```yaml block of README.md and docs/*.md is a gitgate.yaml that validates.
 * A block whose first line is `# partial` shows only some keys: it is validated
 * merged into MINIMAL (one url upstream). Secrets it names (fromEnv, fromFile) are
 * provided with dummy values, so the check is about the config, not this machine.
 */
const MINIMAL = { upstreams: { docs: { url: 'http://127.0.0.1:3001/mcp' } } };

interface Block {
  file: string;
  line: number;
  text: string;
}

function yamlBlocks(file: string): Block[] {
  const lines = readFileSync(path.join(packageRoot, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```yaml') continue;
    const start = i + 1;
    while (++i < lines.length && lines[i] !== '```');
    blocks.push({ file, line: start + 1, text: lines.slice(start, i).join('\n') });
  }
  return blocks;
}

const docFiles = [
  'README.md',
  ...readdirSync(path.join(packageRoot, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const blocks = docFiles.flatMap(yamlBlocks);

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      b !== null &&
      typeof b === 'object' &&
      !Array.isArray(b) &&
      v !== null &&
      typeof v === 'object' &&
      !Array.isArray(v)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** Every {fromEnv} and {fromFile} the document names. */
function secretRefs(v: unknown, env: string[] = [], files: string[] = []): { env: string[]; files: string[] } {
  if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if (k === 'fromEnv' && typeof x === 'string') env.push(x);
      else if (k === 'fromFile' && typeof x === 'string') files.push(x);
      else secretRefs(x, env, files);
    }
  }
  return { env, files };
}

afterEach(() => vi.unstubAllEnvs());

describe('the YAML examples in README.md and docs/*.md', () => {
  it('there are some, in README.md and docs/configuration.md', () => {
    expect(blocks.filter((b) => b.file === 'README.md').length).toBeGreaterThan(0);
    expect(blocks.filter((b) => b.file === 'docs/configuration.md').length).toBeGreaterThan(0);
  });

  it.each(blocks.map((b) => [`${b.file}:${b.line}`, b] as const))(
    '%s parses and validates against the schema',
    (where, b) => {
      const partial = b.text.split('\n')[0]!.trim() === '# partial';
      const parsed = parseConfigText(b.text, where);
      const doc = partial ? merge(MINIMAL, parsed) : parsed;
      const base = mkdtempSync(path.join(tmpdir(), 'gitgate-docs-'));
      const refs = secretRefs(doc);
      for (const name of refs.env) vi.stubEnv(name, 'dummy-secret');
      for (const f of refs.files) {
        const abs = path.resolve(base, f);
        mkdirSync(path.dirname(abs), { recursive: true });
        writeFileSync(abs, 'dummy-secret\n');
      }
      expect(() => validateConfig(doc, {}, base, where)).not.toThrow();
    },
  );
});

/** Every property path of the schema: `upstreams.<name>.url`, `policy.repo.token.fromEnv`, … (maps are leaves). */
function schemaPaths(schema: Record<string, unknown>, prefix: string, out: string[] = []): string[] {
  const props = { ...((schema.properties ?? {}) as Record<string, Record<string, unknown>>) };
  for (const alt of [
    ...((schema.oneOf ?? []) as Record<string, unknown>[]),
    ...((schema.anyOf ?? []) as Record<string, unknown>[]),
  ]) {
    Object.assign(props, (alt.properties ?? {}) as Record<string, Record<string, unknown>>);
    if (alt.type === 'object') schemaPaths(alt, prefix, out);
  }
  for (const [k, sub] of Object.entries(props)) {
    const p = prefix === '' ? k : `${prefix}.${k}`;
    out.push(p);
    schemaPaths(sub, p, out);
  }
  const extra = schema.additionalProperties;
  if (extra !== null && typeof extra === 'object' && (extra as Record<string, unknown>).properties !== undefined)
    schemaPaths(extra as Record<string, unknown>, `${prefix}.<name>`, out);
  return [...new Set(out)];
}

/** The key paths of a parsed YAML document; keys under `upstreams` count as `<name>`. */
function docPaths(v: unknown, prefix: string, out: Set<string>): Set<string> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return out;
  for (const [k, x] of Object.entries(v)) {
    const p = prefix === '' ? k : prefix === 'upstreams' ? 'upstreams.<name>' : `${prefix}.${k}`;
    out.add(p);
    docPaths(x, p, out);
  }
  return out;
}

describe('docs/configuration.md', () => {
  it('documents every key of schemas/config.schema.json (in a YAML example, or named in backticks)', () => {
    const text = readFileSync(path.join(packageRoot, 'docs', 'configuration.md'), 'utf8');
    const inYaml = new Set<string>();
    for (const b of yamlBlocks('docs/configuration.md'))
      docPaths(parseConfigText(b.text, 'docs/configuration.md'), '', inYaml);
    const schema = JSON.parse(readFileSync(path.join(schemasDir, 'config.schema.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    const paths = schemaPaths(schema, '');
    expect(paths).toContain('approvals.webhookSecret.fromEnv');
    expect(paths).toContain('upstreams.<name>.stdio.command');
    const missing = paths.filter((p) => !inYaml.has(p) && !text.includes(`\`${p}\``));
    expect(missing).toEqual([]);
  });
});
