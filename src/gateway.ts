/**
 * Composition root: turns a frozen config into a running gateway by wiring the
 * adapters (identity, policy, upstream transports) into buildApp(deps).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { type DestinationStream, type Logger, pino } from 'pino';
import { GitHubApprovalProvider } from './approvals/github/provider.js';
import { githubApprovalEvents } from './approvals/github/webhook-events.js';
import { LocalGitRepo } from './approvals/local/git-repo.js';
import { LocalApprovalProvider } from './approvals/local/provider.js';
import type { ApprovalProvider } from './approvals/provider.js';
import { loginOf as approverLogin } from './approvals/requester.js';
import { ApprovalService } from './approvals/service.js';
import { FileApprovalStore } from './approvals/store.js';
import { type Auditor, createAuditor, disabledAuditor } from './audit/auditor.js';
import type { AuditCommitter } from './audit/committer.js';
import type { AuditLog } from './audit/log.js';
import { AuditPusher } from './audit/pusher.js';
import { GitAuditStore } from './audit/store.js';
import { logKeyOf, openAuditTrail } from './audit/trail.js';
import type { WriteAheadLog } from './audit/wal.js';
import { type Clock, systemClock, type Timer } from './clock.js';
import { toolEnv, validateRoutes } from './config/load.js';
import type { GatewayConfig, UpstreamConfig } from './config/types.js';
import { Credentials } from './credentials/credentials.js';
import { KeyRing } from './credentials/keyring.js';
import { lockDataDir } from './data-dir-lock.js';
import { PolicySync } from './gitsync/sync.js';
import { type TrackedConnector, trackConnector } from './gitsync/tracked-connector.js';
import { buildApp } from './http/app.js';
import type { Readiness } from './http/deps.js';
import { configuredVerifier } from './identity/configured-verifier.js';
import type { DevIssuer } from './identity/dev-issuer.js';
import type { Identity } from './identity/identity.js';
import { SessionStore } from './mcp/sessions.js';
import { ToolCatalogs } from './mcp/tool-catalog.js';
import type { UpstreamConnector } from './mcp/upstream/types.js';
import { UpstreamChecks } from './mcp/upstream-checks.js';
import { createUpstreamRegistry, defaultConnector, type Upstream, type UpstreamRegistry } from './mcp/upstreams.js';
import { GatewayMetrics } from './metrics/metrics.js';
import { type DecisionEngine, PolicyHolder } from './policy/engine.js';
import { loadPolicyFromDir } from './policy/local-source.js';
import { ensureOpa } from './policy/opa-binary.js';
import { RateLimiter, type Rates } from './policy/rate-limit.js';
import { openSharedStore, type SharedStore } from './store/shared.js';
import { VERSION } from './version.js';
import { DeliveryLog, GitHubWebhooks } from './webhooks/verify-and-receive.js';

export interface Gateway {
  readonly app: FastifyInstance;
  readonly config: GatewayConfig;
  readonly policy: PolicyHolder;
  readonly upstreams: UpstreamRegistry;
  readonly sessions: SessionStore;
  readonly devIssuer?: DevIssuer;
  readonly credentials: Credentials;
  readonly approvals: ApprovalService;
  readonly webhooks: GitHubWebhooks;
  /** GitOps: the policy repo sync, when configured. */
  readonly sync?: PolicySync;
  readonly logger: Logger;
  /** Reachability and governance of each upstream, checked at start and on every policy swap. */
  readonly upstreamChecks: UpstreamChecks;
  /** Multi-replica mode: the shared PostgreSQL store. */
  readonly store?: SharedStore;
  /** Listen on config.server; resolves to the base URL. */
  listen(): Promise<string>;
  /** Stop accepting, finish in-flight requests, stop upstreams. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  logger?: Logger;
  /** Upstream transport adapter (default: Streamable HTTP or stdio from config); tests pass in-memory fakes. */
  connectUpstream?: (cfg: UpstreamConfig) => UpstreamConnector;
  /** Wrap the decision engine (tests record decisions). */
  wrapPolicy?: (engine: DecisionEngine) => DecisionEngine;
  /** The audit WAL over its folder, sealed on this thread (default: a FileWal under <dataDir>/audit-wal, sealed on a worker thread); tests inject failing ones. */
  wal?: (dir: string) => WriteAheadLog;
  /** Approval provider (default from config). */
  approvalProvider?: ApprovalProvider;
  /** Probe every upstream (server/discover, else initialize) at start and on each policy swap; default true. Tests that count what reaches an upstream turn it off. */
  checkUpstreams?: boolean;
  /** The clock of everything that reads the time or waits (default: the system clock). */
  clock?: Clock;
  /** The approvals' clock: expiry, holding, polling and membership caching (default: `clock`). */
  approvalClock?: Clock;
  /** The upstream checks' clock: their deadlines and times (tests fire a deadline by hand; default: `clock`). */
  upstreamCheckClock?: Clock;
  /** The audit trail's clock: record times, the log's hold, stall watchdog and retry window, the committer's every-T-ms commit (default: `clock`). */
  auditClock?: Clock;
}

async function approvalProvider(config: GatewayConfig, clock: Clock): Promise<ApprovalProvider> {
  const a = config.approvals;
  if (a.provider === 'local')
    return new LocalApprovalProvider(await LocalGitRepo.open(a.local.repo), a.local.teams, clock);
  const gh = a.github!;
  const auth =
    gh.token !== undefined
      ? { token: gh.token.reveal() }
      : { appId: gh.app!.appId, installationId: gh.app!.installationId, privateKey: gh.app!.privateKey.reveal() };
  return new GitHubApprovalProvider(
    { baseUrl: gh.baseUrl, owner: gh.owner, repo: gh.repo, baseBranch: gh.baseBranch, auth, onFinish: gh.onFinish },
    undefined,
    clock,
  );
}

/** The provider, opening an approval only once the approval's records so far are durable. */
function auditedProvider(inner: ApprovalProvider, auditor: Auditor): ApprovalProvider {
  return {
    kind: inner.kind,
    open: async (a) => {
      await auditor.approvalDurable(a.id);
      return inner.open(a);
    },
    state: (a, remote) => inner.state(a, remote),
    isEligible: (login, approvers, o) => inner.isEligible(login, approvers, o),
    finish: (a) => inner.finish(a),
  };
}

interface AuditParts {
  readonly auditor: Auditor;
  readonly log?: AuditLog;
  readonly committer?: AuditCommitter;
  /** Multi-replica mode with audit.remote: pushes this replica's log to its branch of the shared audit repo. */
  readonly pusher?: AuditPusher;
}

/** The audit capability: audit signing key (ES256; older Ed25519 keys still sign), WAL, git store, log and committer (recovered on start). */
async function createAudit(
  config: GatewayConfig,
  logger: Logger,
  clock: Clock,
  wal?: (dir: string) => WriteAheadLog,
): Promise<AuditParts> {
  if (!config.audit.enabled) return { auditor: disabledAuditor };
  // The log's key signs checkpoints (C2SP signed notes: Ed25519), never records.
  const { origin, key, verifier } = await logKeyOf(config.dataDir, true);
  // Inside the locked data dir, git lock files left by a killed gateway's git are stale: the store may remove them.
  const exclusive =
    !path.relative(config.dataDir, config.audit.repo).startsWith('..') &&
    !path.isAbsolute(path.relative(config.dataDir, config.audit.repo));
  // Several replicas: audit.remote is the shared audit repo, each replica's log on its own branch (audit/pusher.ts).
  const pusher =
    config.store !== undefined && config.audit.remote
      ? new AuditPusher(
          config.audit.repo,
          config.audit.remote,
          config.store.postgres.replicaId,
          (m) => logger.warn(m),
          clock,
        )
      : undefined;
  const store = await GitAuditStore.open(config.audit.repo, verifier.text, {
    ...(config.audit.remote && pusher === undefined ? { remote: config.audit.remote } : {}),
    log: (m) => logger.warn(m),
    exclusive,
    clock,
  });
  const { log, committer } = openAuditTrail(store, {
    walDir: path.join(config.dataDir, 'audit-wal'),
    origin,
    key,
    anchors: config.audit.anchors,
    warn: (m) => logger.warn(m),
    ...(pusher !== undefined ? { pusher } : {}),
    everyRecords: config.audit.commitEveryRecords,
    everyMs: config.audit.commitEveryMs,
    clock,
    ...(wal !== undefined ? { wal } : {}),
    onError: (err) =>
      logger.error({ err: (err as Error).message }, 'audit commit failed; records stay in the write-ahead log'),
  });
  log.onHealth((healthy, why) => {
    if (healthy) logger.info('audit log records again; forwarding resumes');
    else logger.error({ err: why }, 'audit log unavailable; gitgate forwards nothing it cannot record');
  });
  const { recovered, damage } = await committer.recover();
  if (recovered > 0) logger.info({ recovered }, 'audit records recovered from the write-ahead log');
  for (const d of damage)
    logger[d.kind === 'torn' ? 'warn' : 'error'](
      { segment: d.segment, line: d.line, kind: d.kind, why: d.why },
      'audit write-ahead log damage found on recovery',
    );
  committer.start();
  // Commits a push did not reach before a restart go now, not only with the next commit.
  void pusher?.push();
  const auditor = createAuditor(log, {
    maxRecordedBytes: config.audit.maxRecordedBytes,
    clock,
    ...(config.store !== undefined ? { replica: config.store.postgres.replicaId } : {}),
  });
  return { auditor, log, committer, ...(pusher !== undefined ? { pusher } : {}) };
}

/**
 * gitgate's logger. Credentials are redacted wherever a log object may carry them:
 * authorization and cookie headers, tokens, and every header an upstream's static
 * secret travels in (`secretHeaders`).
 */
export function createLogger(
  level: string,
  secretHeaders: readonly string[] = [],
  destination?: DestinationStream,
): Logger {
  const headers = [...new Set(['authorization', 'cookie', 'x-api-key', ...secretHeaders.map((h) => h.toLowerCase())])];
  const paths = headers.flatMap((h) => [`req.headers["${h}"]`, `headers["${h}"]`, `*.headers["${h}"]`]);
  return pino(
    {
      level,
      base: { service: 'gitgate' },
      redact: { paths: [...paths, '*.token', 'token', 'authorization', 'secret', '*.secret'], censor: '[redacted]' },
    },
    ...(destination !== undefined ? [destination] : []),
  );
}

/** Metrics, with the capped-TTL notice logged. */
function createMetrics(logger: Logger, replica: string | undefined): GatewayMetrics {
  const metrics = new GatewayMetrics(replica);
  metrics.onTtlCapped = ({ requested, max, policy: rev }) =>
    logger.warn(
      { requested, max, policy: rev },
      `policy asks for credential.ttl_seconds ${requested}, above credentials.maxTtlSeconds ${max}: its credentials are capped to ${max} s`,
    );
  return metrics;
}

/** The policy capability: the holder every request reads, and the reload of the local policy folder. */
function createPolicy(config: GatewayConfig, logger: Logger, clock: Clock, metrics: GatewayMetrics) {
  const policy = new PolicyHolder();
  policy.onSwap((rev) => {
    metrics.setPolicy(rev);
    logger.info({ policy: rev }, 'policy revision now serving');
  });
  let lastPolicyError: string | undefined;
  const reloadPolicy = async () => {
    try {
      const opa = await ensureOpa((line) => logger.info(line), toolEnv().opaPath);
      const instance = await loadPolicyFromDir({ opa, dir: config.policy.dir, workDir: config.dataDir, clock });
      policy.swap(instance);
      lastPolicyError = undefined;
      return instance;
    } catch (err) {
      lastPolicyError = err instanceof Error ? err.message : String(err);
      logger.error({ err: lastPolicyError }, 'policy load failed; the previous policy (if any) keeps serving');
      throw err;
    }
  };
  return { policy, reloadPolicy, lastPolicyError: () => lastPolicyError };
}

/** The credentials capability: the signing key ring (rotated on the clock when configured) and the minter. */
async function createCredentials(config: GatewayConfig, logger: Logger, clock: Clock, shared?: SharedStore) {
  // Retired keys stay published while tokens they signed can still be valid.
  const keyGraceMs = (config.credentials.maxTtlSeconds + config.identity.clockToleranceSeconds + 60) * 1000;
  const keys = await KeyRing.load(config.dataDir, {
    graceMs: keyGraceMs,
    activationMs: config.credentials.keyActivationSeconds * 1000,
    clock,
  });
  const credentials = new Credentials(config, keys);
  // Several replicas: each publishes its public keys; every one serves the union (private keys stay here).
  const published = shared?.keys(keys, keyGraceMs + config.credentials.keyActivationSeconds * 1000);
  let heartbeat: Timer | undefined;
  if (published !== undefined) {
    await published.publish();
    credentials.published = () => published.jwks();
    credentials.onRotate = () => published.publish();
    heartbeat = clock.every(Math.max(1000, keyGraceMs / 4), () => {
      published
        .publish()
        .catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'publishing keys failed'));
    });
  }
  const rotateAfterMs =
    config.credentials.rotateAfterHours === undefined ? undefined : config.credentials.rotateAfterHours * 3_600_000;
  const rotation =
    rotateAfterMs === undefined
      ? undefined
      : clock.every(Math.min(rotateAfterMs / 10, 3_600_000), () => {
          if (keys.age() < rotateAfterMs) return;
          credentials.rotate(clock.now()).then(
            (k) =>
              logger.info(
                { kid: k.kid, activeFrom: new Date(k.activeFrom).toISOString() },
                'credential signing key rotated (pre-published)',
              ),
            (err: unknown) => logger.error({ err }, 'credential signing key rotation failed'),
          );
        });
  return { credentials, rotation, heartbeat };
}

/** Several replicas: session ids are sealed with the shared key, so any replica continues an HTTP session. */
async function shareSessions(
  shared: SharedStore,
  sessions: SessionStore,
  upstreams: ReturnType<typeof createUpstreamRegistry>,
  credentials: Credentials,
): Promise<void> {
  sessions.seal = await shared.sessionSeal();
  sessions.caps = shared.sessionCaps;
  sessions.resumer = (name, owner) => {
    const u = upstreams.get(name);
    const resume = u?.connector.resume;
    if (u === undefined || resume === undefined) return undefined;
    return {
      resume: (id, version) => resume(id, version),
      auth: (purpose) => credentials.forCall(u.config, { subject: owner, method: purpose }),
    };
  };
}

/** The upstreams: tracked connectors, their checks, the sessions over them, and the retirement of replaced ones. */
function createUpstreams(
  config: GatewayConfig,
  logger: Logger,
  opts: GatewayOptions,
  clock: Clock,
  metrics: GatewayMetrics,
  credentials: Credentials,
  policy: PolicyHolder,
) {
  // Every connector is tracked: its requests are timed, and one replaced by a route change is shut down once idle.
  const connect = opts.connectUpstream ?? ((cfg: UpstreamConfig) => defaultConnector(cfg, logger, clock));
  const upstreams = createUpstreamRegistry(
    config,
    logger,
    { name: 'gitgate', version: VERSION },
    (cfg) => {
      // One labelled series per outcome, looked up once rather than per request.
      const series = new Map<string, { observe(seconds: number): void }>();
      return trackConnector(connect(cfg), {
        observe: (seconds, outcome) => {
          let s = series.get(outcome);
          if (s === undefined) {
            s = metrics.upstreamSeconds.labels({ upstream: cfg.name, outcome });
            series.set(outcome, s);
          }
          s.observe(seconds);
        },
        clock,
      });
    },
    (cfg, method) => credentials.forCall(cfg, { subject: 'gitgate', method }),
    clock,
  );
  const upstreamChecks = new UpstreamChecks({
    upstreams,
    policy: () => policy.current(),
    clientInfo: { name: 'gitgate', version: VERSION },
    auth: (cfg, method) => credentials.forCall(cfg, { subject: 'gitgate', method }),
    log: logger,
    clock: opts.upstreamCheckClock ?? clock,
  });
  // In the background: start is not held up by a slow upstream.
  if (opts.checkUpstreams !== false) policy.onSwap(() => void upstreamChecks.run());
  const sessions = new SessionStore(
    (name) => upstreams.get(name)?.config ?? config.upstreams[name] ?? { maxSessions: 0, idleTimeoutMs: 0 },
    clock,
  );
  const retiring = new Set<Promise<void>>();
  /** An upstream a route change replaced: its sessions end as their in-flight requests do, then its pool or children stop. */
  const retire = (u: Upstream) => {
    const c = u.connector as Partial<TrackedConnector>;
    const done = (async () => {
      await c.retire?.();
      await sessions.sweep(); // the drained sessions now report closed: closed with their own credentials, audited
      await u.shared.close();
      await u.connector.shutdown();
      logger.info(
        { upstream: u.config.name, transport: u.connector.transport },
        'replaced upstream connector shut down after its in-flight requests',
      );
    })().catch((err: unknown) =>
      logger.error(
        { upstream: u.config.name, err: (err as Error).message },
        'shutting down a replaced upstream connector failed',
      ),
    );
    retiring.add(done);
    void done.finally(() => retiring.delete(done));
  };
  return { upstreams, upstreamChecks, sessions, retire, retiring };
}

/** Where the policy comes from: the local folder, or (GitOps) the policy repo's branch, synced on the clock. */
async function startPolicySource(
  config: GatewayConfig,
  logger: Logger,
  clock: Clock,
  metrics: GatewayMetrics,
  source: ReturnType<typeof createPolicy>,
  ups: Pick<ReturnType<typeof createUpstreams>, 'upstreams' | 'retire'>,
): Promise<PolicySync | undefined> {
  const { policy, reloadPolicy } = source;
  const { upstreams, retire } = ups;
  // Where the policy comes from: the local folder, or (GitOps) the policy repo's branch.
  let sync: PolicySync | undefined;
  const repo = config.policy.repo;
  if (repo === undefined) await reloadPolicy();
  else {
    sync = new PolicySync(
      {
        url: repo.url,
        branch: repo.branch,
        dir: repo.dir,
        pollMs: repo.pollSeconds * 1000,
        ...(repo.token !== undefined ? { token: repo.token.reveal() } : {}),
        ...(repo.sshKeyFile !== undefined ? { sshKeyFile: repo.sshKeyFile } : {}),
        compile: repo.compile,
        ...(repo.verification !== undefined
          ? {
              verification: {
                publicKey: repo.verification.publicKey.reveal(),
                algorithm: repo.verification.algorithm,
                ...(repo.verification.keyId ? { keyId: repo.verification.keyId } : {}),
              },
            }
          : {}),
      },
      path.join(config.dataDir, 'policy-repo'),
      path.join(config.dataDir, 'policy-builds'),
      path.join(config.dataDir, 'policy-signed.json'),
      () => ensureOpa((line) => logger.info(line), toolEnv().opaPath),
      (rev) => {
        // Routes first: a request between the two swaps meets the old policy, which fails closed on an upstream it does not govern.
        if (rev.routes !== undefined) {
          const routes = validateRoutes(
            rev.routes,
            config.dataDir,
            `gitgate.routes.yaml@${rev.commit.slice(0, 12)}`,
            repo.routes,
          );
          const before = upstreams.names().map((name) => upstreams.get(name)!);
          upstreams.replaceRoutes(routes);
          for (const u of before) if (upstreams.get(u.config.name) !== u) retire(u);
        }
        policy.swap(rev.instance);
      },
      {
        log: logger,
        loaded: () => metrics.policySyncLoaded(),
        failed: (commit) => metrics.policySyncFailed(commit),
      },
      clock,
    );
    await sync.start();
  }
  return sync;
}

/** What /readyz and the ready-check report. */
function createReadiness(
  config: GatewayConfig,
  source: ReturnType<typeof createPolicy>,
  audit: AuditParts,
  upstreamChecks: UpstreamChecks,
  sync: PolicySync | undefined,
  shared: SharedStore | undefined,
): Readiness {
  const { policy, lastPolicyError } = source;
  const repo = config.policy.repo;
  const readiness: Readiness = {
    ...(shared !== undefined ? { store: () => shared.check() } : {}),
    ...(config.store !== undefined ? { replica: config.store.postgres.replicaId } : {}),
    problems: () => [
      ...(shared?.problems() ?? []),
      ...(policy.current() === undefined ? ['no policy loaded'] : []),
      ...(audit.log !== undefined && !audit.log.status().healthy
        ? [`audit log unavailable: ${audit.log.status().lastError}`]
        : []),
      ...(audit.committer?.status().blocked !== undefined
        ? [`audit commits blocked: ${audit.committer.status().blocked}`]
        : []),
      ...upstreamChecks.problems(),
    ],
    upstreams: () => upstreamChecks.status(),
    audit: () =>
      audit.log === undefined
        ? { enabled: false }
        : {
            enabled: true,
            repo: config.audit.repo,
            ...audit.log.status(),
            ...audit.committer!.status(),
            ...(audit.pusher !== undefined ? { push: audit.pusher.status() } : {}),
          },
    policy: () => policy.current()?.revision,
    warnings: () => {
      const refused = sync?.status().refused;
      const serving = policy.current()?.revision.commit;
      const push = audit.pusher?.status();
      const pushing =
        push?.pending === true && push.lastError !== null
          ? [
              `audit push to ${push.remote} ${push.branch} failing (${push.failures} failure(s)): the records are committed in this replica's audit repo and pushed once it succeeds`,
            ]
          : [];
      if (refused === undefined) return [...upstreamChecks.warnings(), ...pushing];
      return [
        ...upstreamChecks.warnings(),
        ...pushing,
        `policy commit ${refused.commit} was refused (${refused.message.split('\n')[0]}); still serving ${serving ?? 'no policy'}: push a fixed commit to ${repo?.branch ?? 'the policy branch'}`,
      ];
    },
    lastPolicyError: () => sync?.status().lastError?.message ?? lastPolicyError(),
    sync: () => sync?.status(),
  };
  return readiness;
}

/** Approvals: durable store, provider, one state machine fed by webhooks and polling (started); events audited per approval. */
async function createApprovals(
  config: GatewayConfig,
  logger: Logger,
  clock: Clock,
  audit: AuditParts,
  given: ApprovalProvider | undefined,
  shared: SharedStore | undefined,
): Promise<ApprovalService> {
  // Approvals: durable store, provider, one state machine fed by webhooks and polling; events audited per approval.
  // The approval request is opened where reviewers look only once its approval.requested record is durable.
  const provider = auditedProvider(given ?? (await approvalProvider(config, clock)), audit.auditor);
  const approvals = new ApprovalService(
    shared?.approvals ?? new FileApprovalStore(path.join(config.dataDir, 'approvals')),
    provider,
    {
      record: (a, type, data) => {
        // The shared event history (claim() writes approval.executed itself, in its one statement).
        if (shared !== undefined && type !== 'approval.executed')
          void shared.approvals
            .event(a.id, type)
            .catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'approval event not shared'));
        audit.auditor.approval({
          type,
          approval: { id: a.id, createdAt: a.createdAt, url: a.remote?.url ?? null },
          upstream: a.call.upstream,
          caller: { sub: a.requester.sub },
          method: a.call.method,
          ...(a.call.tool ? { tool: a.call.tool } : {}),
          data,
        });
      },
      log: (msg, extra) => logger.info(extra ?? {}, msg),
    },
    {
      pollMs: config.approvals.pollSeconds * 1000,
      logins: config.approvals.logins,
      clock,
      // Several replicas: one polls at a time; its lease ends with its connection, and another takes over.
      ...(shared !== undefined ? { shouldPoll: () => shared.db.holdLease('approvals-poller') } : {}),
    },
  );
  await approvals.start();
  return approvals;
}

/** POST /webhooks/github: approval reviews, and pushes to the policy branch (fetched at once). */
function createWebhooks(
  config: GatewayConfig,
  approvals: ApprovalService,
  sync: PolicySync | undefined,
  shared: SharedStore | undefined,
): GitHubWebhooks {
  const repo = config.policy.repo;
  const webhooks = new GitHubWebhooks(
    config.approvals.webhookSecrets.map((s) => s.reveal()),
    shared?.deliveries ?? new DeliveryLog(config.dataDir),
  );
  if (approvals.provider.kind === 'github' && config.approvals.github !== undefined)
    githubApprovalEvents(webhooks, approvals, config.approvals.github);
  if (sync !== undefined && repo?.webhook === true) {
    const s = sync;
    webhooks.on('push', async (payload) => {
      // A verified push to the policy branch: fetch now instead of at the next poll.
      if (payload.ref === `refs/heads/${repo.branch}`) void s.sync();
    });
  }
  return webhooks;
}

export async function createGateway(config: GatewayConfig, opts: GatewayOptions = {}): Promise<Gateway> {
  const logger =
    opts.logger ??
    createLogger(
      config.log.level,
      Object.values(config.upstreams).flatMap((u) => (u.secret?.header !== undefined ? [u.secret.header] : [])),
    );
  const clock = opts.clock ?? systemClock;
  const approvalClock = opts.approvalClock ?? clock;
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  // One gateway per data dir: its WAL, audit repo and approvals are this process's alone.
  const lock = await lockDataDir(config.dataDir, clock);
  let shared: SharedStore | undefined;
  try {
    // Multi-replica mode: the shared store first (migrated under its advisory lock); a store that cannot be reached fails the start.
    if (config.store !== undefined)
      shared = await openSharedStore(config.store, (msg, extra) => logger.warn(extra ?? {}, msg), clock);
    const { verifier, devIssuer } = await configuredVerifier(config, clock);

    const metrics = createMetrics(logger, config.store?.postgres.replicaId);
    const policySource = createPolicy(config, logger, clock, metrics);
    const { policy } = policySource;

    const { credentials, rotation, heartbeat } = await createCredentials(config, logger, clock, shared);

    const ups = createUpstreams(config, logger, opts, clock, metrics, credentials, policy);
    const { upstreams, upstreamChecks, sessions, retiring } = ups;
    if (shared !== undefined) await shareSessions(shared, sessions, upstreams, credentials);
    const audit = await createAudit(config, logger, opts.auditClock ?? clock, opts.wal);
    const sync = await startPolicySource(config, logger, clock, metrics, policySource, ups);
    const catalogs = new ToolCatalogs();
    sessions.onDelete = (session, reason) => {
      catalogs.delete(`session:${session.id}`);
      return audit.auditor.sessionClosed(session, reason);
    };
    const rates: Rates = shared?.rates ?? new RateLimiter(clock);
    const readiness = createReadiness(config, policySource, audit, upstreamChecks, sync, shared);
    const engine = opts.wrapPolicy?.(policy) ?? policy;
    const approvals = await createApprovals(config, logger, approvalClock, audit, opts.approvalProvider, shared);
    const webhooks = createWebhooks(config, approvals, sync, shared);
    const loginOf = (identity: Identity) => approverLogin(identity, config.approvals.logins);

    if (audit.log !== undefined) {
      metrics.watchAudit(() => ({ ...audit.log!.status(), ...audit.committer!.status() }));
      audit.log.onWalWrite((ms) => metrics.auditWalWriteSeconds.observe(ms / 1000));
    }
    if (audit.pusher !== undefined) metrics.watchAuditPush(() => audit.pusher!.status());
    metrics.watchApprovals(() =>
      approvals
        .list()
        .filter((a) => a.status === 'pending')
        .map((a) => ({ upstream: a.call.upstream })),
    );
    const app = buildApp({
      config,
      verifier,
      policy: engine,
      upstreams,
      sessions,
      metrics,
      credentials,
      rates,
      catalogs,
      audit: audit.auditor,
      approvals,
      approvalHoldMs: config.approvals.holdSeconds * 1000,
      loginOf,
      clock,
      webhooks,
      logger,
      readiness,
      ...(devIssuer ? { devIssuer } : {}),
    });

    return {
      app,
      config,
      policy,
      upstreams,
      sessions,
      credentials,
      approvals,
      webhooks,
      ...(sync ? { sync } : {}),
      logger,
      upstreamChecks,
      ...(devIssuer ? { devIssuer } : {}),
      ...(shared !== undefined ? { store: shared } : {}),
      async listen() {
        await app.listen({ host: config.server.host, port: config.server.port });
        const addr = app.server.address();
        const port = typeof addr === 'object' && addr !== null ? addr.port : config.server.port;
        const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
        return `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
      },
      async close() {
        rotation?.cancel();
        heartbeat?.cancel();
        rates.close();
        approvals.stop();
        sync?.stop();
        await app.close();
        await sessions.closeAll();
        await upstreamChecks.close();
        await upstreams.shutdown();
        await Promise.all([...retiring]);
        // Everything recorded reaches the audit repo before exit.
        await audit.committer?.stop();
        audit.pusher?.close();
        await audit.log?.close();
        await shared?.close();
        await lock.release();
      },
    };
  } catch (err) {
    await shared?.close();
    await lock.release();
    throw err;
  }
}
