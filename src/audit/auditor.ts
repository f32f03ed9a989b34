import { canonicalJson } from '../canonical-json.js';
import { type Clock, systemClock } from '../clock.js';
import type { GatewayError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import type { JsonRpcMessage, JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { DecisionOutcome } from '../policy/decide.js';
import type { PolicyInput } from '../policy/input.js';
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

/** Records one HTTP exchange: its decision, then its answer or error. */
export interface ExchangeAudit {
  /** Which stream the exchange belongs to, once known. */
  bind(stream: { session: { id: string; createdAt: number } } | { stateless: string }): void;
  /** The caller, once authenticated. */
  caller(identity: Identity, upstream: string): void;
  /**
   * The decision, with the message as its mask rules leave it (`maskedCopy(message, maskRules)`: the
   * caller masks once, for the record and for reviewers; the auditor records it as given). Written at once but held:
   * it becomes durable with the answer (a denial and its error share one
   * fsync) unless the pipeline asks for `durable()` first, which it does
   * before anything is forwarded.
   */
  decided(input: PolicyInput, outcome: DecisionOutcome, masked: JsonRpcMessage | undefined): RecordedDecision;
  /** A new session opened by this exchange (initialize). */
  opened(session: { id: string; createdAt: number }, protocolVersion: string): void;
  /** Extra fields for this exchange's answer record (e.g. the approval it used). */
  link(fields: Record<string, unknown>): void;
  /** Durably record a message relayed to the caller that is not the answer (progress, a log line, an upstream request, a GET-stream notification), before the caller receives it. */
  delivered(message: JsonRpcMessage): Promise<void>;
  /** Durably record the answer before the client receives it. */
  answered(response: JsonRpcResponse, relayed: number): Promise<void>;
  /** Durably record the error before the client receives it. */
  failed(err: GatewayError, id: string | number | null): Promise<void>;
}

/** A decision record handed to the log (see ExchangeAudit.decided). */
export interface RecordedDecision {
  /**
   * Send it to be made durable now, in this turn's group commit, and resolve
   * once it is; rejects with AUDIT_UNAVAILABLE when it cannot be. Await it
   * before the call goes upstream. Once the exchange is linked to an approval
   * (`link({approval_id})`), it also waits for that approval's records so far,
   * so a released call goes only after its `approval.executed` is durable.
   */
  durable(): Promise<void>;
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
  begin(exchange: string): ExchangeAudit;
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

const DURABLE: RecordedDecision = { durable: () => Promise.resolve() };

const NOOP: ExchangeAudit = {
  bind: () => undefined,
  caller: () => undefined,
  decided: () => DURABLE,
  opened: () => undefined,
  link: () => undefined,
  delivered: () => Promise.resolve(),
  answered: () => Promise.resolve(),
  failed: () => Promise.resolve(),
};

export const disabledAuditor: Auditor = {
  enabled: false,
  begin: () => NOOP,
  assertWritable: () => undefined,
  sessionClosed: () => Promise.resolve(),
  approval: () => undefined,
  approvalDurable: () => Promise.resolve(),
};

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
    begin(exchange) {
      const started = process.hrtime.bigint();
      let stream: string | undefined;
      let who: AuditEvent['caller'];
      let upstream: string | undefined;
      let session: string | undefined;
      let method: string | undefined;
      let tool: string | undefined;
      /** Events from before the stream was known, with when they happened. */
      const pending: { event: AuditEvent; ts: string; raw?: RawMember }[] = [];
      let linked: Record<string, unknown> = {};
      const base = (type: AuditEvent['type']): { -readonly [K in keyof AuditEvent]: AuditEvent[K] } => {
        const e: { -readonly [K in keyof AuditEvent]: AuditEvent[K] } = { type, exchange };
        if (who) e.caller = who;
        if (upstream) e.upstream = upstream;
        if (session) e.session = session;
        if (method) e.method = method;
        if (tool) e.tool = tool;
        return e;
      };
      /** The decision's record once it is in the log (it has a stream). */
      let decision: Promise<void> | undefined;
      /** Where the exchange's records go while it has no stream of its own, once something had to be durable. */
      let unbound: string | undefined;
      const emit = (event: AuditEvent, raw?: RawMember): Promise<void> | undefined => {
        const ts = now().toISOString();
        if (stream === undefined) {
          pending.push({ event, ts, ...(raw ? { raw } : {}) });
          return undefined;
        }
        // Held: durable together with the answer (finish), in the same group commit, unless durable() is asked for first.
        return log.append(stream, event, { defer: true, ts, ...(raw ? { raw } : {}) });
      };
      const recorded: RecordedDecision = {
        durable() {
          if (decision === undefined && pending.length > 0) {
            // No stream yet (initialize: the session exists only once the upstream answered): what the
            // forward rests on goes to the gateway's stream now; session.open and the answer follow in the session's.
            const at = streams.gateway(now());
            unbound = at;
            const held = pending
              .splice(0)
              .map((p) =>
                log.append(at, { ...p.event, ...base(p.event.type) }, { ts: p.ts, ...(p.raw ? { raw: p.raw } : {}) }),
              );
            decision = Promise.all(held).then(() => undefined);
            decision.catch(() => undefined);
          }
          log.sendNow();
          const id = linked.approval_id;
          const waits = [decision ?? Promise.resolve(), ...(typeof id === 'string' ? [approvalDurable(id)] : [])];
          return Promise.all(waits).then(() => undefined);
        },
      };
      const finish = (event: AuditEvent, raw?: RawMember): Promise<void> => {
        stream ??= unbound ?? streams.gateway(now());
        const held = pending
          .splice(0)
          .map((p) => log.append(stream!, p.event, { ts: p.ts, ...(p.raw ? { raw: p.raw } : {}) }));
        const last = log.append(stream, event, raw ? { raw } : {});
        return held.length === 0 ? last : Promise.all([...held, last]).then(() => undefined);
      };
      const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
      return {
        bind(b) {
          if ('session' in b) {
            session = b.session.id;
            stream = streams.session(b.session.id, b.session.createdAt);
          } else stream = streams.stateless(b.stateless, now());
          const held = pending
            .splice(0)
            .map((p) =>
              log.append(
                stream!,
                { ...p.event, ...base(p.event.type) },
                { ts: p.ts, ...(p.raw ? { raw: p.raw } : {}) },
              ),
            );
          if (held.length > 0) {
            decision = Promise.all(held).then(() => undefined);
            decision.catch(() => undefined);
          }
        },
        caller(identity, up) {
          who = { sub: identity.sub, groups: identity.groups, issuer: identity.issuer };
          upstream = up;
        },
        decided(input, outcome, masked) {
          method = input.mcp.method;
          if (input.mcp.tool !== undefined) tool = input.mcp.tool;
          const d = outcome.decision;
          // Record what the decision lets be recorded: the arguments as its mask rules leave them.
          let recordedInput = input;
          if (d.maskRules.length > 0 && input.mcp.arguments !== undefined && masked !== undefined) {
            const args = ('params' in masked ? (masked.params as { arguments?: unknown } | undefined) : undefined)
              ?.arguments;
            if (args !== undefined)
              recordedInput = { ...input, mcp: { ...input.mcp, arguments: args as Record<string, unknown> } };
          }
          const event = base('decision');
          // A client notification or response carries no arguments of its own: what goes upstream is the message, recorded masked.
          const relayed =
            masked !== undefined && input.mcp.kind !== 'request'
              ? { message: bounded(masked, opts.maxRecordedBytes) }
              : {};
          event.data = {
            policy: { revision: outcome.revision.commit ?? null, bundle_digest: outcome.revision.bundleDigest },
            allow: d.allow,
            valid: d.valid,
            reasons: d.reasons,
            risk: d.risk,
            approval_required: d.approval.required,
            mask: d.mask,
            credential_ttl_seconds: d.credential.ttl_seconds,
            ...(d.rate ? { rate: d.rate } : {}),
            // Of the exact bytes the policy evaluated (arguments unmasked: the hash proves what it saw).
            input_sha256: sha256Hex(outcome.inputJson),
            ...relayed,
          };
          // The policy input is the request as the policy saw it (method, tool or uri, arguments):
          // unmasked and within bounds it is recorded as exactly the bytes evaluated.
          let written: Promise<void> | undefined;
          if (recordedInput === input && Buffer.byteLength(outcome.inputJson) <= opts.maxRecordedBytes) {
            written = emit(event, { key: 'input', json: outcome.inputJson });
          } else {
            event.data = { ...event.data, input: bounded(recordedInput, opts.maxRecordedBytes) };
            written = emit(event);
          }
          // Nobody may wait for it (a denial answers with its error): a failure is the answer's to report.
          written?.catch(() => undefined);
          decision = written;
          return recorded;
        },
        opened(s, protocolVersion) {
          session = s.id;
          stream = streams.session(s.id, s.createdAt);
          pending.push({
            event: { ...base('session.open'), data: { protocol_version: protocolVersion } },
            ts: now().toISOString(),
          });
        },
        link(fields) {
          linked = { ...linked, ...fields };
        },
        delivered(message) {
          const event = base('message');
          event.data = { direction: 'to_client', message: bounded(message, opts.maxRecordedBytes) };
          // Durable now (not held): the caller receives it only after.
          return stream === undefined ? finish(event) : log.append(stream, event);
        },
        answered(response, relayed) {
          const event = base('response');
          const data: Record<string, unknown> = { ...linked, ok: response.error === undefined };
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
            if (resultBytes <= opts.maxRecordedBytes) raw = { key: 'result', json: result };
            else data.result = bounded(response.result, opts.maxRecordedBytes);
          }
          data.relayed = relayed;
          data.ms = ms();
          return finish(event, raw);
        },
        failed(err, id) {
          return finish({
            ...base('error'),
            data: {
              ...linked,
              code: err.code,
              http_status: err.status,
              rpc_code: err.rpcCode,
              message: err.message,
              id,
              ms: ms(),
            },
          });
        },
      };
    },
  };
}
