import { type Clock, systemClock } from '../clock.js';
import type { GatewayConfig, UpstreamConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { ListenSlots } from './listen-slots.js';
import { EraDiscovery } from './upstream/discovery.js';
import { httpConnector } from './upstream/http.js';
import { SharedUpstreamSession } from './upstream/shared-session.js';
import { type StdioLogger, stdioConnector } from './upstream/stdio.js';
import type { UpstreamAuth, UpstreamConnector } from './upstream/types.js';

export interface Upstream {
  readonly config: UpstreamConfig;
  readonly connector: UpstreamConnector;
  /** The gateway-held session that serves stateless (2026-07-28) callers of a session-era upstream. */
  readonly shared: SharedUpstreamSession;
  /** Whether the upstream speaks 2026-07-28 itself (then stateless callers' requests go to it as they are). */
  readonly discovery: EraDiscovery;
  /** The 2026-07-28 subscriptions/listen streams open on it, capped per caller and in all. */
  readonly listens: ListenSlots;
}

export interface UpstreamRegistry {
  get(name: string): Upstream | undefined;
  names(): string[];
  /**
   * Swap in the policy repo's routes (merged over the config file's upstreams).
   * Unchanged upstreams keep their connections; removed or changed ones are shut
   * down once their sessions end (new requests no longer find them).
   */
  replaceRoutes(routes: Readonly<Record<string, UpstreamConfig>>): void;
  shutdown(): Promise<void>;
}

export function createUpstreamRegistry(
  config: GatewayConfig,
  log: StdioLogger,
  clientInfo: { name: string; version: string },
  connect?: (cfg: UpstreamConfig) => UpstreamConnector,
  ownAuth: (cfg: UpstreamConfig, method: string) => UpstreamAuth = () => ({ headers: {} }),
  /** The clock of the shared sessions' backoff, the era discovery's memory and the default transports' deadlines. */
  clock: Clock = systemClock,
): UpstreamRegistry {
  const make = connect ?? ((cfg: UpstreamConfig) => defaultConnector(cfg, log, clock));
  const build = (cfg: UpstreamConfig): Upstream => {
    const connector = make(cfg);
    return {
      config: cfg,
      connector,
      shared: new SharedUpstreamSession(connector, clientInfo, (method) => ownAuth(cfg, method), cfg, clock),
      discovery: new EraDiscovery(connector, clientInfo, (method) => ownAuth(cfg, method), clock),
      listens: new ListenSlots(cfg),
    };
  };
  let map = new Map<string, Upstream>(Object.values(config.upstreams).map((cfg) => [cfg.name, build(cfg)]));
  const retired = new Set<Upstream>();
  const stop = async (u: Upstream) => {
    await u.shared.close();
    await u.connector.shutdown();
  };
  return {
    get: (name) => map.get(name),
    names: () => [...map.keys()],
    replaceRoutes(routes) {
      const wanted = { ...config.upstreams, ...routes };
      const next = new Map<string, Upstream>();
      for (const cfg of Object.values(wanted)) {
        const cur = map.get(cfg.name);
        next.set(cfg.name, cur !== undefined && JSON.stringify(cur.config) === JSON.stringify(cfg) ? cur : build(cfg));
      }
      for (const [name, u] of map) if (next.get(name) !== u) retired.add(u);
      map = next;
    },
    async shutdown() {
      await Promise.all([...map.values(), ...retired].map(stop));
    },
  };
}

/** Streamable HTTP for a url upstream, a supervised child for a stdio one. */
export function defaultConnector(cfg: UpstreamConfig, log: StdioLogger, clock: Clock = systemClock): UpstreamConnector {
  if (cfg.url !== undefined) return httpConnector({ ...cfg, url: cfg.url }, clock);
  if (cfg.stdio !== undefined) return stdioConnector({ ...cfg, stdio: cfg.stdio }, log, clock);
  throw new GatewayError('CONFIG_INVALID', `upstream ${cfg.name} has neither url nor stdio`);
}

/** Step: the upstream named in the path, or 404. */
export function resolveUpstream(registry: UpstreamRegistry, name: string): Upstream {
  const u = registry.get(name);
  if (u === undefined)
    throw new GatewayError(
      'UPSTREAM_UNKNOWN',
      `Unknown upstream "${name}"; configured: ${registry.names().join(', ')}`,
    );
  return u;
}
