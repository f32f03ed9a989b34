import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { disabledAuditor, type ExchangeAudit } from '../audit/auditor.js';
import { toGatewayError } from '../errors.js';
import {
  type ExchangeNote,
  type GatewayDeps,
  handleDelete,
  handleGet,
  handlePost,
  type McpHttpRequest,
  type McpReply,
} from '../pipeline.js';
import { sendError, sendMcpReply } from './reply.js';

const NO_AUDIT = disabledAuditor.begin('none');

import { baseUrlOf } from './base-url.js';

function toMcpRequest(
  deps: GatewayDeps,
  req: FastifyRequest<{ Params: { upstream: string } }>,
  signal: AbortSignal,
  audit: ExchangeAudit,
  requestId: string,
): McpHttpRequest {
  return {
    upstream: req.params.upstream,
    headers: req.headers,
    ...(Buffer.isBuffer(req.body) ? { body: req.body } : {}),
    baseUrl: baseUrlOf(deps.config, req),
    signal,
    requestId,
    audit,
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
  for (const method of ['POST', 'GET', 'DELETE'] as const) {
    app.route<{ Params: { upstream: string } }>({
      method,
      url: '/mcp/:upstream',
      handler: async (req, reply) => {
        const started = process.hrtime.bigint();
        const ctl = new AbortController();
        if (method === 'GET') listeners.add(ctl);
        reply.raw.once('close', () => {
          listeners.delete(ctl);
          if (!reply.raw.writableFinished) ctl.abort();
        });
        const note: ExchangeNote = {};
        let outcome = 'ok';
        let out: McpReply;
        const requestId = randomUUID();
        // POSTs and GET streams are decided exchanges with records; DELETE is a session event (session.close).
        const audit = method === 'DELETE' ? NO_AUDIT : deps.audit.begin(requestId);
        try {
          out = await handlers[method](deps, toMcpRequest(deps, req, ctl.signal, audit, requestId), note);
        } catch (e) {
          let err = toGatewayError(e);
          if (err.code === 'INTERNAL') req.log.error({ err: e }, 'internal error');
          const id =
            note.rpcId ?? (typeof err.data?.id === 'string' || typeof err.data?.id === 'number' ? err.data.id : null);
          // Nothing is answered without its record; if the record cannot be written, say so instead.
          if (err.code !== 'AUDIT_UNAVAILABLE')
            err = await audit.failed(err, id).then(
              () => err,
              (fail: unknown) => toGatewayError(fail),
            );
          outcome = err.code.toLowerCase();
          return sendError(reply, err, id);
        } finally {
          count(deps, req.params.upstream, note.method ?? method, outcome);
          logExchange(req, note, outcome, started);
        }
        await sendMcpReply(reply, out, note.rpcId ?? null, ctl.signal, deps.clock);
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

function logExchange(req: FastifyRequest, note: ExchangeNote, outcome: string, started: bigint): void {
  req.log.info(
    {
      sub: note.identity?.sub,
      method: note.method,
      tool: note.tool,
      outcome,
      allow: note.decision?.decision.allow,
      reasons: note.decision?.decision.reasons,
      policy: note.decision
        ? (note.decision.revision.commit ?? note.decision.revision.bundleDigest.slice(0, 12))
        : undefined,
      ms: Number(process.hrtime.bigint() - started) / 1e6,
    },
    'mcp exchange',
  );
}
