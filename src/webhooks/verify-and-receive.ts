import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { LRUCache } from 'lru-cache';
import { appendFileDurableSync, writeFileAtomicSync } from '../atomic-file.js';
import { boundedCache } from '../cache.js';
import { MAX_JSON_DEPTH, parseJsonWithin } from '../mcp/json-limits.js';

/**
 * `X-Hub-Signature-256: sha256=<64 hex digits>` over the exact body, compared in
 * constant time. Nothing else is a signature (no trailing bytes, no other
 * algorithm), and an empty secret verifies nothing.
 */
export function verifySignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (secret === '' || header === undefined || !/^sha256=[0-9a-f]{64}$/i.test(header)) return false;
  const given = Buffer.from(header.slice('sha256='.length), 'hex');
  const expected = createHmac('sha256', secret).update(body).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Secret rotation (as @octokit/webhooks' additional secrets): a signature made with
 * any of `secrets` verifies. Every secret is tried, whichever matches, so the time
 * taken does not say which one did; empty secrets verify nothing.
 */
export function verifyWithAnySecret(secrets: readonly string[], body: Buffer, header: string | undefined): boolean {
  let ok = false;
  for (const secret of secrets) ok = verifySignature(secret, body, header) || ok;
  return ok;
}

export function signBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Delivery ids already handled: on disk (one process) or in the shared store (several replicas, src/store/deliveries.ts). */
export interface Deliveries {
  has(id: string): boolean | Promise<boolean>;
  add(id: string): void | Promise<void>;
}

/**
 * Delivery ids already handled (X-GitHub-Delivery), kept on disk so a replay
 * after a restart is still a replay. The same body under a new id is handled
 * again: handlers treat a webhook as a hint and read the truth from GitHub.
 * The newest `max` ids are remembered (the one bounded cache); the file holds at
 * most twice as many lines before it is compacted to those.
 */
export class DeliveryLog implements Deliveries {
  readonly #seen: LRUCache<string, true>;
  readonly #file: string;
  /** Lines in the file now (what compaction is decided on). */
  #lines = 0;

  constructor(
    dir: string,
    private readonly max = 50_000,
  ) {
    this.#seen = boundedCache<string, true>({ max, ttlMs: 0 });
    mkdirSync(dir, { recursive: true });
    this.#file = path.join(dir, 'github-deliveries.log');
    if (existsSync(this.#file))
      for (const id of readFileSync(this.#file, 'utf8').split('\n'))
        if (id) {
          this.#seen.set(id, true);
          this.#lines++;
        }
  }

  has(id: string): boolean {
    return this.#seen.has(id);
  }

  /** Remember a delivery that was handled. */
  add(id: string): void {
    if (this.#seen.has(id)) return;
    this.#seen.set(id, true);
    // Durable before the delivery counts as handled: after a crash, a replay is still a replay.
    appendFileDurableSync(this.#file, `${id}\n`, { mode: 0o600 });
    if (++this.#lines > 2 * this.max) {
      // The ids still remembered, oldest first; rewritten atomically, so a crash never leaves a torn list.
      const keep = [...this.#seen.rkeys()];
      writeFileAtomicSync(this.#file, `${keep.join('\n')}\n`, { mode: 0o600 });
      this.#lines = keep.length;
    }
  }
}

export type WebhookHandler = (payload: Record<string, unknown>, delivery: string) => Promise<void>;

export interface WebhookOutcome {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

/** POST /webhooks/github: verify, dedupe, dispatch by X-GitHub-Event. */
export class GitHubWebhooks {
  readonly #handlers = new Map<string, WebhookHandler[]>();
  readonly #inflight = new Set<string>();
  readonly #secrets: readonly string[];

  /** `secrets`: the webhook secret, or during a rotation the list of secrets accepted (new and old). */
  constructor(
    secrets: string | readonly string[] | undefined,
    private readonly deliveries: Deliveries,
  ) {
    this.#secrets = (typeof secrets === 'string' ? [secrets] : (secrets ?? [])).filter((s) => s !== '');
  }

  on(event: string, handler: WebhookHandler): void {
    (this.#handlers.get(event) ?? this.#handlers.set(event, []).get(event)!).push(handler);
  }

  /**
   * What the headers alone refuse, before the body is read: webhooks not configured, no signature of
   * GitHub's form, no delivery or event. Undefined when the body is worth reading.
   */
  admits(headers: Record<string, string | string[] | undefined>): WebhookOutcome | undefined {
    const h = (n: string) => {
      const v = headers[n];
      return Array.isArray(v) ? v[0] : v;
    };
    if (this.#secrets.length === 0)
      return { status: 404, body: { error: 'webhooks are not configured (no webhook secret)' } };
    if (!/^sha256=[0-9a-f]{64}$/i.test(h('x-hub-signature-256') ?? ''))
      return { status: 401, body: { error: 'bad or missing X-Hub-Signature-256' } };
    const delivery = h('x-github-delivery');
    if (delivery === undefined || h('x-github-event') === undefined)
      return { status: 400, body: { error: 'X-GitHub-Delivery and X-GitHub-Event are required' } };
    if (delivery.length > 200)
      return { status: 400, body: { error: 'X-GitHub-Delivery is longer than 200 characters' } };
    return undefined;
  }

  async receive(
    headers: Record<string, string | string[] | undefined>,
    body: Buffer | undefined,
  ): Promise<WebhookOutcome> {
    const h = (n: string) => {
      const v = headers[n];
      return Array.isArray(v) ? v[0] : v;
    };
    const refused = this.admits(headers);
    if (refused !== undefined) return refused;
    if (body === undefined || !verifyWithAnySecret(this.#secrets, body, h('x-hub-signature-256')))
      return { status: 401, body: { error: 'bad or missing X-Hub-Signature-256' } };
    const delivery = h('x-github-delivery') ?? '';
    const event = h('x-github-event') ?? '';
    if (this.#inflight.has(delivery)) return { status: 200, body: { duplicate: true, delivery } };
    let payload: Record<string, unknown>;
    try {
      payload = parseJsonWithin(body, { maxDepth: MAX_JSON_DEPTH }) as Record<string, unknown>;
    } catch (err) {
      return { status: 400, body: { error: `body is not JSON within bounds: ${(err as Error).message}` } };
    }
    const handlers = this.#handlers.get(event) ?? [];
    this.#inflight.add(delivery);
    try {
      let seen: boolean;
      try {
        seen = await this.deliveries.has(delivery);
      } catch (err) {
        // The shared store cannot say: not handled, so GitHub's redelivery (or the poller) gets it later.
        return { status: 503, body: { error: `delivery log unavailable: ${(err as Error).message}`, delivery } };
      }
      if (seen) return { status: 200, body: { duplicate: true, delivery } };
      for (const handle of handlers) await handle(payload, delivery);
      // Only a delivery that was handled counts as seen: GitHub's redelivery of a failed one gets another try.
      await this.deliveries.add(delivery);
    } catch (err) {
      // Not seen: a redelivery is handled again (the poller catches up meanwhile).
      return { status: 502, body: { error: `handling ${event} failed: ${(err as Error).message}`, delivery } };
    } finally {
      this.#inflight.delete(delivery);
    }
    return { status: 202, body: { delivery, event, handled: handlers.length > 0 } };
  }
}
