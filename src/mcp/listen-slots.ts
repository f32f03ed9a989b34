import type { UpstreamConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import type { JsonRpcMessage } from './jsonrpc.js';

/**
 * The 2026-07-28 `subscriptions/listen` streams open on one upstream: the stateless era's GET stream,
 * held open (no idle timeout) for as long as the caller stays. Each holds a connection to gitgate and,
 * to an upstream that speaks 2026-07-28, an upstream socket; so they are capped like the sessions
 * whose streams they replace: `maxSessionsPerCaller` per caller, `maxSessions` per upstream.
 */
export class ListenSlots {
  readonly #byOwner = new Map<string, number>();
  #total = 0;

  constructor(private readonly cfg: Pick<UpstreamConfig, 'name' | 'maxSessions' | 'maxSessionsPerCaller'>) {}

  /** `messages`, holding one of `owner`'s slots from its first message until it ends (refused when none is free). */
  async *hold(owner: string, messages: AsyncIterable<JsonRpcMessage>): AsyncGenerator<JsonRpcMessage> {
    const mine = this.#byOwner.get(owner) ?? 0;
    if (mine >= this.cfg.maxSessionsPerCaller)
      throw new GatewayError(
        'SESSION_QUOTA',
        `caller ${owner} already holds ${this.cfg.maxSessionsPerCaller} subscriptions/listen streams on upstream ${this.cfg.name} (upstreams.${this.cfg.name}.maxSessionsPerCaller); close one first`,
        { data: { quota: 'maxSessionsPerCaller', limit: this.cfg.maxSessionsPerCaller } },
      );
    if (this.#total >= this.cfg.maxSessions)
      throw new GatewayError(
        'SESSION_LIMIT',
        `upstream ${this.cfg.name} already has ${this.cfg.maxSessions} subscriptions/listen streams; retry later`,
        { headers: { 'retry-after': '5' } },
      );
    this.#byOwner.set(owner, mine + 1);
    this.#total++;
    try {
      yield* messages;
    } finally {
      this.#total--;
      const n = (this.#byOwner.get(owner) ?? 1) - 1;
      if (n <= 0) this.#byOwner.delete(owner);
      else this.#byOwner.set(owner, n);
    }
  }
}
