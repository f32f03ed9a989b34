import { loadConfig, type ConfigOverrides } from '../config/load.js';
import { createGateway } from '../gateway.js';

export interface ServeOptions extends ConfigOverrides {
  config?: string;
}

/** `gitgate serve`: run until SIGTERM/SIGINT, then drain and exit 0. */
export async function serve(opts: ServeOptions, out: (line: string) => void): Promise<number> {
  const config = loadConfig(opts.config, opts);
  const gw = await createGateway(config);
  const url = await gw.listen();
  out(`gitgate listening on ${url} (config: ${config.source}; data: ${config.dataDir})`);
  for (const name of gw.upstreams.names()) out(`  upstream ${name}: ${url}/mcp/${name}`);
  if (gw.devIssuer !== undefined) out(`  dev issuer: get a token with  gitgate token --data-dir ${config.dataDir} --sub alice --groups eng`);
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      gw.logger.info({ signal: sig }, 'shutting down: draining in-flight requests');
      gw.close().then(
        () => resolve(0),
        (err: unknown) => {
          gw.logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
