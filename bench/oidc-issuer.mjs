// A loopback OIDC issuer for the benchmark: discovery, a JWKS with one ES256 key, and
// GET /token?sub=…&aud=… minting a one-hour JWT (groups: ["eng"]). Every proxy that
// authenticates callers (hoop mcpproxyd in oidc mode, gitgate in oidc mode) verifies
// the same tokens against it. Bench only: no client authentication, loopback only.
import http from 'node:http';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

const { publicKey, privateKey } = await generateKeyPair('ES256');
const kid = 'bench-1';
const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] });
let issuer = '';

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', issuer);
  const json = (body) => res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  if (url.pathname === '/.well-known/openid-configuration') {
    return json(
      JSON.stringify({
        issuer,
        jwks_uri: `${issuer}/jwks.json`,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['ES256'],
      }),
    );
  }
  if (url.pathname === '/jwks.json') return json(jwks);
  if (url.pathname === '/token') {
    const sub = (url.searchParams.get('sub') ?? 'bench').slice(0, 64);
    const aud = (url.searchParams.get('aud') ?? 'bench').slice(0, 128);
    const token = await new SignJWT({ groups: ['eng'], email: `${sub}@example.com` })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(aud)
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
    return res.writeHead(200, { 'content-type': 'text/plain' }).end(token);
  }
  res.writeHead(404).end();
});
server.listen(0, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  process.stdout.write(`listening ${issuer}\n`);
});
