import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  SignJWT,
} from 'jose';
import { writeFileAtomic } from '../atomic-file.js';
import { type Clock, systemClock } from '../clock.js';

export const DEV_ISSUER = 'urn:gitgate:dev-issuer';

/** The embedded dev issuer: an ES256 key kept under the data dir, a JWKS, and token minting. */
export interface DevIssuer {
  readonly issuer: string;
  jwks(): JSONWebKeySet;
  mint(opts: {
    sub: string;
    groups?: readonly string[];
    email?: string;
    githubLogin?: string;
    ttlSeconds?: number;
    audience: string;
  }): Promise<string>;
}

/** `clock`: what minted tokens are dated on (iat, exp). */
export async function loadDevIssuer(dataDir: string, clock: Clock = systemClock): Promise<DevIssuer> {
  const dir = path.join(dataDir, 'keys');
  const file = path.join(dir, 'dev-issuer.private.jwk');
  let priv: JWK;
  try {
    priv = JSON.parse(await readFile(file, 'utf8')) as JWK;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const pair = await generateKeyPair('ES256', { extractable: true });
    priv = await exportJWK(pair.privateKey);
    priv.kid = await calculateJwkThumbprint(priv);
    priv.alg = 'ES256';
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, JSON.stringify(priv), { mode: 0o600, exclusive: true }).catch(
      async (e: NodeJS.ErrnoException) => {
        // Another process created it first: use theirs.
        if (e.code !== 'EEXIST') throw e;
        priv = JSON.parse(await readFile(file, 'utf8')) as JWK;
      },
    );
    await chmod(file, 0o600);
  }
  const { d: _d, ...pub } = priv;
  const key = await importJWK(priv, 'ES256');
  return {
    issuer: DEV_ISSUER,
    jwks: () => ({ keys: [{ ...pub, use: 'sig' }] }),
    async mint(opts) {
      const now = Math.floor(clock.now() / 1000);
      const jwt = new SignJWT({
        groups: [...(opts.groups ?? [])],
        ...(opts.email !== undefined ? { email: opts.email } : {}),
        ...(opts.githubLogin !== undefined ? { github_login: opts.githubLogin } : {}),
      })
        .setProtectedHeader({ alg: 'ES256', kid: priv.kid!, typ: 'JWT' })
        .setIssuer(DEV_ISSUER)
        .setSubject(opts.sub)
        .setAudience(opts.audience)
        .setIssuedAt(now)
        .setJti(randomUUID())
        .setExpirationTime(now + (opts.ttlSeconds ?? 3600));
      return jwt.sign(key);
    },
  };
}
