import { type ConfigOverrides, loadConfig } from '../config/load.js';
import { createGateway } from '../gateway.js';

export interface ServeOptions extends ConfigOverrides {
  config?: string;
}

/**
 * `gitgate serve`: run until SIGTERM/SIGINT, then drain, commit the audit log, and exit 0.
 * stdout is the JSON log stream; `banner` (stderr) gets the lines for a human.
 */
export async function serve(opts: ServeOptions, banner: (line: string) => void): Promise<number> {
  const config = loadConfig(opts.config, opts);
  // Signal handlers go in before anything can announce readiness: a supervisor may stop us right after.
  let stopRequested: string | undefined;
  let stop: (sig: string) => void = (sig) => {
    stopRequested ??= sig;
  };
  const onTerm = () => stop('SIGTERM');
  const onInt = () => stop('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  try {
    const gw = await createGateway(config);
    const done = new Promise<number>((resolve) => {
      let stopping = false;
      stop = (sig) => {
        if (stopping) return;
        stopping = true;
        gw.logger.info({ signal: sig }, 'shutting down: draining in-flight requests, committing the audit log');
        gw.close().then(
          () => resolve(0),
          (err: unknown) => {
            gw.logger.error({ err }, 'shutdown failed');
            resolve(1);
          },
        );
      };
    });
    if (stopRequested !== undefined) {
      stop(stopRequested);
      return await done;
    }
    const url = await gw.listen();
    // stdout carries the JSON log lines only: the same facts as one log line, and the human banner on stderr.
    const upstreams = Object.fromEntries(gw.upstreams.names().map((name) => [name, `${url}/mcp/${name}`]));
    gw.logger.info(
      { url, config: config.source, dataDir: config.dataDir, upstreams, devIssuer: gw.devIssuer !== undefined },
      'gitgate listening',
    );
    banner(`gitgate listening on ${url} (config: ${config.source}; data: ${config.dataDir})`);
    for (const [name, at] of Object.entries(upstreams)) banner(`  upstream ${name}: ${at}`);
    if (gw.devIssuer !== undefined)
      banner(`  dev issuer: get a token with  gitgate token --data-dir ${config.dataDir} --sub alice --groups eng`);
    if (stopRequested !== undefined) stop(stopRequested);
    return await done;
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
  }
}
