import { once } from 'node:events';
import type { FastifyReply } from 'fastify';
import { type Clock, systemClock } from '../clock.js';
import { type GatewayError, toGatewayError } from '../errors.js';
import { errorResponse, type JsonRpcId, type JsonRpcMessage } from '../mcp/jsonrpc.js';
import type { ReplayStream } from '../mcp/replay.js';
import { encodeSse } from '../mcp/sse.js';
import type { McpReply } from '../pipeline.js';

const KEEPALIVE_MS = 15_000;

/** The one place a GatewayError becomes an HTTP response: status and headers from the error table, JSON-RPC body. */
export function sendError(reply: FastifyReply, err: GatewayError, id: JsonRpcId | null = null): FastifyReply {
  return reply
    .code(err.status)
    .headers(err.headers ?? {})
    .type('application/json')
    .send(errorResponse(id, err));
}

/** Write an McpReply. Streams are written raw so each event leaves as soon as it exists. */
export async function sendMcpReply(
  reply: FastifyReply,
  out: McpReply,
  requestId: JsonRpcId | null,
  signal?: AbortSignal,
  clock: Clock = systemClock,
): Promise<void> {
  switch (out.kind) {
    case 'accepted':
      await reply.code(202).send();
      return;
    case 'empty':
      await reply.code(out.status).send();
      return;
    case 'json':
      await reply
        .code(out.status ?? 200)
        .headers(out.headers)
        .type('application/json')
        .send(out.body);
      return;
    case 'stream':
      await writeStream(reply, out.headers, out.messages, requestId, signal, clock, out.replay);
      return;
  }
}

async function writeStream(
  reply: FastifyReply,
  headers: Record<string, string>,
  messages: AsyncIterable<JsonRpcMessage>,
  requestId: JsonRpcId | null,
  signal: AbortSignal | undefined,
  clock: Clock,
  replay?: ReplayStream,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    ...headers,
  });
  raw.flushHeaders();
  const keepalive = clock.every(KEEPALIVE_MS, () => raw.write(': keepalive\n\n'));
  const it = messages[Symbol.asyncIterator]();
  // Ends when the client goes away, or (GET streams at shutdown) when the route aborts.
  const closed = new Promise<void>((resolve) => {
    raw.once('close', resolve);
    signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  try {
    for (;;) {
      const r = await Promise.race([it.next(), closed.then(() => undefined)]);
      if (r === undefined || r.done) break;
      if (!raw.write(encodeSse(r.value, replay?.record(r.value)))) await Promise.race([once(raw, 'drain'), closed]);
    }
  } catch (err) {
    // The stream is committed: the error travels as the request's JSON-RPC answer.
    if (requestId !== null && !raw.destroyed) {
      const answer = errorResponse(requestId, toGatewayError(err));
      raw.write(encodeSse(answer, replay?.record(answer)));
    }
  } finally {
    keepalive.cancel();
    void it.return?.();
    if (!raw.destroyed) raw.end();
  }
}
