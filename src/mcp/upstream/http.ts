import http from 'node:http';
import https from 'node:https';
import { type Clock, systemClock, type Timer } from '../../clock.js';
import type { UpstreamConfig } from '../../config/types.js';
import { GatewayError } from '../../errors.js';
import { scrubMessage, sentSecrets, upstreamDetail } from '../../masking/scrub.js';
import { Channel } from '../channel.js';
import { checkMessage, isResponse, type JsonRpcMessage, type JsonRpcRequest } from '../jsonrpc.js';
import { type SseLimits, SseParser } from '../sse.js';
import { ByteBudget } from './byte-budget.js';
import {
  answeredStatus,
  type RequestOptions,
  type UpstreamAuth,
  type UpstreamConnector,
  type UpstreamSession,
} from './types.js';
import { parseUpstreamJson, parseUpstreamMessages } from './upstream-json.js';

const IDLE_SOCKET_MS = 4_000;
/** Unread GET-stream messages before the upstream's socket is paused. */
const LISTEN_HIGH_WATER = 256;
/**
 * Times one request's SSE response may be resumed (GET + Last-Event-ID) after the upstream closed it
 * before the answer; each resume must follow an event id the previous connection had not sent.
 */
const MAX_RESUMES = 16;

/** What a message deadline destroys when it expires: the request, then its response. */
interface Watch {
  target?: { destroy(err?: Error): unknown };
}

interface MessageDeadline {
  arm(): void;
  stop(): void;
}

/** How long closing a session (DELETE) may take before it is given up. */
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * Streamable HTTP upstream: one connector per configured URL, keep-alive connections.
 * Its deadlines run on `clock`.
 */
export function httpConnector(cfg: UpstreamConfig & { url: string }, clock: Clock = systemClock): UpstreamConnector {
  const url = new URL(cfg.url);
  const lib = url.protocol === 'https:' ? https : http;
  // Idle connections close after 4 s, before a server's usual keep-alive timeout (Node's is 5 s) closes them under a request.
  const agent = new lib.Agent({ keepAlive: true, maxSockets: 256, timeout: IDLE_SOCKET_MS });
  const name = cfg.name;
  const timeouts = new WeakSet<object>();
  const budget = new ByteBudget(cfg.maxInFlightBytes, name);
  const sseLimits: SseLimits = {
    maxLineBytes: cfg.maxResponseBytes,
    maxEventBytes: cfg.maxResponseBytes,
    source: `upstream ${name}`,
  };
  const source = `upstream ${name}`;

  /**
   * A JSON body, whole: at most maxResponseBytes (a larger Content-Length is refused
   * before a byte is read) and within the upstream's in-flight budget. Past a limit
   * the connection is destroyed.
   */
  async function readAll(res: http.IncomingMessage): Promise<string> {
    const max = cfg.maxResponseBytes;
    const declared = Number(res.headers['content-length'] ?? Number.NaN);
    if (declared > max) {
      res.destroy();
      throw new GatewayError(
        'UPSTREAM_TOO_LARGE',
        `upstream ${name} answered with ${declared} bytes, over its maxResponseBytes (${max})`,
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of res as AsyncIterable<Buffer>) {
        if (size + c.length > max)
          throw new GatewayError(
            'UPSTREAM_TOO_LARGE',
            `upstream ${name} answered with more than its maxResponseBytes (${max})`,
          );
        budget.reserve(c.length);
        size += c.length;
        chunks.push(c);
      }
    } catch (err) {
      res.destroy();
      throw bodyError(res, err);
    } finally {
      budget.release(size);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** What went wrong while a response body was being read, named for the client. */
  function bodyError(res: http.IncomingMessage, err: unknown): GatewayError {
    if (err instanceof GatewayError) return err;
    if (timeouts.has(res))
      return new GatewayError('UPSTREAM_TIMEOUT', `upstream ${name} did not answer within ${cfg.timeoutMs} ms`);
    return new GatewayError(
      'UPSTREAM_UNAVAILABLE',
      `upstream ${name} closed the connection mid-response: ${(err as Error).message}`,
      { cause: err },
    );
  }

  /**
   * The deadline for the upstream's next message (timeoutMs): armed when a request is
   * sent and after each message is taken, stopped while the caller holds one. Bytes
   * that make no message (headers alone, keep-alive comments, a body dribbled a byte
   * at a time) do not move it. On expiry it destroys what `watch` holds.
   */
  function messageDeadline(watch: Watch) {
    let timer: Timer | undefined;
    return {
      arm() {
        timer?.cancel();
        timer = clock.after(cfg.timeoutMs, () => {
          const target = watch.target;
          if (target === undefined) return;
          timeouts.add(target);
          target.destroy(
            new GatewayError('UPSTREAM_TIMEOUT', `upstream ${name} did not answer within ${cfg.timeoutMs} ms`),
          );
        });
      },
      stop() {
        timer?.cancel();
      },
    };
  }

  /**
   * The request's headers as name/value pairs, Host first (what node:http would add): node:http
   * validates and writes a list in one pass, where an object is copied and checked header by header.
   */
  function headerList(headers: Record<string, string>): string[] {
    const list: string[] = [];
    let host = false;
    for (const k of Object.keys(headers)) {
      if (k.toLowerCase() === 'host') host = true;
      list.push(k, headers[k]!);
    }
    return host ? list : ['host', url.host, ...list];
  }

  function send(
    method: 'POST' | 'GET' | 'DELETE',
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal | undefined,
    watch: Watch = {},
    retried = false,
  ): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      let response: http.IncomingMessage | undefined;
      let headersDue: Timer | undefined;
      const req = lib.request(
        url,
        { method, headers: headerList(headers), agent, signal: signal as AbortSignal },
        (res) => {
          headersDue?.cancel();
          response = res;
          watch.target = res;
          // Failures while the body streams (timeouts, resets) surface through bodyError().
          res.on('error', () => undefined);
          resolve(res);
        },
      );
      watch.target = req;
      // The response's headers within timeoutMs; after them the request's message deadline rules
      // (a listening stream has none once open).
      headersDue = clock.after(cfg.timeoutMs, () => {
        timeouts.add(req);
        req.destroy(new GatewayError('UPSTREAM_TIMEOUT', `upstream ${name} did not answer within ${cfg.timeoutMs} ms`));
      });
      req.on('error', (err) => {
        headersDue?.cancel();
        if (err instanceof GatewayError) reject(err);
        else if ((err as Error).name === 'AbortError') reject(err);
        // A kept-alive connection the upstream closed as it was being reused: the request never
        // reached it, so it goes once more on a fresh connection.
        else if (
          !retried &&
          response === undefined &&
          req.reusedSocket &&
          (err as NodeJS.ErrnoException).code === 'ECONNRESET'
        )
          resolve(send(method, headers, body, signal, watch, true));
        else
          reject(
            new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${name} is unreachable: ${(err as Error).message}`, {
              cause: err,
            }),
          );
      });
      req.end(body);
    });
  }

  /**
   * An HTTP error answer as a GatewayError. Its body's message (or first bytes) may
   * echo what gitgate sent: the secrets sent with this request are scrubbed from it,
   * then the decision's masking, before any of it is copied into the error.
   */
  function httpError(
    status: number,
    body: string,
    auth: UpstreamAuth | undefined,
    mask?: (text: string) => string,
  ): GatewayError {
    let said = body;
    try {
      const v = parseUpstreamJson(source, body) as { message?: unknown; error?: { message?: unknown } };
      const m = v?.error?.message ?? v?.message;
      if (typeof m === 'string') said = m;
    } catch {
      said = body;
    }
    const detail = upstreamDetail(said, sentSecrets(cfg, auth), 200, mask);
    return new GatewayError(
      'UPSTREAM_UNAVAILABLE',
      `upstream ${name} answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
      { cause: { httpStatus: status } },
    );
  }

  // A static secret (API key) rides on every request to this upstream.
  const secretHeader: Record<string, string> =
    cfg.secret?.header !== undefined
      ? {
          [cfg.secret.header]: cfg.secret.scheme
            ? `${cfg.secret.scheme} ${cfg.secret.value.reveal()}`
            : cfg.secret.value.reveal(),
        }
      : {};

  function makeSession(resume?: { upstreamId: string; protocolVersion: string }): UpstreamSession {
    let sessionId: string | undefined = resume?.upstreamId;
    let protocolVersion: string | undefined = resume?.protocolVersion;
    let closed = false;
    const baseHeaders = (auth: UpstreamAuth | undefined): Record<string, string> => ({
      ...auth?.headers,
      ...secretHeader,
      ...(sessionId !== undefined ? { 'mcp-session-id': sessionId } : {}),
      ...(protocolVersion !== undefined ? { 'mcp-protocol-version': protocolVersion } : {}),
    });
    const post = async (
      msg: JsonRpcMessage,
      auth: UpstreamAuth | undefined,
      signal: AbortSignal | undefined,
      watch: Watch,
      extra: Readonly<Record<string, string>> = {},
    ) => {
      const body = JSON.stringify(msg);
      const res = await send(
        'POST',
        {
          ...extra,
          ...baseHeaders(auth),
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': String(Buffer.byteLength(body)),
        },
        body,
        signal,
        watch,
      );
      if (res.statusCode === 404 && sessionId !== undefined) {
        res.resume();
        closed = true;
        throw new GatewayError(
          'SESSION_UNKNOWN',
          `upstream ${name} no longer knows this session; initialize a new one`,
        );
      }
      return res;
    };

    /**
     * The upstream closed an SSE response before its answer, having given its events ids (2025-11-25
     * polling): the rest of that stream, asked for with GET + Last-Event-ID. Undefined when it refuses.
     */
    async function resumeStream(
      lastId: string,
      opts: RequestOptions,
      watch: Watch,
    ): Promise<http.IncomingMessage | undefined> {
      const res = await send(
        'GET',
        { ...baseHeaders(opts.auth), accept: 'text/event-stream', 'last-event-id': lastId },
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

    async function* streamResponse(
      first: http.IncomingMessage,
      id: JsonRpcRequest['id'],
      deadline: MessageDeadline,
      listening = false,
      resume?: (lastId: string) => Promise<http.IncomingMessage | undefined>,
    ): AsyncGenerator<JsonRpcMessage> {
      let res = first;
      const ct = String(res.headers['content-type'] ?? '');
      if (ct.includes('text/event-stream')) {
        let parser = new SseParser(sseLimits);
        let chunks = (res as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
        let answered = false;
        // The unfinished event counts against the upstream's in-flight budget, like a JSON body.
        let held = 0;
        let lastId: string | undefined;
        let resumedAt: string | undefined;
        let resumes = 0;
        try {
          for (;;) {
            let r: IteratorResult<Buffer>;
            try {
              r = await chunks.next();
            } catch (err) {
              throw bodyError(res, err);
            }
            if (r.done) {
              // Closed before the answer after events with ids: resume from the last one, boundedly.
              if (listening || resume === undefined || lastId === undefined || lastId === resumedAt) break;
              if (++resumes > MAX_RESUMES) break;
              const next = await resume(lastId);
              if (next === undefined) break;
              resumedAt = lastId;
              budget.release(held);
              held = 0;
              res = next;
              parser = new SseParser(sseLimits);
              chunks = (res as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
              continue;
            }
            const events = parser.push(r.value);
            const pending = parser.pendingBytes;
            if (pending > held) budget.reserve(pending - held);
            else budget.release(held - pending);
            held = pending;
            for (const ev of events) {
              if (ev.id !== undefined) lastId = ev.id;
              if (ev.event !== 'message' || ev.data === '') continue;
              for (const m of parseUpstreamMessages(source, ev.data)) {
                if (isResponse(m) && m.id === id) answered = true;
                deadline.stop();
                yield m;
                if (answered) return;
                if (!listening) deadline.arm();
              }
            }
          }
          // A listening stream ends without a response; that is its normal end.
          if (listening) {
            answered = true;
            return;
          }
        } finally {
          budget.release(held);
          // Answered: let the (ending) stream drain so its keep-alive socket returns to the pool.
          // Otherwise (error, too large, client gone) close it so the upstream stops working for nobody.
          if (answered) res.resume();
          else res.destroy();
        }
        throw new GatewayError(
          'UPSTREAM_PROTOCOL',
          `upstream ${name} closed the stream before answering request ${String(id)}`,
        );
      }
      const text = await readAll(res);
      deadline.stop();
      for (const m of parseUpstreamMessages(source, text)) yield m;
    }

    return {
      get closed() {
        return closed;
      },
      get upstreamId() {
        return sessionId;
      },
      async *request(msg, opts = {}) {
        const watch: Watch = {};
        const deadline = messageDeadline(watch);
        deadline.arm();
        try {
          yield* exchange(msg, opts, watch, deadline);
        } finally {
          deadline.stop();
        }
      },
      async send(msg, auth) {
        const watch: Watch = {};
        const deadline = messageDeadline(watch);
        deadline.arm();
        try {
          const res = await post(msg, auth, undefined, watch);
          const text = await readAll(res).catch(() => '');
          if ((res.statusCode ?? 0) >= 400) throw httpError(res.statusCode ?? 0, text, auth);
        } finally {
          deadline.stop();
        }
      },
      listen,
      close,
    };

    async function* exchange(
      msg: JsonRpcRequest,
      opts: RequestOptions,
      watch: Watch,
      deadline: MessageDeadline,
    ): AsyncGenerator<JsonRpcMessage> {
      const res = await post(msg, opts.auth, opts.signal, watch, opts.headers);
      const status = res.statusCode ?? 0;
      if (status >= 400) {
        // A JSON-RPC error for this very request is the upstream's answer; anything else is a transport failure.
        const text = await readAll(res).catch(() => '');
        let answer: JsonRpcMessage | undefined;
        try {
          const v = parseUpstreamJson(source, text) as JsonRpcMessage;
          if (checkMessage(v) === undefined && isResponse(v) && v.id === msg.id && v.error !== undefined) answer = v;
        } catch {
          answer = undefined;
        }
        if (answer === undefined) throw httpError(status, text, opts.auth, opts.maskText);
        // 2026-07-28 maps some errors to 400 / 404; other statuses (401, 403, 429, …) would speak for gitgate itself.
        if (status === 400 || status === 404) answeredStatus.set(answer, status);
        yield answer;
        return;
      }
      if (opts.listen === true) {
        // Open: quiet for as long as nothing happens; the caller's going away ends it.
        deadline.stop();
        res.socket?.setTimeout(0);
      }
      if (msg.method === 'initialize') {
        const sid = res.headers['mcp-session-id'];
        if (typeof sid === 'string') sessionId = sid;
      }
      const resume = (lastId: string) => resumeStream(lastId, opts, watch);
      for await (const m of streamResponse(res, msg.id, deadline, opts.listen === true, resume)) {
        if (msg.method === 'initialize' && isResponse(m) && m.id === msg.id && m.result !== undefined) {
          const v = (m.result as { protocolVersion?: unknown }).protocolVersion;
          if (typeof v === 'string') protocolVersion = v;
        }
        yield m;
      }
    }

    async function listen(
      signal: AbortSignal,
      auth?: UpstreamAuth,
    ): Promise<AsyncIterable<JsonRpcMessage> | undefined> {
      const res = await send('GET', { ...baseHeaders(auth), accept: 'text/event-stream' }, undefined, signal);
      if (res.statusCode === 405 || res.statusCode === 404) {
        res.resume();
        return undefined;
      }
      if ((res.statusCode ?? 0) >= 400 || !String(res.headers['content-type'] ?? '').includes('text/event-stream')) {
        res.resume();
        throw new GatewayError(
          'UPSTREAM_UNAVAILABLE',
          `upstream ${name} refused the event stream (HTTP ${res.statusCode})`,
        );
      }
      res.socket?.setTimeout(0);
      const out = new Channel<JsonRpcMessage>();
      const parser = new SseParser(sseLimits);
      // Not shaped by a decision: at least the secrets sent for this stream are scrubbed here.
      const sent = sentSecrets(cfg, auth);
      res.on('data', (chunk: Buffer) => {
        try {
          for (const ev of parser.push(chunk)) {
            if (ev.event !== 'message' || ev.data === '') continue;
            for (const m of parseUpstreamMessages(source, ev.data)) {
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

    async function close(auth?: UpstreamAuth): Promise<void> {
      if (closed) return;
      closed = true;
      if (sessionId === undefined) return;
      const ctl = new AbortController();
      const giveUp = clock.after(CLOSE_TIMEOUT_MS, () => ctl.abort());
      await send('DELETE', baseHeaders(auth), undefined, ctl.signal)
        .then(
          (res) => res.resume(),
          () => undefined,
        )
        .finally(() => giveUp.cancel());
    }
  }

  return {
    name,
    transport: 'http',
    open: () => Promise.resolve(makeSession()),
    resume: (upstreamId, protocolVersion) => makeSession({ upstreamId, protocolVersion }),
    shutdown: () => {
      agent.destroy();
      return Promise.resolve();
    },
  };
}
