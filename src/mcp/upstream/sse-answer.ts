import type http from 'node:http';
import { GatewayError } from '../../errors.js';
import { isResponse, type JsonRpcMessage, type JsonRpcRequest } from '../jsonrpc.js';
import { type SseEvent, SseParser } from '../sse.js';
import type { HttpConnector, MessageDeadline } from './http.js';
import type { HttpSession } from './http-session.js';
import type { RequestOptions } from './types.js';
import { parseUpstreamMessages } from './upstream-json.js';

/**
 * Times one request's SSE response may be resumed (GET + Last-Event-ID) after the upstream closed it
 * before the answer; each resume must follow an event id the previous connection had not sent.
 */
const MAX_RESUMES = 16;

/**
 * One request's answer as an SSE stream: its messages until the response to `id` (or, listening,
 * until the stream ends). Closed before the answer after events with ids, it is resumed from the
 * last id, at most MAX_RESUMES times. The unfinished event counts against the upstream's in-flight
 * budget, like a JSON body.
 */
export class SseAnswer {
  readonly #connector: HttpConnector;
  readonly #session: HttpSession;
  readonly #id: JsonRpcRequest['id'];
  readonly #opts: RequestOptions;
  readonly #deadline: MessageDeadline;
  /** A listening stream (2026-07-28 `subscriptions/listen`) ends without a response, and is not resumed. */
  readonly #listening: boolean;
  /** The connection read now: the first response, then the latest resumed one. */
  #res: http.IncomingMessage;
  #parser: SseParser;
  #chunks: AsyncIterator<Buffer>;
  /** The response arrived (or a listening stream ended): the connection may drain back to the pool. */
  #answered = false;
  /** Bytes of the unfinished event reserved in the budget. */
  #held = 0;
  /** The last event id seen, and the one the current connection resumed from. */
  #lastId: string | undefined;
  #resumedAt: string | undefined;
  #resumes = 0;

  constructor(
    connector: HttpConnector,
    session: HttpSession,
    res: http.IncomingMessage,
    id: JsonRpcRequest['id'],
    opts: RequestOptions,
    deadline: MessageDeadline,
    listening: boolean,
  ) {
    this.#connector = connector;
    this.#session = session;
    this.#id = id;
    this.#opts = opts;
    this.#deadline = deadline;
    this.#listening = listening;
    this.#res = res;
    this.#parser = new SseParser(connector.sseLimits);
    this.#chunks = (res as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  async *messages(): AsyncGenerator<JsonRpcMessage> {
    try {
      for (;;) {
        let r: IteratorResult<Buffer>;
        try {
          r = await this.#chunks.next();
        } catch (err) {
          throw this.#connector.bodyError(this.#res, err);
        }
        if (r.done) {
          if (await this.#resume()) continue;
          break;
        }
        for (const ev of this.#events(r.value)) {
          if (ev.id !== undefined) this.#lastId = ev.id;
          if (ev.event !== 'message' || ev.data === '') continue;
          for (const m of parseUpstreamMessages(this.#connector.source, ev.data)) {
            if (isResponse(m) && m.id === this.#id) this.#answered = true;
            this.#deadline.stop();
            yield m;
            if (this.#answered) return;
            if (!this.#listening) this.#deadline.arm();
          }
        }
      }
      // A listening stream ends without a response; that is its normal end.
      if (this.#listening) {
        this.#answered = true;
        return;
      }
    } finally {
      this.#connector.budget.release(this.#held);
      // Answered: let the (ending) stream drain so its keep-alive socket returns to the pool.
      // Otherwise (error, too large, client gone) close it so the upstream stops working for nobody.
      if (this.#answered) this.#res.resume();
      else this.#res.destroy();
    }
    throw new GatewayError(
      'UPSTREAM_PROTOCOL',
      `upstream ${this.#connector.name} closed the stream before answering request ${String(this.#id)}`,
    );
  }

  /** The events a chunk completes; the budget follows the unfinished one's bytes. */
  #events(chunk: Buffer): SseEvent[] {
    const events = this.#parser.push(chunk);
    const pending = this.#parser.pendingBytes;
    const budget = this.#connector.budget;
    if (pending > this.#held) budget.reserve(pending - this.#held);
    else budget.release(this.#held - pending);
    this.#held = pending;
    return events;
  }

  /**
   * The connection ended before the answer: after events with ids, and an id this connection had
   * not resumed from, the rest is asked for (boundedly). False when there is nothing to resume.
   */
  async #resume(): Promise<boolean> {
    const lastId = this.#lastId;
    if (this.#listening || lastId === undefined || lastId === this.#resumedAt) return false;
    if (++this.#resumes > MAX_RESUMES) return false;
    const next = await this.#session.resumeStream(lastId, this.#opts, this.#deadline);
    if (next === undefined) return false;
    this.#resumedAt = lastId;
    this.#connector.budget.release(this.#held);
    this.#held = 0;
    this.#res = next;
    this.#parser = new SseParser(this.#connector.sseLimits);
    this.#chunks = (next as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    return true;
  }
}
