import { EventEmitter } from 'node:events';
import { canonicalJson } from '../canonical-json.js';
import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import type { JsonRpcNotification } from '../mcp/jsonrpc.js';
import { approvalId, callHash } from './call-id.js';
import type { ApprovalProvider } from './provider.js';
import { requesterOf, requiredApprovals } from './requester.js';
import { evaluate, expireIfDue } from './rules.js';
import type { ApprovalStore } from './store.js';
import type { ApprovalCall, ApprovalRecord } from './types.js';

export interface ApprovalRequest {
  readonly caller: {
    readonly sub: string;
    readonly issuer: string;
    readonly email?: string;
    readonly githubLogin?: string;
  };
  /** What reviewers see (masked), and the request's params exactly as the upstream will receive them (hashed). */
  readonly call: ApprovalCall & { readonly rawParams: unknown };
  readonly approvers: readonly string[];
  readonly minApprovals: number;
  readonly ttlSeconds: number;
  readonly reasons: readonly string[];
  readonly risk: string;
  readonly policy: { readonly revision: string | null; readonly bundleDigest: string };
}

export type Ticket =
  /** Approved and claimed: forward it now (exactly once). */
  | { readonly kind: 'go'; readonly approval: ApprovalRecord }
  | { readonly kind: 'wait'; readonly approval: ApprovalRecord }
  | { readonly kind: 'denied'; readonly approval: ApprovalRecord };

export type ApprovalEventType =
  | 'approval.requested'
  | 'approval.approved'
  | 'approval.denied'
  | 'approval.expired'
  | 'approval.executed';

export interface ApprovalEvents {
  /** Audit an approval event (requested, approved, denied, expired, executed). */
  record(a: ApprovalRecord, type: ApprovalEventType, data: Record<string, unknown>): void;
  log(msg: string, extra?: Record<string, unknown>): void;
}

export interface ApprovalServiceOptions {
  readonly pollMs: number;
  /** approvals.logins: caller sub → GitHub login, for callers whose token has no github login claim. */
  readonly logins?: Readonly<Record<string, string>>;
  /** The clock of expiry, of every timestamp recorded, of the hold and of polling (default: the system clock). */
  readonly clock?: Clock;
  /** Several replicas: whether this one runs the polling round now (one at a time, src/store/postgres.ts holdLease). */
  readonly shouldPoll?: () => Promise<boolean>;
}

const live = (a: ApprovalRecord) => a.status === 'pending' || a.status === 'approved';

/** Whether an approval was asked under the requirement the policy states for the call now. */
function sameRequirement(a: ApprovalRecord, req: Pick<ApprovalRequest, 'approvers' | 'minApprovals'>): boolean {
  const norm = (xs: readonly string[]) => JSON.stringify(xs.map((x) => x.replace(/^@/, '').toLowerCase()).sort());
  return a.minApprovals === req.minApprovals && norm(a.approvers) === norm(req.approvers);
}

/**
 * Parks high-risk calls until reviewers decide. Webhooks and polling only say
 * when to look: each time, the approval's state is recomputed from the
 * provider's own state (rules.ts), and once more at the moment a call is
 * released. Every change is persisted before it is acted on.
 */
export class ApprovalService {
  readonly #changes = new EventEmitter();
  readonly #locks = new Map<string, Promise<unknown>>();
  /** Approvals being opened where reviewers look (single flight per approval id). */
  readonly #opening = new Map<string, Promise<void>>();
  #poller: Timer | undefined;
  /** Aborted at shutdown: held calls are answered at once (their approvals persist for the retry). */
  readonly #stopping = new AbortController();

  constructor(
    private readonly store: ApprovalStore,
    readonly provider: ApprovalProvider,
    private readonly events: ApprovalEvents,
    private readonly opts: ApprovalServiceOptions,
  ) {
    this.#changes.setMaxListeners(0);
    // A shared store: another replica's change wakes the calls held here.
    store.onChange?.((id) => this.#changes.emit(id));
  }

  get #clock(): Clock {
    return this.opts.clock ?? systemClock;
  }

  #now(): Date {
    return new Date(this.#clock.now());
  }

  /** One change at a time per approval (webhook, poll and requests may race). Never nest it for one id. */
  async #exclusive<T>(id: string, f: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const run = prev.then(f, f);
    this.#locks.set(
      id,
      run.catch(() => undefined),
    );
    try {
      return await run;
    } finally {
      if (this.#locks.get(id) === run) this.#locks.delete(id);
    }
  }

  list(): ApprovalRecord[] {
    return this.store.all().sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  get(id: string): ApprovalRecord | undefined {
    return this.store.get(id);
  }

  /** The newest approval of this exact call. */
  #latest(hash: string): ApprovalRecord | undefined {
    let best: ApprovalRecord | undefined;
    for (const a of this.store.all())
      if (a.callHash === hash && (best === undefined || a.generation > best.generation)) best = a;
    return best;
  }

  /** Decide what a high-risk call gets now: go (claimed), wait, or denied. Opens a new approval when needed. */
  async admit(req: ApprovalRequest): Promise<Ticket> {
    const hash = callHash({
      caller: req.caller,
      upstream: req.call.upstream,
      method: req.call.method,
      params: req.call.rawParams,
    });
    return this.#exclusive(`call:${hash}`, async () => {
      // A shared store: what other replicas know of this call first (throws STORE_UNAVAILABLE: nothing is admitted).
      await this.store.sync?.(hash);
      const latest = this.#latest(hash);
      if (latest !== undefined) {
        const ticket = await this.#exclusive(latest.id, async () => {
          if (expireIfDue(latest, this.#now())) await this.#changed(latest, 'approval.expired', {});
          if (live(latest) && !sameRequirement(latest, req)) {
            // The policy asks something else of this call now: what was given under the old rule releases nothing.
            const reason = `superseded: the policy now asks ${req.minApprovals} approval(s) from ${req.approvers.join(', ')} (it asked ${latest.minApprovals} from ${latest.approvers.join(', ')})`;
            latest.status = 'denied';
            latest.denial = { by: 'gitgate', reason, at: this.#now().toISOString() };
            await this.#changed(latest, 'approval.denied', { by: 'gitgate', reason });
            return undefined;
          }
          if (latest.status === 'approved') return this.#claim(latest);
          if (latest.status === 'pending') return { kind: 'wait', approval: latest } as const;
          if (latest.status === 'denied' && this.#now().getTime() <= Date.parse(latest.expiresAt))
            return { kind: 'denied', approval: latest } as const;
          return undefined;
        });
        if (ticket !== undefined) return ticket;
      }
      const now = this.#now();
      const generation = (latest?.generation ?? 0) + 1;
      const { rawParams: _raw, ...call } = req.call;
      const requester = requesterOf(req.caller, this.opts.logins ?? {});
      const a: ApprovalRecord = {
        id: approvalId(hash, generation),
        callHash: hash,
        generation,
        status: 'pending',
        createdAt: now.toISOString(),
        expiresAt: new Date(now.getTime() + req.ttlSeconds * 1000).toISOString(),
        requester,
        call,
        approvers: req.approvers,
        minApprovals: req.minApprovals,
        required: requiredApprovals({ minApprovals: req.minApprovals, requester }, this.provider.kind),
        reasons: req.reasons,
        risk: req.risk,
        policy: req.policy,
        approvals: [],
      };
      // Durable before anything is opened where reviewers look. Another replica that made this call's
      // approval first wins: this call waits on that one.
      if (this.store.create !== undefined) {
        if (!(await this.store.create(a))) return { kind: 'wait', approval: this.#latest(hash) ?? a };
      } else await this.store.put(a);
      this.events.record(a, 'approval.requested', {
        requester: a.requester,
        call: a.call,
        approvers: a.approvers,
        min_approvals: a.minApprovals,
        expires_at: a.expiresAt,
      });
      await this.#openRemote(a);
      return { kind: 'wait', approval: a };
    });
  }

  /**
   * Open the request where reviewers look, once: concurrent callers (the call
   * that created it, the poller) share one attempt, and one that finds the
   * remote already in the store does nothing. The provider's open is itself
   * idempotent (a retry after a crash adopts what the first attempt made).
   */
  #openRemote(a: ApprovalRecord): Promise<void> {
    if (a.remote !== undefined || this.store.get(a.id)?.remote !== undefined) return Promise.resolve();
    const inflight = this.#opening.get(a.id);
    if (inflight !== undefined) return inflight;
    const attempt = (async () => {
      try {
        a.remote = await this.provider.open(a);
        await this.store.put(a);
        this.events.log('approval opened', { id: a.id, url: a.remote.url });
      } catch (err) {
        // Stays pending without a remote; the poller opens it again.
        this.events.log('approval could not be opened yet', { id: a.id, err: (err as Error).message });
      } finally {
        this.#opening.delete(a.id);
      }
    })();
    this.#opening.set(a.id, attempt);
    return attempt;
  }

  /**
   * Recompute a live approval from the provider's state as it is now (inside
   * #exclusive for its id). Throws when the provider cannot be read.
   */
  async #recompute(a: ApprovalRecord, opts: { readonly fresh?: boolean } = {}): Promise<void> {
    if (!live(a)) return;
    if (expireIfDue(a, this.#now())) return await this.#changed(a, 'approval.expired', {});
    if (a.remote === undefined) return;
    // A release asks membership afresh: for the reviewers who approved it so far, at the same time as the
    // state is read (still after the claim began, so nothing older than the state counts); others after it.
    const asked = new Map<string, Promise<boolean>>();
    const ask = (login: string) => {
      const n = login.toLowerCase();
      let p = asked.get(n);
      if (p === undefined) {
        p = this.provider.isEligible(n, a.approvers, opts);
        // One asked early that is no longer a reviewer is not awaited: its failure fails nothing.
        p.catch(() => undefined);
        asked.set(n, p);
      }
      return p;
    };
    if (opts.fresh === true) for (const v of a.approvals) ask(v.login);
    const s = await this.provider.state(a, a.remote);
    const names = new Set([
      ...s.reviews.map((r) => r.login.toLowerCase()),
      ...(s.closedBy !== undefined ? [s.closedBy.toLowerCase()] : []),
    ]);
    const eligible = new Set<string>();
    for (const n of names) if (await ask(n)) eligible.add(n);
    // The clock is read after the provider answered: a TTL that ran out meanwhile counts.
    const now = this.#now();
    const v = evaluate(a, s, { now, eligible, required: requiredApprovals(a, this.provider.kind) });
    for (const why of v.ignored) this.events.log('approval review not counted', { id: a.id, why });
    // Canonical: a record read back from the store (jsonb) has its keys in another order than one made here.
    const before = canonicalJson([a.status, a.approvals, a.remote.headSha ?? null]);
    const was = a.status;
    a.remote.headSha = s.head;
    a.approvals = v.approvals;
    a.status = v.status;
    if (v.denial !== undefined) a.denial = { ...v.denial, at: now.toISOString() };
    if (canonicalJson([a.status, a.approvals, a.remote.headSha ?? null]) === before) return;
    await this.store.put(a);
    if (a.status === was) return;
    const stored = { stored: true } as const;
    if (a.status === 'approved')
      await this.#changed(a, 'approval.approved', { by: a.approvals.map((v) => v.login) }, stored);
    else if (a.status === 'denied')
      await this.#changed(a, 'approval.denied', { by: a.denial?.by, reason: a.denial?.reason }, stored);
    else if (a.status === 'expired') await this.#changed(a, 'approval.expired', {}, stored);
    else {
      // approved → pending: an approval was dismissed, went stale or lost its reviewer's eligibility.
      this.events.log('approval revoked: it no longer has the approvals it needs', {
        id: a.id,
        approvals: a.approvals.map((v) => v.login),
      });
      this.#changes.emit(a.id);
    }
  }

  /**
   * approved → executed, durably, before the call is forwarded: at most once,
   * even across crashes. The state is read from the provider once more first,
   * with team membership asked afresh: an approval dismissed, a reviewer
   * removed from the team, or a TTL passed, since it was last read releases
   * nothing; a provider that cannot be read releases nothing either (fail closed).
   */
  async #claim(a: ApprovalRecord): Promise<Ticket> {
    try {
      await this.#recompute(a, { fresh: true });
    } catch (err) {
      this.events.log('approval not released: the provider could not be read', {
        id: a.id,
        err: (err as Error).message,
      });
      return { kind: 'wait', approval: a };
    }
    // Executed meanwhile (by another replica, or another request here): this call waits for a new approval.
    if (a.status !== 'approved')
      return { kind: a.status === 'pending' || a.status === 'executed' ? 'wait' : 'denied', approval: a };
    if (this.store.claim !== undefined) {
      // One conditional statement: of every replica racing for this approval, exactly one forwards the call.
      const claimed = await this.store.claim({ ...a, executedAt: this.#now().toISOString() });
      const now = this.store.get(a.id) ?? a;
      if (!claimed)
        return { kind: now.status === 'denied' || now.status === 'expired' ? 'denied' : 'wait', approval: now };
      a = now;
    } else {
      a.status = 'executed';
      a.executedAt = this.#now().toISOString();
      await this.store.put(a);
    }
    this.events.record(a, 'approval.executed', { approvals: a.approvals });
    void this.#finish(a);
    return { kind: 'go', approval: a };
  }

  /** Hold a call while its approval is pending: yields progress, returns the ticket it ends with. */
  async *hold(
    ticket: Ticket,
    opts: {
      holdMs: number;
      signal: AbortSignal;
      progressToken?: string | number;
      /** Called before the held call is claimed (released): throws when it may no longer go (nothing is claimed then). */
      recheck?: () => void;
    },
  ): AsyncGenerator<JsonRpcNotification, Ticket> {
    if (ticket.kind !== 'wait') return ticket;
    const a = ticket.approval;
    // Hold until the hold bound (how long the client waits), or until just past the TTL (then it
    // is expired, not pending).
    const clock = this.#clock;
    const started = clock.now();
    const left = () => Math.min(started + opts.holdMs, Date.parse(a.expiresAt) + 50) - clock.now();
    const progress = (): JsonRpcNotification | undefined =>
      opts.progressToken === undefined
        ? undefined
        : {
            jsonrpc: '2.0',
            method: 'notifications/progress',
            params: {
              progressToken: opts.progressToken,
              progress: Math.floor((clock.now() - started) / 1000),
              total: Math.ceil(opts.holdMs / 1000),
              message: `Waiting for approval ${a.id}: ${this.store.get(a.id)?.remote?.url ?? 'opening the request'} (expires ${a.expiresAt})`,
            },
          };
    const first = progress();
    if (first) yield first;
    /** Woken by a change of this approval: the store's copy was just read (or written) by this replica. */
    let changed = false;
    while (left() > 0 && !opts.signal.aborted && !this.#stopping.signal.aborted) {
      // A shared store: read the newest state (a NOTIFY may have been missed; polling is the fallback), unless
      // a change just brought it.
      if (!changed)
        await this.store.sync?.(a.callHash).catch((err: unknown) =>
          this.events.log('approval state could not be read from the shared store', {
            id: a.id,
            err: (err as Error).message,
          }),
        );
      const current = this.store.get(a.id) ?? a;
      if (current.status === 'approved') {
        // Approved while held: the call goes only if the caller and the policy of now still let it.
        opts.recheck?.();
        const t = await this.#exclusive(a.id, async () =>
          current.status === 'approved' ? this.#claim(current) : undefined,
        );
        // A claim that found it no longer approved (or could not read the provider) keeps holding.
        if (t !== undefined && t.kind !== 'wait') return t;
      } else if (current.status !== 'pending') {
        return current.status === 'executed'
          ? { kind: 'wait', approval: current }
          : { kind: 'denied', approval: current };
      }
      changed = false;
      await new Promise<void>((resolve) => {
        const onChange = () => {
          changed = true;
          done();
        };
        const done = () => {
          timer.cancel();
          this.#changes.off(a.id, onChange);
          opts.signal.removeEventListener('abort', done);
          this.#stopping.signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = clock.after(Math.min(10_000, Math.max(0, left())), done);
        this.#changes.once(a.id, onChange);
        opts.signal.addEventListener('abort', done, { once: true });
        this.#stopping.signal.addEventListener('abort', done, { once: true });
      });
      const p = progress();
      if (p && (this.store.get(a.id) ?? a).status === 'pending' && left() > 0) yield p;
    }
    // The hold ended: a TTL that ran out while holding is a denial, not a wait.
    const current = this.store.get(a.id) ?? a;
    const expired = await this.#exclusive(a.id, async () => expireIfDue(current, this.#now()));
    if (expired) {
      await this.#changed(current, 'approval.expired', {});
      return { kind: 'denied', approval: current };
    }
    return { kind: 'wait', approval: current };
  }

  /**
   * A hint that the request behind `ref` changed (a webhook): recompute its
   * approval from the provider. Nothing in the hint itself is trusted.
   */
  async refresh(ref: string): Promise<ApprovalRecord | undefined> {
    await this.store.syncRef?.(ref);
    const a = this.store.all().find((x) => x.remote?.ref === ref && live(x));
    if (a === undefined) return undefined;
    await this.#exclusive(a.id, () => this.#recompute(a));
    return a;
  }

  async #changed(
    a: ApprovalRecord,
    type: 'approval.approved' | 'approval.denied' | 'approval.expired',
    data: Record<string, unknown>,
    opts: { readonly stored?: boolean } = {},
  ): Promise<void> {
    // `stored`: the caller has just put it as it is.
    if (opts.stored !== true) await this.store.put(a);
    this.events.record(a, type, data);
    this.#changes.emit(a.id);
    if (a.status === 'denied' || a.status === 'expired') void this.#finish(a);
  }

  async #finish(a: ApprovalRecord): Promise<void> {
    if (a.finished === true || a.remote === undefined) return;
    try {
      await this.provider.finish(a);
      a.finished = true;
      await this.store.put(a);
    } catch (err) {
      this.events.log('approval outcome not reported yet', { id: a.id, err: (err as Error).message });
    }
  }

  /** One polling round: expire, (re)open, recompute live approvals from the provider, report outcomes. */
  async poll(): Promise<void> {
    // Several replicas: one polls at a time (the others' rounds do nothing), from the store's newest state.
    if (this.opts.shouldPoll !== undefined && !(await this.opts.shouldPoll())) return;
    if (this.store.syncLive !== undefined) {
      try {
        await this.store.syncLive();
      } catch (err) {
        this.events.log('approvals poll skipped: the shared store cannot be read', { err: (err as Error).message });
        return;
      }
    }
    for (const a of this.store.all()) {
      if (live(a)) {
        // Being opened right now (by the call that created it): that attempt finishes it.
        if (this.#opening.has(a.id)) continue;
        if (a.remote === undefined) {
          await this.#exclusive(a.id, async () => {
            if (expireIfDue(a, this.#now())) await this.#changed(a, 'approval.expired', {});
          });
          if (!live(a)) continue;
          await this.#openRemote(a);
          if (a.remote === undefined) continue;
        }
        try {
          await this.#exclusive(a.id, () => this.#recompute(a));
        } catch (err) {
          this.events.log('approval sync failed', { id: a.id, err: (err as Error).message });
        }
      } else if ((a.status === 'executed' || a.status === 'denied' || a.status === 'expired') && a.finished !== true) {
        await this.#finish(a);
      }
    }
  }

  /** Recover after a restart (state re-synced from the provider), then poll on an interval. */
  async start(): Promise<void> {
    await this.poll();
    this.#poller = this.#clock.every(this.opts.pollMs, () => void this.poll());
  }

  stop(): void {
    this.#poller?.cancel();
    this.#stopping.abort();
  }
}

/** The client's error for a call that is not (yet) approved. */
export function approvalError(t: Ticket): GatewayError {
  const a = t.approval;
  const required = a.required ?? a.minApprovals;
  const data = {
    approval_id: a.id,
    url: a.remote?.url ?? null,
    status: a.status,
    expires_at: a.expiresAt,
    approvers: a.approvers,
    min_approvals: a.minApprovals,
    required_approvals: required,
  };
  if (t.kind === 'denied' || a.status === 'denied' || a.status === 'expired') {
    const why =
      a.status === 'expired'
        ? `the approval expired at ${a.expiresAt}`
        : `${a.denial?.by ?? 'a reviewer'}: ${a.denial?.reason ?? 'denied'}`;
    return new GatewayError('APPROVAL_DENIED', `Approval denied (${why})`, {
      data: { ...data, reason: a.denial?.reason ?? null, denied_by: a.denial?.by ?? null },
    });
  }
  if (a.status === 'executed') {
    return new GatewayError(
      'APPROVAL_REQUIRED',
      `Approval required: approval ${a.id} was already used for one call; retry to request a new one`,
      { data },
    );
  }
  return new GatewayError(
    'APPROVAL_REQUIRED',
    `Approval required: waiting for ${required} approval(s) from ${a.approvers.join(', ')} at ${a.remote?.url ?? '(opening)'}; retry the identical call once approved`,
    { data },
  );
}
