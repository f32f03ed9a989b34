import { createHash } from 'node:crypto';
import { canonicalJson } from '../canonical-json.js';
import type { GatewayError } from '../errors.js';
import type { Identity } from '../identity/identity.js';
import { maskMessage } from '../masking/mask.js';
import type { JsonRpcRequest, JsonRpcResponse } from '../mcp/jsonrpc.js';
import type { DecisionOutcome } from '../policy/decide.js';
import type { PolicyInput } from '../policy/input.js';
import type { AuditLog } from './log.js';
import type { AuditEvent } from './record.js';

const day = (d: Date) => d.toISOString().slice(0, 10);
const hour = (d: Date) => d.toISOString().slice(11, 13);

/** Stream ids are repo paths: one per MCP session, one per upstream and hour for stateless traffic. */
export const streams = {
  session: (id: string, createdAt: number) => `sessions/${day(new Date(createdAt))}/${id}`,
  stateless: (upstream: string, at: Date) => `stateless/${day(at)}/${upstream}-${hour(at)}`,
  gateway: (at: Date) => `gateway/${day(at)}/${hour(at)}`,
};

/** Records one HTTP exchange: its decision, then its answer or error. */
export interface ExchangeAudit {
  /** Which stream the exchange belongs to, once known. */
  bind(stream: { session: { id: string; createdAt: number } } | { stateless: string }): void;
  /** The caller, once authenticated. */
  caller(identity: Identity, upstream: string): void;
  /** The decision (with the request as masked by it); not awaited: it becomes durable with the answer. */
  decided(input: PolicyInput, outcome: DecisionOutcome, request: JsonRpcRequest): void;
  /** A new session opened by this exchange (initialize). */
  opened(session: { id: string; createdAt: number }, protocolVersion: string): void;
  /** Extra fields for this exchange's answer record (e.g. the approval it used). */
  link(fields: Record<string, unknown>): void;
  /** Durably record the answer before the client receives it. */
  answered(response: JsonRpcResponse, relayed: number): Promise<void>;
  /** Durably record the error before the client receives it. */
  failed(err: GatewayError, id: string | number | null): Promise<void>;
}

export interface Auditor {
  readonly enabled: boolean;
  begin(exchange: string): ExchangeAudit;
  /** Fail closed: throws AUDIT_UNAVAILABLE while nothing can be recorded. */
  assertWritable(): void;
  sessionClosed(session: { id: string; createdAt: number; owner: string; upstream: string }, reason: string): void;
}

const NOOP: ExchangeAudit = {
  bind: () => undefined,
  caller: () => undefined,
  decided: () => undefined,
  opened: () => undefined,
  link: () => undefined,
  answered: () => Promise.resolve(),
  failed: () => Promise.resolve(),
};

export const disabledAuditor: Auditor = { enabled: false, begin: () => NOOP, assertWritable: () => undefined, sessionClosed: () => undefined };

/**
 * Keep records bounded: an oversized payload is replaced by its size and
 * (canonical) hash. `within`: the caller already knows the value fits.
 */
function bounded(value: unknown, maxBytes: number, within = false): unknown {
  // Native JSON.stringify measures the size; only an oversized value pays for canonical JSON.
  if (within || Buffer.byteLength(JSON.stringify(value) ?? '') <= maxBytes) return value;
  const text = canonicalJson(value);
  return { truncated: true, bytes: Buffer.byteLength(text), sha256: createHash('sha256').update(text).digest('hex') };
}

export function createAuditor(log: AuditLog, opts: { maxRecordedBytes: number; now?: () => Date }): Auditor {
  const now = opts.now ?? (() => new Date());
  return {
    enabled: true,
    assertWritable: () => log.assertWritable(),
    sessionClosed(session, reason) {
      const stream = streams.session(session.id, session.createdAt);
      void log.append(stream, { type: 'session.close', session: session.id, upstream: session.upstream, caller: { sub: session.owner }, data: { reason } }).catch(() => undefined);
      log.forget(stream);
    },
    begin(exchange) {
      const started = process.hrtime.bigint();
      let stream: string | undefined;
      let who: AuditEvent['caller'];
      let upstream: string | undefined;
      let session: string | undefined;
      let method: string | undefined;
      let tool: string | undefined;
      const pending: AuditEvent[] = [];
      let linked: Record<string, unknown> = {};
      const base = (): Omit<AuditEvent, 'type'> => ({
        exchange,
        ...(who ? { caller: who } : {}),
        ...(upstream ? { upstream } : {}),
        ...(session ? { session } : {}),
        ...(method ? { method } : {}),
        ...(tool ? { tool } : {}),
      });
      const emit = (untimed: AuditEvent): Promise<void> | undefined => {
        const event = { ...untimed, ts: now().toISOString() };
        if (stream === undefined) {
          pending.push(event);
          return undefined;
        }
        // Durable together with the answer (finish), in the same group commit.
        return log.append(stream, event, { defer: true });
      };
      const finish = (event: AuditEvent): Promise<void> => {
        stream ??= streams.gateway(now());
        const all = [...pending.splice(0), event].map((e) => log.append(stream!, e));
        return Promise.all(all).then(() => undefined);
      };
      const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
      return {
        bind(b) {
          if ('session' in b) {
            session = b.session.id;
            stream = streams.session(b.session.id, b.session.createdAt);
          } else stream = streams.stateless(b.stateless, now());
          for (const e of pending.splice(0)) void log.append(stream, { ...e, ...base() }).catch(() => undefined);
        },
        caller(identity, up) {
          who = { sub: identity.sub, groups: identity.groups, issuer: identity.issuer };
          upstream = up;
        },
        decided(input, outcome, request) {
          method = input.mcp.method;
          if (input.mcp.tool !== undefined) tool = input.mcp.tool;
          // Record what the decision lets be recorded: the arguments as its mask rules leave them.
          let recordedInput = input;
          if (outcome.decision.maskRules.length > 0 && input.mcp.arguments !== undefined) {
            const masked = structuredClone(request) as JsonRpcRequest;
            maskMessage(masked, outcome.decision.maskRules);
            const args = (masked.params as { arguments?: unknown } | undefined)?.arguments;
            if (args !== undefined) recordedInput = { ...input, mcp: { ...input.mcp, arguments: args as Record<string, unknown> } };
          }
          const d = outcome.decision;
          void emit({
            type: 'decision',
            ...base(),
            data: {
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
              input_sha256: createHash('sha256').update(outcome.inputJson).digest('hex'),
              // The policy input is the request as the policy saw it (method, tool or uri, arguments).
              input: bounded(recordedInput, opts.maxRecordedBytes, recordedInput === input && Buffer.byteLength(outcome.inputJson) <= opts.maxRecordedBytes),
            },
          })?.catch(() => undefined);
        },
        opened(s, protocolVersion) {
          session = s.id;
          stream = streams.session(s.id, s.createdAt);
          pending.push({ type: 'session.open', ...base(), ts: now().toISOString(), data: { protocol_version: protocolVersion } });
        },
        link(fields) {
          linked = { ...linked, ...fields };
        },
        answered(response, relayed) {
          const bytes = Buffer.byteLength(JSON.stringify(response));
          // The result is part of the response: when the whole fits, so does the result.
          const fits = bytes <= opts.maxRecordedBytes;
          return finish({
            type: 'response',
            ...base(),
            data: {
              ...linked,
              ok: response.error === undefined,
              ...(response.error !== undefined ? { error: response.error } : { result: bounded(response.result, opts.maxRecordedBytes, fits) }),
              bytes,
              relayed,
              ms: ms(),
            },
          });
        },
        failed(err, id) {
          return finish({ type: 'error', ...base(), data: { ...linked, code: err.code, http_status: err.status, rpc_code: err.rpcCode, message: err.message, id, ms: ms() } });
        },
      };
    },
  };
}
