import { createHash } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  errors as joseErrors,
  jwtVerify,
} from 'jose';
import { boundedCache } from '../cache.js';
import { type Clock, systemClock } from '../clock.js';
import type { IdentityConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { type Identity, mapClaims } from './identity.js';

/** One method: a bearer token in, an Identity out (or GatewayError AUTH_INVALID). */
export interface TokenVerifier {
  readonly issuer: string;
  verify(token: string): Promise<Identity>;
}

async function discoverJwksUri(issuer: string): Promise<URL> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(10_000), headers: { accept: 'application/json' } });
  } catch (err) {
    throw new GatewayError('AUTH_INVALID', `cannot reach the issuer's discovery document ${url}`, { cause: err });
  }
  if (!res.ok) throw new GatewayError('AUTH_INVALID', `issuer discovery ${url} answered HTTP ${res.status}`);
  const doc = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
  if (doc.issuer !== issuer)
    throw new GatewayError('AUTH_INVALID', `issuer discovery names issuer ${String(doc.issuer)}, expected ${issuer}`);
  if (typeof doc.jwks_uri !== 'string')
    throw new GatewayError('AUTH_INVALID', `issuer discovery ${url} has no jwks_uri`);
  return new URL(doc.jwks_uri);
}

function describe(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'token expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `claim "${err.claim}" invalid: ${err.message}`;
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm not allowed';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key in the issuer JWKS matches the token';
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (err instanceof joseErrors.JOSENotSupported) return `unsupported token: ${err.message}`;
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'malformed token';
  if (err instanceof joseErrors.JWKSTimeout) return 'timed out fetching the issuer JWKS';
  if (err instanceof GatewayError) return err.message;
  return 'token verification failed';
}

/** How many verified tokens are remembered at most (least recently used evicted first). */
export const VERIFIED_CACHE_MAX = 10_000;

export interface VerifierOptions {
  /** The clock of token validity, the verified-token cache and the discovery cooldown (default: the system clock). */
  readonly clock?: Clock;
}

/** Claims jose leaves to the caller: `iat` not in the future, `aud` only strings. */
function checkClaims(payload: JWTPayload, nowSeconds: number, toleranceSeconds: number): void {
  if (payload.iat !== undefined && payload.iat > nowSeconds + toleranceSeconds) {
    throw new GatewayError(
      'AUTH_INVALID',
      `claim "iat" invalid: issued ${Math.round(payload.iat - nowSeconds)} s in the future (clock tolerance ${toleranceSeconds} s)`,
    );
  }
  const aud: unknown = payload.aud;
  if (Array.isArray(aud) && aud.some((a) => typeof a !== 'string'))
    throw new GatewayError('AUTH_INVALID', 'claim "aud" invalid: must be a string or an array of strings');
}

/** A verified token, remembered by the hash of its bytes. */
interface Verified {
  readonly identity: Identity;
  /** exp, in ms: the entry is never used at or after it (the clock tolerance is not extended to cached tokens). */
  readonly expMs: number;
  /** The header the key was chosen by, and the key object that verified the signature. */
  readonly header: Parameters<JWTVerifyGetKey>[0];
  readonly key: unknown;
}

/**
 * Verify with jose against a key set: iss, aud, exp (required), nbf, iat (not
 * in the future), algorithm allow-list, clock tolerance, then the claims the
 * policy sees (typed strictly, see mapClaims). A token longer than
 * `maxTokenBytes` is refused before it is decoded. Keys are asked for only
 * once a token's header names an allowed algorithm, so malformed tokens never
 * cause a JWKS or discovery fetch.
 *
 * A verified token is remembered by its sha256 (bounded LRU, VERIFIED_CACHE_MAX)
 * until its `exp`, so repeat calls skip the signature check and the claim
 * mapping. A remembered token is honoured only while the key set still resolves
 * its header to the very key object that verified it: asking the key set runs
 * jose's refresh of a stale JWKS, and a refresh replaces every key object, so a
 * key removed from the issuer's JWKS stops working at the next refresh, exactly
 * as without the cache (a kept key just costs one full verification). Failures
 * are never remembered.
 */
export function createVerifier(
  cfg: IdentityConfig & { issuer: string },
  keys: () => Promise<JWTVerifyGetKey>,
  opts: VerifierOptions = {},
): TokenVerifier {
  const clock = opts.clock ?? systemClock;
  // Entries leave at their token's exp (per-entry ttl); the cache's own ttl is only the ceiling of one day.
  const verified = boundedCache<string, Verified>({ max: VERIFIED_CACHE_MAX, ttlMs: 86_400_000, clock });
  const getKey: JWTVerifyGetKey = async (header, token) => (await keys())(header, token);
  /** Whether the key set, asked now (refreshing it if stale), still gives the key that verified `hit`. */
  const stillTrusted = async (hit: Verified, token: string): Promise<boolean> => {
    try {
      const [, payload = '', signature = ''] = token.split('.');
      return (await getKey(hit.header, { payload, signature })) === hit.key;
    } catch {
      return false;
    }
  };
  return {
    issuer: cfg.issuer,
    async verify(token) {
      if (token.length > cfg.maxTokenBytes)
        throw new GatewayError(
          'AUTH_INVALID',
          `token is longer than ${cfg.maxTokenBytes} bytes (identity.maxTokenBytes)`,
        );
      const t = clock.now();
      const digest = createHash('sha256').update(token).digest('base64url');
      const hit = verified.get(digest);
      if (hit !== undefined) {
        if (hit.expMs > t && (await stillTrusted(hit, token))) return hit.identity;
        verified.delete(digest);
      }
      try {
        // The key the set resolved for this token (what a remembered token is later checked against).
        let key: unknown;
        const resolve: JWTVerifyGetKey = async (header, jws) => (key = await getKey(header, jws));
        const { payload, protectedHeader } = await jwtVerify(token, resolve, {
          issuer: cfg.issuer,
          audience: cfg.audience,
          algorithms: [...cfg.algorithms],
          clockTolerance: cfg.clockToleranceSeconds,
          currentDate: new Date(t),
          requiredClaims: ['exp', 'sub'],
        });
        checkClaims(payload, Math.floor(t / 1000), cfg.clockToleranceSeconds);
        const identity = mapClaims(payload, cfg.claims);
        const expMs = (payload.exp ?? 0) * 1000;
        // lru-cache keeps an entry while its age is at most `ttl`: it is gone at exp (and ttl 0 would mean forever).
        if (expMs - t > 1)
          verified.set(digest, { identity, expMs, header: protectedHeader, key }, { ttl: expMs - t - 1 });
        return identity;
      } catch (err) {
        throw new GatewayError('AUTH_INVALID', describe(err), { cause: err });
      }
    },
  };
}

/**
 * An OIDC issuer: JWKS from `jwksUri` or discovery, cached by jose and refetched
 * on an unknown `kid` at most once per cooldown (forged kids cannot cause a fetch storm).
 * Discovery runs once at a time; a failed one is not retried within the cooldown,
 * so requests while the issuer is down cost no fetch each.
 */
export function createOidcVerifier(
  cfg: IdentityConfig,
  opts: VerifierOptions & { jwksCooldownMs?: number } = {},
): TokenVerifier {
  if (cfg.issuer === undefined) throw new GatewayError('CONFIG_INVALID', 'identity.issuer is required in oidc mode');
  const now = () => (opts.clock ?? systemClock).now();
  const cooldownMs = opts.jwksCooldownMs ?? 5_000;
  let jwks: JWTVerifyGetKey | undefined;
  let discovering: Promise<URL> | undefined;
  let failed: { until: number; error: GatewayError } | undefined;
  const issuer = cfg.issuer;
  const discover = async (): Promise<URL> => {
    if (failed !== undefined && now() < failed.until) throw failed.error;
    discovering ??= discoverJwksUri(issuer).then(
      (uri) => {
        failed = undefined;
        return uri;
      },
      (err: unknown) => {
        const error =
          err instanceof GatewayError
            ? err
            : new GatewayError('AUTH_INVALID', `issuer discovery failed: ${String(err)}`, { cause: err });
        failed = { until: now() + cooldownMs, error };
        discovering = undefined;
        throw error;
      },
    );
    return discovering;
  };
  return createVerifier(
    { ...cfg, issuer },
    async () => {
      if (jwks === undefined) {
        const uri = cfg.jwksUri !== undefined ? new URL(cfg.jwksUri) : await discover();
        jwks ??= createRemoteJWKSet(uri, {
          cooldownDuration: cooldownMs,
          cacheMaxAge: 10 * 60_000,
          timeoutDuration: 5_000,
        });
      }
      return jwks;
    },
    opts,
  );
}

export function createLocalVerifier(
  cfg: IdentityConfig & { issuer: string },
  jwks: JSONWebKeySet,
  opts: VerifierOptions = {},
): TokenVerifier {
  const getKey = createLocalJWKSet(jwks);
  return createVerifier(cfg, () => Promise.resolve(getKey), opts);
}
