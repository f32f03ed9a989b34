import type { JsonRpcMessage, JsonRpcNotification, JsonRpcRequest, JsonRpcResponse } from '../jsonrpc.js';

/** Credentials for one upstream call: HTTP headers, and/or `_meta` entries (stdio). */
export interface UpstreamAuth {
  readonly headers: Readonly<Record<string, string>>;
  readonly meta?: Readonly<Record<string, string>>;
}

export interface RequestOptions {
  readonly signal?: AbortSignal;
  readonly auth?: UpstreamAuth;
  /**
   * The decision's masking for free text: applied to upstream bytes that become part
   * of an error message (after the transport scrubbed the secrets it sent).
   */
  readonly maskText?: (text: string) => string;
  /** Extra HTTP headers for this request (a 2026-07-28 request's MCP-Protocol-Version, Mcp-Method, Mcp-Name). */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * The answer is a stream that may stay quiet for long and ends without a response
   * (2026-07-28 `subscriptions/listen`): no message deadline, no idle timeout once it is open.
   */
  readonly listen?: boolean;
  /**
   * Whose request this is, on a session that carries several callers' requests (the shared session
   * of 2026-07-28 callers): a server request the transport cannot tie to one request (stdio has no
   * related-request id) is given to a request only when every request in flight is the same caller's.
   */
  readonly owner?: string;
}

/** The HTTP status an upstream answered a JSON-RPC error with (2026-07-28 maps errors to 4xx), by message. */
export const answeredStatus = new WeakMap<object, number>();

/**
 * One MCP session with an upstream server (2025 session protocol).
 * Adapters: Streamable HTTP (http.ts) and stdio (stdio.ts); in-memory fakes in tests.
 */
export interface UpstreamSession {
  /** Send a request; yields the server messages tied to it (progress, sampling, …), ending with its response. */
  request(msg: JsonRpcRequest, opts?: RequestOptions): AsyncIterable<JsonRpcMessage>;
  /** Relay a notification or a response (e.g. to a sampling request) to the server. */
  send(msg: JsonRpcNotification | JsonRpcResponse, auth?: UpstreamAuth): Promise<void>;
  /** Server messages not tied to a request (the GET stream); undefined when the upstream has none. */
  listen(signal: AbortSignal, auth?: UpstreamAuth): Promise<AsyncIterable<JsonRpcMessage> | undefined>;
  close(auth?: UpstreamAuth): Promise<void>;
  readonly closed: boolean;
  /** The upstream's own Mcp-Session-Id (HTTP), once initialize gave one: what another replica resumes it by. */
  readonly upstreamId?: string | undefined;
}

export interface UpstreamConnector {
  readonly name: string;
  readonly transport: 'http' | 'stdio';
  /** A fresh session; the caller sends `initialize` through it first. */
  open(): Promise<UpstreamSession>;
  /** HTTP only: continue a session the upstream already knows (opened through another replica), without initialize. */
  resume?(upstreamId: string, protocolVersion: string): UpstreamSession;
  /** Stop everything this connector started. */
  shutdown(): Promise<void>;
}
