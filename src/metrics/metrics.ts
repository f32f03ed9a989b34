import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { boundedCache } from '../cache.js';

/** How an upstream request ended: a result, a JSON-RPC error, or no answer (transport failure, timeout). */
export type UpstreamOutcome = 'ok' | 'error' | 'failed';

/**
 * Everything /metrics exposes, on a registry of its own (no globals).
 * docs/operations.md lists every metric; a test keeps the two in step.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'gitgate_requests_total',
    help: 'MCP messages handled, by upstream, JSON-RPC method and outcome',
    labelNames: ['upstream', 'method', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly decisionSeconds = new Histogram({
    name: 'gitgate_decision_duration_seconds',
    help: 'Time to build the policy input and evaluate the policy',
    buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
    registers: [this.registry],
  });
  readonly auditWalWriteSeconds = new Histogram({
    name: 'gitgate_audit_wal_write_seconds',
    help: 'Time of one durable audit WAL write (a group commit: the O_DSYNC write a record waits for)',
    buckets: [
      0.00005, 0.0001, 0.00015, 0.0002, 0.00025, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.05,
      0.25, 1, 5,
    ],
    registers: [this.registry],
  });
  readonly upstreamSeconds = new Histogram({
    name: 'gitgate_upstream_request_duration_seconds',
    help: 'Time from sending a request to an upstream to its answer, by upstream and outcome (ok, error: a JSON-RPC error, failed: no answer)',
    labelNames: ['upstream', 'outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly invalidDecisions = new Counter({
    name: 'gitgate_decisions_invalid_total',
    help: 'Policy results that did not validate against the decision schema (answered as deny)',
    registers: [this.registry],
  });
  readonly credentialTtlCapped = new Counter({
    name: 'gitgate_credential_ttl_capped_total',
    help: 'Decisions whose credential.ttl_seconds exceeded credentials.maxTtlSeconds; their credentials were capped to it',
    registers: [this.registry],
  });
  /** Told once (a day, at most) per policy revision and requested TTL that was capped (the gateway logs it). */
  onTtlCapped: ((e: { readonly requested: number; readonly max: number; readonly policy: string }) => void) | undefined;
  readonly #cappedSeen = boundedCache<string, true>({ max: 1000, ttlMs: 24 * 3_600_000 });

  /** A decision's credential TTL was capped to credentials.maxTtlSeconds: counted always, told once per revision and TTL. */
  ttlCapped(requested: number, max: number, policy: string): void {
    this.credentialTtlCapped.inc();
    const key = `${policy}\n${requested}\n${max}`;
    if (this.#cappedSeen.has(key)) return;
    this.#cappedSeen.set(key, true);
    this.onTtlCapped?.({ requested, max, policy });
  }
  readonly masked = new Counter({
    name: 'gitgate_masked_total',
    help: 'Findings masked in responses, by upstream and detector',
    labelNames: ['upstream', 'detector'] as const,
    registers: [this.registry],
  });
  readonly listItemsHidden = new Counter({
    name: 'gitgate_list_items_hidden_total',
    help: 'Tools, resources and prompts removed from list results because the caller may not use them',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly policyInfo = new Gauge({
    name: 'gitgate_policy_info',
    help: 'The policy revision serving (value 1)',
    labelNames: ['source', 'commit', 'bundle_digest'] as const,
    registers: [this.registry],
  });
  readonly policySyncFailures = new Counter({
    name: 'gitgate_policy_sync_failures_total',
    help: 'GitOps sync rounds that failed, by kind: fetch (the policy repo could not be fetched) or refused (a commit was refused; the last good revision keeps serving)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly policyRefused = new Gauge({
    name: 'gitgate_policy_refused_info',
    help: 'The newest policy commit that was refused (value 1) until a newer commit loads',
    labelNames: ['commit'] as const,
    registers: [this.registry],
  });
  readonly sessions = new Gauge({
    name: 'gitgate_sessions',
    help: 'Open MCP sessions by upstream',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  /** `replica`: multi-replica mode (store.postgres.replicaId), a label on every series so replicas' metrics stay apart. */
  constructor(replica?: string) {
    if (replica !== undefined) this.registry.setDefaultLabels({ replica });
    // Label sets that exist before their first event, so a rate() over them starts at 0.
    for (const kind of ['fetch', 'refused']) this.policySyncFailures.inc({ kind }, 0);
  }

  /** Audit metrics, read at scrape time. */
  watchAudit(
    read: () => {
      healthy: boolean;
      uncommitted: number;
      appended: number;
      walWrites: number;
      commits: number;
      lastLagMs?: number;
    },
  ): void {
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect: function (this: Gauge) {
          this.set(value());
        },
      });
    // Counts since start, exposed as counters: the source keeps the total, the scrape copies it.
    const counter = (name: string, help: string, value: () => number) =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect: function (this: Counter) {
          this.reset();
          this.inc(value());
        },
      });
    gauge(
      'gitgate_audit_healthy',
      '1 while the audit write-ahead log can be written (0 = gitgate forwards nothing)',
      () => (read().healthy ? 1 : 0),
    );
    gauge(
      'gitgate_audit_uncommitted_records',
      'Durable audit records not yet committed to the audit repo',
      () => read().uncommitted,
    );
    counter('gitgate_audit_records_appended_total', 'Audit records made durable since start', () => read().appended);
    counter(
      'gitgate_audit_wal_writes_total',
      'Durable writes of the audit write-ahead log (group commits; records appended / writes = records per group)',
      () => read().walWrites,
    );
    counter('gitgate_audit_commits_total', 'Commits to the audit repo since start', () => read().commits);
    gauge(
      'gitgate_audit_commit_lag_seconds',
      'Time from the oldest record of the last commit becoming durable to its commit',
      () => (read().lastLagMs ?? 0) / 1000,
    );
  }

  /** Multi-replica mode: this replica's pushes to the shared audit repo, read at scrape time. */
  watchAuditPush(read: () => { pending: boolean; failures: number; lastPushedAt: string | null }): void {
    new Gauge({
      name: 'gitgate_audit_push_pending',
      help: "1 while this replica's audit repo holds commits the shared audit repo does not have yet",
      registers: [this.registry],
      collect: function (this: Gauge) {
        this.set(read().pending ? 1 : 0);
      },
    });
    new Counter({
      name: 'gitgate_audit_push_failures_total',
      help: 'Failed pushes to the shared audit repo since start (each retried)',
      registers: [this.registry],
      collect: function (this: Counter) {
        this.reset();
        this.inc(read().failures);
      },
    });
    new Gauge({
      name: 'gitgate_audit_push_last_success_timestamp_seconds',
      help: 'When a push to the shared audit repo last succeeded (0: not since start)',
      registers: [this.registry],
      collect: function (this: Gauge) {
        const at = read().lastPushedAt;
        this.set(at === null ? 0 : Date.parse(at) / 1000);
      },
    });
  }

  /** Parked calls waiting for approval, by upstream, read at scrape time. */
  watchApprovals(pending: () => readonly { readonly upstream: string }[]): void {
    new Gauge({
      name: 'gitgate_approvals_pending',
      help: 'Parked calls waiting for an approval decision, by upstream',
      labelNames: ['upstream'] as const,
      registers: [this.registry],
      collect: function (this: Gauge<'upstream'>) {
        this.reset();
        const by = new Map<string, number>();
        for (const p of pending()) by.set(p.upstream, (by.get(p.upstream) ?? 0) + 1);
        for (const [upstream, n] of by) this.set({ upstream }, n);
      },
    });
  }

  setPolicy(rev: { source: string; commit?: string; bundleDigest: string }): void {
    this.policyInfo.reset();
    this.policyInfo.set({ source: rev.source, commit: rev.commit ?? '', bundle_digest: rev.bundleDigest }, 1);
  }

  /** A sync round failed: `commit` is the refused commit, absent when the repo could not even be fetched. */
  policySyncFailed(commit: string | undefined): void {
    this.policySyncFailures.inc({ kind: commit === undefined ? 'fetch' : 'refused' });
    if (commit === undefined) return;
    this.policyRefused.reset();
    this.policyRefused.set({ commit }, 1);
  }

  /** A newer commit loaded: nothing newer is refused any more. */
  policySyncLoaded(): void {
    this.policyRefused.reset();
  }
}
