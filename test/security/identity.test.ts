/**
 * Identity, attacked: every test here is an attack that worked against an
 * earlier gitgate. A real loopback OIDC issuer and real gateways on loopback;
 * verifiers run on an injected clock.
 */
import http from 'node:http';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { IdentityConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { bearerChallenge, quotedString } from '../../src/identity/authenticate.js';
import { createOidcVerifier, type TokenVerifier } from '../../src/identity/verifier.js';
import type { JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { ManualClock } from '../helpers/clock.js';
import { fakeUpstream } from '../helpers/fake-upstream.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startOidcIssuer } from '../helpers/oidc-issuer.js';
import { RawMcp } from '../helpers/raw-mcp.js';

const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});
/** Seconds since the epoch of the verifiers' injected clock. */
const T0 = 2_000_000_000;
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

/** An RFC 9110 challenge: `Bearer` then auth-params whose values are quoted-strings; the params, or undefined when it does not parse. */
function parseChallenge(h: string): Record<string, string> | undefined {
  const m = /^Bearer (.*)$/.exec(h);
  if (m === null) return undefined;
  const out: Record<string, string> = {};
  const param = /([A-Za-z_]+)="((?:[^"\\]|\\.)*)"(?:, |$)/y;
  let at = 0;
  for (let r = param.exec(m[1]!); r !== null; r = param.exec(m[1]!)) {
    if (r[1]! in out) return undefined;
    out[r[1]!] = r[2]!.replace(/\\(.)/g, '$1');
    at = param.lastIndex;
  }
  return at === m[1]!.length ? out : undefined;
}

/** A raw HTTP/1.1 request (any Host header, any header size) → status, headers, body. */
function rawRequest(
  url: string,
  opts: { method?: string; path: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'POST',
        path: opts.path,
        headers: opts.headers,
        setHost: false,
        agent: false,
      },
      (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

type Issuer = Awaited<ReturnType<typeof startOidcIssuer>>;

interface Verifiers {
  idp: Issuer;
  /** The verifiers' clock, ms since the epoch. */
  clock: number;
  cfg(over?: Partial<IdentityConfig>, claims?: Partial<IdentityConfig['claims']>): IdentityConfig;
  make(
    over?: Partial<IdentityConfig>,
    claims?: Partial<IdentityConfig['claims']>,
    extra?: { jwksCooldownMs?: number },
  ): TokenVerifier;
  /** A token from the issuer, iat = T0 unless the claims say otherwise. */
  mint(claims: Record<string, unknown>, opts?: Parameters<Issuer['mint']>[1]): Promise<string>;
  refused(token: string, reason: RegExp, v?: TokenVerifier): Promise<void>;
}

/** A loopback OIDC issuer, and verifiers over it on one injected clock. */
function verifiers(): Verifiers {
  const h: Verifiers = {
    idp: undefined as unknown as Issuer,
    clock: T0 * 1000,
    cfg: (over = {}, claims = {}) => ({
      mode: 'oidc',
      issuer: h.idp.issuer,
      audience: 'gitgate',
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      clockToleranceSeconds: 30,
      maxTokenBytes: 8192,
      claims: {
        sub: 'sub',
        email: 'email',
        groups: 'groups',
        githubLogin: 'github_login',
        groupsFormat: 'array',
        ...claims,
      },
      ...over,
    }),
    make: (over = {}, claims = {}, extra = {}) =>
      createOidcVerifier(h.cfg(over, claims), { clock: { ...systemClock, now: () => h.clock }, ...extra }),
    mint: (claims, opts = {}) => h.idp.mint(claims, { now: T0, ...opts }),
    async refused(token, reason, v = h.make()) {
      const err = await v.verify(token).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('AUTH_INVALID');
      expect((err as GatewayError).message).toMatch(reason);
    },
  };
  beforeAll(async () => {
    h.idp = await startOidcIssuer();
  });
  afterAll(() => h.idp.close());
  return h;
}

describe('claims of the wrong type are refused, naming the claim', () => {
  const h = verifiers();

  it('a groups claim that is a string is refused, naming the claim; read as delimited only when configured', async () => {
    const token = await h.mint({ groups: 'eng admin' });
    await h.refused(token, /claim "groups" must be an array of strings, got a string/);
    await expect(h.make({}, { groupsFormat: 'space-delimited' }).verify(token)).resolves.toMatchObject({
      groups: ['eng', 'admin'],
    });
    await expect(
      h.make({}, { groupsFormat: 'comma-delimited' }).verify(await h.mint({ groups: 'eng,admin' })),
    ).resolves.toMatchObject({ groups: ['eng', 'admin'] });
  });

  it.each([
    ['sub a number', { sub: 42 }, /claim "sub" must be a string, got a number/],
    ['sub an array', { sub: ['alice', 'admin'] }, /claim "sub" must be a string, got an array/],
    ['sub empty', { sub: '' }, /claim "sub" is empty/],
    ['email an array', { email: ['a@example.com', 'root@example.com'] }, /claim "email" must be a string/],
    ['github_login an object', { github_login: { login: 'octocat' } }, /claim "github_login" must be a string/],
    [
      'groups with a non-string member',
      { groups: ['eng', { admin: true }] },
      /claim "groups" must be an array of strings, got an object at index 1/,
    ],
    ['groups a number', { groups: 1 }, /claim "groups" must be an array of strings, got a number/],
    ['groups null', { groups: null }, /claim "groups" must be an array of strings, got null/],
  ])('%s → 401 naming the claim', async (_name, claims, reason) => {
    await h.refused(await h.mint(claims), reason);
  });

  it('a nested claim path through a non-object is refused, not read as absent', async () => {
    const v = h.make({}, { groups: 'realm_access.roles' });
    await h.refused(await h.mint({ realm_access: ['eng'] }), /claim "realm_access" must be an object, got an array/, v);
    await expect(v.verify(await h.mint({ realm_access: { roles: ['eng'] } }))).resolves.toMatchObject({
      groups: ['eng'],
    });
  });
});

describe('token times are checked against the (injected) clock', () => {
  const h = verifiers();

  it('iat in the future beyond the clock tolerance is refused; within it accepted; a non-numeric iat refused', async () => {
    await h.refused(
      await h.mint({ iat: T0 + 3600, exp: T0 + 7200 }),
      /claim "iat" invalid: issued 3600 s in the future \(clock tolerance 30 s\)/,
    );
    await h.refused(await h.mint({ iat: T0 + 31 }), /claim "iat"/);
    await expect(h.make().verify(await h.mint({ iat: T0 + 30 }))).resolves.toMatchObject({ sub: 'alice' });
    await h.refused(await h.mint({ iat: 'now' }), /claim "iat" invalid: "iat" claim must be a number/);
    // The same token becomes acceptable once the clock reaches it.
    const early = await h.mint({ iat: T0 + 600, exp: T0 + 900 });
    await h.refused(early, /claim "iat"/);
    h.clock = (T0 + 600) * 1000;
    try {
      await expect(h.make().verify(early)).resolves.toMatchObject({ sub: 'alice' });
    } finally {
      h.clock = T0 * 1000;
    }
  });

  it('exp is required, enforced against the injected clock (with tolerance), and must be a number', async () => {
    await h.refused(await h.mint({ exp: undefined }), /missing required "exp" claim/);
    await h.refused(await h.mint({ exp: T0 - 31 }), /token expired/);
    await expect(h.make().verify(await h.mint({ exp: T0 - 29 }))).resolves.toMatchObject({ sub: 'alice' });
    await h.refused(await h.mint({ exp: String(T0 + 300) }), /"exp" claim must be a number/);
  });

  it('nbf beyond the tolerance is refused', async () => {
    await h.refused(await h.mint({ nbf: T0 + 31 }), /"nbf"/);
    await expect(h.make().verify(await h.mint({ nbf: T0 + 29 }))).resolves.toMatchObject({ sub: 'alice' });
  });
});

describe('forged, foreign, oversized and malformed tokens', () => {
  const h = verifiers();

  it('audience: another audience is refused; an array must contain ours and only strings', async () => {
    await h.refused(await h.mint({ aud: 'another-service' }), /claim "aud" invalid/);
    await h.refused(await h.mint({ aud: ['another-service', 'a-third'] }), /claim "aud" invalid/);
    await h.refused(
      await h.mint({ aud: ['gitgate', 7] }),
      /claim "aud" invalid: must be a string or an array of strings/,
    );
    // A token for several audiences, ours among them, is valid (RFC 7519 §4.1.3).
    await expect(h.make().verify(await h.mint({ aud: ['another-service', 'gitgate'] }))).resolves.toMatchObject({
      sub: 'alice',
    });
  });

  it('issuer must match exactly', async () => {
    await h.refused(await h.mint({ iss: `${h.idp.issuer}/` }), /claim "iss" invalid/);
  });

  it('alg none, HS256 keyed with the public key, and a disallowed algorithm never reach a key', async () => {
    const v = h.make();
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: h.idp.issuer, aud: 'gitgate', sub: 'alice', exp: T0 + 300 })}.`;
    await h.refused(unsigned, /algorithm not allowed|malformed/, v);
    const forged = await new SignJWT({ iss: h.idp.issuer, aud: 'gitgate', sub: 'alice', exp: T0 + 300 })
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .sign(new TextEncoder().encode(await h.idp.publicPem()));
    await h.refused(forged, /algorithm not allowed/, v);
    const before = h.idp.jwksFetches;
    await h.refused(await h.mint({}), /token algorithm not allowed/, h.make({ algorithms: ['ES256'] }));
    expect(h.idp.jwksFetches).toBe(before);
  });

  it('an unknown critical header is refused', async () => {
    await h.refused(
      await h.mint({}, { header: { crit: ['urn:example:must-understand'], 'urn:example:must-understand': true } }),
      /unsupported token: Extension Header Parameter "urn:example:must-understand" is not recognized/,
    );
  });

  it('an injected kid (path, quotes, CRLF) finds no key, and a burst of them costs at most one JWKS refetch', async () => {
    const v = h.make({}, {}, { jwksCooldownMs: 60_000 });
    await v.verify(await h.mint({}));
    const rogue = (await generateKeyPair('RS256')).privateKey;
    const start = h.idp.jwksFetches;
    for (const kid of [
      '../../../../etc/passwd',
      'k1" or "1"="1',
      'k1\r\nx-injected: 1',
      'k'.repeat(4000),
      ...Array.from({ length: 30 }, (_, i) => `forged-${i}`),
    ]) {
      await h.refused(
        await h.mint({}, { kid, key: rogue }),
        /no key in the issuer JWKS matches|signature verification failed/,
        v,
      );
    }
    expect(h.idp.jwksFetches - start).toBeLessThanOrEqual(1);
  });

  it('malformed and oversized tokens are refused before any key or discovery fetch', async () => {
    const before = h.idp.jwksFetches;
    const v = h.make();
    for (const t of [
      'abc.def.ghi',
      'a.b',
      `${b64('x')}.${b64({})}.`,
      `${b64({ alg: 'HS256' })}.${b64({})}.x`,
      `${b64({ alg: 'RS256', crit: ['x'] })}.${b64({})}.x`,
    ]) {
      await h.refused(t, /malformed|not allowed|unsupported/, v);
    }
    await h.refused(
      `${b64({ alg: 'RS256', kid: 'k1' })}.${'A'.repeat(9000)}.sig`,
      /token is longer than 8192 bytes \(identity.maxTokenBytes\)/,
      v,
    );
    expect(h.idp.jwksFetches).toBe(before);
  });

  it('while discovery fails, a flood of tokens costs one discovery fetch per cooldown, not one each', async () => {
    let hits = 0;
    const down = http.createServer((_req, res) => {
      hits++;
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
    const issuer = `http://127.0.0.1:${(down.address() as { port: number }).port}`;
    try {
      const v = createOidcVerifier(h.cfg({ issuer }), {
        clock: { ...systemClock, now: () => h.clock },
        jwksCooldownMs: 5_000,
      });
      const token = await h.mint({ iss: issuer });
      for (let i = 0; i < 25; i++) await h.refused(token, /issuer discovery .* answered HTTP 500/, v);
      await Promise.all(Array.from({ length: 25 }, () => h.refused(token, /answered HTTP 500/, v)));
      expect(hits).toBe(1);
      h.clock += 5_001;
      await h.refused(token, /answered HTTP 500/, v);
      expect(hits).toBe(2);
    } finally {
      h.clock = T0 * 1000;
      await new Promise((r) => down.close(r));
    }
  });
});

describe('auth challenges and documents never carry what the Host header says', () => {
  let gw: TestGateway;
  let pub: TestGateway;
  const received: JsonRpcRequest[] = [];

  beforeAll(async () => {
    const upstreams = { http: { url: 'http://127.0.0.1:9/unused' } };
    const options = { connectUpstream: (c: Parameters<typeof fakeUpstream>[0]) => fakeUpstream(c, received) };
    gw = await startGateway({ upstreams, options });
    pub = await startGateway({ upstreams, options, server: { publicUrl: 'https://gateway.example.com/' } });
  });
  afterAll(async () => {
    await gw.close();
    await pub.close();
  });

  const challengeFor = async (g: TestGateway, host: string, authorization?: string) => {
    const r = await rawRequest(g.url, {
      path: '/mcp/http',
      headers: {
        host,
        ...JSON_HEADERS,
        ...(authorization !== undefined ? { authorization } : {}),
        'content-length': String(INIT.length),
      },
      body: INIT,
    });
    expect(r.status).toBe(401);
    return String(r.headers['www-authenticate']);
  };

  it.each([
    'http://evil.example", error="injected", error_description="pwned',
    'evil.example" , realm="x',
    'evil.example/path?x=1',
    'evil.example:99999',
    'evil.example:80:81',
    '[not-an-ipv6]',
    'evil\\.example',
    'user@evil.example',
  ])('a malformed Host %j → the challenge names the listen address, one well-formed param', async (host) => {
    const h = await challengeFor(gw, host);
    expect(parseChallenge(h)).toEqual({ resource_metadata: `${gw.url}/.well-known/oauth-protected-resource/mcp/http` });
  });

  it('a well-formed Host naming this gateway (loopback, or its listen host) is used as given; any other names the listen address; publicUrl wins over any Host', async () => {
    expect(parseChallenge(await challengeFor(gw, 'localhost:8443'))).toEqual({
      resource_metadata: 'http://localhost:8443/.well-known/oauth-protected-resource/mcp/http',
    });
    expect(parseChallenge(await challengeFor(gw, 'attacker.example:443'))).toEqual({
      resource_metadata: `${gw.url}/.well-known/oauth-protected-resource/mcp/http`,
    });
    expect(parseChallenge(await challengeFor(gw, '[::1]:8080'))).toEqual({
      resource_metadata: 'http://[::1]:8080/.well-known/oauth-protected-resource/mcp/http',
    });
    expect(parseChallenge(await challengeFor(pub, 'evil.example'))).toEqual({
      resource_metadata: 'https://gateway.example.com/.well-known/oauth-protected-resource/mcp/http',
    });
  });

  it('the invalid_token challenge quotes its description (no quote, backslash or control character survives)', async () => {
    const token = await gw.gw.devIssuer!.mint({ sub: 'alice', audience: 'someone-else' });
    const h = await challengeFor(gw, 'evil.example", x="y', `Bearer ${token}`);
    const params = parseChallenge(h);
    expect(params).toEqual({
      resource_metadata: `${gw.url}/.well-known/oauth-protected-resource/mcp/http`,
      error: 'invalid_token',
      error_description: expect.stringMatching(/^claim 'aud' invalid/),
    });
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting no control characters leak
    expect(h).not.toMatch(/[\x00-\x1f\x7f]/);
  });

  it('RFC 9728 metadata names the listen address for a malformed Host, and publicUrl when set', async () => {
    const bad = await rawRequest(gw.url, {
      method: 'GET',
      path: '/.well-known/oauth-protected-resource/mcp/http',
      headers: { host: 'evil.example"><script>' },
    });
    expect(JSON.parse(bad.body)).toMatchObject({
      resource: `${gw.url}/mcp/http`,
      resource_documentation: `${gw.url}/readyz`,
    });
    const root = await rawRequest(gw.url, {
      method: 'GET',
      path: '/.well-known/oauth-protected-resource',
      headers: { host: 'a b' },
    });
    expect(JSON.parse(root.body)).toMatchObject({ resource: gw.url });
    const p = await rawRequest(pub.url, {
      method: 'GET',
      path: '/.well-known/oauth-protected-resource/mcp/http',
      headers: { host: 'evil.example' },
    });
    expect(JSON.parse(p.body)).toMatchObject({ resource: 'https://gateway.example.com/mcp/http' });
  });

  it('quotedString escapes quote and backslash, drops controls, replaces non-ASCII', () => {
    expect(quotedString('a"b\\c\r\nd\u0000e\u007ff\u00e9\u2028g')).toBe('"a\\"b\\\\cdef??g"');
    expect(bearerChallenge({ resource_metadata: 'x", error="y', error: 'invalid_token' })).toBe(
      'Bearer resource_metadata="x\\", error=\\"y", error="invalid_token"',
    );
    expect(parseChallenge(bearerChallenge({ a: 'x", b="y', c: '\\' }))).toEqual({ a: 'x", b="y', c: '\\' });
  });
});

describe('tokens through a real gateway (OIDC)', () => {
  let idp: Awaited<ReturnType<typeof startOidcIssuer>>;
  let strict: TestGateway;
  let spaced: TestGateway;
  const received: JsonRpcRequest[] = [];

  beforeAll(async () => {
    idp = await startOidcIssuer();
    const upstreams = { http: { url: 'http://127.0.0.1:9/unused' } };
    const options = { connectUpstream: (c: Parameters<typeof fakeUpstream>[0]) => fakeUpstream(c, received) };
    strict = await startGateway({ upstreams, options, identity: { mode: 'oidc', issuer: idp.issuer } });
    spaced = await startGateway({
      upstreams,
      options,
      identity: { mode: 'oidc', issuer: idp.issuer, claims: { groupsFormat: 'space-delimited' } },
    });
  });
  afterAll(async () => {
    await strict.close();
    await spaced.close();
    await idp.close();
  });

  const post = async (g: TestGateway, token: string, body: string, sid?: string) => {
    const res = await fetch(`${g.url}/mcp/http`, {
      method: 'POST',
      headers: { ...JSON_HEADERS, authorization: `Bearer ${token}`, ...(sid ? { 'mcp-session-id': sid } : {}) },
      body,
    });
    return {
      status: res.status,
      challenge: res.headers.get('www-authenticate'),
      sid: res.headers.get('mcp-session-id'),
      json: (await res.json()) as { error?: { message: string }; result?: unknown },
    };
  };

  it('groups "eng admin" does not grant eng: 401 naming the claim', async () => {
    const r = await post(strict, await idp.mint({ groups: 'eng admin' }), INIT);
    expect(r.status).toBe(401);
    expect(r.json.error?.message).toMatch(/^Invalid token: claim "groups" must be an array of strings, got a string/);
    expect(parseChallenge(r.challenge!)).toMatchObject({
      error: 'invalid_token',
      error_description: expect.stringMatching(/^claim 'groups' must be/),
    });
  });

  it('with groupsFormat: space-delimited, the same token grants eng (a full-access tool is called)', async () => {
    const token = await idp.mint({ groups: 'eng admin' });
    const init = await post(spaced, token, INIT);
    expect(init.status).toBe(200);
    const r = await post(
      spaced,
      token,
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'secret', arguments: {} } }),
      init.sid!,
    );
    expect(r.json).toMatchObject({ result: { content: [{ text: 'called secret' }] } });
  });

  it('a token issued an hour in the future is refused by the gateway', async () => {
    const now = Math.floor(Date.now() / 1000);
    const r = await post(strict, await idp.mint({ iat: now + 3600, exp: now + 7200 }), INIT);
    expect(r.status).toBe(401);
    expect(r.json.error?.message).toMatch(/claim "iat" invalid: issued \d+ s in the future/);
  });

  it('an Authorization header over the server header limit is refused (431) and the gateway keeps serving', async () => {
    const r = await rawRequest(strict.url, {
      path: '/mcp/http',
      headers: { host: 'localhost', ...JSON_HEADERS, authorization: `Bearer ${'A'.repeat(20_000)}` },
      body: INIT,
    });
    expect(r.status).toBe(431);
    expect(JSON.parse(r.body)).toMatchObject({ error: { data: { gitgate: 'HEADERS_TOO_LARGE' } } });
    const big = await post(strict, 'A'.repeat(9000), INIT);
    expect(big.status).toBe(401);
    expect(big.json.error?.message).toMatch(/token is longer than 8192 bytes/);
    expect((await post(strict, await idp.mint({ groups: ['eng'] }), INIT)).status).toBe(200);
  });
});

describe('a stream does not outlive the token that opened it', () => {
  it('a GET stream, authenticated once as it opened, ends when its token expires (the client reconnects with a fresh one)', async () => {
    const clock = new ManualClock(Date.now());
    const upstream = await startHttpServer();
    const gw = await startGateway({ upstreams: { http: { url: upstream.url } }, options: { clock } });
    try {
      const m = new RawMcp(`${gw.url}/mcp/http`, await gw.token('alice', [], { ttlSeconds: 60 }));
      await m.initialize();
      const stream = await m.listen(() => undefined);
      expect(stream.status).toBe(200);
      let over = false;
      void stream.ended.then(() => (over = true));
      clock.advance(30_000);
      await new Promise((r) => setImmediate(r));
      expect(over).toBe(false);
      clock.advance(31_000);
      await stream.ended;
    } finally {
      await gw.close();
      await upstream.close();
    }
  });
});
