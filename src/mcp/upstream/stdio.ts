import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { type ByteBudget, inFlightBudget } from '../../byte-budget.js';
import { type Clock, systemClock, type Timer } from '../../clock.js';
import type { StdioCommand, UpstreamConfig } from '../../config/types.js';
import { GatewayError } from '../../errors.js';
import { type SentSecrets, scrubMessage, sentSecrets, upstreamDetail } from '../../masking/scrub.js';
import { Channel } from '../channel.js';
import {
  checkMessage,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../jsonrpc.js';
import { LineSplitter } from './line-splitter.js';
import type { RequestOptions, UpstreamAuth, UpstreamConnector, UpstreamSession } from './types.js';
import { parseUpstreamJson } from './upstream-json.js';

/** Only these variables of gitgate's own environment reach a stdio upstream; the config adds the rest. */
const INHERITED_ENV = ['PATH', 'HOME', 'LOGNAME', 'USER', 'SHELL', 'TERM', 'LANG', 'TMPDIR', 'SYSTEMROOT'];
/** stderr lines are kept (and logged) up to this many bytes each. */
const STDERR_LINE_BYTES = 500;
/** The last stderr lines kept for the exit error (it shows three). */
const STDERR_TAIL_LINES = 20;
const UNRELATED_BACKLOG = 1000;
/** Unread messages of one request (or the GET stream) before stdout is paused. */
const QUEUE_HIGH_WATER = 256;
/** How many of the latest credentials sent to a child its stderr is scrubbed of (older ones have expired). */
const RECENT_CREDENTIALS = 16;
/** Until a fresh process first speaks, it may take this long (node boot, npx installs) whatever timeoutMs says. */
export const STARTUP_ALLOWANCE_MS = 30_000;
/** After stdin is closed, a child that has not exited gets SIGTERM, then SIGKILL. */
const CLOSE_TERM_MS = 2_000;
const CLOSE_KILL_MS = 5_000;

export interface StdioLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

type StdioUpstreamConfig = UpstreamConfig & { stdio: StdioCommand };

function childEnv(cmd: StdioCommand, secret: UpstreamConfig['secret']): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
  return { ...env, ...cmd.env, ...(secret?.envVar !== undefined ? { [secret.envVar]: secret.value.reveal() } : {}) };
}

/**
 * A stdio upstream: one supervised child process per MCP session (stdio servers
 * serve exactly one client). Its deadlines run on `clock`.
 */
export class StdioConnector implements UpstreamConnector {
  readonly transport = 'stdio';
  readonly #cfg: StdioUpstreamConfig;
  readonly #log: StdioLogger;
  readonly #clock: Clock;
  /** Sessions whose child has not been closed: what shutdown() stops. */
  readonly #live = new Set<StdioSession>();
  /** Unfinished stdout lines of all this upstream's children count against one budget. */
  readonly #budget: ByteBudget;
  /** The child holds the static secret in its environment: whatever it writes may echo it. */
  readonly #staticSecrets: SentSecrets;

  constructor(cfg: StdioUpstreamConfig, log: StdioLogger, clock: Clock = systemClock) {
    this.#cfg = cfg;
    this.#log = log;
    this.#clock = clock;
    this.#budget = inFlightBudget(cfg.maxInFlightBytes, cfg.name);
    this.#staticSecrets = sentSecrets(cfg);
  }

  get name(): string {
    return this.#cfg.name;
  }

  /** Children running now. */
  get liveSessions(): number {
    return this.#live.size;
  }

  open(): Promise<UpstreamSession> {
    const session = new StdioSession(this.#cfg, this.#log, this.#clock, this.#budget, this.#staticSecrets, this.#live);
    return session.ready.then(() => session);
  }

  async shutdown(): Promise<void> {
    await Promise.all([...this.#live].map((s) => s.close()));
  }
}

/** The connector for a stdio upstream (upstreams.ts picks it for a config with `stdio`). */
export function stdioConnector(cfg: StdioUpstreamConfig, log: StdioLogger, clock: Clock = systemClock): StdioConnector {
  return new StdioConnector(cfg, log, clock);
}

/**
 * One child process and its MCP session. Messages are routed back by JSON-RPC id;
 * progress by progress token; server requests (sampling, elicitation) to the newest
 * request in flight, else to the listen stream.
 */
class StdioSession implements UpstreamSession {
  /** Resolves once the child spawned; rejects with UPSTREAM_UNAVAILABLE when it could not start. */
  readonly ready: Promise<void>;
  readonly #cfg: StdioUpstreamConfig;
  readonly #log: StdioLogger;
  readonly #clock: Clock;
  readonly #staticSecrets: SentSecrets;
  readonly #live: Set<StdioSession>;
  readonly #child: ChildProcessWithoutNullStreams;
  /** Requests in flight by id, and by progress token. */
  readonly #pending = new Map<JsonRpcId, Channel<JsonRpcMessage>>();
  /** The caller each request in flight is for, when the session carries several callers' (RequestOptions.owner). */
  readonly #ownerOf = new WeakMap<Channel<JsonRpcMessage>, string>();
  readonly #byProgress = new Map<string | number, Channel<JsonRpcMessage>>();
  /** Messages tied to no request wait here (bounded) until a GET stream listens. */
  readonly #backlog: JsonRpcMessage[] = [];
  #listener: Channel<JsonRpcMessage> | undefined;
  readonly #stderrTail: string[] = [];
  /** What the child may echo on stderr: its env secret and the credentials it was sent lately. */
  readonly #recentAuth: UpstreamAuth[] = [];
  #childSecrets: SentSecrets;
  #closed = false;
  /** The child wrote a line: from then on a request waits timeoutMs, not the startup allowance. */
  #spoke = false;
  #exitError: GatewayError | undefined;
  /** Bounded: a stderr line is cut at STDERR_LINE_BYTES, whatever the child writes. */
  readonly #stderrLines: LineSplitter;
  /**
   * Bounded lines: one over maxResponseBytes (or past the in-flight budget) ends the session
   * with UPSTREAM_TOO_LARGE for every request in flight, and the child is stopped.
   */
  readonly #stdoutLines: LineSplitter;

  constructor(
    cfg: StdioUpstreamConfig,
    log: StdioLogger,
    clock: Clock,
    budget: ByteBudget,
    staticSecrets: SentSecrets,
    live: Set<StdioSession>,
  ) {
    this.#cfg = cfg;
    this.#log = log;
    this.#clock = clock;
    this.#staticSecrets = staticSecrets;
    this.#childSecrets = staticSecrets;
    this.#live = live;
    this.#stderrLines = new LineSplitter(STDERR_LINE_BYTES, `upstream ${cfg.name} stderr`, undefined, true);
    this.#stdoutLines = new LineSplitter(cfg.maxResponseBytes, `upstream ${cfg.name}`, budget);
    const child: ChildProcessWithoutNullStreams = spawn(cfg.stdio.command, [...cfg.stdio.args], {
      env: childEnv(cfg.stdio, cfg.secret),
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(cfg.stdio.cwd !== undefined ? { cwd: cfg.stdio.cwd } : {}),
    });
    this.#child = child;
    this.ready = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => {
        reject(
          new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} failed to start: ${err.message}`, {
            cause: err,
          }),
        );
      });
    });
    this.ready.catch(() => undefined);

    // 'close' (stdout drained), not 'exit': a response written just before exiting still reaches its request.
    child.on('close', (code, sig) => {
      const tail = this.#stderrTail.length > 0 ? `; stderr: ${this.#stderrTail.slice(-3).join(' | ')}` : '';
      this.#fail(
        new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} exited (${sig ?? `code ${code}`})${tail}`),
      );
    });
    child.on('error', (err) =>
      this.#fail(new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name}: ${err.message}`, { cause: err })),
    );
    child.stdin.on('error', () => undefined);
    child.stderr.on('data', (chunk: Buffer) => this.#onStderr(chunk));
    child.stdout.on('data', (chunk: Buffer) => this.#onStdout(chunk));
    child.stdout.on('close', () => this.#stdoutLines.clear());
    live.add(this);
  }

  get closed(): boolean {
    return this.#closed;
  }

  async *request(original: JsonRpcRequest, opts: RequestOptions = {}): AsyncIterable<JsonRpcMessage> {
    const { signal, auth } = opts;
    const cfg = this.#cfg;
    // stdio has no headers: a credential placed in _meta travels with the request.
    this.#sentToChild(auth);
    const msg =
      auth?.meta === undefined
        ? original
        : {
            ...original,
            params: {
              ...original.params,
              _meta: { ...(original.params?._meta as object | undefined), ...auth.meta },
            },
          };
    if (this.#closed)
      throw this.#exitError ?? new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} session is closed`);
    if (this.#pending.has(msg.id))
      throw new GatewayError('INVALID_REQUEST', `Invalid Request: id ${String(msg.id)} is already in flight`);
    const ch = new Channel<JsonRpcMessage>();
    this.#pending.set(msg.id, ch);
    if (opts.owner !== undefined) this.#ownerOf.set(ch, opts.owner);
    const meta = msg.params?._meta as { progressToken?: unknown } | undefined;
    const token = meta?.progressToken;
    if (typeof token === 'string' || typeof token === 'number') this.#byProgress.set(token, ch);
    let timer: Timer | undefined;
    const arm = () => {
      timer?.cancel();
      const ms = this.#spoke ? cfg.timeoutMs : Math.max(cfg.timeoutMs, STARTUP_ALLOWANCE_MS);
      timer = this.#clock.after(ms, () => {
        this.#pending.delete(msg.id);
        ch.fail(new GatewayError('UPSTREAM_TIMEOUT', `upstream ${cfg.name} did not answer within ${ms} ms`));
        this.#holdBack();
      });
    };
    const onAbort = () => {
      if (!this.#pending.has(msg.id)) return;
      this.#pending.delete(msg.id);
      ch.close();
      this.#holdBack();
      void this.#write({
        jsonrpc: '2.0',
        method: 'notifications/cancelled',
        params: { requestId: msg.id, reason: 'client went away' },
      }).catch(() => undefined);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      arm();
      await this.#write(msg);
      for await (const m of ch) {
        arm();
        yield m;
      }
    } finally {
      timer?.cancel();
      signal?.removeEventListener('abort', onAbort);
      this.#pending.delete(msg.id);
      if (typeof token === 'string' || typeof token === 'number') this.#byProgress.delete(token);
      this.#holdBack();
    }
  }

  send(m: JsonRpcNotification | JsonRpcResponse): Promise<void> {
    return this.#write(m);
  }

  listen(signal: AbortSignal): Promise<AsyncIterable<JsonRpcMessage>> {
    // One listener at a time: a new GET stream replaces the previous one.
    this.#listener?.close();
    const mine = new Channel<JsonRpcMessage>();
    for (const m of this.#backlog.splice(0)) mine.push(m);
    if (this.#closed) mine.close();
    else this.#listener = mine;
    this.#holdBack();
    signal.addEventListener(
      'abort',
      () => {
        if (this.#listener === mine) this.#listener = undefined;
        mine.close();
        this.#holdBack();
      },
      { once: true },
    );
    return Promise.resolve(mine);
  }

  async close(): Promise<void> {
    const child = this.#child;
    if (this.#closed && child.exitCode !== null) return;
    this.#closed = true;
    this.#live.delete(this);
    child.stdin.end();
    const exited = new Promise<void>((resolve) =>
      child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
    );
    // The child's exit keeps the process alive meanwhile (its pipes are open), not these timers.
    const term = this.#clock.after(CLOSE_TERM_MS, () => child.kill('SIGTERM'));
    const kill = this.#clock.after(CLOSE_KILL_MS, () => child.kill('SIGKILL'));
    await exited;
    term.cancel();
    kill.cancel();
  }

  #sentToChild(auth: UpstreamAuth | undefined): void {
    if (auth === undefined) return;
    this.#recentAuth.push(auth);
    if (this.#recentAuth.length > RECENT_CREDENTIALS) this.#recentAuth.shift();
    this.#childSecrets = sentSecrets(this.#cfg, ...this.#recentAuth);
  }

  #fail(err: GatewayError): void {
    this.#exitError ??= err;
    this.#closed = true;
    for (const ch of this.#pending.values()) ch.fail(err);
    this.#pending.clear();
    this.#byProgress.clear();
    this.#listener?.close();
    this.#live.delete(this);
  }

  /** Scrubbed before it is kept or logged: the secret in the child's environment, and any credential. */
  #onStderr(chunk: Buffer): void {
    for (const raw of this.#stderrLines.push(chunk)) {
      const line = upstreamDetail(raw, this.#childSecrets, STDERR_LINE_BYTES);
      this.#stderrTail.push(line);
      if (this.#stderrTail.length > STDERR_TAIL_LINES) this.#stderrTail.shift();
      this.#log.debug({ upstream: this.#cfg.name, pid: this.#child.pid }, `stderr: ${line}`);
    }
  }

  #onStdout(chunk: Buffer): void {
    let lines: string[];
    try {
      lines = this.#stdoutLines.push(chunk);
    } catch (err) {
      this.#fail(err as GatewayError);
      this.#child.stdout.destroy();
      this.#child.kill('SIGKILL');
      return;
    }
    for (const line of lines) this.#onLine(line);
    this.#holdBack();
  }

  #onLine(line: string): void {
    this.#spoke = true;
    if (line.trim() === '') return;
    const name = this.#cfg.name;
    let v: unknown;
    try {
      v = parseUpstreamJson(`upstream ${name}`, line);
    } catch (err) {
      this.#log.warn(
        { upstream: name, line: upstreamDetail(line, this.#childSecrets, 200) },
        `line on upstream stdout dropped: ${(err as Error).message}`,
      );
      return;
    }
    const problem = checkMessage(v);
    if (problem !== undefined) {
      this.#log.warn({ upstream: name, problem }, 'invalid JSON-RPC from upstream dropped');
      return;
    }
    this.#route(v as JsonRpcMessage);
  }

  #route(m: JsonRpcMessage): void {
    if (isResponse(m)) {
      const ch = m.id === null ? undefined : this.#pending.get(m.id);
      if (ch === undefined) {
        this.#log.warn({ upstream: this.#cfg.name, id: m.id }, 'response for no request in flight; dropped');
        return;
      }
      this.#pending.delete(m.id!);
      ch.push(m);
      ch.close();
      return;
    }
    if (isNotification(m) && m.method === 'notifications/progress') {
      const token = m.params?.progressToken;
      const ch = typeof token === 'string' || typeof token === 'number' ? this.#byProgress.get(token) : undefined;
      if (ch !== undefined) {
        ch.push(m);
        return;
      }
    }
    if (isRequest(m) && this.#pending.size > 0) {
      // No related-request id on stdio: the newest request in flight gets it, but only when every
      // request in flight is one caller's. Otherwise no caller can be told it is theirs (one would
      // read another's prompt, and answer for them): the child is told so, and no caller sees it.
      const chs = [...this.#pending.values()];
      if (new Set(chs.map((ch) => this.#ownerOf.get(ch))).size > 1) {
        this.#log.warn(
          { upstream: this.#cfg.name, method: m.method },
          'upstream request refused: requests of several callers are in flight on this stdio session, and stdio does not say which one it belongs to',
        );
        void this.#write({
          jsonrpc: '2.0',
          id: m.id,
          error: {
            code: -32603,
            message: `gitgate cannot tell which call this ${m.method} belongs to: requests of several callers are in flight on this session`,
          },
        }).catch(() => undefined);
        return;
      }
      chs.at(-1)!.push(m);
      return;
    }
    this.#deliverUnrelated(m);
  }

  #deliverUnrelated(m: JsonRpcMessage): void {
    // Not shaped by a decision (the GET stream): at least the child's secret is scrubbed.
    scrubMessage(m, this.#staticSecrets);
    if (this.#listener !== undefined) {
      this.#listener.push(m);
      return;
    }
    this.#backlog.push(m);
    if (this.#backlog.length > UNRELATED_BACKLOG) this.#backlog.shift();
  }

  /**
   * Back-pressure: while a request's (or the GET stream's) unread messages are past
   * QUEUE_HIGH_WATER, stdout is not read (the child blocks on its pipe) until they are taken.
   */
  #holdBack = (): void => {
    const full = [...this.#pending.values(), ...(this.#listener !== undefined ? [this.#listener] : [])].find(
      (ch) => ch.size >= QUEUE_HIGH_WATER,
    );
    const stdout = this.#child.stdout;
    if (full === undefined) {
      if (stdout.isPaused()) stdout.resume();
      return;
    }
    if (!stdout.isPaused()) stdout.pause();
    full.onDrain(this.#holdBack);
  };

  async #write(m: JsonRpcMessage): Promise<void> {
    await this.ready;
    const name = this.#cfg.name;
    if (this.#closed)
      throw this.#exitError ?? new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${name} session is closed`);
    await new Promise<void>((resolve, reject) =>
      this.#child.stdin.write(`${JSON.stringify(m)}\n`, (err) =>
        err ? reject(new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${name}: ${err.message}`)) : resolve(),
      ),
    );
  }
}
