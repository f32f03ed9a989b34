import { CallToolResultSchema, type McpError } from '@modelcontextprotocol/sdk/types.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from './client.js';
import { ManualClock } from './clock.js';
import { startGateway, type TestGateway } from './gateway.js';
import { GitHubEmulator } from './github-emulator.js';
import { makePolicyDir, TEST_POLICY_DATA } from './policy.js';

export const SECRET = 'webhook-secret-for-tests';
process.env.GITGATE_TEST_GH_TOKEN = 'ghs_emulatortoken';
process.env.GITGATE_TEST_WEBHOOK_SECRET = SECRET;

export type Outcome =
  | { ok: true; content: unknown }
  | {
      ok: false;
      code: number;
      message: string;
      data: { approval_id: string; url: string | null; status: string; expires_at: string };
    };
export type Client = Awaited<ReturnType<typeof connectClient>>;

/** High-risk tools of the `gh` upstream (the demo server's tools). */
export const HIGH_RISK = {
  echo: { approvers: ['@acme/security'], min_approvals: 1, ttl_seconds: 900 },
  add: { approvers: ['@acme/security'], min_approvals: 2, ttl_seconds: 900 },
  secret: { approvers: ['@acme/security', 'ops-lead'], min_approvals: 1, ttl_seconds: 900 },
};

/**
 * A gateway whose approvals are GitHub pull requests on the emulator, an HTTP
 * upstream that records what reaches it, and helpers to call and review.
 * Security team: sam, sue, alice-gh (alice's GitHub login), renovate[bot].
 */
export class GitHubApprovalWorld {
  gh!: GitHubEmulator;
  upstream!: { url: string; calls: { tool: string; message?: string }[]; close(): Promise<void> };
  policyDir!: string;
  readonly clock = new ManualClock(Date.now());
  readonly #gateways: TestGateway[] = [];
  readonly #clients: Client[] = [];

  async setup(highRisk: Record<string, unknown> = HIGH_RISK): Promise<void> {
    this.gh = await new GitHubEmulator().start();
    this.gh.team('acme', 'security', ['sam', 'sue', 'alice-gh', 'renovate[bot]']);
    this.upstream = await startHttpServer();
    this.policyDir = await GitHubApprovalWorld.policy(highRisk);
  }

  /** A policy folder whose `gh` upstream has these high-risk tools (and these mask rules: none by default). */
  static policy(highRisk: Record<string, unknown>, mask: readonly unknown[] = []): Promise<string> {
    return makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: {
        gh: {
          full_access_groups: ['eng'],
          public_tools: [],
          high_risk_tools: highRisk,
          mask,
          credential_ttl_seconds: 60,
        },
      },
    });
  }

  /** A gateway (webhooks on; polling only when a test calls poll()); its approvals run on this world's clock. */
  async start(
    extra: Record<string, unknown> = {},
    /** `clock: 'all'`: the whole gateway (tokens, policy inputs) runs on this world's clock, not only its approvals. */
    opts: { dataDir?: string; clock?: boolean | 'all'; policyDir?: string } = {},
  ): Promise<TestGateway> {
    const gw = await startGateway({
      policyDir: opts.policyDir ?? this.policyDir,
      upstreams: { gh: { url: this.upstream.url } },
      approvals: {
        provider: 'github',
        github: { baseUrl: this.gh.url, owner: 'acme', repo: 'approvals', token: { fromEnv: 'GITGATE_TEST_GH_TOKEN' } },
        webhookSecret: { fromEnv: 'GITGATE_TEST_WEBHOOK_SECRET' },
        pollSeconds: 3600,
        ...extra,
      },
      ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
      options:
        opts.clock === false
          ? {}
          : opts.clock === 'all'
            ? { clock: this.clock, approvalClock: this.clock }
            : { approvalClock: this.clock },
    });
    this.#gateways.push(gw);
    return gw;
  }

  #shared: Promise<TestGateway> | undefined;

  /**
   * One gateway (default config, this world's clock) for the tests that need none of their own:
   * each calls with its own arguments, so it has its own approval and pull request. after() leaves
   * it running; teardown() closes it.
   */
  shared(): Promise<TestGateway> {
    if (this.#shared === undefined) {
      const gw = this.start();
      // start() lists it with the gateways after() closes: take it back out.
      this.#shared = gw.then((g) => {
        this.#gateways.splice(this.#gateways.indexOf(g), 1);
        return g;
      });
    }
    return this.#shared;
  }

  async client(
    gw: TestGateway,
    sub = 'alice',
    token: { githubLogin?: string; email?: string; ttlSeconds?: number } = { githubLogin: 'alice-gh' },
  ): Promise<Client> {
    const c = await connectClient(`${gw.url}/mcp/gh`, await gw.token(sub, ['eng'], token));
    this.#clients.push(c);
    return c;
  }

  /** tools/call with any params (the SDK's callTool insists on object arguments; a caller need not). */
  async call(c: Client, name: string, args: unknown, extra: Record<string, unknown> = {}): Promise<Outcome> {
    try {
      const r = await c.client.request(
        { method: 'tools/call', params: { name, arguments: args, ...extra } as never },
        CallToolResultSchema,
      );
      return { ok: true, content: r.content };
    } catch (e) {
      const err = e as McpError;
      return {
        ok: false,
        code: err.code,
        message: err.message,
        data: err.data as Extract<Outcome, { ok: false }>['data'],
      };
    }
  }

  prOf(o: Outcome): number {
    if (o.ok || o.data.url === null) throw new Error(`no pull request in ${JSON.stringify(o)}`);
    return Number(/\/pull\/(\d+)$/.exec(o.data.url)![1]);
  }

  approvalOf(gw: TestGateway, pr: number) {
    return gw.gw.approvals.list().find((a) => a.remote?.ref === String(pr))!;
  }

  calls(tool: string, message?: string): number {
    return this.upstream.calls.filter((c) => c.tool === tool && (message === undefined || c.message === message))
      .length;
  }

  hook(
    gw: TestGateway,
    event: string,
    payload: unknown,
    opts: { delivery?: string; signature?: string; body?: string; secret?: string } = {},
  ) {
    return this.gh.deliver(`${gw.url}/webhooks/github`, event, payload, opts.secret ?? SECRET, opts);
  }

  /** Close what a test opened (clients, gateways); the emulator's violations must be none. */
  async after(): Promise<string[]> {
    for (const c of this.#clients.splice(0)) await c.close().catch(() => undefined);
    for (const g of this.#gateways.splice(0)) await g.close().catch(() => undefined);
    return this.gh.violations.splice(0);
  }

  async teardown(): Promise<void> {
    await this.after();
    await (await this.#shared)?.close();
    await this.upstream.close();
    await this.gh.close();
  }
}
