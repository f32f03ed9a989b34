import http from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import { type ByteBudget, inFlightBudget } from '../../byte-budget.js';
import { type Clock, systemClock, type Timer } from '../../clock.js';
import type { UpstreamConfig } from '../../config/types.js';
import { GatewayError } from '../../errors.js';
import { type SentSecrets, sentSecrets, upstreamDetail } from '../../masking/scrub.js';
import type { SseLimits } from '../sse.js';
import { HttpSession } from './http-session.js';
import type { UpstreamAuth, UpstreamConnector, UpstreamSession } from './types.js';
import { parseUpstreamJson } from './upstream-json.js';

const IDLE_SOCKET_MS = 4_000;

type HttpUpstreamConfig = UpstreamConfig & { url: string };

/** What a request's deadline destroys when it expires: the request, then its response. */
export interface Watch {
  target?: { destroy(err?: Error): unknown } | undefined;
}

/**
 * The deadline for the upstream's next message (timeoutMs): armed when a request is
 * sent and after each message is taken, stopped while the caller holds one. Bytes
 * that make no message (headers alone, keep-alive comments, a body dribbled a byte
 * at a time) do not move it. On expiry it destroys its target (HttpConnector.send sets it).
 */
export class MessageDeadline implements Watch {
  target: Watch['target'];
  #timer: Timer | undefined;
  readonly #clock: Clock;
  readonly #ms: number;
  readonly #expire: (target: NonNullable<Watch['target']>) => void;

  constructor(clock: Clock, ms: number, expire: (target: NonNullable<Watch['target']>) => void) {
    this.#clock = clock;
    this.#ms = ms;
    this.#expire = expire;
  }

  arm(): void {
    this.#timer?.cancel();
    this.#timer = this.#clock.after(this.#ms, () => {
      const target = this.target;
      if (target !== undefined) this.#expire(target);
    });
  }

  stop(): void {
    this.#timer?.cancel();
  }
}

/**
 * Streamable HTTP upstream: one connector per configured URL, keep-alive connections.
 * Its deadlines run on `clock`. Besides UpstreamConnector, its members are what its
 * sessions (HttpSession) send and read through: the agent, the byte budget, the deadlines.
 */
export class HttpConnector implements UpstreamConnector {
  readonly name: string;
  readonly transport = 'http';
  // The rest is in private fields (a connector logged or serialized shows its name and transport only),
  // read by its sessions through the getters below.
  readonly #source: string;
  readonly #clock: Clock;
  readonly #budget: ByteBudget;
  readonly #sseLimits: SseLimits;
  readonly #secretHeader: Readonly<Record<string, string>>;
  readonly #cfg: HttpUpstreamConfig;
  readonly #url: URL;
  /** The URL as node:http's request options (protocol, host, port, path, auth), derived once. */
  readonly #target: http.RequestOptions;
  readonly #lib: typeof http | typeof https;
  readonly #agent: http.Agent;
  /** Requests and responses a deadline destroyed: their errors read as UPSTREAM_TIMEOUT. */
  readonly #timeouts = new WeakSet<object>();
  readonly #expire = (target: NonNullable<Watch['target']>): void => {
    this.#timeouts.add(target);
    target.destroy(
      new GatewayError('UPSTREAM_TIMEOUT', `upstream ${this.name} did not answer within ${this.#cfg.timeoutMs} ms`),
    );
  };

  constructor(cfg: HttpUpstreamConfig, clock: Clock = systemClock) {
    this.#cfg = cfg;
    this.#clock = clock;
    this.name = cfg.name;
    this.#source = `upstream ${cfg.name}`;
    this.#url = new URL(cfg.url);
    this.#target = urlToHttpOptions(this.#url);
    this.#lib = this.#url.protocol === 'https:' ? https : http;
    // Idle connections close after 4 s, before a server's usual keep-alive timeout (Node's is 5 s) closes them under a request.
    this.#agent = new this.#lib.Agent({ keepAlive: true, maxSockets: 256, timeout: IDLE_SOCKET_MS });
    this.#budget = inFlightBudget(cfg.maxInFlightBytes, cfg.name);
    this.#sseLimits = {
      maxLineBytes: cfg.maxResponseBytes,
      maxEventBytes: cfg.maxResponseBytes,
      source: `upstream ${cfg.name}`,
    };
    this.#secretHeader =
      cfg.secret?.header !== undefined
        ? {
            [cfg.secret.header]: cfg.secret.scheme
              ? `${cfg.secret.scheme} ${cfg.secret.value.reveal()}`
              : cfg.secret.value.reveal(),
          }
        : {};
  }

  /** `upstream <name>`: how errors and parse failures name it. */
  get source(): string {
    return this.#source;
  }

  get clock(): Clock {
    return this.#clock;
  }

  /** Unfinished SSE events and JSON bodies of all this upstream's requests count against one budget. */
  get budget(): ByteBudget {
    return this.#budget;
  }

  get sseLimits(): SseLimits {
    return this.#sseLimits;
  }

  /** A static secret (API key) rides on every request to this upstream. */
  get secretHeader(): Readonly<Record<string, string>> {
    return this.#secretHeader;
  }

  open(): Promise<UpstreamSession> {
    return Promise.resolve(new HttpSession(this));
  }

  resume(upstreamId: string, protocolVersion: string): UpstreamSession {
    return new HttpSession(this, upstreamId, protocolVersion);
  }

  shutdown(): Promise<void> {
    this.#agent.destroy();
    return Promise.resolve();
  }

  /** A fresh deadline for one request's messages (timeoutMs, on the connector's clock). */
  deadline(): MessageDeadline {
    return new MessageDeadline(this.#clock, this.#cfg.timeoutMs, this.#expire);
  }

  /** The secrets a request with `auth` sent: what upstream text is scrubbed of. */
  secretsSent(auth: UpstreamAuth | undefined): SentSecrets {
    return sentSecrets(this.#cfg, auth);
  }

  /**
   * One request to the upstream's URL; its response once the headers arrived (within timeoutMs).
   * `watch.target` follows it: the request, then its response. A `watch` must be an armed deadline
   * (its expiry is what bounds the wait for the headers then).
   */
  send(
    method: 'POST' | 'GET' | 'DELETE',
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal | undefined,
    watch?: Watch,
    retried = false,
  ): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      let response: http.IncomingMessage | undefined;
      let headersDue: Timer | undefined;
      if (signal?.aborted === true) {
        reject(abortError(signal));
        return;
      }
      const req = this.#lib.request(
        { ...this.#target, method, headers: this.#headerList(headers), agent: this.#agent },
        (res) => {
          headersDue?.cancel();
          response = res;
          if (watch !== undefined) watch.target = res;
          // Failures while the body streams (timeouts, resets) surface through bodyError().
          res.on('error', () => undefined);
          resolve(res);
        },
      );
      if (watch !== undefined) watch.target = req;
      // The caller's going away destroys the request (and with it its response), as node:http's own
      // `signal` option does, with one listener on each side instead of its end-of-stream watch.
      if (signal !== undefined) {
        const abort = () => req.destroy(abortError(signal));
        signal.addEventListener('abort', abort, { once: true });
        req.once('close', () => signal.removeEventListener('abort', abort));
      }
      // The response's headers within timeoutMs. A watched request's message deadline, armed before it
      // was sent, already bounds them (and rules after them; a listening stream has none once open);
      // an unwatched one (a GET stream, a DELETE) gets a timer of its own.
      if (watch === undefined) headersDue = this.#clock.after(this.#cfg.timeoutMs, () => this.#expire(req));
      req.on('error', (err) => {
        headersDue?.cancel();
        if (err instanceof GatewayError) reject(err);
        else if ((err as Error).name === 'AbortError') reject(err);
        // A kept-alive connection closed as it was being reused: a GET (a stream opened) or a DELETE
        // (a session ended) goes once more on a fresh connection. A POST never does: the upstream may
        // have run it before the connection went (a reset looks the same either way), and a
        // forwarded call, an approved one above all, reaches the upstream at most once.
        else if (
          !retried &&
          method !== 'POST' &&
          response === undefined &&
          req.reusedSocket &&
          (err as NodeJS.ErrnoException).code === 'ECONNRESET'
        )
          resolve(this.send(method, headers, body, signal, watch, true));
        else
          reject(
            new GatewayError(
              'UPSTREAM_UNAVAILABLE',
              `upstream ${this.name} is unreachable: ${(err as Error).message}`,
              {
                cause: err,
              },
            ),
          );
      });
      req.end(body);
    });
  }

  /**
   * A JSON body, whole: at most maxResponseBytes (a larger Content-Length is refused
   * before a byte is read) and within the upstream's in-flight budget. Past a limit
   * the connection is destroyed.
   */
  async readBody(res: http.IncomingMessage): Promise<string> {
    const max = this.#cfg.maxResponseBytes;
    const declared = Number(res.headers['content-length'] ?? Number.NaN);
    if (declared > max) {
      res.destroy();
      throw new GatewayError(
        'UPSTREAM_TOO_LARGE',
        `upstream ${this.name} answered with ${declared} bytes, over its maxResponseBytes (${max})`,
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const c of res as AsyncIterable<Buffer>) {
        if (size + c.length > max)
          throw new GatewayError(
            'UPSTREAM_TOO_LARGE',
            `upstream ${this.name} answered with more than its maxResponseBytes (${max})`,
          );
        this.#budget.reserve(c.length);
        size += c.length;
        chunks.push(c);
      }
    } catch (err) {
      res.destroy();
      throw this.bodyError(res, err);
    } finally {
      this.#budget.release(size);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** What went wrong while a response body was being read, named for the client. */
  bodyError(res: http.IncomingMessage, err: unknown): GatewayError {
    if (err instanceof GatewayError) return err;
    if (this.#timeouts.has(res))
      return new GatewayError(
        'UPSTREAM_TIMEOUT',
        `upstream ${this.name} did not answer within ${this.#cfg.timeoutMs} ms`,
      );
    return new GatewayError(
      'UPSTREAM_UNAVAILABLE',
      `upstream ${this.name} closed the connection mid-response: ${(err as Error).message}`,
      { cause: err },
    );
  }

  /**
   * An HTTP error answer as a GatewayError. Its body's message (or first bytes) may
   * echo what gitgate sent: the secrets sent with this request are scrubbed from it,
   * then the decision's masking, before any of it is copied into the error.
   */
  httpError(
    status: number,
    body: string,
    auth: UpstreamAuth | undefined,
    mask?: (text: string) => string,
  ): GatewayError {
    let said = body;
    try {
      const v = parseUpstreamJson(this.#source, body) as { message?: unknown; error?: { message?: unknown } };
      const m = v?.error?.message ?? v?.message;
      if (typeof m === 'string') said = m;
    } catch {
      said = body;
    }
    const detail = upstreamDetail(said, sentSecrets(this.#cfg, auth), 200, mask);
    return new GatewayError(
      'UPSTREAM_UNAVAILABLE',
      `upstream ${this.name} answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
      { cause: { httpStatus: status } },
    );
  }

  /**
   * The request's headers as name/value pairs, Host first (what node:http would add): node:http
   * validates and writes a list in one pass, where an object is copied and checked header by header.
   */
  #headerList(headers: Record<string, string>): string[] {
    const list: string[] = [];
    let host = false;
    for (const k of Object.keys(headers)) {
      if (k.toLowerCase() === 'host') host = true;
      list.push(k, headers[k]!);
    }
    return host ? list : ['host', this.#url.host, ...list];
  }
}

/** What an aborted request fails with: an AbortError carrying the signal's reason, as node:http's `signal` gives. */
function abortError(signal: AbortSignal): Error {
  const err = new Error('The operation was aborted', { cause: signal.reason });
  err.name = 'AbortError';
  return Object.assign(err, { code: 'ABORT_ERR' });
}

/** The connector for a Streamable HTTP upstream (upstreams.ts picks it for a config with `url`). */
export function httpConnector(cfg: HttpUpstreamConfig, clock: Clock = systemClock): HttpConnector {
  return new HttpConnector(cfg, clock);
}
