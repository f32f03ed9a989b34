/**
 * Composition root: turns a frozen config into a running gateway by wiring the
 * adapters (identity, policy, upstream transports) into buildApp(deps).
 */
import { mkdir } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { GatewayConfig, UpstreamConfig } from './config/types.js';
import type { UpstreamConnector } from './mcp/upstream/types.js';
import { toolEnv } from './config/load.js';
import { buildApp, type Readiness } from './http/app.js';
import { DEV_ISSUER, loadDevIssuer, type DevIssuer } from './identity/dev-issuer.js';
import { createLocalVerifier, createOidcVerifier, type TokenVerifier } from './identity/verifier.js';
import { SessionStore } from './mcp/sessions.js';
import { createUpstreamRegistry, type UpstreamRegistry } from './mcp/upstreams.js';
import { GatewayMetrics } from './metrics/metrics.js';
import { PolicyHolder, type DecisionEngine, type PolicyInstance } from './policy/engine.js';
import { loadPolicyFromDir } from './policy/local-source.js';
import { ensureOpa } from './policy/opa-binary.js';
import { VERSION } from './version.js';
import { Credentials } from './credentials/credentials.js';
import { KeyRing } from './credentials/keyring.js';
import { ToolCatalogs } from './mcp/tool-catalog.js';
import { RateLimiter } from './policy/rate-limit.js';
import path from 'node:path';
import { createAuditor, disabledAuditor, type Auditor } from './audit/auditor.js';
import type { AuditCommitter } from './audit/committer.js';
import type { AuditLog } from './audit/log.js';
import { auditSigner } from './audit/record.js';
import { GitAuditStore } from './audit/store.js';
import { openAuditTrail } from './audit/trail.js';
import type { WriteAheadLog } from './audit/wal.js';
import { GitHubApprovalProvider } from './approvals/github/provider.js';
import { LocalApprovalProvider, LocalGitRepo } from './approvals/local/provider.js';
import type { ApprovalProvider } from './approvals/provider.js';
import { ApprovalService } from './approvals/service.js';
import { FileApprovalStore } from './approvals/store.js';
import { githubApprovalEvents } from './approvals/github/webhook-events.js';
import { DeliveryLog, GitHubWebhooks } from './webhooks/verify-and-receive.js';
import type { Identity } from './identity/identity.js';
import { PolicySync } from './gitsync/sync.js';
import { validateRoutes } from './config/load.js';

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
  /** Listen on config.server; resolves to the base URL. */
  listen(): Promise<string>;
  /** Stop accepting, finish in-flight requests, stop upstreams. */
  close(): Promise<void>;
}

export interface GatewayOptions {
  logger?: Logger;
  /** Skip loading the local policy folder (a caller swaps policies in itself). */
  policyInstance?: PolicyInstance;
  /** Upstream transport adapter (default: Streamable HTTP or stdio from config); tests pass in-memory fakes. */
  connectUpstream?: (cfg: UpstreamConfig) => UpstreamConnector;
  /** Wrap the decision engine (tests record decisions). */
  wrapPolicy?: (engine: DecisionEngine) => DecisionEngine;
  /** The audit WAL over its folder, sealed on this thread (default: a FileWal under <dataDir>/audit-wal, sealed on a worker thread); tests inject failing ones. */
  wal?: (dir: string) => WriteAheadLog;
  /** Approval provider (default from config). */
  approvalProvider?: ApprovalProvider;
}

async function approvalProvider(config: GatewayConfig): Promise<ApprovalProvider> {
  const a = config.approvals;
  if (a.provider === 'local') return new LocalApprovalProvider(await LocalGitRepo.open(a.local.repo), a.local.teams);
  const gh = a.github!;
  const auth = gh.token !== undefined ? { token: gh.token.reveal() } : { appId: gh.app!.appId, installationId: gh.app!.installationId, privateKey: gh.app!.privateKey.reveal() };
  return new GitHubApprovalProvider({ baseUrl: gh.baseUrl, owner: gh.owner, repo: gh.repo, baseBranch: gh.baseBranch, auth, onFinish: gh.onFinish });
}

interface AuditParts {
  readonly auditor: Auditor;
  readonly log?: AuditLog;
  readonly committer?: AuditCommitter;
}

/** The audit capability: audit signing key (ES256; older Ed25519 keys still sign), WAL, git store, log and committer (recovered on start). */
async function createAudit(config: GatewayConfig, logger: Logger, wal?: (dir: string) => WriteAheadLog): Promise<AuditParts> {
  if (!config.audit.enabled) return { auditor: disabledAuditor };
  const ring = await KeyRing.load(config.dataDir, { graceMs: 0, activationMs: 0 }, 'audit-signing');
  const key = ring.signing();
  const signer = auditSigner(key.kid, key.key);
  const store = await GitAuditStore.open(config.audit.repo, signer, { ...(config.audit.remote ? { remote: config.audit.remote } : {}), log: (m) => logger.warn(m) });
  const { log, committer } = openAuditTrail(store, {
    walDir: path.join(config.dataDir, 'audit-wal'),
    kid: key.kid,
    key: key.key,
    everyRecords: config.audit.commitEveryRecords,
    everyMs: config.audit.commitEveryMs,
    ...(wal !== undefined ? { wal } : {}),
    onError: (err) => logger.error({ err: (err as Error).message }, 'audit commit failed; records stay in the write-ahead log'),
  });
  log.onHealth((healthy, why) => {
    if (healthy) logger.info('audit log records again; forwarding resumes');
    else logger.error({ err: why }, 'audit log unavailable; gitgate forwards nothing it cannot record');
  });
  const recovered = await committer.recover();
  if (recovered > 0) logger.info({ recovered }, 'audit records recovered from the write-ahead log');
  committer.start();
  return { auditor: createAuditor(log, { maxRecordedBytes: config.audit.maxRecordedBytes }), log, committer };
}

/**
 * gitgate's logger. Credentials are redacted wherever a log object may carry them:
 * authorization and cookie headers, tokens, and every header an upstream's static
 * secret travels in (`secretHeaders`).
 */
export function createLogger(level: string, secretHeaders: readonly string[] = [], destination?: DestinationStream): Logger {
  const headers = [...new Set(['authorization', 'cookie', 'x-api-key', ...secretHeaders.map((h) => h.toLowerCase())])];
  const paths = headers.flatMap((h) => [`req.headers["${h}"]`, `headers["${h}"]`, `*.headers["${h}"]`]);
  return pino({
    level,
    base: { service: 'gitgate' },
    redact: { paths: [...paths, '*.token', 'token', 'authorization', 'secret', '*.secret'], censor: '[redacted]' },
  }, ...(destination !== undefined ? [destination] : []));
}

export async function createGateway(config: GatewayConfig, opts: GatewayOptions = {}): Promise<Gateway> {
  const logger = opts.logger ?? createLogger(config.log.level, Object.values(config.upstreams).flatMap((u) => (u.secret?.header !== undefined ? [u.secret.header] : [])));
  await mkdir(config.dataDir, { recursive: true, mode: 0o700 });

  let devIssuer: DevIssuer | undefined;
  let verifier: TokenVerifier;
  if (config.identity.mode === 'dev') {
    devIssuer = await loadDevIssuer(config.dataDir);
    verifier = createLocalVerifier({ ...config.identity, issuer: DEV_ISSUER, algorithms: ['ES256'] }, devIssuer.jwks());
  } else {
    verifier = createOidcVerifier(config.identity);
  }

  const metrics = new GatewayMetrics();
  const policy = new PolicyHolder();
  policy.onSwap((rev) => {
    metrics.setPolicy(rev);
    logger.info({ policy: rev }, 'policy revision now serving');
  });
  let lastPolicyError: string | undefined;
  const reloadPolicy = async () => {
    try {
      const opa = await ensureOpa((line) => logger.info(line), toolEnv().opaPath);
      const instance = await loadPolicyFromDir({ opa, dir: config.policy.dir, workDir: config.dataDir });
      policy.swap(instance);
      lastPolicyError = undefined;
      return instance;
    } catch (err) {
      lastPolicyError = err instanceof Error ? err.message : String(err);
      logger.error({ err: lastPolicyError }, 'policy load failed; the previous policy (if any) keeps serving');
      throw err;
    }
  };

  // Retired keys stay published while tokens they signed can still be valid.
  const keys = await KeyRing.load(config.dataDir, {
    graceMs: (config.credentials.maxTtlSeconds + config.identity.clockToleranceSeconds + 60) * 1000,
    activationMs: config.credentials.keyActivationSeconds * 1000,
  });
  const credentials = new Credentials(config, keys);
  const rotateAfterMs = config.credentials.rotateAfterHours === undefined ? undefined : config.credentials.rotateAfterHours * 3_600_000;
  const rotation =
    rotateAfterMs === undefined
      ? undefined
      : setInterval(() => {
          if (keys.age() < rotateAfterMs) return;
          keys.rotate().then(
            (k) => logger.info({ kid: k.kid, activeFrom: new Date(k.activeFrom).toISOString() }, 'credential signing key rotated (pre-published)'),
            (err: unknown) => logger.error({ err }, 'credential signing key rotation failed'),
          );
        }, Math.min(rotateAfterMs / 10, 3_600_000));
  rotation?.unref();

  const upstreams = createUpstreamRegistry(config, logger, { name: 'gitgate', version: VERSION }, opts.connectUpstream, (cfg, method) =>
    credentials.forCall(cfg, { subject: 'gitgate', method }),
  );
  const audit = await createAudit(config, logger, opts.wal);
  // Where the policy comes from: the local folder, or (GitOps) the policy repo's branch.
  let sync: PolicySync | undefined;
  const repo = config.policy.repo;
  if (opts.policyInstance !== undefined) policy.swap(opts.policyInstance);
  else if (repo === undefined) await reloadPolicy();
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
        ...(repo.verification !== undefined ? { verification: { publicKey: repo.verification.publicKey.reveal(), algorithm: repo.verification.algorithm, ...(repo.verification.keyId ? { keyId: repo.verification.keyId } : {}) } } : {}),
      },
      path.join(config.dataDir, 'policy-repo'),
      path.join(config.dataDir, 'policy-builds'),
      () => ensureOpa((line) => logger.info(line), toolEnv().opaPath),
      (rev) => {
        // Routes first: a request between the two swaps meets the old policy, which fails closed on an upstream it does not govern.
        if (rev.routes !== undefined) upstreams.replaceRoutes(validateRoutes(rev.routes, config.dataDir, `gitgate.routes.yaml@${rev.commit.slice(0, 12)}`));
        policy.swap(rev.instance);
      },
      (msg, extra) => logger.info(extra ?? {}, msg),
    );
    await sync.start();
  }
  const sessions = new SessionStore((name) => upstreams.get(name)?.config ?? config.upstreams[name] ?? { maxSessions: 0, idleTimeoutMs: 0 });
  const catalogs = new ToolCatalogs();
  sessions.onDelete = (session, reason) => {
    catalogs.delete(`session:${session.id}`);
    audit.auditor.sessionClosed(session, reason);
  };
  const rates = new RateLimiter();
  const readiness: Readiness = {
    problems: () => [
      ...(policy.current() === undefined ? ['no policy loaded'] : []),
      ...(audit.log !== undefined && !audit.log.status().healthy ? [`audit log unavailable: ${audit.log.status().lastError}`] : []),
    ],
    audit: () =>
      audit.log === undefined
        ? { enabled: false }
        : { enabled: true, repo: config.audit.repo, ...audit.log.status(), ...audit.committer!.status() },
    policy: () => policy.current()?.revision,
    lastPolicyError: () => sync?.status().lastError?.message ?? lastPolicyError,
    sync: () => sync?.status(),
  };
  const engine = opts.wrapPolicy?.(policy) ?? policy;
  // Approvals: durable store, provider, one state machine fed by webhooks and polling; events audited per approval.
  const approvals = new ApprovalService(new FileApprovalStore(path.join(config.dataDir, 'approvals')), opts.approvalProvider ?? (await approvalProvider(config)), {
    record: (a, type, data) => {
      if (audit.log === undefined) return;
      void audit.log
        .append(`approvals/${a.createdAt.slice(0, 10)}/${a.id}`, { type, upstream: a.call.upstream, caller: { sub: a.requester.sub }, method: a.call.method, ...(a.call.tool ? { tool: a.call.tool } : {}), data: { approval_id: a.id, url: a.remote?.url ?? null, ...data } })
        .catch(() => undefined);
    },
    log: (msg, extra) => logger.info(extra ?? {}, msg),
  }, { pollMs: config.approvals.pollSeconds * 1000 });
  await approvals.start();
  const webhooks = new GitHubWebhooks(config.approvals.webhookSecret?.reveal(), new DeliveryLog(config.dataDir));
  githubApprovalEvents(webhooks, approvals);
  if (sync !== undefined && repo?.webhook === true) {
    const s = sync;
    webhooks.on('push', async (payload) => {
      // A verified push to the policy branch: fetch now instead of at the next poll.
      if (payload.ref === `refs/heads/${repo.branch}`) void s.sync();
    });
  }
  const loginOf = (identity: Identity) => identity.githubLogin ?? config.approvals.logins[identity.sub] ?? identity.sub;

  if (audit.log !== undefined) metrics.watchAudit(() => ({ ...audit.log!.status(), ...audit.committer!.status() }));
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
    ...(devIssuer ? { devIssuer } : {}),
    async listen() {
      await app.listen({ host: config.server.host, port: config.server.port });
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : config.server.port;
      const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
      return `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
    },
    async close() {
      if (rotation !== undefined) clearInterval(rotation);
      rates.close();
      approvals.stop();
      sync?.stop();
      await app.close();
      await sessions.closeAll();
      await upstreams.shutdown();
      // Everything recorded reaches the audit repo before exit.
      await audit.committer?.stop();
      await audit.log?.close();
    },
  };
}
