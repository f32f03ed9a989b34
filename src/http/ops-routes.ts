import type { FastifyInstance } from 'fastify';
import type { AppDeps } from './deps.js';

/** /healthz (process alive), /readyz (policy loaded, per-upstream checks; JSON, docs/operations.md), /metrics (Prometheus). */
export function registerOpsRoutes(app: FastifyInstance, deps: AppDeps): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    // Multi-replica mode: the shared store is asked now, so readiness fails and recovers with it.
    const store = await deps.readiness.store?.();
    const problems = deps.readiness.problems();
    const rev = deps.readiness.policy();
    const body = {
      ready: problems.length === 0,
      ...(deps.readiness.replica !== undefined ? { replica: deps.readiness.replica } : {}),
      problems,
      warnings: deps.readiness.warnings(),
      policy:
        rev === undefined
          ? null
          : {
              revision: rev.commit ?? null,
              bundle_digest: rev.bundleDigest,
              source: rev.source,
              loaded_at: rev.loadedAt,
            },
      last_policy_error: deps.readiness.lastPolicyError() ?? null,
      policy_sync: deps.readiness.sync() ?? null,
      audit: deps.readiness.audit(),
      upstreams: deps.readiness.upstreams?.() ?? Object.fromEntries(deps.upstreams.names().map((n) => [n, null])),
      sessions: deps.sessions.size,
      ...(store !== undefined ? { store } : {}),
    };
    return reply.code(problems.length === 0 ? 200 : 503).send(body);
  });
  app.get('/metrics', async (_req, reply) => {
    for (const name of deps.upstreams.names())
      deps.metrics.sessions.set({ upstream: name }, deps.sessions.countFor(name));
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
