import type { StaticSecret } from '../../config/types.js';
import { GatewayError } from '../../errors.js';
import { sentSecrets, upstreamDetail } from '../../masking/scrub.js';
import {
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
} from '../jsonrpc.js';
import { stripEnvelope, toModernResult, UPSTREAM_PROTOCOL_VERSION } from '../protocol.js';
import type { UpstreamAuth, UpstreamConnector, UpstreamSession } from './types.js';

export interface InitializeResult {
  readonly protocolVersion: string;
  readonly capabilities: Record<string, unknown>;
  readonly serverInfo?: Record<string, unknown>;
  readonly instructions?: string;
}

const RESTART_BACKOFF_MS = [0, 250, 1000, 5000, 15000];
/** Server requests refused on one stateless response stream before the stream is a protocol error. */
const MAX_REFUSED_REQUESTS = 16;

/**
 * The upstream session gitgate holds itself to serve stateless (2026-07-28)
 * requests: opened and initialized by the gateway, shared by all callers, with
 * request ids and progress tokens rewritten so callers cannot collide.
 * It reopens after the upstream dies, with backoff.
 */
export class SharedUpstreamSession {
  #current: Promise<{ session: UpstreamSession; init: InitializeResult }> | undefined;
  #seq = 0;
  #failures = 0;
  #lastFailure = 0;
  /** gateway id → who sent it and with which id, for cancellation. */
  readonly #inflight = new Map<string, { owner: string; id: JsonRpcId }>();

  constructor(
    private readonly connector: UpstreamConnector,
    private readonly clientInfo: { name: string; version: string },
    /** Credentials for gitgate's own calls (initialize, cancellation, refusals), as subject gitgate. */
    private readonly ownAuth: (method: string) => UpstreamAuth = () => ({ headers: {} }),
    /** The upstream's static secret, scrubbed (with the credential sent) from the refusals it copies into errors. */
    private readonly upstream: { readonly secret?: StaticSecret } = {},
  ) {}

  async ready(): Promise<{ session: UpstreamSession; init: InitializeResult }> {
    if (this.#current !== undefined) {
      const cur = await this.#current.catch(() => undefined);
      if (cur !== undefined && !cur.session.closed) return cur;
      this.#current = undefined;
    }
    const wait = RESTART_BACKOFF_MS[Math.min(this.#failures, RESTART_BACKOFF_MS.length - 1)]!;
    if (Date.now() - this.#lastFailure < wait) {
      throw new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${this.connector.name} is restarting; retry shortly`, {
        headers: { 'retry-after': String(Math.ceil(wait / 1000)) },
      });
    }
    this.#current = this.#open();
    return this.#current.then(
      (v) => {
        this.#failures = 0;
        return v;
      },
      (err: unknown) => {
        this.#failures++;
        this.#lastFailure = Date.now();
        this.#current = undefined;
        throw err;
      },
    );
  }

  async #open(): Promise<{ session: UpstreamSession; init: InitializeResult }> {
    const session = await this.connector.open();
    const init: JsonRpcRequest = {
      jsonrpc: '2.0',
      id: `gitgate-init-${++this.#seq}`,
      method: 'initialize',
      params: { protocolVersion: UPSTREAM_PROTOCOL_VERSION, capabilities: {}, clientInfo: this.clientInfo },
    };
    let result: InitializeResult | undefined;
    const auth = this.ownAuth('initialize');
    for await (const m of session.request(init, { auth })) {
      if (isResponse(m) && m.id === init.id) {
        if (m.error !== undefined) {
          await session.close();
          throw new GatewayError(
            'UPSTREAM_PROTOCOL',
            `upstream ${this.connector.name} refused initialize: ${upstreamDetail(m.error.message, sentSecrets(this.upstream, auth), 200)}`,
          );
        }
        result = m.result as InitializeResult;
      }
    }
    if (result === undefined)
      throw new GatewayError('UPSTREAM_PROTOCOL', `upstream ${this.connector.name} did not answer initialize`);
    await session.send(
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      this.ownAuth('notifications/initialized'),
    );
    return { session, init: result };
  }

  /** Forward one stateless request; yields its progress and its response, with the caller's ids restored. */
  async *request(
    msg: JsonRpcRequest,
    owner: string,
    opts: { signal?: AbortSignal; auth?: UpstreamAuth } = {},
  ): AsyncGenerator<JsonRpcMessage> {
    const { session, init } = await this.ready();
    const gid = `gitgate-${++this.#seq}`;
    const params = stripEnvelope(msg.params);
    const meta = params?._meta as Record<string, unknown> | undefined;
    const token = meta?.progressToken;
    const gtoken = token === undefined ? undefined : `${gid}-progress`;
    const forwarded: JsonRpcRequest = {
      jsonrpc: '2.0',
      id: gid,
      method: msg.method,
      ...(params !== undefined
        ? { params: gtoken === undefined ? params : { ...params, _meta: { ...meta, progressToken: gtoken } } }
        : {}),
    };
    this.#inflight.set(gid, { owner, id: msg.id });
    let refused = 0;
    try {
      for await (const m of session.request(forwarded, opts)) {
        if (isResponse(m)) {
          yield m.result === undefined
            ? { ...m, id: msg.id }
            : { ...m, id: msg.id, result: toModernResult(msg.method, m.result, init.serverInfo) };
        } else if (isNotification(m) && m.method === 'notifications/progress' && m.params?.progressToken === gtoken) {
          yield { ...m, params: { ...m.params, progressToken: token } };
        } else if (isRequest(m)) {
          // 2026-07-28 servers may not send requests on a response stream; refuse so the upstream is not left waiting.
          // Each refusal is a signed credential and a request: past a few, the stream is a protocol error, not work.
          if (++refused > MAX_REFUSED_REQUESTS) {
            throw new GatewayError(
              'UPSTREAM_PROTOCOL',
              `upstream ${this.connector.name} sent more than ${MAX_REFUSED_REQUESTS} requests on a stateless response stream`,
            );
          }
          await session.send(
            {
              jsonrpc: '2.0',
              id: m.id,
              error: { code: -32601, message: `${m.method} is not available to a stateless client` },
            },
            this.ownAuth('response'),
          );
        }
      }
    } finally {
      this.#inflight.delete(gid);
    }
  }

  /** Whether `owner` has a request with this id in flight (what its cancellation may name). */
  hasInFlight(owner: string, id: unknown): boolean {
    for (const req of this.#inflight.values()) if (req.owner === owner && req.id === id) return true;
    return false;
  }

  /** Relay a stateless notification; only cancellation of an in-flight request is meaningful. */
  async notify(owner: string, method: string, params: Record<string, unknown> | undefined): Promise<void> {
    if (method !== 'notifications/cancelled') return;
    const target = params?.requestId;
    for (const [gid, req] of this.#inflight) {
      if (req.owner === owner && req.id === target) {
        const { session } = await this.ready();
        await session.send({ jsonrpc: '2.0', method, params: { ...params, requestId: gid } }, this.ownAuth(method));
      }
    }
  }

  async close(): Promise<void> {
    const cur = await this.#current?.catch(() => undefined);
    this.#current = undefined;
    await cur?.session.close(this.ownAuth('session/close'));
  }
}
