import type { FastifyInstance } from 'fastify';
import { baseUrlOf } from './base-url.js';
import type { AppDeps } from './deps.js';

/** RFC 9728 protected-resource metadata (global and per upstream), gitgate's JWKS, and the dev issuer's JWKS. */
export function registerWellKnownRoutes(app: FastifyInstance, deps: AppDeps): void {
  const metadata = (base: string, resource: string) => ({
    resource,
    ...(deps.config.identity.mode === 'oidc' && deps.config.identity.issuer !== undefined
      ? { authorization_servers: [deps.config.identity.issuer] }
      : {}),
    bearer_methods_supported: ['header'],
    resource_signing_alg_values_supported: [...deps.config.identity.algorithms],
    resource_name: 'gitgate MCP gateway',
    resource_documentation: `${base}/readyz`,
  });
  app.get('/.well-known/oauth-protected-resource', async (req) => {
    const base = baseUrlOf(deps.config, req);
    return metadata(base, base);
  });
  app.get<{ Params: { upstream: string } }>(
    '/.well-known/oauth-protected-resource/mcp/:upstream',
    async (req, reply) => {
      if (deps.upstreams.get(req.params.upstream) === undefined) return reply.callNotFound();
      const base = baseUrlOf(deps.config, req);
      return metadata(base, `${base}/mcp/${req.params.upstream}`);
    },
  );
  // Upstreams verify the just-in-time credentials gitgate mints against these keys.
  app.get('/.well-known/jwks.json', async (_req, reply) =>
    reply.header('cache-control', 'max-age=60').send(await deps.credentials.jwks()),
  );
  if (deps.devIssuer !== undefined) {
    const issuer = deps.devIssuer;
    app.get('/dev-issuer/jwks.json', async () => issuer.jwks());
  }
}
