import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import type { GatewayError } from '../../src/errors.js';
import { mapClaims } from '../../src/identity/identity.js';
import { normalizeDecision } from '../../src/policy/decision.js';

describe('config', () => {
  it('fills defaults, resolves paths and freezes', () => {
    const c = validateConfig({ upstreams: { a: { url: 'http://127.0.0.1:1/mcp' } } }, {}, '/srv', 'test');
    expect(c.server).toMatchObject({ host: '127.0.0.1', port: 8080, bodyLimitBytes: 4194304 });
    expect(c.dataDir).toBe('/srv/.gitgate');
    expect(c.identity).toMatchObject({ mode: 'dev', audience: 'gitgate', clockToleranceSeconds: 30 });
    expect(c.upstreams.a).toMatchObject({ timeoutMs: 60000, maxSessions: 64 });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.upstreams.a)).toBe(true);
    expect(() => ((c.server as { port: number }).port = 1)).toThrow();
  });

  it('applies CLI overrides before validation', () => {
    const c = validateConfig(
      { upstreams: { a: { url: 'http://x/' } } },
      { port: 9999, dataDir: 'state' },
      '/srv',
      'test',
    );
    expect(c.server.port).toBe(9999);
    expect(c.dataDir).toBe('/srv/state');
  });

  it('reports every problem at once with its path', () => {
    let err: GatewayError | undefined;
    try {
      validateConfig(
        {
          server: { port: -1 },
          identity: { mode: 'oidc' },
          upstreams: { a: { url: 'http://x/', stdio: { command: 'x' } } },
          extra: 1,
        },
        {},
        '/',
        'gitgate.yaml',
      );
    } catch (e) {
      err = e as GatewayError;
    }
    expect(err?.code).toBe('CONFIG_INVALID');
    const problems = (err!.data as { problems: string[] }).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        'server.port: must be >= 0',
        "identity: must have required property 'issuer'",
        'upstreams.a: sets both "url" and "stdio": set exactly one of them',
        '(root): unknown key "extra"',
      ]),
    );
  });
});

describe('decisions are validated against the schema', () => {
  it('fills optional parts', () => {
    expect(normalizeDecision({ allow: true, reasons: [] })).toMatchObject({
      allow: true,
      risk: 'low',
      approval: { required: false },
      mask: [],
      credential: { ttl_seconds: 60, scopes: [] },
      valid: true,
    });
  });

  it.each([
    [{ allow: 'yes', reasons: [] }, /allow: must be boolean/],
    [{ allow: true }, /must have required property 'reasons'/],
    [{ allow: true, reasons: [], approval: { required: true } }, /approvers/],
    [{ allow: true, reasons: [], credential: { ttl_seconds: 999999 } }, /ttl_seconds: must be <= 3600/],
    [{ allow: true, reasons: [], mask: [{ path: 'result' }] }, /path: must match pattern/],
    [{ allow: true, reasons: [], bogus: 1 }, /unknown key "bogus"/],
    [[], /must be object/],
  ])('%j is a deny', (raw, why) => {
    const d = normalizeDecision(raw);
    expect(d.allow).toBe(false);
    expect(d.valid).toBe(false);
    expect(d.reasons[0]).toMatch(why);
  });

  it('the same raw result is one shared, deeply frozen decision; a different one is not confused with it', () => {
    const raw = () => ({
      allow: true,
      reasons: ['ok'],
      mask: [{ path: '$.result', detectors: ['email'] }],
      credential: { ttl_seconds: 30, scopes: ['a'] },
    });
    const a = normalizeDecision(raw());
    const b = normalizeDecision(raw());
    expect(b).toBe(a);
    expect(Object.isFrozen(a.reasons) && Object.isFrozen(a.credential.scopes) && Object.isFrozen(a.mask[0])).toBe(true);
    expect(() => (a.reasons as string[]).push('more')).toThrow();
    const other = normalizeDecision({ ...raw(), credential: { ttl_seconds: 31, scopes: ['a'] } });
    expect(other.credential.ttl_seconds).toBe(31);
    // An invalid result stays a deny however often it comes.
    expect(normalizeDecision({ allow: 'yes', reasons: [] }).valid).toBe(false);
    expect(normalizeDecision({ allow: 'yes', reasons: [] }).allow).toBe(false);
  });
});

describe('claims', () => {
  const names = {
    sub: 'sub',
    email: 'email',
    groups: 'groups',
    githubLogin: 'github_login',
    groupsFormat: 'array',
  } as const;
  const refused = (payload: Record<string, unknown>, why: RegExp, claims: Parameters<typeof mapClaims>[1] = names) => {
    expect(() => mapClaims(payload, claims)).toThrow(why);
  };
  it('reads groups as an array of strings; a string or a non-string member is refused, naming the claim', () => {
    expect(mapClaims({ sub: 's', groups: ['a', 'b'] }, names).groups).toEqual(['a', 'b']);
    expect(mapClaims({ sub: 's' }, names).groups).toEqual([]);
    refused(
      { sub: 's', groups: 'eng admin' },
      /claim "groups" must be an array of strings, got a string \(set identity.claims.groupsFormat/,
    );
    refused({ sub: 's', groups: ['a', 1, 'b'] }, /claim "groups" must be an array of strings, got a number at index 1/);
    refused({ sub: 's', groups: { eng: true } }, /claim "groups" must be an array of strings, got an object/);
    refused({ sub: 's', groups: null }, /claim "groups" must be an array of strings, got null/);
  });
  it('reads a delimited string only when groupsFormat says so', () => {
    expect(mapClaims({ sub: 's', groups: 'a  b\tc' }, { ...names, groupsFormat: 'space-delimited' }).groups).toEqual([
      'a',
      'b',
      'c',
    ]);
    expect(mapClaims({ sub: 's', groups: 'a, b,,c ' }, { ...names, groupsFormat: 'comma-delimited' }).groups).toEqual([
      'a',
      'b',
      'c',
    ]);
    // Each format splits on its own separator only.
    expect(mapClaims({ sub: 's', groups: 'a b,c' }, { ...names, groupsFormat: 'comma-delimited' }).groups).toEqual([
      'a b',
      'c',
    ]);
    expect(mapClaims({ sub: 's', groups: ['x y'] }, { ...names, groupsFormat: 'space-delimited' }).groups).toEqual([
      'x y',
    ]);
    refused({ sub: 's', groups: 7 }, /claim "groups" must be an array of strings or a string, got a number/, {
      ...names,
      groupsFormat: 'space-delimited',
    });
  });
  it('refuses sub, email and login claims of the wrong type', () => {
    refused({ sub: 42 }, /claim "sub" must be a string, got a number/);
    refused({ sub: '' }, /claim "sub" is empty/);
    refused({}, /claim "sub" is missing/);
    refused({ sub: 's', email: ['a@example.com'] }, /claim "email" must be a string, got an array/);
    refused({ sub: 's', github_login: { login: 'x' } }, /claim "github_login" must be a string, got an object/);
    expect(mapClaims({ sub: 's', email: 'a@example.com', github_login: 'gh' }, names)).toMatchObject({
      email: 'a@example.com',
      githubLogin: 'gh',
    });
  });
  it('follows dotted names through own objects only', () => {
    const nested = { ...names, groups: 'realm_access.roles' };
    expect(mapClaims({ sub: 's', realm_access: { roles: ['eng'] } }, nested).groups).toEqual(['eng']);
    refused(
      { sub: 's', realm_access: 'eng' },
      /claim "realm_access" must be an object, got a string \(reading claim "realm_access.roles"\)/,
      nested,
    );
    // Inherited properties are not claims.
    expect(mapClaims({ sub: 's' }, { ...names, email: 'constructor', groups: 'toString' })).toEqual({
      sub: 's',
      groups: [],
      issuer: '',
    });
  });
});

describe('command-line paths', () => {
  it('are relative to the working directory, not to the config file; config paths to the config file', async () => {
    const { mkdtempSync, writeFileSync, mkdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const { loadConfig } = await import('../../src/config/load.js');
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-paths-'));
    mkdirSync(path.join(root, 'etc'));
    const file = path.join(root, 'etc', 'gitgate.yaml');
    writeFileSync(
      file,
      'dataDir: state\npolicy:\n  repo:\n    url: ../policies\nupstreams:\n  a: {url: "http://127.0.0.1:1/"}\n',
    );
    const fromFile = loadConfig(file, {}, path.join(root, 'work'));
    expect(fromFile.dataDir).toBe(path.join(root, 'etc', 'state'));
    expect(fromFile.policy.repo?.url).toBe(path.join(root, 'policies'));
    const fromCli = loadConfig(file, { dataDir: 'data', policyRepo: 'repo' }, path.join(root, 'work'));
    expect(fromCli.dataDir).toBe(path.join(root, 'work', 'data'));
    expect(fromCli.audit.repo).toBe(path.join(root, 'work', 'data', 'audit'));
    expect(fromCli.policy.repo?.url).toBe(path.join(root, 'work', 'repo'));
    expect(loadConfig(file, { policyRepo: 'git@github.com:acme/policies.git' }).policy.repo?.url).toBe(
      'git@github.com:acme/policies.git',
    );
  });
});

describe('durations', () => {
  it('parse to exact seconds, and --since accepts them or a date', async () => {
    const { parseDuration } = await import('../../src/config/duration.js');
    const { sinceToIso } = await import('../../src/audit/read.js');
    expect([
      parseDuration('500ms'),
      parseDuration('90'),
      parseDuration('15m'),
      parseDuration('1h'),
      parseDuration('7d'),
    ]).toEqual([0.5, 90, 900, 3600, 604800]);
    expect(() => parseDuration('soon')).toThrow(/invalid duration/);
    expect(sinceToIso('2h', Date.parse('2026-11-26T12:00:00Z'))).toBe('2026-11-26T10:00:00.000Z');
    expect(sinceToIso('2026-11-01')).toBe('2026-11-01T00:00:00.000Z');
    expect(() => sinceToIso('yesterday-ish')).toThrow(/invalid --since/);
  });
});
