import type http from 'node:http';
import { GatewayError } from '../../errors.js';
import { scrubMessage } from '../../masking/scrub.js';
import { Channel } from '../channel.js';
import {
  checkMessage,
  isResponse,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../jsonrpc.js';
import { SseParser } from '../sse.js';
import type { HttpConnector, Watch } from './http.js';
import { SseAnswer } from './sse-answer.js';
import { answeredStatus, type RequestOptions, type UpstreamAuth, type UpstreamSession } from './types.js';
import { parseUpstreamJson, parseUpstreamMessages } from './upstream-json.js';

/** Unread GET-stream messages before the upstream's socket is paused. */
const LISTEN_HIGH_WATER = 256;
/** How long closing a session (DELETE) may take before it is given up. */
const CLOSE_TIMEOUT_MS = 5_000;
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * One MCP session with a Streamable HTTP upstream: the Mcp-Session-Id and protocol version
 * initialize gave (or a resumed session brought), sent with every request, and whether it is closed.
 */
export class HttpSession implements UpstreamSession {
  readonly #connector: HttpConnector;
  #sessionId: string | undefined;
  #protocolVersion: string | undefined;
  #closed = false;

  constructor(connector: HttpConnector, sessionId?: string, protocolVersion?: string) {
    this.#connector = connector;
    this.#sessionId = sessionId;
    this.#protocolVersion = protocolVersion;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get upstreamId(): string | undefined {
    return this.#sessionId;
  }

  /** A closed session sends nothing more upstream (as a stdio session whose child is gone). */
  #assertOpen(): void {
    if (this.#closed)
      throw new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${this.#connector.name} session is closed`);
  }

  /**
   * One request's messages: the POST, then its answer (a JSON body, or an SSE stream until the
   * response), under one message deadline. One generator for the whole exchange: a JSON answer's
   * messages are yielded from here, an SSE answer's from its SseAnswer.
   */
  async *request(msg: JsonRpcRequest, opts: RequestOptions = {}): AsyncGenerator<JsonRpcMessage> {
    this.#assertOpen();
    const connector = this.#connector;
    const deadline = connector.deadline();
    deadline.arm();
    try {
      const res = await this.#post(msg, opts.auth, opts.signal, deadline, opts.headers);
      const status = res.statusCode ?? 0;
      if (status >= 400) {
        yield await this.#errorAnswer(res, status, msg, opts);
        return;
      }
      const listening = opts.listen === true;
      if (listening) {
        // Open: quiet for as long as nothing happens; the caller's going away ends it.
        deadline.stop();
        res.socket?.setTimeout(0);
      }
      const initialize = msg.method === 'initialize';
      if (initialize) {
        const sid = res.headers['mcp-session-id'];
        if (typeof sid === 'string') this.#sessionId = sid;
      }
      if (String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
        const answer = new SseAnswer(connector, this, res, msg.id, opts, deadline, listening).messages();
        if (!initialize) {
          yield* answer;
          return;
        }
        for await (const m of answer) {
          this.#initialized(msg, m);
          yield m;
        }
        return;
      }
      // A JSON answer: the body whole, then its messages.
      const text = await connector.readBody(res);
      deadline.stop();
      for (const m of parseUpstreamMessages(connector.source, text)) {
        if (initialize) this.#initialized(msg, m);
        yield m;
      }
    } finally {
      deadline.stop();
    }
  }

  async send(msg: JsonRpcNotification | JsonRpcResponse, auth?: UpstreamAuth): Promise<void> {
    this.#assertOpen();
    const deadline = this.#connector.deadline();
    deadline.arm();
    try {
      const res = await this.#post(msg, auth, undefined, deadline);
      const text = await this.#connector.readBody(res).catch(() => '');
      if ((res.statusCode ?? 0) >= 400) throw this.#connector.httpError(res.statusCode ?? 0, text, auth);
    } finally {
      deadline.stop();
    }
  }

  async listen(signal: AbortSignal, auth?: UpstreamAuth): Promise<AsyncIterable<JsonRpcMessage> | undefined> {
    this.#assertOpen();
    const connector = this.#connector;
    const res = await connector.send('GET', { ...this.#headers(auth), accept: 'text/event-stream' }, undefined, signal);
    if (res.statusCode === 405 || res.statusCode === 404) {
      res.resume();
      return undefined;
    }
    if ((res.statusCode ?? 0) >= 400 || !String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
      res.resume();
      throw new GatewayError(
        'UPSTREAM_UNAVAILABLE',
        `upstream ${connector.name} refused the event stream (HTTP ${res.statusCode})`,
      );
    }
    res.socket?.setTimeout(0);
    const out = new Channel<JsonRpcMessage>();
    const parser = new SseParser(connector.sseLimits);
    // Not shaped by a decision: at least the secrets sent for this stream are scrubbed here.
    const sent = connector.secretsSent(auth);
    res.on('data', (chunk: Buffer) => {
      try {
        for (const ev of parser.push(chunk)) {
          if (ev.event !== 'message' || ev.data === '') continue;
          for (const m of parseUpstreamMessages(connector.source, ev.data)) {
            scrubMessage(m, sent);
            out.push(m);
          }
        }
        // Back-pressure: past LISTEN_HIGH_WATER unread messages the socket pauses until they are taken.
        if (out.size >= LISTEN_HIGH_WATER && !res.isPaused()) {
          res.pause();
          out.onDrain(() => res.resume());
        }
      } catch (err) {
        out.fail(err);
        res.destroy();
      }
    });
    res.on('end', () => out.close());
    res.on('error', (err) => (signal.aborted ? out.close() : out.fail(err)));
    signal.addEventListener('abort', () => res.destroy(), { once: true });
    return out;
  }

  /** Marks the session closed; one that initialize gave an id is ended upstream with DELETE (given up after 5 s). */
  async close(auth?: UpstreamAuth): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sessionId === undefined) return;
    const ctl = new AbortController();
    const giveUp = this.#connector.clock.after(CLOSE_TIMEOUT_MS, () => ctl.abort());
    await this.#connector
      .send('DELETE', this.#headers(auth), undefined, ctl.signal)
      .then(
        (res) => res.resume(),
        () => undefined,
      )
      .finally(() => giveUp.cancel());
  }

  /**
   * The upstream closed an SSE response before its answer, having given its events ids (2025-11-25
   * polling): the rest of that stream, asked for with GET + Last-Event-ID. Undefined when it refuses.
   */
  async resumeStream(lastId: string, opts: RequestOptions, watch: Watch): Promise<http.IncomingMessage | undefined> {
    const res = await this.#connector.send(
      'GET',
      { ...this.#headers(opts.auth), accept: 'text/event-stream', 'last-event-id': lastId },
      undefined,
      opts.signal,
      watch,
    );
    if (res.statusCode !== 200 || !String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
      res.resume();
      return undefined;
    }
    return res;
  }

  /** What every request of this session carries: the credential, the static secret, the session and its version. */
  #headers(auth: UpstreamAuth | undefined): Record<string, string> {
    return {
      ...auth?.headers,
      ...this.#connector.secretHeader,
      ...(this.#sessionId !== undefined ? { 'mcp-session-id': this.#sessionId } : {}),
      ...(this.#protocolVersion !== undefined ? { 'mcp-protocol-version': this.#protocolVersion } : {}),
    };
  }

  /** A message POSTed; a 404 for a session the upstream had given an id closes it (SESSION_UNKNOWN). */
  async #post(
    msg: JsonRpcMessage,
    auth: UpstreamAuth | undefined,
    signal: AbortSignal | undefined,
    watch: Watch,
    extra: Readonly<Record<string, string>> = NO_HEADERS,
  ): Promise<http.IncomingMessage> {
    const body = JSON.stringify(msg);
    const res = await this.#connector.send(
      'POST',
      {
        ...extra,
        ...this.#headers(auth),
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'content-length': String(Buffer.byteLength(body)),
      },
      body,
      signal,
      watch,
    );
    if (res.statusCode === 404 && this.#sessionId !== undefined) {
      res.resume();
      this.#closed = true;
      throw new GatewayError(
        'SESSION_UNKNOWN',
        `upstream ${this.#connector.name} no longer knows this session; initialize a new one`,
      );
    }
    return res;
  }

  /**
   * An HTTP error answer: a JSON-RPC error for this very request is the upstream's answer (its
   * message); anything else is a transport failure (thrown).
   */
  async #errorAnswer(
    res: http.IncomingMessage,
    status: number,
    msg: JsonRpcRequest,
    opts: RequestOptions,
  ): Promise<JsonRpcMessage> {
    const connector = this.#connector;
    const text = await connector.readBody(res).catch(() => '');
    let answer: JsonRpcMessage | undefined;
    try {
      const v = parseUpstreamJson(connector.source, text) as JsonRpcMessage;
      if (checkMessage(v) === undefined && isResponse(v) && v.id === msg.id && v.error !== undefined) answer = v;
    } catch {
      answer = undefined;
    }
    if (answer === undefined) throw connector.httpError(status, text, opts.auth, opts.maskText);
    // 2026-07-28 maps some errors to 400 / 404; other statuses (401, 403, 429, …) would speak for gitgate itself.
    if (status === 400 || status === 404) answeredStatus.set(answer, status);
    return answer;
  }

  /** initialize's response names the protocol version every later request carries. */
  #initialized(msg: JsonRpcRequest, m: JsonRpcMessage): void {
    if (isResponse(m) && m.id === msg.id && m.result !== undefined) {
      const v = (m.result as { protocolVersion?: unknown }).protocolVersion;
      if (typeof v === 'string') this.#protocolVersion = v;
    }
  }
}
