import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { validateConfig } from '../../src/config/load.js';
import { createGateway, type Gateway, type GatewayOptions } from '../../src/gateway.js';
import { makePolicyDir } from './policy.js';

export interface TestGateway {
  readonly gw: Gateway;
  readonly url: string;
  readonly dataDir: string;
  token(
    sub: string,
    groups?: string[],
    opts?: { ttlSeconds?: number; githubLogin?: string; email?: string },
  ): Promise<string>;
  close(): Promise<void>;
}

export async function startGateway(opts: {
  upstreams: Record<string, unknown>;
  policyDir?: string;
  server?: Record<string, unknown>;
  identity?: Record<string, unknown>;
  credentials?: Record<string, unknown>;
  audit?: Record<string, unknown>;
  approvals?: Record<string, unknown>;
  /** Multi-replica mode: `store` of gitgate.yaml. */
  store?: Record<string, unknown>;
  options?: GatewayOptions;
  /** Reuse a data dir (restart tests). */
  dataDir?: string;
  /** GitOps: policy.repo instead of a policy folder. */
  policyRepo?: Record<string, unknown>;
  /**
   * Probe the upstreams at start and on policy swaps, and return once the start-up probe ended
   * (default off: most tests count what reaches an upstream; test/integration/upstream-checks.test.ts turns it on).
   */
  checkUpstreams?: boolean;
}): Promise<TestGateway> {
  const dataDir = opts.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'gitgate-data-')));
  const policyDir = opts.policyDir ?? (opts.policyRepo ? dataDir : await makePolicyDir());
  const config = validateConfig(
    {
      server: { host: '127.0.0.1', port: 0, ...opts.server },
      dataDir,
      identity: opts.identity ?? { mode: 'dev' },
      policy: { dir: policyDir, ...(opts.policyRepo ? { repo: opts.policyRepo } : {}) },
      upstreams: opts.upstreams,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      ...(opts.audit ? { audit: opts.audit } : {}),
      // Parked calls answer at once unless a test is about holding.
      approvals: { holdSeconds: 0, ...opts.approvals },
      ...(opts.store ? { store: opts.store } : {}),
      log: { level: 'silent' },
    },
    {},
    dataDir,
    'test',
  );
  const gw = await createGateway(config, {
    logger: pino({ level: process.env.GITGATE_TEST_LOG ?? 'silent' }),
    checkUpstreams: opts.checkUpstreams === true,
    ...opts.options,
  });
  const url = await gw.listen();
  if (opts.checkUpstreams === true) await gw.upstreamChecks.idle();
  return {
    gw,
    url,
    dataDir,
    token: (sub, groups = [], o = {}) =>
      gw.devIssuer!.mint({
        sub,
        groups,
        audience: config.identity.audience,
        ...(o.ttlSeconds ? { ttlSeconds: o.ttlSeconds } : {}),
        ...(o.githubLogin ? { githubLogin: o.githubLogin } : {}),
        ...(o.email ? { email: o.email } : {}),
      }),
    close: () => gw.close(),
  };
}
