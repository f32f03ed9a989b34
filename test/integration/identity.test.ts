import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { IdentityConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { createOidcVerifier, type TokenVerifier } from '../../src/identity/verifier.js';
import { startOidcIssuer } from '../helpers/oidc-issuer.js';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describe('OIDC bearer tokens verified with jose against the issuer JWKS', () => {
  let idp: Awaited<ReturnType<typeof startOidcIssuer>>;
  let verifier: TokenVerifier;
  const cfg = (over: Partial<IdentityConfig> = {}): IdentityConfig => ({
    mode: 'oidc',
    issuer: idp.issuer,
    audience: 'gitgate',
    algorithms: ['RS256', 'ES256', 'EdDSA'],
    clockToleranceSeconds: 30,
    maxTokenBytes: 8192,
    claims: { sub: 'sub', email: 'email', groups: 'groups', githubLogin: 'github_login', groupsFormat: 'array' },
    ...over,
  });
  const now = () => Math.floor(Date.now() / 1000);
  const rejects = async (token: string, reason: RegExp, v = verifier) => {
    const err = await v.verify(token).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('AUTH_INVALID');
    expect((err as GatewayError).message).toMatch(reason);
  };

  beforeAll(async () => {
    idp = await startOidcIssuer();
    verifier = createOidcVerifier(cfg());
  });
  afterAll(() => idp.close());
  // Some tests move time: only Date is faked (jose's JWKS cooldown and our clock read it), so
  // sockets and timers stay real and the issuer still answers on loopback.
  const freezeTime = () => vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
  afterEach(() => vi.useRealTimers());

  it('accepts a valid token (issuer discovery) and maps its claims', async () => {
    const id = await verifier.verify(
      await idp.mint({ sub: 'alice', email: 'a@example.com', groups: ['eng', 'ops'], github_login: 'alice-gh' }),
    );
    expect(id).toEqual({
      sub: 'alice',
      email: 'a@example.com',
      groups: ['eng', 'ops'],
      githubLogin: 'alice-gh',
      issuer: idp.issuer,
      // When the token expires (ms): a held call or an open stream does not outlive it.
      expiresAt: expect.any(Number),
    });
  });

  it('maps claims from configured (nested) claim names', async () => {
    const v = createOidcVerifier(
      cfg({
        claims: {
          sub: 'preferred_username',
          email: 'mail',
          groups: 'realm_access.roles',
          githubLogin: 'gh',
          groupsFormat: 'array',
        },
      }),
    );
    const id = await v.verify(
      await idp.mint({ preferred_username: 'bob', realm_access: { roles: ['eng'] }, gh: 'bob-gh' }),
    );
    expect(id).toMatchObject({ sub: 'bob', groups: ['eng'], githubLogin: 'bob-gh' });
  });

  it('rejects an expired token, but tolerates small clock skew', async () => {
    await rejects(await idp.mint({ exp: now() - 120 }), /token expired/);
    await expect(verifier.verify(await idp.mint({ exp: now() - 10 }))).resolves.toMatchObject({ sub: 'alice' });
  });

  it('rejects a token not yet valid (nbf)', async () => {
    await rejects(await idp.mint({ nbf: now() + 600 }), /"nbf"/);
  });

  it('rejects the wrong audience', async () => {
    await rejects(await idp.mint({ aud: 'someone-else' }), /"aud"/);
  });

  it('rejects the wrong issuer', async () => {
    await rejects(await idp.mint({ iss: 'https://evil.example' }), /"iss"/);
  });

  it('rejects alg: none', async () => {
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: idp.issuer, aud: 'gitgate', sub: 'alice', exp: now() + 300 })}.`;
    await rejects(unsigned, /algorithm not allowed|malformed/);
  });

  it('rejects HS256 signed with the public key (key confusion)', async () => {
    const pem = await idp.publicPem();
    const forged = await new SignJWT({ iss: idp.issuer, aud: 'gitgate', sub: 'alice', exp: now() + 300 })
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .sign(new TextEncoder().encode(pem));
    await rejects(forged, /algorithm not allowed/);
  });

  it('rejects a token signed by a key the issuer does not publish', async () => {
    const rogue = await generateKeyPair('RS256');
    await rejects(await idp.mint({}, { kid: 'k1', key: rogue.privateKey }), /signature verification failed/);
  });

  it('refetches the JWKS for an unknown kid after rotation, but never more than once per cooldown', async () => {
    freezeTime();
    const cooldownMs = 300;
    const v = createOidcVerifier(cfg(), { jwksCooldownMs: cooldownMs });
    await v.verify(await idp.mint({}));
    await idp.addKey('k2');
    const rogue = (await generateKeyPair('RS256')).privateKey;
    const start = idp.jwksFetches;
    // A burst of tokens with unknown kids inside the cooldown: rejected, at most one refetch.
    for (let i = 0; i < 20; i++)
      await rejects(await idp.mint({}, { kid: `forged-${i}`, key: rogue }), /no key in the issuer JWKS matches/, v);
    expect(idp.jwksFetches - start).toBeLessThanOrEqual(1);
    // Still inside the cooldown (time has not moved): the rotated-in key is not fetched yet.
    await rejects(await idp.mint({}, { kid: 'k2' }), /no key in the issuer JWKS matches/, v);
    vi.advanceTimersByTime(cooldownMs + 1);
    // After the cooldown, the rotated-in key is fetched and accepted.
    await expect(v.verify(await idp.mint({}, { kid: 'k2' }))).resolves.toMatchObject({ sub: 'alice' });
    expect(idp.jwksFetches - start).toBeLessThanOrEqual(2);
  });

  it('a remembered token still expires on time', async () => {
    freezeTime();
    const v = createOidcVerifier(cfg({ clockToleranceSeconds: 0 }));
    const t = await idp.mint({ exp: now() + 1 });
    await expect(v.verify(t)).resolves.toMatchObject({ sub: 'alice' });
    await expect(v.verify(t)).resolves.toMatchObject({ sub: 'alice' });
    vi.advanceTimersByTime(1_100);
    await rejects(t, /token expired/, v);
  });

  it('rejects a token without sub', async () => {
    await rejects(await idp.mint({ sub: undefined }), /"sub"/);
  });

  it('refuses an issuer whose discovery document names another issuer', async () => {
    const v = createOidcVerifier(cfg({ issuer: `${idp.issuer}/` }));
    await rejects(await idp.mint({}), /discovery names issuer/, v);
  });

  it('uses a configured JWKS URL without discovery', async () => {
    const v = createOidcVerifier(cfg({ jwksUri: `${idp.issuer}/jwks` }));
    await expect(v.verify(await idp.mint({}))).resolves.toMatchObject({ sub: 'alice' });
  });
});
