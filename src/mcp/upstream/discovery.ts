import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../../cache.js';
import { type Clock, systemClock } from '../../clock.js';
import { GatewayError } from '../../errors.js';
import { isResponse, type JsonRpcRequest } from '../jsonrpc.js';
import { META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_PROTOCOL_VERSION, MODERN_VERSION } from '../protocol.js';
import type { UpstreamAuth, UpstreamConnector } from './types.js';

/** What an upstream speaks: 2026-07-28 (each request forwarded as itself) or only the session revisions. */
export type UpstreamEra = 'modern' | 'legacy';

/** How long an era learned from the upstream holds before it is asked again (an upgrade shows within this). */
const ERA_TTL_MS = 5 * 60_000;

/**
 * Step (2026-07-28 callers): does this upstream speak 2026-07-28? Asked once with gitgate's own
 * `server/discover` (no caller's capabilities, gitgate's own credential), then remembered for a while.
 * A result listing 2026-07-28 makes it modern; a JSON-RPC error or an HTTP 4xx answer (a session-era
 * server refusing a request without a session) makes it legacy. stdio upstreams are session-era here.
 * A failure that says nothing about the upstream (unreachable, timeout, 5xx) is not remembered and
 * fails the request (fail closed: no fall-back that would hide what the upstream offers 2026 callers).
 */
export class EraDiscovery {
  /** The era learned, for ERA_TTL_MS on the clock (one entry: this upstream's). */
  readonly #known: LRUCache<'era', UpstreamEra>;
  #asking: Promise<UpstreamEra> | undefined;
  #seq = 0;

  constructor(
    private readonly connector: UpstreamConnector,
    private readonly clientInfo: { name: string; version: string },
    private readonly ownAuth: (method: string) => UpstreamAuth,
    clock: Clock = systemClock,
  ) {
    this.#known = boundedCache<'era', UpstreamEra>({ max: 1, ttlMs: ERA_TTL_MS, clock });
  }

  async era(): Promise<UpstreamEra> {
    if (this.connector.transport !== 'http') return 'legacy';
    const known = this.#known.get('era');
    if (known !== undefined) return known;
    this.#asking ??= this.#ask().finally(() => {
      this.#asking = undefined;
    });
    return this.#asking;
  }

  /**
   * Ask now, whatever is remembered (the readiness probe: a real exchange), and remember the answer.
   * `signal` gives the question up. stdio upstreams are not asked.
   */
  async probe(signal?: AbortSignal): Promise<UpstreamEra> {
    if (this.connector.transport !== 'http') return 'legacy';
    return this.#ask(signal);
  }

  async #ask(signal?: AbortSignal): Promise<UpstreamEra> {
    const msg: JsonRpcRequest = {
      jsonrpc: '2.0',
      id: `gitgate-discover-${++this.#seq}`,
      method: 'server/discover',
      params: {
        _meta: {
          [META_PROTOCOL_VERSION]: MODERN_VERSION,
          [META_CLIENT_CAPABILITIES]: {},
          [META_CLIENT_INFO]: this.clientInfo,
        },
      },
    };
    const session = await this.connector.open();
    let era: UpstreamEra = 'legacy';
    try {
      for await (const m of session.request(msg, {
        auth: this.ownAuth('server/discover'),
        ...(signal !== undefined ? { signal } : {}),
        headers: { 'mcp-protocol-version': MODERN_VERSION, 'mcp-method': 'server/discover' },
      })) {
        if (!isResponse(m) || m.id !== msg.id) continue;
        const versions = (m.result as { supportedVersions?: unknown } | undefined)?.supportedVersions;
        era = Array.isArray(versions) && versions.includes(MODERN_VERSION) ? 'modern' : 'legacy';
        break;
      }
    } catch (err) {
      const status = (err instanceof GatewayError ? (err.cause as { httpStatus?: unknown } | undefined) : undefined)
        ?.httpStatus;
      if (!(typeof status === 'number' && status >= 400 && status < 500)) throw err;
      era = 'legacy';
    } finally {
      await session.close();
    }
    this.#known.set('era', era);
    return era;
  }
}
