import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Everything /metrics exposes, on a registry of its own (no globals). */
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
  readonly invalidDecisions = new Counter({
    name: 'gitgate_decisions_invalid_total',
    help: 'Policy results that did not validate against the decision schema (answered as deny)',
    registers: [this.registry],
  });
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
  readonly sessions = new Gauge({
    name: 'gitgate_sessions',
    help: 'Open MCP sessions by upstream',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });

  /** Audit gauges, read at scrape time. */
  watchAudit(read: () => { healthy: boolean; uncommitted: number; appended: number; commits: number; lastLagMs?: number }): void {
    const gauge = (name: string, help: string, value: () => number) =>
      new Gauge({ name, help, registers: [this.registry], collect: function (this: Gauge) { this.set(value()); } });
    gauge('gitgate_audit_healthy', '1 while the audit write-ahead log can be written (0 = gitgate forwards nothing)', () => (read().healthy ? 1 : 0));
    gauge('gitgate_audit_uncommitted_records', 'Durable audit records not yet committed to the audit repo', () => read().uncommitted);
    gauge('gitgate_audit_records_appended', 'Audit records made durable since start', () => read().appended);
    gauge('gitgate_audit_commits', 'Commits to the audit repo since start', () => read().commits);
    gauge('gitgate_audit_commit_lag_seconds', 'Time from the oldest record of the last commit becoming durable to its commit', () => (read().lastLagMs ?? 0) / 1000);
  }

  setPolicy(rev: { source: string; commit?: string; bundleDigest: string }): void {
    this.policyInfo.reset();
    this.policyInfo.set({ source: rev.source, commit: rev.commit ?? '', bundle_digest: rev.bundleDigest }, 1);
  }
}
