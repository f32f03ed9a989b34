import { randomBytes } from 'node:crypto';
import { canonicalJson } from '../../canonical-json.js';
import { type Clock, systemClock } from '../../clock.js';
import type { StaticSecret } from '../../config/types.js';
import { GatewayError } from '../../errors.js';
import { sentSecrets, upstreamDetail } from '../../masking/scrub.js';
import { Channel } from '../channel.js';
import {
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcRequest,
} from '../jsonrpc.js';
import { META_CLIENT_CAPABILITIES, stripEnvelope, toModernResult, UPSTREAM_PROTOCOL_VERSION } from '../protocol.js';
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
 * Requests parked on an upstream's sampling / elicitation / roots request until the 2026 caller retries
 * with its answer, per upstream; past it one is given up (its upstream stream closed): the oldest of the
 * caller that holds the most, so one caller's flood costs that caller, not the others.
 */
const MAX_PARKED = 64;
/** …and per caller on that upstream: past it, that caller's own oldest is given up. */
const MAX_PARKED_PER_CALLER = 16;
/** How long a parked request waits for the caller's retry. */
const PARKED_TTL_MS = 10 * 60_000;
/** Unread notifications one 2026 listener may fall behind by before the oldest are dropped. */
const LISTENER_BACKLOG = 256;
const META_SUBSCRIPTION_ID = 'io.modelcontextprotocol/subscriptionId';
/** subscriptions/listen filter flag → the list-changed notification and the capability it needs. */
const LIST_CHANGED: ReadonlyArray<readonly [flag: string, method: string, capability: string]> = [
  ['toolsListChanged', 'notifications/tools/list_changed', 'tools'],
  ['promptsListChanged', 'notifications/prompts/list_changed', 'prompts'],
  ['resourcesListChanged', 'notifications/resources/list_changed', 'resources'],
];

/**
 * Task ids the shared session's callers started, each bound to its caller: at most MAX_TASKS per
 * upstream and MAX_TASKS_PER_CALLER per caller. Past a caller's share its own oldest binding is
 * forgotten, past the upstream's the oldest of the caller holding the most (a forgotten task is
 * out of its caller's reach through gitgate; nobody else ever reaches it).
 */
const MAX_TASKS = 4096;
const MAX_TASKS_PER_CALLER = 256;
/** The tasks methods that name one task by `params.taskId`. */
const TASK_TARGETED: ReadonlySet<string> = new Set(['tasks/get', 'tasks/result', 'tasks/cancel', 'tasks/update']);

/** The task a session-era result starts (2025-11-25 CreateTaskResult: `task.taskId`). */
function startedTask(result: unknown): string | undefined {
  const task = (result as { task?: { taskId?: unknown } } | null | undefined)?.task;
  return task !== null && typeof task === 'object' && typeof task.taskId === 'string' ? task.taskId : undefined;
}

/** The key of the one input request gitgate puts in an input-required result. */
const INPUT_KEY = 'upstream_request';
/** Which client capability lets a 2026 caller answer which upstream request. */
const CAPABILITY_FOR: Readonly<Record<string, string>> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

/** The capabilities the shared session declares: requests 2026 callers can answer as input-required rounds. */
const RELAYED_CAPABILITIES = { sampling: {}, elicitation: { form: {} }, roots: {} };

/** A request whose upstream stream is held while its caller answers what the upstream asked. */
interface Parked {
  readonly owner: string;
  readonly method: string;
  readonly target: unknown;
  /** The call's arguments (canonical JSON): a retry sends them again, unchanged (the upstream runs these). */
  readonly args: string;
  readonly gid: string;
  readonly gtoken: string | undefined;
  readonly serverRequestId: JsonRpcId;
  readonly stream: AsyncIterator<JsonRpcMessage>;
  readonly session: UpstreamSession;
  readonly serverInfo: unknown;
  readonly at: number;
}

/**
 * The upstream session gitgate holds itself to serve stateless (2026-07-28)
 * requests: opened and initialized by the gateway, shared by all callers, with
 * request ids and progress tokens rewritten so callers cannot collide.
 * It reopens after the upstream dies, with backoff.
 */
/** What a retry must name again: the tool or prompt name, or the uri. */
function targetOf(msg: JsonRpcRequest): unknown {
  return msg.params?.name ?? msg.params?.uri;
}

/**
 * …and the arguments it must send again as they were: the policy decides the retry on them, and the
 * record shows them, while the upstream goes on with those of the first round.
 */
function argumentsOf(msg: JsonRpcRequest): string {
  return canonicalJson(msg.params?.arguments ?? {});
}

function hasCapability(caps: unknown, name: string): boolean {
  if (caps === null || typeof caps !== 'object') return false;
  const c = (caps as Record<string, unknown>)[name];
  return c !== null && typeof c === 'object';
}

/** A session-era upstream knows no input-required retry: its members stay with gitgate. */
function withoutRetry(params: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (params === undefined || !('inputResponses' in params || 'requestState' in params)) return params;
  const { inputResponses: _i, requestState: _s, ...rest } = params;
  return rest;
}

export class SharedUpstreamSession {
  #current: Promise<{ session: UpstreamSession; init: InitializeResult }> | undefined;
  #seq = 0;
  #failures = 0;
  #lastFailure = 0;
  /** gateway id → who sent it and with which id, for cancellation. */
  readonly #inflight = new Map<string, { owner: string; id: JsonRpcId }>();
  /** requestState handed to a caller → its parked request (insertion order = age). */
  readonly #parked = new Map<string, Parked>();
  /** 2026 listeners fed by the one upstream GET stream, and what ends that stream once none is left. */
  readonly #listeners = new Set<Channel<JsonRpcMessage>>();
  /**
   * task id → the caller that started it. The upstream scopes tasks to its session, and this session
   * is every stateless caller's: a caller reaches (gets, reads, updates, cancels, lists) only its own.
   */
  readonly #taskOwners = new Map<string, string>();
  /** …and per caller, oldest first. */
  readonly #tasksOf = new Map<string, string[]>();
  #pump: { ctl: AbortController; open: Promise<void> } | undefined;

  constructor(
    private readonly connector: UpstreamConnector,
    private readonly clientInfo: { name: string; version: string },
    /** Credentials for gitgate's own calls (initialize, cancellation, refusals), as subject gitgate. */
    private readonly ownAuth: (method: string) => UpstreamAuth = () => ({ headers: {} }),
    /** The upstream's static secret, scrubbed (with the credential sent) from the refusals it copies into errors. */
    private readonly upstream: { readonly secret?: StaticSecret } = {},
    /** The clock of the reopen backoff and of parked requests' expiry. */
    private readonly clock: Clock = systemClock,
  ) {}

  async ready(): Promise<{ session: UpstreamSession; init: InitializeResult }> {
    if (this.#current !== undefined) {
      const cur = await this.#current.catch(() => undefined);
      if (cur !== undefined && !cur.session.closed) return cur;
      this.#current = undefined;
    }
    const wait = RESTART_BACKOFF_MS[Math.min(this.#failures, RESTART_BACKOFF_MS.length - 1)]!;
    if (this.clock.now() - this.#lastFailure < wait) {
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
        this.#lastFailure = this.clock.now();
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
      // What 2026 callers may answer within a request (each only when the caller itself declared it).
      params: {
        protocolVersion: UPSTREAM_PROTOCOL_VERSION,
        capabilities: RELAYED_CAPABILITIES,
        clientInfo: this.clientInfo,
      },
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

  /**
   * Forward one stateless request; yields its progress and its response, with the caller's ids restored.
   * An upstream request for sampling, elicitation or roots that the caller declared it can answer becomes
   * an input-required result (2026-07-28): the upstream's stream is held, and the caller's retry with
   * `requestState` and `inputResponses` answers the upstream and goes on with the same stream.
   */
  async *request(
    msg: JsonRpcRequest,
    owner: string,
    opts: { signal?: AbortSignal; auth?: UpstreamAuth } = {},
  ): AsyncGenerator<JsonRpcMessage> {
    const state = msg.params?.requestState;
    if (state !== undefined) {
      yield* this.#resume(msg, owner, state);
      return;
    }
    if (TASK_TARGETED.has(msg.method)) {
      const taskId = msg.params?.taskId;
      if (typeof taskId !== 'string' || this.#taskOwners.get(taskId) !== owner)
        throw new GatewayError('INVALID_PARAMS', `Invalid params: ${msg.method} names no task of this caller`, {
          data: { id: msg.id },
        });
    }
    const { session, init } = await this.ready();
    const gid = `gitgate-${++this.#seq}`;
    const params = withoutRetry(stripEnvelope(msg.params));
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
    const stream = session.request(forwarded, { ...opts, owner })[Symbol.asyncIterator]();
    yield* this.#relay(msg, owner, { gid, gtoken, stream, session, serverInfo: init.serverInfo });
  }

  /** The caller's retry: answer the upstream request its parked request waits on, then go on relaying. */
  async *#resume(msg: JsonRpcRequest, owner: string, state: unknown): AsyncGenerator<JsonRpcMessage> {
    const p = typeof state === 'string' ? this.#parked.get(state) : undefined;
    if (
      p === undefined ||
      p.owner !== owner ||
      p.method !== msg.method ||
      p.target !== targetOf(msg) ||
      p.args !== argumentsOf(msg) ||
      this.clock.now() - p.at > PARKED_TTL_MS
    ) {
      throw new GatewayError('INVALID_PARAMS', 'Invalid params: requestState is unknown, expired or not this call’s', {
        data: { id: msg.id },
      });
    }
    this.#parked.delete(state as string);
    const answer = (msg.params?.inputResponses as Record<string, unknown> | undefined)?.[INPUT_KEY];
    await p.session.send(
      answer !== null && typeof answer === 'object' && !Array.isArray(answer)
        ? { jsonrpc: '2.0', id: p.serverRequestId, result: answer as Record<string, unknown> }
        : { jsonrpc: '2.0', id: p.serverRequestId, error: { code: -32602, message: 'the client gave no answer' } },
      this.ownAuth('response'),
    );
    this.#inflight.set(p.gid, { owner, id: msg.id });
    yield* this.#relay(msg, owner, p);
  }

  async *#relay(
    msg: JsonRpcRequest,
    owner: string,
    s: {
      gid: string;
      gtoken: string | undefined;
      stream: AsyncIterator<JsonRpcMessage>;
      session: UpstreamSession;
      serverInfo: unknown;
    },
  ): AsyncGenerator<JsonRpcMessage> {
    const token = (msg.params?._meta as Record<string, unknown> | undefined)?.progressToken;
    const caps = (msg.params?._meta as Record<string, unknown> | undefined)?.[META_CLIENT_CAPABILITIES];
    let refused = 0;
    let parked = false;
    try {
      for (let r = await s.stream.next(); !r.done; r = await s.stream.next()) {
        const m = r.value;
        if (isResponse(m)) {
          if (m.result !== undefined) this.#ownTask(startedTask(m.result), owner);
          const result = msg.method === 'tasks/list' ? this.#onlyOwn(m.result, owner) : m.result;
          yield result === undefined
            ? { ...m, id: msg.id }
            : { ...m, id: msg.id, result: toModernResult(msg.method, result, s.serverInfo) };
        } else if (isNotification(m) && m.method === 'notifications/progress' && m.params?.progressToken === s.gtoken) {
          if (token !== undefined) yield { ...m, params: { ...m.params, progressToken: token } };
        } else if (isRequest(m)) {
          const capability = Object.hasOwn(CAPABILITY_FOR, m.method) ? CAPABILITY_FOR[m.method]! : undefined;
          if (capability !== undefined && hasCapability(caps, capability)) {
            // The caller can answer it: an input-required result, the stream held for its retry.
            const requestState = this.#park({
              owner,
              method: msg.method,
              target: targetOf(msg),
              args: argumentsOf(msg),
              gid: s.gid,
              gtoken: s.gtoken,
              serverRequestId: m.id,
              stream: s.stream,
              session: s.session,
              serverInfo: s.serverInfo,
              at: this.clock.now(),
            });
            parked = true;
            yield {
              jsonrpc: '2.0',
              id: msg.id,
              result: {
                resultType: 'input_required',
                inputRequests: {
                  [INPUT_KEY]: { method: m.method, ...(m.params !== undefined ? { params: m.params } : {}) },
                },
                requestState,
              },
            };
            return;
          }
          // 2026-07-28 servers may not send requests on a response stream; refuse so the upstream is not left waiting.
          // Each refusal is a signed credential and a request: past a few, the stream is a protocol error, not work.
          if (++refused > MAX_REFUSED_REQUESTS) {
            throw new GatewayError(
              'UPSTREAM_PROTOCOL',
              `upstream ${this.connector.name} sent more than ${MAX_REFUSED_REQUESTS} requests on a stateless response stream`,
            );
          }
          await s.session.send(
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
      if (!parked) {
        this.#inflight.delete(s.gid);
        void s.stream.return?.(undefined);
      }
    }
  }

  /** Bind a task the upstream started for `owner` to it (the first binding stands). */
  #ownTask(taskId: string | undefined, owner: string): void {
    if (taskId === undefined || this.#taskOwners.has(taskId)) return;
    const mine = this.#tasksOf.get(owner) ?? [];
    let from: string[] | undefined;
    if (mine.length >= MAX_TASKS_PER_CALLER) from = mine;
    else if (this.#taskOwners.size >= MAX_TASKS) {
      from = mine;
      for (const list of this.#tasksOf.values()) if (list.length > from.length) from = list;
    }
    const forgotten = from?.shift();
    if (forgotten !== undefined) {
      const of = this.#taskOwners.get(forgotten)!;
      this.#taskOwners.delete(forgotten);
      if (this.#tasksOf.get(of)?.length === 0) this.#tasksOf.delete(of);
    }
    this.#taskOwners.set(taskId, owner);
    mine.push(taskId);
    this.#tasksOf.set(owner, mine);
  }

  /** A tasks/list result with only the caller's own tasks (every other member of the result as it came). */
  #onlyOwn(result: unknown, owner: string): unknown {
    if (result === null || typeof result !== 'object') return result;
    const r = result as Record<string, unknown>;
    const tasks = Array.isArray(r.tasks) ? r.tasks : [];
    return {
      ...r,
      tasks: tasks.filter((t) => this.#taskOwners.get((t as { taskId?: unknown } | null)?.taskId as string) === owner),
    };
  }

  /**
   * Hold a request for its caller's retry. Expired ones are given up first; then, past the caller's
   * share, the caller's own oldest; past the upstream's cap, the oldest of the caller holding the most.
   */
  #park(p: Parked): string {
    for (const [key, old] of this.#parked) if (p.at - old.at > PARKED_TTL_MS) this.#giveUp(key, old);
    const held = new Map<string, Array<[string, Parked]>>();
    for (const entry of this.#parked) {
      const list = held.get(entry[1].owner);
      if (list === undefined) held.set(entry[1].owner, [entry]);
      else list.push(entry);
    }
    const mine = held.get(p.owner) ?? [];
    if (mine.length >= MAX_PARKED_PER_CALLER) this.#giveUp(...mine[0]!);
    else if (this.#parked.size >= MAX_PARKED) {
      let greediest = mine;
      for (const list of held.values()) if (list.length > greediest.length) greediest = list;
      this.#giveUp(...greediest[0]!);
    }
    const state = randomBytes(24).toString('base64url');
    this.#parked.set(state, p);
    return state;
  }

  #giveUp(key: string, old: Parked): void {
    this.#parked.delete(key);
    this.#inflight.delete(old.gid);
    void old.stream.return?.(undefined);
  }

  /**
   * 2026-07-28 `subscriptions/listen` on a session-era upstream: acknowledged with the part of the
   * filter the upstream can honor (its `listChanged` capabilities; resource subscriptions would change
   * the session every caller shares, so they are not honored), then the upstream's list-changed
   * notifications from its one GET stream, fanned out, tagged with this subscription's id. It ends
   * when the caller goes away or the upstream's stream ends.
   */
  async *listen(msg: JsonRpcRequest, signal: AbortSignal): AsyncGenerator<JsonRpcMessage> {
    const { init } = await this.ready();
    const filter = (msg.params?.notifications ?? {}) as Record<string, unknown>;
    const caps = init.capabilities as Record<string, { listChanged?: unknown } | undefined>;
    const honored = LIST_CHANGED.filter(([flag, , cap]) => filter[flag] === true && caps[cap]?.listChanged === true);
    const subscriptionId = String(msg.id);
    const wanted = new Set(honored.map(([, method]) => method));
    const ch = new Channel<JsonRpcMessage>(LISTENER_BACKLOG);
    const stop = () => ch.close();
    signal.addEventListener('abort', stop, { once: true });
    try {
      // Listening upstream before the caller is told it listens: nothing sent after the ack is missed.
      if (wanted.size > 0) {
        this.#listeners.add(ch);
        await this.#startPump();
      }
      yield {
        jsonrpc: '2.0',
        method: 'notifications/subscriptions/acknowledged',
        params: {
          _meta: { [META_SUBSCRIPTION_ID]: subscriptionId },
          notifications: Object.fromEntries(honored.map(([flag]) => [flag, true])),
        },
      };
      if (wanted.size === 0) return;
      for await (const m of ch) {
        if (!isNotification(m) || !wanted.has(m.method)) continue;
        yield {
          ...m,
          params: { ...m.params, _meta: { ...(m.params?._meta as object), [META_SUBSCRIPTION_ID]: subscriptionId } },
        };
      }
    } finally {
      signal.removeEventListener('abort', stop);
      this.#listeners.delete(ch);
      if (this.#listeners.size === 0) {
        this.#pump?.ctl.abort();
        this.#pump = undefined;
      }
    }
  }

  /** One GET stream on the shared session while anyone listens (resolves once it is open); each message goes to every listener. */
  #startPump(): Promise<void> {
    if (this.#pump !== undefined) return this.#pump.open;
    const ctl = new AbortController();
    const endAll = (err?: unknown) => {
      if (this.#pump?.ctl === ctl) this.#pump = undefined;
      for (const ch of this.#listeners) {
        if (err === undefined || ctl.signal.aborted) ch.close();
        else ch.fail(err);
      }
    };
    const open = (async () => {
      const { session } = await this.ready();
      const stream = await session.listen(ctl.signal, this.ownAuth('listen'));
      if (stream === undefined)
        throw new GatewayError('UPSTREAM_PROTOCOL', `upstream ${this.connector.name} offers no stream to listen on`);
      return stream;
    })();
    this.#pump = { ctl, open: open.then(() => undefined) };
    open.then(
      async (stream) => {
        try {
          for await (const m of stream) for (const ch of this.#listeners) ch.push(m);
          endAll();
        } catch (err) {
          endAll(err);
        }
      },
      (err: unknown) => endAll(err),
    );
    return this.#pump.open;
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
    this.#pump?.ctl.abort();
    for (const ch of this.#listeners) ch.close();
    for (const p of this.#parked.values()) void p.stream.return?.(undefined);
    this.#parked.clear();
    const cur = await this.#current?.catch(() => undefined);
    this.#current = undefined;
    await cur?.session.close(this.ownAuth('session/close'));
  }
}
