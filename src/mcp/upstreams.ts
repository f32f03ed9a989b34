import type { GatewayConfig, UpstreamConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { httpConnector } from './upstream/http.js';
import { SharedUpstreamSession } from './upstream/shared-session.js';
import { stdioConnector, type StdioLogger } from './upstream/stdio.js';
import type { UpstreamAuth, UpstreamConnector } from './upstream/types.js';

export interface Upstream {
  readonly config: UpstreamConfig;
  readonly connector: UpstreamConnector;
  /** The gateway-held session that serves stateless (2026-07-28) callers. */
  readonly shared: SharedUpstreamSession;
}

export interface UpstreamRegistry {
  get(name: string): Upstream | undefined;
  names(): string[];
  shutdown(): Promise<void>;
}

export function createUpstreamRegistry(
  config: GatewayConfig,
  log: StdioLogger,
  clientInfo: { name: string; version: string },
  connect?: (cfg: UpstreamConfig) => UpstreamConnector,
  ownAuth: (cfg: UpstreamConfig, method: string) => UpstreamAuth = () => ({ headers: {} }),
): UpstreamRegistry {
  const make = connect ?? ((cfg: UpstreamConfig) => defaultConnector(cfg, log));
  const map = new Map<string, Upstream>();
  for (const cfg of Object.values(config.upstreams)) {
    const connector = make(cfg);
    map.set(cfg.name, { config: cfg, connector, shared: new SharedUpstreamSession(connector, clientInfo, (method) => ownAuth(cfg, method)) });
  }
  return {
    get: (name) => map.get(name),
    names: () => [...map.keys()],
    async shutdown() {
      await Promise.all([...map.values()].map(async (u) => {
        await u.shared.close();
        await u.connector.shutdown();
      }));
    },
  };
}

function defaultConnector(cfg: UpstreamConfig, log: StdioLogger): UpstreamConnector {
  if (cfg.url !== undefined) return httpConnector({ ...cfg, url: cfg.url });
  if (cfg.stdio !== undefined) return stdioConnector({ ...cfg, stdio: cfg.stdio }, log);
  throw new GatewayError('CONFIG_INVALID', `upstream ${cfg.name} has neither url nor stdio`);
}

/** Step: the upstream named in the path, or 404. */
export function resolveUpstream(registry: UpstreamRegistry, name: string): Upstream {
  const u = registry.get(name);
  if (u === undefined) throw new GatewayError('UPSTREAM_UNKNOWN', `Unknown upstream "${name}"; configured: ${registry.names().join(', ')}`);
  return u;
}
