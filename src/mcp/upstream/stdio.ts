import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { type Clock, systemClock, type Timer } from '../../clock.js';
import type { StdioCommand, UpstreamConfig } from '../../config/types.js';
import { GatewayError } from '../../errors.js';
import { scrubMessage, sentSecrets, upstreamDetail } from '../../masking/scrub.js';
import { Channel } from '../channel.js';
import {
  checkMessage,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
} from '../jsonrpc.js';
import { ByteBudget } from './byte-budget.js';
import { LineSplitter } from './line-splitter.js';
import type { UpstreamAuth, UpstreamConnector, UpstreamSession } from './types.js';
import { parseUpstreamJson } from './upstream-json.js';

/** Only these variables of gitgate's own environment reach a stdio upstream; the config adds the rest. */
const INHERITED_ENV = ['PATH', 'HOME', 'LOGNAME', 'USER', 'SHELL', 'TERM', 'LANG', 'TMPDIR', 'SYSTEMROOT'];
/** stderr lines are kept (and logged) up to this many bytes each. */
const STDERR_LINE_BYTES = 500;
const UNRELATED_BACKLOG = 1000;
/** Unread messages of one request (or the GET stream) before stdout is paused. */
const QUEUE_HIGH_WATER = 256;
/** How many of the latest credentials sent to a child its stderr is scrubbed of (older ones have expired). */
const RECENT_CREDENTIALS = 16;
/** Until a fresh process first speaks, it may take this long (node boot, npx installs) whatever timeoutMs says. */
export const STARTUP_ALLOWANCE_MS = 30_000;

export interface StdioLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

function childEnv(cmd: StdioCommand, secret: UpstreamConfig['secret']): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of INHERITED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
  return { ...env, ...cmd.env, ...(secret?.envVar !== undefined ? { [secret.envVar]: secret.value.reveal() } : {}) };
}

/**
 * A stdio upstream: one supervised child process per MCP session (stdio servers
 * serve exactly one client). Messages are routed back by JSON-RPC id; progress
 * by progress token; server requests (sampling, elicitation) to the newest
 * request in flight, else to the listen stream. Its deadlines run on `clock`.
 */
export function stdioConnector(
  cfg: UpstreamConfig & { stdio: StdioCommand },
  log: StdioLogger,
  clock: Clock = systemClock,
): UpstreamConnector {
  const live = new Set<UpstreamSession>();
  // Unfinished stdout lines of all this upstream's children count against one budget.
  const budget = new ByteBudget(cfg.maxInFlightBytes, cfg.name);
  // The child holds the static secret in its environment: whatever it writes may echo it.
  const staticSecrets = sentSecrets(cfg);

  function open(): Promise<UpstreamSession> {
    const child: ChildProcessWithoutNullStreams = spawn(cfg.stdio.command, [...cfg.stdio.args], {
      env: childEnv(cfg.stdio, cfg.secret),
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(cfg.stdio.cwd !== undefined ? { cwd: cfg.stdio.cwd } : {}),
    });
    const pending = new Map<JsonRpcId, Channel<JsonRpcMessage>>();
    const byProgress = new Map<string | number, Channel<JsonRpcMessage>>();
    // Messages tied to no request wait here (bounded) until a GET stream listens.
    const backlog: JsonRpcMessage[] = [];
    let listener: Channel<JsonRpcMessage> | undefined;
    const deliverUnrelated = (m: JsonRpcMessage) => {
      // Not shaped by a decision (the GET stream): at least the child's secret is scrubbed.
      scrubMessage(m, staticSecrets);
      if (listener !== undefined) return listener.push(m);
      backlog.push(m);
      if (backlog.length > UNRELATED_BACKLOG) backlog.shift();
    };
    const stderrTail: string[] = [];
    // What the child may echo on stderr: its env secret and the credentials it was sent lately.
    const recentAuth: UpstreamAuth[] = [];
    let childSecrets = staticSecrets;
    const sentToChild = (auth: UpstreamAuth | undefined) => {
      if (auth === undefined) return;
      recentAuth.push(auth);
      if (recentAuth.length > RECENT_CREDENTIALS) recentAuth.shift();
      childSecrets = sentSecrets(cfg, ...recentAuth);
    };
    let closed = false;
    let spoke = false;
    let exitError: GatewayError | undefined;

    const ready = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => {
        reject(
          new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} failed to start: ${err.message}`, {
            cause: err,
          }),
        );
      });
    });
    ready.catch(() => undefined);

    const fail = (err: GatewayError) => {
      exitError ??= err;
      closed = true;
      for (const ch of pending.values()) ch.fail(err);
      pending.clear();
      byProgress.clear();
      listener?.close();
      live.delete(session);
    };

    // 'close' (stdout drained), not 'exit': a response written just before exiting still reaches its request.
    child.on('close', (code, sig) => {
      const tail = stderrTail.length > 0 ? `; stderr: ${stderrTail.slice(-3).join(' | ')}` : '';
      fail(new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} exited (${sig ?? `code ${code}`})${tail}`));
    });
    child.on('error', (err) =>
      fail(new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name}: ${err.message}`, { cause: err })),
    );
    child.stdin.on('error', () => undefined);

    // Bounded: a stderr line is cut at STDERR_LINE_BYTES, whatever the child writes.
    const stderrLines = new LineSplitter(STDERR_LINE_BYTES, `upstream ${cfg.name} stderr`, undefined, true);
    // Scrubbed before it is kept or logged: the secret in the child's environment, and any credential.
    child.stderr.on('data', (chunk: Buffer) => {
      for (const raw of stderrLines.push(chunk)) {
        const line = upstreamDetail(raw, childSecrets, STDERR_LINE_BYTES);
        stderrTail.push(line);
        if (stderrTail.length > 20) stderrTail.shift();
        log.debug({ upstream: cfg.name, pid: child.pid }, `stderr: ${line}`);
      }
    });

    const route = (m: JsonRpcMessage) => {
      if (isResponse(m)) {
        const ch = m.id === null ? undefined : pending.get(m.id);
        if (ch === undefined) {
          log.warn({ upstream: cfg.name, id: m.id }, 'response for no request in flight; dropped');
          return;
        }
        pending.delete(m.id!);
        ch.push(m);
        ch.close();
        return;
      }
      if (isNotification(m) && m.method === 'notifications/progress') {
        const token = m.params?.progressToken;
        const ch = typeof token === 'string' || typeof token === 'number' ? byProgress.get(token) : undefined;
        if (ch) return ch.push(m);
      }
      if (isRequest(m) && pending.size > 0) {
        // No related-request id on stdio: serve the newest request in flight.
        return [...pending.values()].at(-1)!.push(m);
      }
      deliverUnrelated(m);
    };

    const onLine = (line: string) => {
      spoke = true;
      if (line.trim() === '') return;
      let v: unknown;
      try {
        v = parseUpstreamJson(`upstream ${cfg.name}`, line);
      } catch (err) {
        return log.warn(
          { upstream: cfg.name, line: upstreamDetail(line, childSecrets, 200) },
          `line on upstream stdout dropped: ${(err as Error).message}`,
        );
      }
      const problem = checkMessage(v);
      if (problem !== undefined)
        return log.warn({ upstream: cfg.name, problem }, 'invalid JSON-RPC from upstream dropped');
      route(v as JsonRpcMessage);
    };
    // Bounded lines: one over maxResponseBytes (or past the in-flight budget) ends the session
    // with UPSTREAM_TOO_LARGE for every request in flight, and the child is stopped.
    const stdoutLines = new LineSplitter(cfg.maxResponseBytes, `upstream ${cfg.name}`, budget);
    child.stdout.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = stdoutLines.push(chunk);
      } catch (err) {
        fail(err as GatewayError);
        child.stdout.destroy();
        child.kill('SIGKILL');
        return;
      }
      for (const line of lines) onLine(line);
      holdBack();
    });
    // Back-pressure: while a request's (or the GET stream's) unread messages are past
    // QUEUE_HIGH_WATER, stdout is not read (the child blocks on its pipe) until they are taken.
    const holdBack = () => {
      const full = [...pending.values(), ...(listener !== undefined ? [listener] : [])].find(
        (ch) => ch.size >= QUEUE_HIGH_WATER,
      );
      if (full === undefined) {
        if (child.stdout.isPaused()) child.stdout.resume();
        return;
      }
      if (!child.stdout.isPaused()) child.stdout.pause();
      full.onDrain(holdBack);
    };
    child.stdout.on('close', () => stdoutLines.clear());

    const write = async (m: JsonRpcMessage) => {
      await ready;
      if (closed) throw exitError ?? new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} session is closed`);
      await new Promise<void>((resolve, reject) =>
        child.stdin.write(`${JSON.stringify(m)}\n`, (err) =>
          err ? reject(new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name}: ${err.message}`)) : resolve(),
        ),
      );
    };

    const session: UpstreamSession = {
      get closed() {
        return closed;
      },
      async *request(original, opts = {}) {
        const { signal, auth } = opts;
        // stdio has no headers: a credential placed in _meta travels with the request.
        sentToChild(auth);
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
        if (closed)
          throw exitError ?? new GatewayError('UPSTREAM_UNAVAILABLE', `upstream ${cfg.name} session is closed`);
        if (pending.has(msg.id))
          throw new GatewayError('INVALID_REQUEST', `Invalid Request: id ${String(msg.id)} is already in flight`);
        const ch = new Channel<JsonRpcMessage>();
        pending.set(msg.id, ch);
        const meta = msg.params?._meta as { progressToken?: unknown } | undefined;
        const token = meta?.progressToken;
        if (typeof token === 'string' || typeof token === 'number') byProgress.set(token, ch);
        let timer: Timer | undefined;
        const arm = () => {
          timer?.cancel();
          const ms = spoke ? cfg.timeoutMs : Math.max(cfg.timeoutMs, STARTUP_ALLOWANCE_MS);
          timer = clock.after(ms, () => {
            pending.delete(msg.id);
            ch.fail(new GatewayError('UPSTREAM_TIMEOUT', `upstream ${cfg.name} did not answer within ${ms} ms`));
            holdBack();
          });
        };
        const onAbort = () => {
          if (!pending.has(msg.id)) return;
          pending.delete(msg.id);
          ch.close();
          holdBack();
          void write({
            jsonrpc: '2.0',
            method: 'notifications/cancelled',
            params: { requestId: msg.id, reason: 'client went away' },
          }).catch(() => undefined);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        try {
          arm();
          await write(msg);
          for await (const m of ch) {
            arm();
            yield m;
          }
        } finally {
          timer?.cancel();
          signal?.removeEventListener('abort', onAbort);
          pending.delete(msg.id);
          if (typeof token === 'string' || typeof token === 'number') byProgress.delete(token);
          holdBack();
        }
      },
      send: (m) => write(m),
      listen(signal) {
        // One listener at a time: a new GET stream replaces the previous one.
        listener?.close();
        const mine = new Channel<JsonRpcMessage>();
        for (const m of backlog.splice(0)) mine.push(m);
        if (closed) mine.close();
        else listener = mine;
        holdBack();
        signal.addEventListener(
          'abort',
          () => {
            if (listener === mine) listener = undefined;
            mine.close();
            holdBack();
          },
          { once: true },
        );
        return Promise.resolve(mine);
      },
      async close() {
        if (closed && child.exitCode !== null) return;
        closed = true;
        live.delete(session);
        child.stdin.end();
        const exited = new Promise<void>((resolve) =>
          child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
        );
        // The child's exit keeps the process alive meanwhile (its pipes are open), not these timers.
        const term = clock.after(2_000, () => child.kill('SIGTERM'));
        const kill = clock.after(5_000, () => child.kill('SIGKILL'));
        await exited;
        term.cancel();
        kill.cancel();
      },
    };
    live.add(session);
    return ready.then(() => session);
  }

  return {
    name: cfg.name,
    transport: 'stdio',
    open,
    async shutdown() {
      await Promise.all([...live].map((s) => s.close()));
    },
  };
}
