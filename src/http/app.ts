import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { GatewayError, type ErrorCode } from '../errors.js';
import type { DevIssuer } from '../identity/dev-issuer.js';
import type { PolicyRevision } from '../policy/engine.js';
import type { GatewayDeps } from '../pipeline.js';
import { registerMcpRoutes } from './mcp-routes.js';
import { registerOpsRoutes } from './ops-routes.js';
import { sendError } from './reply.js';
import { registerWellKnownRoutes } from './well-known.js';
import { registerWebhookRoutes } from './webhook-routes.js';
import type { GitHubWebhooks } from '../webhooks/verify-and-receive.js';

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
}

export interface AppDeps extends GatewayDeps {
  readonly logger: FastifyBaseLogger;
  readonly devIssuer?: DevIssuer;
  readonly readiness: Readiness;
  readonly webhooks: GitHubWebhooks;
}

const FRAMEWORK_CODES: Readonly<Record<string, ErrorCode>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'PARSE_ERROR',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_REQUEST',
  FST_ERR_BAD_URL: 'INVALID_REQUEST',
};

/** Framework errors (body limit, bad content length, …) become GatewayErrors with the same table. */
function fromFrameworkError(err: FastifyError): GatewayError {
  if (err instanceof GatewayError) return err;
  const code = FRAMEWORK_CODES[err.code];
  if (code !== undefined) return new GatewayError(code, `${new GatewayError(code).message}: ${err.message}`);
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return new GatewayError('INVALID_REQUEST', `Invalid Request: ${err.message}`);
  return new GatewayError('INTERNAL', 'Internal error', { cause: err });
}

/** The gateway's HTTP app, fully wired from `deps`. It never listens: callers do, or use app.inject(). */
export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One structured line per MCP exchange is logged by the route instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.config.server.bodyLimitBytes,
    trustProxy: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  });
  // Bodies stay raw: the MCP layer parses them so it can answer with JSON-RPC errors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const ge = fromFrameworkError(err);
    if (ge.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
    return sendError(reply, ge);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, new GatewayError('UPSTREAM_UNKNOWN', `Not found: ${req.method} ${req.url.split('?')[0]}`)));
  registerMcpRoutes(app, deps);
  registerWellKnownRoutes(app, deps);
  registerOpsRoutes(app, deps);
  registerWebhookRoutes(app, deps.webhooks);
  return app;
}
