import type { UpstreamConfig } from '../../src/config/types.js';
import type { JsonRpcMessage, JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import type { UpstreamConnector, UpstreamSession } from '../../src/mcp/upstream/types.js';

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
  const answer = (msg: JsonRpcRequest): JsonRpcMessage => {
    switch (msg.method) {
      case 'initialize':
        return {
          jsonrpc: '2.0',
          id: msg.id,
          result: {
            protocolVersion: '2025-11-25',
            capabilities: { tools: {} },
            serverInfo: { name: 'fake', version: '1' },
          },
        };
      case 'tools/list':
        return { jsonrpc: '2.0', id: msg.id, result: { tools: [{ name: 'echo', inputSchema: { type: 'object' } }] } };
      case 'tools/call':
        return {
          jsonrpc: '2.0',
          id: msg.id,
          result: { content: [{ type: 'text', text: `called ${String(msg.params?.name)}` }] },
        };
      default:
        return { jsonrpc: '2.0', id: msg.id, result: {} };
    }
  };
  return {
    name: cfg.name,
    transport: 'http',
    async open(): Promise<UpstreamSession> {
      let closed = false;
      return {
        get closed() {
          return closed;
        },
        async *request(msg) {
          onRequest(msg);
          received.push(msg);
          if (msg.method === 'tools/call' && msg.params?.name === 'progress') {
            yield { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 1, progress: 1 } };
          }
          yield answer(msg);
        },
        send: async (msg) => onSend(msg),
        listen: async () => undefined,
        async close() {
          closed = true;
        },
      };
    },
    shutdown: async () => undefined,
  };
}
