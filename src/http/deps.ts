import type { FastifyBaseLogger } from 'fastify';
import type { DevIssuer } from '../identity/dev-issuer.js';
import type { GatewayDeps } from '../pipeline.js';
import type { PolicyRevision } from '../policy/engine.js';
import type { GitHubWebhooks } from '../webhooks/verify-and-receive.js';

/**
 * What buildApp (app.ts) and its route modules are given: the pipeline's dependencies and the
 * HTTP surface's own. Its own module, below app.ts and the routes, so none of them import app.ts.
 */

/** What /readyz reports. */
export interface Readiness {
  /** Why the gateway is not ready (no policy yet, …); empty when ready. */
  problems(): string[];
  /** What an operator should act on while the gateway still serves (a refused policy commit, …); never affects readiness. */
  warnings(): string[];
  policy(): PolicyRevision | undefined;
  lastPolicyError(): string | undefined;
  audit(): Record<string, unknown>;
  /** GitOps sync status, when the policy comes from a repo. */
  sync(): unknown;
  /** Per upstream: what its last check found (reachable, governed, problems). */
  upstreams?(): Record<string, unknown>;
  /** Several replicas: this replica's id (store.postgres.replicaId). */
  readonly replica?: string;
  /** Several replicas: check the shared store now (its answer joins problems()), and what /readyz shows of it. */
  store?(): Promise<Record<string, unknown>>;
}

export interface AppDeps extends GatewayDeps {
  readonly logger: FastifyBaseLogger;
  readonly devIssuer?: DevIssuer;
  readonly readiness: Readiness;
  readonly webhooks: GitHubWebhooks;
}
