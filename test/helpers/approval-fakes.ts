import type { ApprovalProvider } from '../../src/approvals/provider.js';
import type { ApprovalStore } from '../../src/approvals/store.js';
import type { ApprovalRecord, RemoteState, Review } from '../../src/approvals/types.js';

/** The store, in memory (the file store is the same map plus an atomic write per put). */
export class MemoryStore implements ApprovalStore {
  readonly records = new Map<string, ApprovalRecord>();
  puts = 0;
  all(): ApprovalRecord[] {
    return [...this.records.values()];
  }
  get(id: string): ApprovalRecord | undefined {
    return this.records.get(id);
  }
  put(a: ApprovalRecord): void {
    this.puts++;
    this.records.set(a.id, structuredClone(a));
  }
}

/** A provider whose pull requests are a map the test writes reviews into. */
export class FakeProvider implements ApprovalProvider {
  readonly kind = 'github' as const;
  readonly opened: ApprovalRecord[] = [];
  readonly finished: string[] = [];
  readonly reviews = new Map<string, Review[]>();
  readonly team = new Set(['sam', 'sue']);
  unreadable = false;
  async open(a: ApprovalRecord) {
    this.opened.push(a);
    return { ref: `pr-${this.opened.length}`, url: `https://github.test/pull/${this.opened.length}`, headSha: 'h1' };
  }
  async state(_a: ApprovalRecord, remote: { ref: string }): Promise<RemoteState> {
    if (this.unreadable) throw new Error('GitHub is down');
    return { head: 'h1', state: 'open', author: 'gitgate-bot', reviews: this.reviews.get(remote.ref) ?? [] };
  }
  async isEligible(login: string) {
    return this.team.has(login);
  }
  async finish(a: ApprovalRecord) {
    this.finished.push(`${a.id}:${a.status}`);
  }
  approve(ref: string, login: string) {
    this.reviews.set(ref, [...(this.reviews.get(ref) ?? []), { login, state: 'approved', commit: 'h1', body: '' }]);
  }
}
