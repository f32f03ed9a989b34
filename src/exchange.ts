import type { GatewayError } from './errors.js';
import type { Identity } from './identity/identity.js';
import type { JsonRpcMessage, JsonRpcResponse } from './mcp/jsonrpc.js';
import type { DecisionOutcome } from './policy/decide.js';
import type { PolicyInput } from './policy/input.js';

/** A decision record handed to the log (see Exchange.decided). */
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

const DURABLE: RecordedDecision = { durable: () => Promise.resolve() };
const DONE: Promise<void> = Promise.resolve();

/**
 * One HTTP exchange on /mcp/<upstream>. The pipeline tells it each fact once, as it learns it (who
 * calls, what was sent, the policy input, the decision, the stream, the answer); the route reads
 * the facts to log and count the exchange, and the auditor's subclass (audit/auditor.ts) records
 * them. This class records nothing: it is the exchange of a disabled audit, and of a DELETE.
 */
export class Exchange {
  #identity: Identity | undefined;
  #upstream: string | undefined;
  #method: string | undefined;
  #rpcId: string | number | undefined;
  #input: PolicyInput | undefined;
  #outcome: DecisionOutcome | undefined;
  /** When the exchange began (process.hrtime). */
  readonly started = process.hrtime.bigint();

  /** @param id gitgate's id for this exchange (the policy input's `request.id`, the records' `exchange`). */
  constructor(readonly id: string) {}

  /** The caller, once authenticated. */
  get identity(): Identity | undefined {
    return this.#identity;
  }
  /** The upstream it calls, named with the caller. */
  get upstream(): string | undefined {
    return this.#upstream;
  }
  /** The JSON-RPC method the client sent (`response` for a response; the GET stream's is subscriptions/listen). */
  get method(): string | undefined {
    return this.#method;
  }
  /** The id of the client's request. */
  get rpcId(): string | number | undefined {
    return this.#rpcId;
  }
  /** What the policy is asked. */
  get input(): PolicyInput | undefined {
    return this.#input;
  }
  /** The tool called, as the policy is asked about it. */
  get tool(): string | undefined {
    return this.#input?.mcp.tool;
  }
  /** The policy's decision. */
  get decision(): DecisionOutcome | undefined {
    return this.#outcome;
  }

  /** The caller, once authenticated, and the upstream it calls. */
  caller(identity: Identity, upstream: string): void {
    this.#identity = identity;
    this.#upstream = upstream;
  }
  /** What the client sent: its method, and its request's id. */
  received(method: string, rpcId?: string | number): void {
    this.#method = method;
    if (rpcId !== undefined) this.#rpcId = rpcId;
  }
  /** Which stream the exchange belongs to, once known. */
  bind(_stream: { session: { id: string; createdAt: number } } | { stateless: string }): void {}
  /** The policy input, before it is decided. */
  asked(input: PolicyInput): void {
    this.#input = input;
  }
  /**
   * The decision on the input `asked` told, with the message as its mask rules leave it
   * (`maskedCopy(message, maskRules)`: the caller masks once, for the record and for reviewers; the
   * auditor records it as given). Written at once but held: it becomes durable with the answer (a
   * denial and its error share one fsync) unless the pipeline asks for `durable()` first, which it
   * does before anything is forwarded.
   */
  decided(outcome: DecisionOutcome, _masked: JsonRpcMessage | undefined): RecordedDecision {
    this.#outcome = outcome;
    return DURABLE;
  }
  /** A new session opened by this exchange (initialize). */
  opened(_session: { id: string; createdAt: number }, _protocolVersion: string): void {}
  /** Extra fields for this exchange's answer record (e.g. the approval it used). */
  link(_fields: Record<string, unknown>): void {}
  /** Durably record a message relayed to the caller that is not the answer (progress, a log line, an upstream request, a GET-stream notification), before the caller receives it. */
  delivered(_message: JsonRpcMessage): Promise<void> {
    return DONE;
  }
  /** Durably record the answer before the client receives it. */
  answered(_response: JsonRpcResponse, _relayed: number): Promise<void> {
    return DONE;
  }
  /** Durably record the error before the client receives it. */
  failed(_err: GatewayError, _id: string | number | null): Promise<void> {
    return DONE;
  }
}
