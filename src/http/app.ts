import { maxHeaderSize, type Server, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance, LogController } from 'fastify';
import type { GatewayConfig } from '../config/types.js';
import { type ErrorCode, GatewayError } from '../errors.js';
import { errorResponse } from '../mcp/jsonrpc.js';
import { BodyBudget } from './body-budget.js';
import type { AppDeps } from './deps.js';
import { registerMcpRoutes } from './mcp-routes.js';
import { registerOpsRoutes } from './ops-routes.js';
import { sendError } from './reply.js';
import { registerWebhookRoutes } from './webhook-routes.js';
import { registerWellKnownRoutes } from './well-known.js';

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
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500)
    return new GatewayError('INVALID_REQUEST', `Invalid Request: ${err.message}`);
  return new GatewayError('INTERNAL', 'Internal error', { cause: err });
}

/** A whole HTTP/1.1 response carrying a GatewayError, for a socket no request object exists for; the connection closes. */
function rawErrorResponse(err: GatewayError): string {
  const body = JSON.stringify(errorResponse(null, err));
  return `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/**
 * Errors node's HTTP parser raises before there is a request (too slow, headers too
 * large, malformed HTTP, body length mismatch): answered from the error table, then closed.
 */
function clientError(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const ge =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new GatewayError(
          'REQUEST_TIMEOUT',
          'Request Timeout: the request was not received in time (server.headersTimeoutMs, server.requestTimeoutMs)',
        )
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new GatewayError(
            'HEADERS_TOO_LARGE',
            `Request Header Fields Too Large: the request's headers exceed ${maxHeaderSize} bytes`,
          )
        : new GatewayError('INVALID_REQUEST', `Invalid Request: malformed HTTP request (${err.code ?? 'parse error'})`);
  if (socket.writable) socket.end(rawErrorResponse(ge));
  socket.destroySoon();
}

/**
 * At most `max` open connections per client address (0 = no limit): one more
 * is answered 503 (TOO_MANY_CONNECTIONS) and closed. Returns whether a socket
 * was refused, so a request that still arrives on it is refused too.
 */
export function limitConnectionsPerClient(server: Server, max: number): (socket: Socket) => boolean {
  const refused = new WeakSet<Socket>();
  if (max > 0) {
    const open = new Map<string, number>();
    server.prependListener('connection', (socket: Socket) => {
      const who = socket.remoteAddress ?? '';
      const n = open.get(who) ?? 0;
      if (n >= max) {
        refused.add(socket);
        socket.end(rawErrorResponse(tooManyConnections(max)));
        socket.destroySoon();
        return;
      }
      open.set(who, n + 1);
      socket.once('close', () => {
        const left = (open.get(who) ?? 1) - 1;
        if (left <= 0) open.delete(who);
        else open.set(who, left);
      });
    });
  }
  return (socket) => refused.has(socket);
}

function notFound(method: string, url: string): GatewayError {
  return new GatewayError('UPSTREAM_UNKNOWN', `Not found: ${method} ${url.split('?')[0]}`);
}

/** The routes that read a body: an MCP POST (admitted before it is read) and GitHub's webhook. */
function takesBody(method: string, route: string | undefined): 'mcp' | 'webhook' | undefined {
  if (method !== 'POST') return undefined;
  if (route === '/mcp/:upstream') return 'mcp';
  if (route === '/webhooks/github') return 'webhook';
  return undefined;
}

function hasBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function tooManyConnections(max: number): GatewayError {
  return new GatewayError(
    'TOO_MANY_CONNECTIONS',
    `Too many connections: this client address already has ${max} open (server.maxConnectionsPerClient)`,
  );
}

/**
 * Node checks for requests past their header/request deadline every so often
 * (default 30 s); check often enough that a deadline is kept to within a quarter of itself.
 */
function checkInterval(server: GatewayConfig['server']): number {
  return Math.max(25, Math.min(30_000, Math.floor(Math.min(server.headersTimeoutMs, server.requestTimeoutMs) / 4)));
}

/** The gateway's HTTP app, fully wired from `deps`. It never listens: callers do, or use app.inject(). */
export function buildApp(deps: AppDeps): FastifyInstance {
  const server = deps.config.server;
  const app = Fastify({
    loggerInstance: deps.logger,
    // One structured line per MCP exchange is logged by the route instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: server.bodyLimitBytes,
    trustProxy: false,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Slow clients: the headers, and the whole request, must arrive in time (else 408 and the
    // connection closes). Node stops timing a request once it is received, so responses that
    // stay open (SSE streams, held approvals) are not cut.
    requestTimeout: server.requestTimeoutMs,
    keepAliveTimeout: server.keepAliveTimeoutMs,
    http: {
      headersTimeout: server.headersTimeoutMs,
      requestTimeout: server.requestTimeoutMs,
      connectionsCheckingInterval: checkInterval(server),
    },
    clientErrorHandler: clientError,
  });
  const refused = limitConnectionsPerClient(app.server, server.maxConnectionsPerClient);
  // A request already on its way over a refused connection is not served either; nor is a body read for a
  // route that does not exist.
  app.addHook('onRequest', async (req, reply) => {
    if (refused(req.raw.socket))
      return sendError(reply.header('connection', 'close'), tooManyConnections(server.maxConnectionsPerClient));
    if (req.is404) return sendError(reply.header('connection', 'close'), notFound(req.method, req.url));
  });
  // Every body is held whole until its request is answered: the bodies being read stay within one budget
  // (a quarter of it at most for each client address), and webhooks, read before their signature is
  // checked, within a quarter of it of their own. A route that takes no body reads none.
  const share = Math.max(server.bodyLimitBytes, Math.floor(server.maxBufferedBodyBytes / 4));
  const bodies = new BodyBudget(server.maxBufferedBodyBytes, share);
  const hookBodies = new BodyBudget(share, share);
  app.addHook('preParsing', async (req, reply, payload) => {
    const kind = takesBody(req.method, req.routeOptions.url);
    if (kind === undefined) {
      if (!hasBody(req.headers)) return payload;
      reply.header('connection', 'close');
      throw new GatewayError(
        'INVALID_REQUEST',
        `Invalid Request: ${req.method} ${req.url.split('?')[0]} takes no body`,
      );
    }
    // A body of a known length counts whole at once (a longer one is 413 before it is read, so up to the limit).
    const announced = Number(req.headers['content-length'] ?? 0);
    const length =
      req.headers['transfer-encoding'] === undefined && Number.isSafeInteger(announced)
        ? Math.min(announced, server.bodyLimitBytes)
        : undefined;
    const budget = kind === 'webhook' ? hookBodies : bodies;
    return budget.track(payload, reply.raw, req.raw.socket.remoteAddress ?? '', length);
  });
  // Bodies stay raw: the MCP layer parses them so it can answer with JSON-RPC errors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: FastifyError, req, reply) => {
    const ge = fromFrameworkError(err);
    if (ge.code === 'INTERNAL') req.log.error({ err }, 'unhandled error');
    return sendError(reply, ge);
  });
  app.setNotFoundHandler((req, reply) => sendError(reply, notFound(req.method, req.url)));
  registerMcpRoutes(app, deps);
  registerWellKnownRoutes(app, deps);
  registerOpsRoutes(app, deps);
  registerWebhookRoutes(app, deps.webhooks);
  return app;
}
