import { describe, expect, it } from 'vitest';
import { type ApprovalRequest, ApprovalService, approvalError, type Ticket } from '../../src/approvals/service.js';
import type { JsonRpcNotification } from '../../src/mcp/jsonrpc.js';
import { FakeProvider, MemoryStore } from '../helpers/approval-fakes.js';
import { ManualClock } from '../helpers/clock.js';

const request = (over: Partial<ApprovalRequest> = {}): ApprovalRequest => ({
  caller: { sub: 'alice', issuer: 'urn:test', githubLogin: 'alice-gh' },
  call: {
    upstream: 'gh',
    method: 'tools/call',
    tool: 'deploy',
    arguments: { env: 'prod' },
    rawParams: { env: 'prod' },
  },
  approvers: ['@acme/security'],
  minApprovals: 1,
  ttlSeconds: 900,
  reasons: ['deploy is high risk'],
  risk: 'high',
  policy: { revision: 'abc', bundleDigest: 'sha256:00' },
  ...over,
});

function world() {
  const clock = new ManualClock();
  const store = new MemoryStore();
  const provider = new FakeProvider();
  const events: string[] = [];
  const service = new ApprovalService(
    store,
    provider,
    { record: (a, type) => events.push(`${type} ${a.id}`), log: () => undefined },
    { pollMs: 10_000, clock },
  );
  return { clock, store, provider, events, service };
}

/** Drain a hold to its ticket, collecting the progress it yields. */
async function drain(gen: AsyncGenerator<JsonRpcNotification, Ticket>): Promise<{ ticket: Ticket; progress: number }> {
  let progress = 0;
  for (let r = await gen.next(); ; r = await gen.next()) {
    if (r.done === true) return { ticket: r.value, progress };
    progress++;
  }
}

/** Let pending promise callbacks run (no time passes). */
const settle = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

describe('ApprovalService (in-memory store and provider, manual clock)', () => {
  it('a new call waits, durably recorded before its request is opened; the identical retry shares it', async () => {
    const { service, store, provider, events } = world();
    const first = await service.admit(request());
    expect(first.kind).toBe('wait');
    expect(first.approval.remote?.url).toBe('https://github.test/pull/1');
    expect(events).toEqual([`approval.requested ${first.approval.id}`]);
    expect(store.get(first.approval.id)?.status).toBe('pending');
    const again = await service.admit(request());
    expect(again).toMatchObject({ kind: 'wait', approval: { id: first.approval.id } });
    expect(provider.opened).toHaveLength(1);
    // Other arguments: another call, another approval.
    const other = await service.admit(request({ call: { ...request().call, rawParams: { env: 'dev' } } }));
    expect(other.approval.id).not.toBe(first.approval.id);
  });

  it('approved by an eligible reviewer: released once (executed), and the next identical call asks anew', async () => {
    const { service, provider, events } = world();
    const a = (await service.admit(request())).approval;
    provider.approve(a.remote!.ref, 'sam');
    await service.refresh(a.remote!.ref);
    expect(service.get(a.id)?.status).toBe('approved');
    const go = await service.admit(request());
    expect(go).toMatchObject({ kind: 'go', approval: { id: a.id, status: 'executed' } });
    expect(events).toContain(`approval.executed ${a.id}`);
    const next = await service.admit(request());
    expect(next.kind).toBe('wait');
    expect(next.approval.generation).toBe(2);
  });

  it('the requester and non-members approve nothing', async () => {
    const { service, provider } = world();
    const a = (await service.admit(request())).approval;
    provider.approve(a.remote!.ref, 'alice-gh');
    provider.approve(a.remote!.ref, 'mallory');
    await service.refresh(a.remote!.ref);
    expect(service.get(a.id)?.status).toBe('pending');
  });

  it('a provider that cannot be read at release releases nothing (fail closed)', async () => {
    const { service, provider } = world();
    const a = (await service.admit(request())).approval;
    provider.approve(a.remote!.ref, 'sam');
    await service.refresh(a.remote!.ref);
    provider.unreadable = true;
    expect((await service.admit(request())).kind).toBe('wait');
    provider.unreadable = false;
    expect((await service.admit(request())).kind).toBe('go');
  });

  it('expires on its clock: past the TTL the call is denied, and its outcome reported', async () => {
    const { service, clock, provider } = world();
    const a = (await service.admit(request({ ttlSeconds: 60 }))).approval;
    clock.advance(60_001);
    provider.approve(a.remote!.ref, 'sam');
    const t = await service.admit(request({ ttlSeconds: 60 }));
    // The old approval expired; an approval given after the TTL releases nothing: a new one is asked.
    expect(service.get(a.id)?.status).toBe('expired');
    expect(t.kind).toBe('wait');
    expect(t.approval.id).not.toBe(a.id);
    await settle();
    expect(provider.finished).toContain(`${a.id}:expired`);
  });

  it('a policy that now asks more supersedes what was given under the old rule', async () => {
    const { service, provider } = world();
    const a = (await service.admit(request())).approval;
    provider.approve(a.remote!.ref, 'sam');
    await service.refresh(a.remote!.ref);
    const t = await service.admit(request({ minApprovals: 2 }));
    expect(service.get(a.id)).toMatchObject({ status: 'denied', denial: { by: 'gitgate' } });
    expect(t).toMatchObject({ kind: 'wait', approval: { minApprovals: 2 } });
  });

  it('hold: released on the same request when approved while held, with progress while it waits', async () => {
    const { service, provider, clock } = world();
    const ticket = await service.admit(request());
    const ctl = new AbortController();
    const held = drain(service.hold(ticket, { holdMs: 90_000, signal: ctl.signal, progressToken: 't' }));
    await settle();
    clock.advance(10_000); // one wake-up without news: one more progress notification
    await settle();
    provider.approve(ticket.approval.remote!.ref, 'sam');
    await service.refresh(ticket.approval.remote!.ref);
    const { ticket: end, progress } = await held;
    expect(end).toMatchObject({ kind: 'go', approval: { status: 'executed' } });
    expect(progress).toBeGreaterThanOrEqual(2);
  });

  it('hold: ends at the hold bound still waiting, or denied when the TTL runs out first (no real time passes)', async () => {
    const { service, clock } = world();
    const t1 = await service.admit(request());
    const bounded = drain(service.hold(t1, { holdMs: 30_000, signal: new AbortController().signal }));
    await settle();
    for (let i = 0; i < 3; i++) {
      clock.advance(10_000);
      await settle();
    }
    expect((await bounded).ticket).toMatchObject({ kind: 'wait', approval: { status: 'pending' } });
    const t2 = await service.admit(request({ ttlSeconds: 5, call: { ...request().call, rawParams: { n: 2 } } }));
    const expiring = drain(service.hold(t2, { holdMs: 90_000, signal: new AbortController().signal }));
    await settle();
    clock.advance(5_051);
    const { ticket } = await expiring;
    expect(ticket).toMatchObject({ kind: 'denied', approval: { status: 'expired' } });
    expect(approvalError(ticket).message).toMatch(/the approval expired at/);
  });

  it('hold: the client going away or the service stopping answers at once', async () => {
    const { service } = world();
    const t = await service.admit(request());
    const ctl = new AbortController();
    const held = drain(service.hold(t, { holdMs: 90_000, signal: ctl.signal }));
    await settle();
    ctl.abort();
    expect((await held).ticket.kind).toBe('wait');
    const again = drain(service.hold(t, { holdMs: 90_000, signal: new AbortController().signal }));
    await settle();
    service.stop();
    expect((await again).ticket.kind).toBe('wait');
  });

  it('polls on its clock: a lost webhook is made up by the next round', async () => {
    const { service, provider, clock } = world();
    const a = (await service.admit(request())).approval;
    await service.start();
    provider.approve(a.remote!.ref, 'sam');
    await settle();
    expect(service.get(a.id)?.status).toBe('pending');
    clock.advance(10_000);
    await settle();
    expect(service.get(a.id)?.status).toBe('approved');
    service.stop();
    expect(clock.pendingTimers).toBe(0);
  });
});
