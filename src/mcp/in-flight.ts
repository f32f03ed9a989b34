import { boundedCache } from '../cache.js';
import type { JsonRpcId, JsonRpcRequest } from './jsonrpc.js';

/** At most this many server requests wait for the client's answer per session; older ones are forgotten. */
export const MAX_PENDING_SERVER_REQUESTS = 256;

/** A server-to-client request the caller was shown and may answer once. */
export interface PendingServerRequest {
  readonly method: string;
  readonly progressToken?: string | number;
}

/**
 * What is in flight on one session, both ways: the caller's requests the
 * upstream has not answered yet (what a `notifications/cancelled` may name),
 * and the upstream's requests the caller has been shown and not answered yet
 * (what a client response may answer, and whose progress token a client
 * `notifications/progress` may carry). Anything else a client sends as a
 * notification or response answers nothing, and is refused.
 */
export class InFlight {
  readonly #requests = new Map<JsonRpcId, number>();
  /** The oldest shown is forgotten past MAX_PENDING_SERVER_REQUESTS; none expires with time. */
  readonly #server = boundedCache<JsonRpcId, PendingServerRequest>({ max: MAX_PENDING_SERVER_REQUESTS, ttlMs: 0 });

  /** The caller's request `id` is on its way to the upstream until the returned function is called. */
  begin(id: JsonRpcId): () => void {
    this.#requests.set(id, (this.#requests.get(id) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = (this.#requests.get(id) ?? 1) - 1;
      if (n <= 0) this.#requests.delete(id);
      else this.#requests.set(id, n);
    };
  }

  hasRequest(id: unknown): boolean {
    return (typeof id === 'string' || typeof id === 'number') && this.#requests.has(id);
  }

  /** The upstream's request `m` was relayed to the caller. */
  shown(m: JsonRpcRequest): void {
    const token = (m.params?._meta as { progressToken?: unknown } | undefined)?.progressToken;
    this.#server.set(m.id, {
      method: m.method,
      ...(typeof token === 'string' || typeof token === 'number' ? { progressToken: token } : {}),
    });
  }

  /** The upstream request the caller's response with this id answers, if any. */
  serverRequest(id: JsonRpcId | null): PendingServerRequest | undefined {
    return id === null ? undefined : this.#server.peek(id);
  }

  /** The answer to server request `id` went to the upstream: it cannot be answered again. */
  answered(id: JsonRpcId): void {
    this.#server.delete(id);
  }

  /** Whether a pending server request carries this progress token. */
  hasProgressToken(token: unknown): boolean {
    if (typeof token !== 'string' && typeof token !== 'number') return false;
    for (const r of this.#server.values()) if (r.progressToken === token) return true;
    return false;
  }
}
