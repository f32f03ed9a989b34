import http from 'node:http';
import { exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose';

type Key = Awaited<ReturnType<typeof generateKeyPair>>;

/** A real OIDC issuer on loopback: discovery, a JWKS that can rotate, and token minting. */
export async function startOidcIssuer() {
  const keys = new Map<string, { pair: Key; jwk: JWK }>();
  let jwksFetches = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/.well-known/openid-configuration') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, id_token_signing_alg_values_supported: ['RS256'] }));
    } else if (req.url === '/jwks') {
      jwksFetches++;
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ keys: [...keys.values()].map((k) => k.jwk) }));
    } else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  async function addKey(kid: string): Promise<void> {
    const pair = await generateKeyPair('RS256', { extractable: true });
    keys.set(kid, { pair, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' } });
  }
  await addKey('k1');

  return {
    issuer,
    addKey,
    get jwksFetches() {
      return jwksFetches;
    },
    publicPem: (kid = 'k1') => exportSPKI(keys.get(kid)!.pair.publicKey),
    /** `now` (seconds) sets iat and exp (+300) unless the claims do; `header` adds protected header parameters (`crit` names are signed as understood). */
    /** `claims` are merged over the defaults; a claim given as undefined is left out (to test tokens without it). */
    async mint(
      claims: { [K in keyof JWTPayload]?: JWTPayload[K] | undefined },
      opts: { kid?: string; key?: Key['privateKey']; now?: number; header?: Record<string, unknown> } = {},
    ): Promise<string> {
      const kid = opts.kid ?? 'k1';
      const key = opts.key ?? keys.get(kid)!.pair.privateKey;
      const now = opts.now ?? Math.floor(Date.now() / 1000);
      const crit = Array.isArray(opts.header?.crit)
        ? Object.fromEntries((opts.header.crit as string[]).map((c) => [c, true]))
        : undefined;
      const payload = Object.fromEntries(
        Object.entries({ iss: issuer, aud: 'gitgate', sub: 'alice', iat: now, exp: now + 300, ...claims }).filter(
          ([, v]) => v !== undefined,
        ),
      ) as JWTPayload;
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'RS256', kid, ...opts.header })
        .sign(key, crit !== undefined ? { crit } : undefined);
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
