import { type Clock, systemClock, type Timer } from '../clock.js';
import type { UpstreamConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { sentSecrets, upstreamDetail } from '../masking/scrub.js';
import type { PolicyInstance } from '../policy/engine.js';
import type { PolicyInput } from '../policy/input.js';
import { isResponse, type JsonRpcRequest } from './jsonrpc.js';
import { UPSTREAM_PROTOCOL_VERSION } from './protocol.js';
import { STARTUP_ALLOWANCE_MS } from './upstream/stdio.js';
import type { UpstreamAuth, UpstreamSession } from './upstream/types.js';
import type { Upstream, UpstreamRegistry } from './upstreams.js';

/** What the last check found for one upstream (`null`: its first check is still running). */
export interface UpstreamStatus {
  readonly transport: 'http' | 'stdio';
  /**
   * A real MCP exchange over its transport succeeded: `server/discover` listing 2026-07-28, or
   * else (a session-era upstream) `initialize`, whose session was then closed.
   */
  readonly reachable: boolean | null;
  /** The serving policy allows `initialize` for it (a policy that does not govern it denies everything). */
  readonly governed: boolean | null;
  readonly problems: readonly string[];
  readonly checked_at: string | null;
}

export interface UpstreamChecksDeps {
  readonly upstreams: UpstreamRegistry;
  readonly policy: () => PolicyInstance | undefined;
  readonly clientInfo: { readonly name: string; readonly version: string };
  /** gitgate's own credentials for the probe's calls. */
  readonly auth: (cfg: UpstreamConfig, method: string) => UpstreamAuth;
  readonly log: { error(obj: object, msg: string): void; info(obj: object, msg: string): void };
  /** The clock of the probes' deadlines and of `checked_at` (default: the system clock). */
  readonly clock?: Clock;
}

/** The probe input: gitgate itself asking to `initialize` the upstream. */
function probeInput(u: Upstream, now: number): PolicyInput {
  return {
    identity: { sub: 'gitgate', groups: [], issuer: 'gitgate' },
    mcp: { kind: 'request', method: 'initialize', protocol_version: UPSTREAM_PROTOCOL_VERSION, era: 'legacy' },
    upstream: { name: u.config.name, transport: u.connector.transport },
    request: { id: 'gitgate-upstream-check', time_ns: now * 1_000_000 },
  };
}

/**
 * Checks every configured upstream, at start and after each policy swap, so a
 * problem shows in /readyz and the log before the first call meets it:
 * reachable (within its timeoutMs — for stdio at least the child's startup
 * allowance — the upstream's era discovery, `server/discover`, lists 2026-07-28,
 * or else a real `initialize` over its transport succeeds, then closed) and governed (the
 * serving policy allows `initialize` for it; the default policy denies every
 * method of an upstream absent from its data). Checks run in the background.
 */
export class UpstreamChecks {
  #status = new Map<string, UpstreamStatus>();
  /** What was last logged per upstream: an error line is written once per change. */
  readonly #logged = new Map<string, string>();
  #generation = 0;
  #running: Promise<void> = Promise.resolve();
  #closed = false;
  readonly #clock: Clock;

  constructor(private readonly deps: UpstreamChecksDeps) {
    this.#clock = deps.clock ?? systemClock;
  }

  /** Start a new check of every upstream (a running one's results are dropped). */
  run(): Promise<void> {
    if (this.#closed) return this.#running;
    const gen = ++this.#generation;
    const policy = this.deps.policy();
    const all = this.deps.upstreams.names().map((n) => this.deps.upstreams.get(n)!);
    const next = new Map<string, UpstreamStatus>();
    for (const u of all)
      next.set(
        u.config.name,
        this.#status.get(u.config.name) ?? {
          transport: u.connector.transport,
          reachable: null,
          governed: null,
          problems: [],
          checked_at: null,
        },
      );
    this.#status = next;
    const done = Promise.all(
      all.map(async (u) => {
        const governed = this.#governed(u, policy);
        const reached = await this.#probe(u).then(
          () => undefined,
          (err: unknown) => (err instanceof Error ? err.message : String(err)),
        );
        if (gen !== this.#generation) return;
        const problems = [...(governed === undefined ? [] : [governed]), ...(reached === undefined ? [] : [reached])];
        this.#status.set(u.config.name, {
          transport: u.connector.transport,
          reachable: reached === undefined,
          governed: governed === undefined,
          problems,
          checked_at: new Date(this.#clock.now()).toISOString(),
        });
        this.#report(u.config.name, problems);
      }),
    ).then(() => undefined);
    this.#running = done;
    return done;
  }

  /** Resolves once the newest check has finished. */
  async idle(): Promise<void> {
    for (;;) {
      const cur = this.#running;
      await cur;
      if (cur === this.#running) return;
    }
  }

  status(): Record<string, UpstreamStatus> {
    return Object.fromEntries(this.#status);
  }

  /** One line per upstream problem, for /readyz `warnings`. */
  warnings(): string[] {
    return [...this.#status].flatMap(([name, s]) => s.problems.map((p) => `upstream ${name}: ${p}`));
  }

  /** Not ready only when upstreams are configured, all were checked, and none is usable. */
  problems(): string[] {
    const all = [...this.#status.values()];
    if (all.length === 0 || all.some((s) => s.checked_at === null || s.problems.length === 0)) return [];
    return [`no upstream is usable: ${this.warnings().join('; ')}`];
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.idle();
  }

  #governed(u: Upstream, policy: PolicyInstance | undefined): string | undefined {
    if (policy === undefined) return 'no policy loaded';
    const d = policy.evaluate(probeInput(u, this.#clock.now()));
    if (d.allow) return undefined;
    if (!d.valid) return `the serving policy's decision for initialize is invalid (${d.reasons.join('; ')})`;
    return `not governed by the serving policy: it denies initialize (${d.reasons.join('; ') || 'no reason given'})`;
  }

  /** Within the deadline: discovery (http), else open → initialize → close. */
  async #probe(u: Upstream): Promise<void> {
    const cfg = u.config;
    const ms = u.connector.transport === 'stdio' ? Math.max(cfg.timeoutMs, STARTUP_ALLOWANCE_MS) : cfg.timeoutMs;
    const abort = new AbortController();
    /** What the upstream is being asked, for the deadline's message. */
    let asking = u.connector.transport === 'http' ? 'server/discover' : 'initialize';
    let timer: Timer | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = this.#clock.after(ms, () => {
        abort.abort();
        reject(new GatewayError('UPSTREAM_TIMEOUT', `upstream ${cfg.name} did not answer ${asking} within ${ms} ms`));
      });
    });
    let session: Promise<UpstreamSession> | undefined;
    try {
      await Promise.race([
        deadline,
        (async () => {
          // The same question a 2026-07-28 caller's first request asks (its answer is remembered for them).
          if ((await u.discovery.probe(abort.signal)) === 'modern') return;
          asking = 'initialize';
          session = u.connector.open();
          const s = await session;
          const init: JsonRpcRequest = {
            jsonrpc: '2.0',
            id: 'gitgate-upstream-check',
            method: 'initialize',
            params: { protocolVersion: UPSTREAM_PROTOCOL_VERSION, capabilities: {}, clientInfo: this.deps.clientInfo },
          };
          let answered = false;
          const auth = this.deps.auth(cfg, 'initialize');
          for await (const m of s.request(init, { auth, signal: abort.signal })) {
            if (!isResponse(m) || m.id !== init.id) continue;
            if (m.error !== undefined)
              throw new GatewayError(
                'UPSTREAM_PROTOCOL',
                `upstream ${cfg.name} refused initialize: ${upstreamDetail(m.error.message, sentSecrets(cfg, auth), 200)}`,
              );
            answered = true;
          }
          if (!answered) throw new GatewayError('UPSTREAM_PROTOCOL', `upstream ${cfg.name} did not answer initialize`);
        })(),
      ]);
    } finally {
      timer?.cancel();
      await session?.then((s) => s.close(this.deps.auth(cfg, 'session/close'))).catch(() => undefined);
    }
  }

  #report(name: string, problems: readonly string[]): void {
    const key = problems.join('\n');
    const before = this.#logged.get(name) ?? '';
    if (key === before) return;
    this.#logged.set(name, key);
    const old = new Set(before === '' ? [] : before.split('\n'));
    for (const p of problems)
      if (!old.has(p))
        this.deps.log.error({ upstream: name, problem: p }, 'upstream check failed; calls to it will fail');
    if (problems.length === 0) this.deps.log.info({ upstream: name }, 'upstream check passed');
  }
}
