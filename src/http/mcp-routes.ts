import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { toGatewayError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import {
  type Admitted,
  admit,
  type GatewayDeps,
  handleDelete,
  handleGet,
  handlePost,
  type McpHttpRequest,
  type McpReply,
} from '../pipeline.js';
import { baseUrlOf } from './base-url.js';
import { sendError, sendMcpReply } from './reply.js';

/** A POST's admission (steps 1–3), done before its body was read, for its handler. */
const admissions = new WeakMap<FastifyRequest, Admitted>();

function toMcpRequest(
  deps: GatewayDeps,
  req: FastifyRequest<{ Params: { upstream: string } }>,
  signal: AbortSignal,
  exchange: Exchange,
): McpHttpRequest {
  const admitted = admissions.get(req);
  return {
    ...(admitted !== undefined ? { admitted } : {}),
    upstream: req.params.upstream,
    headers: req.headers,
    ...(Buffer.isBuffer(req.body) ? { body: req.body } : {}),
    baseUrl: baseUrlOf(deps.config, req),
    signal,
    exchange,
  };
}

/** POST|GET|DELETE /mcp/:upstream — MCP Streamable HTTP toward the client. */
export function registerMcpRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  const handlers = { POST: handlePost, GET: handleGet, DELETE: handleDelete } as const;
  // GET streams never end by themselves: on shutdown they are ended so in-flight POSTs can drain.
  const listeners = new Set<AbortController>();
  app.addHook('preClose', async () => {
    for (const ctl of listeners) ctl.abort();
  });
  /** A refusal or failure, answered with its record (nothing is answered without it), counted and logged. */
  const refuse = async (
    req: FastifyRequest<{ Params: { upstream: string } }>,
    reply: FastifyReply,
    ex: Exchange,
    method: string,
    e: unknown,
  ): Promise<FastifyReply> => {
    let err = toGatewayError(e);
    if (err.code === 'INTERNAL') req.log.error({ err: e }, 'internal error');
    const id = ex.rpcId ?? (typeof err.data?.id === 'string' || typeof err.data?.id === 'number' ? err.data.id : null);
    // Nothing is answered without its record; if the record cannot be written, say so instead.
    if (err.code !== 'AUDIT_UNAVAILABLE')
      err = await ex.failed(err, id).then(
        () => err,
        (fail: unknown) => toGatewayError(fail),
      );
    const outcome = err.code.toLowerCase();
    count(deps, req.params.upstream, ex.method ?? method, outcome);
    logExchange(req, ex, outcome);
    return sendError(reply, err, id);
  };
  for (const method of ['POST', 'GET', 'DELETE'] as const) {
    app.route<{ Params: { upstream: string } }>({
      method,
      url: '/mcp/:upstream',
      // A POST's body is read only once its caller is admitted (a known upstream, an allowed origin, a valid
      // token): nobody without a token makes the gateway hold a body. The refusal closes the connection, so
      // the body is never read. The handler goes on with who was admitted.
      ...(method === 'POST'
        ? {
            onRequest: async (req: FastifyRequest<{ Params: { upstream: string } }>, reply: FastifyReply) => {
              try {
                deps.audit.assertWritable();
                const admitted = await admit(deps, {
                  upstream: req.params.upstream,
                  headers: req.headers,
                  baseUrl: baseUrlOf(deps.config, req),
                });
                admissions.set(req, admitted);
              } catch (e) {
                reply.header('connection', 'close');
                return refuse(req, reply, deps.audit.begin(randomUUID()), method, e);
              }
            },
          }
        : {}),
      handler: async (req, reply) => {
        const ctl = new AbortController();
        if (method === 'GET') listeners.add(ctl);
        reply.raw.once('close', () => {
          listeners.delete(ctl);
          if (!reply.raw.writableFinished) ctl.abort();
        });
        let out: McpReply;
        const requestId = randomUUID();
        // POSTs and GET streams are decided exchanges with records; DELETE is a session event (session.close),
        // and a refused DELETE (someone else's session, no valid token) is on the record like a refused POST.
        const ex = deps.audit.begin(requestId);
        try {
          out = await handlers[method](deps, toMcpRequest(deps, req, ctl.signal, ex));
        } catch (e) {
          return refuse(req, reply, ex, method, e);
        }
        count(deps, req.params.upstream, ex.method ?? method, 'ok');
        logExchange(req, ex, 'ok');
        await sendMcpReply(reply, out, ex.rpcId ?? null, ctl.signal, deps.clock);
        return reply;
      },
    });
  }
}

/** JSON-RPC methods of MCP (and the HTTP verbs of bodiless exchanges) that may be metric label values. */
const METRIC_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'POST',
  'DELETE',
  'response',
  'initialize',
  'ping',
  'server/discover',
  'tools/list',
  'tools/call',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'logging/setLevel',
  'completion/complete',
  'tasks/get',
  'tasks/list',
  'tasks/result',
  'tasks/cancel',
  'tasks/update',
  'notifications/initialized',
  'notifications/cancelled',
  'notifications/progress',
  'notifications/roots/list_changed',
]);

function count(deps: GatewayDeps, upstream: string, method: string, outcome: string): void {
  // Only configured upstreams and known methods become label values: a client's
  // made-up names must not grow the label set (a new series each) without bound.
  const u = deps.upstreams.get(upstream) === undefined ? '(unknown)' : upstream;
  deps.metrics.requests.inc({ upstream: u, method: METRIC_METHODS.has(method) ? method : '(other)', outcome });
}

function logExchange(req: FastifyRequest, ex: Exchange, outcome: string): void {
  const decided = ex.decision;
  req.log.info(
    {
      sub: ex.identity?.sub,
      method: ex.method,
      tool: ex.tool,
      outcome,
      allow: decided?.decision.allow,
      reasons: decided?.decision.reasons,
      policy: decided ? (decided.revision.commit ?? decided.revision.bundleDigest.slice(0, 12)) : undefined,
      ms: Number(process.hrtime.bigint() - ex.started) / 1e6,
    },
    'mcp exchange',
  );
}
