/**
 * The verified-token cache (src/identity/verifier.ts) skips the signature check of a token seen
 * before, and must keep every property full verification has: a key removed from the issuer's
 * JWKS stops working at the next refresh, exp is never extended, failures are never remembered,
 * one token's identity never answers for another. The key set is an in-memory fake whose refresh
 * the test performs; the clock is injected.
 */
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWK, type JWTVerifyGetKey, SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { IdentityConfig } from '../../src/config/types.js';
import { GatewayError } from '../../src/errors.js';
import { createVerifier } from '../../src/identity/verifier.js';

const ISSUER = 'https://idp.example';
const T0 = 2_000_000_000;

const cfg = (clockToleranceSeconds = 0): IdentityConfig & { issuer: string } => ({
  mode: 'oidc',
  issuer: ISSUER,
  audience: 'gitgate',
  algorithms: ['ES256'],
  clockToleranceSeconds,
  maxTokenBytes: 8192,
  claims: { sub: 'sub', email: 'email', groups: 'groups', githubLogin: 'github_login', groupsFormat: 'array' },
});

interface Key {
  readonly jwk: JWK;
  readonly privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
}

async function key(kid: string): Promise<Key> {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  return { jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256' }, privateKey };
}

function mint(k: Key, claims: { sub: string; exp: number; groups?: string[] }): Promise<string> {
  return new SignJWT({ groups: claims.groups ?? ['eng'] })
    .setProtectedHeader({ alg: 'ES256', kid: k.jwk.kid! })
    .setIssuer(ISSUER)
    .setAudience('gitgate')
    .setSubject(claims.sub)
    .setIssuedAt(T0)
    .setExpirationTime(claims.exp)
    .sign(k.privateKey);
}

/** An issuer's JWKS as a verifier sees it: what it fetched last; `refresh` is the next fetch. */
function keySet(...keys: Key[]) {
  let set: JWTVerifyGetKey = createLocalJWKSet({ keys: keys.map((k) => k.jwk) });
  return {
    keys: () => Promise.resolve(set),
    refresh(...now: Key[]) {
      set = createLocalJWKSet({ keys: now.map((k) => k.jwk) });
    },
  };
}

async function refused(p: Promise<unknown>, reason: RegExp): Promise<void> {
  const err = await p.catch((e: unknown) => e);
  expect(err).toBeInstanceOf(GatewayError);
  expect((err as GatewayError).code).toBe('AUTH_INVALID');
  expect((err as GatewayError).message).toMatch(reason);
}

let k1: Key;
let k2: Key;
beforeAll(async () => {
  [k1, k2] = await Promise.all([key('k1'), key('k2')]);
});

describe('a remembered token is honoured only while full verification would honour it', () => {
  it('a key removed from the JWKS stops its tokens at the next refresh, though they were verified before', async () => {
    const clock = { ms: T0 * 1000 };
    const set = keySet(k1, k2);
    const v = createVerifier(cfg(), set.keys, { clock: { ...systemClock, now: () => clock.ms } });
    const token = await mint(k1, { sub: 'alice', exp: T0 + 3600 });
    expect((await v.verify(token)).sub).toBe('alice');
    clock.ms += 1000;
    // Until the JWKS is refetched the key stands, with or without a cache (jose would verify with the set it holds).
    expect((await v.verify(token)).sub).toBe('alice');
    set.refresh(k2);
    await refused(v.verify(token), /no key in the issuer JWKS matches the token/);
    // Still refused on the next call: the entry is gone, and a failure is not remembered as a success.
    await refused(v.verify(token), /no key in the issuer JWKS matches the token/);
  });

  it('a refresh that keeps the key keeps its tokens working; a key replaced under the same kid does not', async () => {
    const set = keySet(k1);
    const v = createVerifier(cfg(), set.keys, { clock: { ...systemClock, now: () => T0 * 1000 } });
    const token = await mint(k1, { sub: 'alice', exp: T0 + 3600 });
    await v.verify(token);
    set.refresh(k1, k2);
    expect((await v.verify(token)).sub).toBe('alice');
    // The issuer swaps the key material behind kid k1: the remembered token was signed by a key no longer published.
    set.refresh(await key('k1'));
    await refused(v.verify(token), /signature verification failed/);
  });

  it('is never used at or after exp, even within the clock tolerance full verification then applies afresh', async () => {
    const clock = { ms: T0 * 1000 };
    const set = keySet(k1);
    const strict = createVerifier(cfg(0), set.keys, { clock: { ...systemClock, now: () => clock.ms } });
    const token = await mint(k1, { sub: 'alice', exp: T0 + 60 });
    await strict.verify(token);
    clock.ms = (T0 + 60) * 1000;
    await refused(strict.verify(token), /token expired/);
    // With a tolerance the answer is full verification's (accepted 10 s late, refused 31 s late), not the cache's.
    const tolerant = createVerifier(cfg(30), set.keys, { clock: { ...systemClock, now: () => clock.ms } });
    clock.ms = T0 * 1000;
    await tolerant.verify(token);
    clock.ms = (T0 + 70) * 1000;
    expect((await tolerant.verify(token)).sub).toBe('alice');
    clock.ms = (T0 + 91) * 1000;
    await refused(tolerant.verify(token), /token expired/);
  });

  it('a failure is never remembered, and each token answers only for itself', async () => {
    const set = keySet(k2);
    const v = createVerifier(cfg(), set.keys, { clock: { ...systemClock, now: () => T0 * 1000 } });
    const alice = await mint(k1, { sub: 'alice', exp: T0 + 3600 });
    await refused(v.verify(alice), /no key in the issuer JWKS matches the token/);
    set.refresh(k1, k2);
    expect((await v.verify(alice)).sub).toBe('alice');
    const bob = await mint(k1, { sub: 'bob', exp: T0 + 3600, groups: ['ops'] });
    expect(await v.verify(bob)).toMatchObject({ sub: 'bob', groups: ['ops'] });
    expect(await v.verify(alice)).toMatchObject({ sub: 'alice', groups: ['eng'] });
    // A tampered copy of a remembered token is a different token: verified in full, and refused.
    const [h, p, s] = alice.split('.');
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), sub: 'root' })).toString('base64url')}.${s}`;
    await refused(v.verify(forged), /signature verification failed/);
  });
});
