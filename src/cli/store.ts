import { loadConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { PgStore } from '../store/postgres.js';

/** `gitgate store migrate`: apply the shared store's pending migrations (what `serve` does at start), then exit. */
export async function storeMigrate(opts: { config?: string }, out: (line: string) => void): Promise<number> {
  const config = loadConfig(opts.config);
  const p = config.store?.postgres;
  if (p === undefined)
    throw new GatewayError(
      'CONFIG_INVALID',
      `${config.source} has no store.postgres: the embedded mode keeps its state in files and has nothing to migrate`,
    );
  const db = await PgStore.open({
    url: p.url.reveal(),
    schema: p.schema,
    poolMax: 1,
    timeoutMs: p.timeoutMs,
    replicaId: p.replicaId,
  });
  try {
    const r = db.migrated;
    out(
      `schema ${p.schema}: at version ${r.current}${r.applied.length > 0 ? ` (applied ${r.applied.join(', ')})` : ' (nothing to apply)'}`,
    );
    return 0;
  } finally {
    await db.close();
  }
}
