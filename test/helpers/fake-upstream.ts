import type { UpstreamConfig } from '../../src/config/types.js';
import type {
  JsonRpcId,
  JsonRpcMessage,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
} from '../../src/mcp/jsonrpc.js';
import type { UpstreamConnector, UpstreamSession } from '../../src/mcp/upstream/types.js';

/** The answer the in-memory upstreams give `initialize`. */
export function initializeAnswer(id: JsonRpcId, serverName = 'fake'): JsonRpcMessage {
  return {
    jsonrpc: '2.0',
    id,
    result: {
      protocolVersion: '2025-11-25',
      capabilities: { tools: {} },
      serverInfo: { name: serverName, version: '1' },
    },
  };
}

/** What one session of a scripted upstream does; `initialize` and `closed` are the helper's. */
export interface ScriptedSession {
  /** Runs for every request as it arrives, `initialize` included. */
  arrived?(msg: JsonRpcRequest): void;
  /** The messages of every request but `initialize`, ending with its response. */
  answer(msg: JsonRpcRequest): AsyncIterable<JsonRpcMessage>;
  send?(msg: JsonRpcNotification | JsonRpcResponse): Promise<void>;
  listen?(signal: AbortSignal): Promise<AsyncIterable<JsonRpcMessage> | undefined>;
}

/**
 * An in-memory MCP upstream whose sessions each run a fresh `script()` (so it may keep per-session state):
 * `initialize` is answered as a tiny server does, `close` marks the session closed.
 */
export function scriptedUpstream(
  name: string,
  script: () => ScriptedSession,
  opts: { transport?: 'http' | 'stdio'; serverName?: string } = {},
): UpstreamConnector {
  return {
    name,
    transport: opts.transport ?? 'http',
    async open(): Promise<UpstreamSession> {
      const s = script();
      let closed = false;
      return {
        get closed() {
          return closed;
        },
        async *request(msg) {
          s.arrived?.(msg);
          if (msg.method === 'initialize') yield initializeAnswer(msg.id, opts.serverName);
          else yield* s.answer(msg);
        },
        send: (msg) => s.send?.(msg) ?? Promise.resolve(),
        listen: (signal) => s.listen?.(signal) ?? Promise.resolve(undefined),
        async close() {
          closed = true;
        },
      };
    },
    shutdown: async () => undefined,
  };
}

/**
 * An in-memory MCP upstream: answers like a tiny server and records every request it receives;
 * `onRequest` runs when each request arrives, before it is answered; `onSend` when a client
 * notification or response arrives.
 */
export function fakeUpstream(
  cfg: Pick<UpstreamConfig, 'name'>,
  received: JsonRpcRequest[],
  onRequest: (msg: JsonRpcRequest) => void = () => undefined,
  onSend: (msg: JsonRpcMessage) => void = () => undefined,
): UpstreamConnector {
  return scriptedUpstream(cfg.name, () => ({
    arrived(msg) {
      onRequest(msg);
      received.push(msg);
    },
    async *answer(msg) {
      if (msg.method === 'tools/call' && msg.params?.name === 'progress') {
        yield { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } };
      }
      if (msg.method === 'tools/list') {
        yield { jsonrpc: '2.0', id: msg.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } };
      } else if (msg.method === 'tools/call') {
        yield {
          jsonrpc: '2.0',
          id: msg.id,
          result: { content: [{ type: 'text', text: `called ${String(msg.params?.name)}` }] },
        };
      } else yield { jsonrpc: '2.0', id: msg.id, result: {} };
    },
    send: async (msg) => onSend(msg),
  }));
}
