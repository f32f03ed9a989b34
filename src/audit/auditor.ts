import { canonicalJson } from '../canonical-json.js';
import { type Clock, systemClock } from '../clock.js';
import type { GatewayError } from '../errors.js';
import { Exchange, type RecordedDecision } from '../exchange.js';
import type { Identity } from '../identity/identity.js';
import { withoutCredentials } from '../masking/mask.js';
import type { JsonRpcMessage, JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { DecisionOutcome } from '../policy/decide.js';
import type { AuditLog } from './log.js';
import { type AuditEvent, type RawMember, sha256Hex } from './record.js';

const day = (d: Date) => d.toISOString().slice(0, 10);
const hour = (d: Date) => d.toISOString().slice(11, 13);

/**
 * A session's name in a stream path: its id, or (a sealed id of several replicas, longer than a file name may
 * be) a digest of it. The records carry the full id either way.
 */
export function sessionStreamName(id: string): string {
  return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : `s-${sha256Hex(id).slice(0, 40)}`;
}

/**
 * Stream ids are repo paths: one per MCP session, one per upstream and hour for stateless traffic, one per
 * approval, one per hour for the gateway's own. With `replica` (multi-replica mode) each carries the replica
 * after its date (`sessions/<date>/<replica>/<id>`): a session or approval that several replicas recorded is
 * a stream of each replica's log, and no two replicas' streams share a name.
 */
export function streamsOf(replica?: string) {
  const r = replica === undefined ? '' : `${replica}/`;
  return {
    session: (id: string, createdAt: number) => `sessions/${day(new Date(createdAt))}/${r}${sessionStreamName(id)}`,
    stateless: (upstream: string, at: Date) => `stateless/${day(at)}/${r}${upstream}-${hour(at)}`,
    gateway: (at: Date) => `gateway/${day(at)}/${r}${hour(at)}`,
    approval: (id: string, createdAt: string) => `approvals/${createdAt.slice(0, 10)}/${r}${id}`,
  };
}

/** An approval's event, recorded in the approval's own stream. */
export interface ApprovalAuditEvent {
  readonly type:
    | 'approval.requested'
    | 'approval.approved'
    | 'approval.denied'
    | 'approval.expired'
    | 'approval.executed';
  readonly approval: { readonly id: string; readonly createdAt: string; readonly url: string | null };
  readonly upstream: string;
  readonly caller: { readonly sub: string };
  readonly method: string;
  readonly tool?: string;
  readonly data: Record<string, unknown>;
}

export interface Auditor {
  readonly enabled: boolean;
  /** The exchange with this id, recording what it is told. */
  begin(exchange: string): Exchange;
  /** Fail closed: throws AUDIT_UNAVAILABLE while nothing can be recorded. */
  assertWritable(): void;
  /** Record the end of a session; resolves once durable. */
  sessionClosed(
    session: { id: string; createdAt: number; owner: string; upstream: string },
    reason: string,
  ): Promise<void>;
  /** Record an approval event (sent at once, not awaited here: see approvalDurable). */
  approval(event: ApprovalAuditEvent): void;
  /** Resolves once the approval's records so far are durable; rejects if one of them could not be made durable. */
  approvalDurable(approvalId: string): Promise<void>;
}

export const disabledAuditor: Auditor = {
  enabled: false,
  begin: (exchange) => new Exchange(exchange),
  assertWritable: () => undefined,
  sessionClosed: () => Promise.resolve(),
  approval: () => undefined,
  approvalDurable: () => Promise.resolve(),
};

/** The params of a request its policy input carries (as tool, prompt, uri, arguments, task, …). */
const IN_INPUT: Readonly<Record<string, readonly string[]>> = {
  'tools/call': ['name', 'arguments', 'task'],
  'prompts/get': ['name', 'arguments'],
  'completion/complete': ['ref'],
  'resources/read': ['uri'],
  'resources/subscribe': ['uri'],
  'resources/unsubscribe': ['uri'],
};
/** Carried for every method: the caller's _meta (less progress token and envelope), its input responses and request state. */
const ALWAYS_IN_INPUT = new Set(['_meta', 'inputResponses', 'requestState']);

/**
 * What else a request's params hold, which the policy input does not (a task id, a completion's
 * argument, a log level, initialize's capabilities): recorded beside the input, so the record says
 * all that went upstream. Undefined when nothing.
 */
function paramsBesideInput(method: string, params: unknown): Record<string, unknown> | undefined {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) return undefined;
  const known = IN_INPUT[method] ?? [];
  const rest = Object.entries(params).filter(([k]) => !ALWAYS_IN_INPUT.has(k) && !known.includes(k));
  return rest.length === 0 ? undefined : Object.fromEntries(rest);
}

/** Keep records bounded: an oversized payload is replaced by its size and (canonical) hash. */
function bounded(value: unknown, maxBytes: number): unknown {
  // Native JSON.stringify measures the size; only an oversized value pays for canonical JSON.
  if (Buffer.byteLength(JSON.stringify(value) ?? '') <= maxBytes) return value;
  const text = canonicalJson(value);
  return { truncated: true, bytes: Buffer.byteLength(text), sha256: sha256Hex(text) };
}

/** `replica`: multi-replica mode (store.postgres.replicaId): the stream names carry it (streamsOf). */
export function createAuditor(
  log: AuditLog,
  opts: { maxRecordedBytes: number; clock?: Clock; replica?: string },
): Auditor {
  const clock = opts.clock ?? systemClock;
  const streams = streamsOf(opts.replica);
  const now = () => new Date(clock.now());
  /**
   * Per approval, its records not yet known durable (all of them: a failed one
   * keeps the promise rejected, so a call it would release is never forwarded).
   */
  const approvals = new Map<string, Promise<void>>();
  const approvalDurable = (id: string): Promise<void> => approvals.get(id) ?? Promise.resolve();
  const ctx: AuditContext = { log, maxRecordedBytes: opts.maxRecordedBytes, now, approvalDurable, streams };
  return {
    enabled: true,
    assertWritable: () => log.assertWritable(),
    approval(e) {
      const a = e.approval;
      const written = log.append(streams.approval(a.id, a.createdAt), {
        type: e.type,
        upstream: e.upstream,
        caller: e.caller,
        method: e.method,
        ...(e.tool !== undefined ? { tool: e.tool } : {}),
        data: { approval_id: a.id, url: a.url, ...e.data },
      });
      const before = approvals.get(a.id);
      const all = before === undefined ? written : Promise.all([before, written]).then(() => undefined);
      all.catch(() => undefined);
      approvals.set(a.id, all);
      // Forget it once durable (a failure stays).
      void all.then(
        () => {
          if (approvals.get(a.id) === all) approvals.delete(a.id);
        },
        () => undefined,
      );
    },
    approvalDurable,
    sessionClosed(session, reason) {
      const stream = streams.session(session.id, session.createdAt);
      const written = log.append(stream, {
        type: 'session.close',
        session: session.id,
        upstream: session.upstream,
        caller: { sub: session.owner },
        data: { reason },
      });
      log.forget(stream);
      return written;
    },
    begin: (exchange) => new AuditedExchange(ctx, exchange),
  };
}

/** What every audited exchange of one auditor shares. */
interface AuditContext {
  readonly log: AuditLog;
  readonly maxRecordedBytes: number;
  readonly now: () => Date;
  readonly approvalDurable: (approvalId: string) => Promise<void>;
  /** The stream names (carrying the replica in multi-replica mode). */
  readonly streams: ReturnType<typeof streamsOf>;
}

type Event = { -readonly [K in keyof AuditEvent]: AuditEvent[K] };

/** An exchange whose facts are recorded: its decision, then its answer or error. */
class AuditedExchange extends Exchange {
  readonly #ctx: AuditContext;
  #stream: string | undefined;
  #who: AuditEvent['caller'];
  #session: string | undefined;
  /** Events from before the stream was known, with when they happened. */
  readonly #pending: { event: AuditEvent; ts: string; raw?: RawMember }[] = [];
  #linked: Record<string, unknown> = {};
  /** The decision's record once it is in the log (it has a stream). */
  #decision: Promise<void> | undefined;
  /** The decision masks nothing (or there was none yet): what is recorded is still cleaned of credentials. */
  #masksNothing = true;
  /** Where the exchange's records go while it has no stream of its own, once something had to be durable. */
  #unbound: string | undefined;

  constructor(ctx: AuditContext, id: string) {
    super(id);
    this.#ctx = ctx;
  }

  #base(type: AuditEvent['type']): Event {
    const e: Event = { type, exchange: this.id };
    if (this.#who) e.caller = this.#who;
    const upstream = this.upstream;
    if (upstream) e.upstream = upstream;
    if (this.#session) e.session = this.#session;
    // The method and tool as decided (a record before the decision names neither).
    const decided = this.decision === undefined ? undefined : this.input;
    if (decided !== undefined) {
      if (decided.mcp.method) e.method = decided.mcp.method;
      if (decided.mcp.tool) e.tool = decided.mcp.tool;
    }
    return e;
  }

  #emit(event: AuditEvent, raw?: RawMember): Promise<void> | undefined {
    const ts = this.#ctx.now().toISOString();
    if (this.#stream === undefined) {
      this.#pending.push({ event, ts, ...(raw ? { raw } : {}) });
      return undefined;
    }
    // Held: durable together with the answer (finish), in the same group commit, unless durable() is asked for first.
    return this.#ctx.log.append(this.#stream, event, { defer: true, ts, ...(raw ? { raw } : {}) });
  }

  #durable(): Promise<void> {
    const { log } = this.#ctx;
    if (this.#decision === undefined && this.#pending.length > 0) {
      // No stream yet (initialize: the session exists only once the upstream answered): what the
      // forward rests on goes to the gateway's stream now; session.open and the answer follow in the session's.
      const at = this.#ctx.streams.gateway(this.#ctx.now());
      this.#unbound = at;
      const held = this.#pending
        .splice(0)
        .map((p) =>
          log.append(at, { ...p.event, ...this.#base(p.event.type) }, { ts: p.ts, ...(p.raw ? { raw: p.raw } : {}) }),
        );
      this.#decision = Promise.all(held).then(() => undefined);
      this.#decision.catch(() => undefined);
    }
    log.sendNow();
    const id = this.#linked.approval_id;
    const waits = [
      this.#decision ?? Promise.resolve(),
      ...(typeof id === 'string' ? [this.#ctx.approvalDurable(id)] : []),
    ];
    return Promise.all(waits).then(() => undefined);
  }

  #finish(event: AuditEvent, raw?: RawMember): Promise<void> {
    const { log } = this.#ctx;
    this.#stream ??= this.#unbound ?? this.#ctx.streams.gateway(this.#ctx.now());
    const stream = this.#stream;
    const held = this.#pending
      .splice(0)
      .map((p) => log.append(stream, p.event, { ts: p.ts, ...(p.raw ? { raw: p.raw } : {}) }));
    const last = log.append(stream, event, raw ? { raw } : {});
    return held.length === 0 ? last : Promise.all([...held, last]).then(() => undefined);
  }

  #ms(): number {
    return Number(process.hrtime.bigint() - this.started) / 1e6;
  }

  override caller(identity: Identity, upstream: string): void {
    super.caller(identity, upstream);
    this.#who = { sub: identity.sub, groups: identity.groups, issuer: identity.issuer };
  }

  override bind(b: { session: { id: string; createdAt: number } } | { stateless: string }): void {
    let stream: string;
    if ('session' in b) {
      this.#session = b.session.id;
      stream = this.#ctx.streams.session(b.session.id, b.session.createdAt);
    } else stream = this.#ctx.streams.stateless(b.stateless, this.#ctx.now());
    this.#stream = stream;
    const held = this.#pending
      .splice(0)
      .map((p) =>
        this.#ctx.log.append(
          stream,
          { ...p.event, ...this.#base(p.event.type) },
          { ts: p.ts, ...(p.raw ? { raw: p.raw } : {}) },
        ),
      );
    if (held.length > 0) {
      this.#decision = Promise.all(held).then(() => undefined);
      this.#decision.catch(() => undefined);
    }
  }

  override decided(outcome: DecisionOutcome, masked: JsonRpcMessage | undefined): RecordedDecision {
    super.decided(outcome, masked);
    const input = this.input;
    if (input === undefined) throw new Error('an exchange is decided on the input it was asked');
    const max = this.#ctx.maxRecordedBytes;
    const d = outcome.decision;
    this.#masksNothing = d.maskRules.length === 0;
    // Record what the decision lets be recorded: the arguments as its mask rules leave them, and
    // nothing of a credential anywhere in what the caller sent (a uri, _meta, input responses: none
    // of which the rules' masked arguments cover), whatever the policy masks.
    let recordedInput = input;
    if (d.maskRules.length > 0 && input.mcp.arguments !== undefined && masked !== undefined) {
      const args = ('params' in masked ? (masked.params as { arguments?: unknown } | undefined) : undefined)?.arguments;
      if (args !== undefined)
        recordedInput = { ...input, mcp: { ...input.mcp, arguments: args as Record<string, unknown> } };
    }
    recordedInput = withoutCredentials(recordedInput);
    const event = this.#base('decision');
    // A client notification or response carries no arguments of its own: what goes upstream is the message, recorded masked.
    const relayed =
      masked !== undefined && input.mcp.kind !== 'request' ? { message: bounded(withoutCredentials(masked), max) } : {};
    const beside =
      masked !== undefined && input.mcp.kind === 'request' && 'params' in masked
        ? paramsBesideInput(input.mcp.method, masked.params)
        : undefined;
    event.data = {
      policy: { revision: outcome.revision.commit ?? null, bundle_digest: outcome.revision.bundleDigest },
      allow: d.allow,
      valid: d.valid,
      // A policy's reasons may quote what it was asked (a uri holding a token).
      reasons: withoutCredentials(d.reasons),
      risk: d.risk,
      approval_required: d.approval.required,
      mask: d.mask,
      credential_ttl_seconds: d.credential.ttl_seconds,
      ...(d.rate ? { rate: d.rate } : {}),
      // Of the exact bytes the policy evaluated (arguments unmasked: the hash proves what it saw).
      input_sha256: sha256Hex(outcome.inputJson),
      ...relayed,
      ...(beside !== undefined ? { params: bounded(withoutCredentials(beside), max) } : {}),
    };
    // The policy input is the request as the policy saw it (method, tool or uri, arguments):
    // unmasked and within bounds it is recorded as exactly the bytes evaluated.
    let written: Promise<void> | undefined;
    if (recordedInput === input && Buffer.byteLength(outcome.inputJson) <= max) {
      written = this.#emit(event, { key: 'input', json: outcome.inputJson });
    } else {
      event.data = { ...event.data, input: bounded(recordedInput, max) };
      written = this.#emit(event);
    }
    // Nobody may wait for it (a denial answers with its error): a failure is the answer's to report.
    written?.catch(() => undefined);
    this.#decision = written;
    return { durable: () => this.#durable() };
  }

  override opened(s: { id: string; createdAt: number }, protocolVersion: string): void {
    this.#session = s.id;
    this.#stream = this.#ctx.streams.session(s.id, s.createdAt);
    this.#pending.push({
      event: { ...this.#base('session.open'), data: { protocol_version: protocolVersion } },
      ts: this.#ctx.now().toISOString(),
    });
  }

  override link(fields: Record<string, unknown>): void {
    this.#linked = { ...this.#linked, ...fields };
  }

  /**
   * What the upstream sent is masked by the decision's rules before it is delivered and recorded; a
   * decision that masks nothing (no rules, an undefined mask, a denial) still records no credential.
   */
  #recordable<T>(message: T): T {
    return this.#masksNothing ? withoutCredentials(message) : message;
  }

  override delivered(message: JsonRpcMessage): Promise<void> {
    const event = this.#base('message');
    event.data = { direction: 'to_client', message: bounded(this.#recordable(message), this.#ctx.maxRecordedBytes) };
    // Durable now (not held): the caller receives it only after.
    return this.#stream === undefined ? this.#finish(event) : this.#ctx.log.append(this.#stream, event);
  }

  override answered(answer: JsonRpcResponse, relayed: number): Promise<void> {
    const response = this.#recordable(answer);
    const max = this.#ctx.maxRecordedBytes;
    const event = this.#base('response');
    const data: Record<string, unknown> = { ...this.#linked, ok: response.error === undefined };
    event.data = data;
    let raw: RawMember | undefined;
    if (response.error !== undefined) {
      data.error = response.error;
      data.bytes = Buffer.byteLength(JSON.stringify(response));
    } else {
      const result = JSON.stringify(response.result) ?? 'null';
      const resultBytes = Buffer.byteLength(result);
      // The response's size without serializing the result twice: its JSON with the result as `0` is one byte over the rest.
      data.bytes = Buffer.byteLength(JSON.stringify({ ...response, result: 0 })) - 1 + resultBytes;
      if (resultBytes <= max) raw = { key: 'result', json: result };
      else data.result = bounded(response.result, max);
    }
    data.relayed = relayed;
    data.ms = this.#ms();
    return this.#finish(event, raw);
  }

  override failed(err: GatewayError, id: string | number | null): Promise<void> {
    return this.#finish({
      ...this.#base('error'),
      data: {
        ...this.#linked,
        code: err.code,
        http_status: err.status,
        rpc_code: err.rpcCode,
        message: withoutCredentials(err.message),
        id,
        ms: this.#ms(),
      },
    });
  }
}
