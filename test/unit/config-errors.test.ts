import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadConfig, validateConfig } from '../../src/config/load.js';
import { GatewayError } from '../../src/errors.js';

describe('config errors say what is wrong, where', () => {
  const problemsOf = (f: () => unknown): string[] => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(GatewayError);
      return [(e as GatewayError).message, ...(((e as GatewayError).data?.problems as string[] | undefined) ?? [])];
    }
    throw new Error('no error');
  };

  it('a YAML syntax error names the file and line', () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'gitgate-yaml-')), 'gitgate.yaml');
    writeFileSync(
      file,
      'upstreams:\n  github: { url: http://127.0.0.1:3001/mcp }\n    audience: https://github-mcp.internal\n',
    );
    const [message] = problemsOf(() => loadConfig(file));
    expect(message).toContain(`${file}:3:`);
    expect(message).toContain('All mapping items must start at the same column');
  });

  it('a credential in params._meta for an HTTP upstream is refused: it would travel nowhere', () => {
    const problems = problemsOf(() =>
      validateConfig(
        { upstreams: { web: { url: 'http://127.0.0.1:1/mcp', credential: { meta: true } } } },
        {},
        '/',
        'gitgate.yaml',
      ),
    );
    expect(problems).toContain(
      'upstreams.web.credential.meta: only a stdio upstream takes the credential in params._meta; an HTTP upstream takes it in a header',
    );
    expect(() =>
      validateConfig(
        { upstreams: { child: { stdio: { command: 'x' }, credential: { meta: true } } } },
        {},
        '/',
        'gitgate.yaml',
      ),
    ).not.toThrow();
  });

  it('an upstream with both url and stdio says exactly that, naming the upstream', () => {
    const problems = problemsOf(() =>
      validateConfig(
        { upstreams: { github: { url: 'http://127.0.0.1:1/mcp', stdio: { command: 'x' } } } },
        {},
        '/',
        'gitgate.yaml',
      ),
    );
    expect(problems).toContain('upstreams.github: sets both "url" and "stdio": set exactly one of them');
    expect(problems.join('\n')).not.toContain('oneOf');
  });

  it('an upstream with neither says what it needs', () => {
    const problems = problemsOf(() =>
      validateConfig({ upstreams: { files: { timeoutMs: 1000 } } }, {}, '/', 'gitgate.yaml'),
    );
    expect(problems).toContain('upstreams.files: needs exactly one of "url", "stdio"');
    expect(problems.join('\n')).not.toMatch(/oneOf|required property/);
  });

  it('a bad upstream name is shown', () => {
    const problems = problemsOf(() =>
      validateConfig({ upstreams: { 'My Server': { url: 'http://127.0.0.1:1/mcp' } } }, {}, '/', 'gitgate.yaml'),
    );
    expect(problems).toContain(
      'upstreams: "My Server" is not a valid name: must match pattern "^[a-z0-9][a-z0-9_-]{0,62}$"',
    );
  });

  it('a replica id that is not a valid git branch name (its audit branch replica/<id>) is refused', () => {
    vi.stubEnv('GITGATE_TEST_PG_URL', 'postgres://127.0.0.1:1/gitgate');
    for (const replicaId of ['a..b', 'r1.lock', 'r1.']) {
      const problems = problemsOf(() =>
        validateConfig(
          {
            upstreams: { github: { url: 'http://127.0.0.1:1/mcp' } },
            store: { postgres: { url: { fromEnv: 'GITGATE_TEST_PG_URL' }, replicaId } },
          },
          {},
          '/',
          'gitgate.yaml',
        ),
      );
      expect(problems.join('\n')).toContain('replicaId');
    }
    vi.unstubAllEnvs();
  });
});
