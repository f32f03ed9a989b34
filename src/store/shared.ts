/**
 * Multi-replica mode (`store.postgres`): the shared store and the adapters the gateway swaps in for its
 * single-process ones. Without `store`, none of this is loaded and nothing talks to a database.
 */
import { type Clock, systemClock } from '../clock.js';
import type { GatewayConfig } from '../config/types.js';
import type { KeyRing } from '../credentials/keyring.js';
import { PgApprovalStore } from './approvals.js';
import { PgDeliveries } from './deliveries.js';
import { PgKeys } from './keys.js';
import { PgStore } from './postgres.js';
import { PgRateLimiter } from './rate-limit.js';
import { PgSessionCaps } from './session-caps.js';
import { AesSessionSeal } from './session-seal.js';

export interface SharedStore {
  readonly db: PgStore;
  readonly approvals: PgApprovalStore;
  readonly deliveries: PgDeliveries;
  readonly rates: PgRateLimiter;
  readonly sessionCaps: PgSessionCaps;
  keys(ring: KeyRing, graceMs: number): PgKeys;
  /** The seal of session ids, with the key all replicas share. */
  sessionSeal(): Promise<AesSessionSeal>;
  /** Ask the database now; what /readyz shows. */
  check(): Promise<Record<string, unknown>>;
  /** Why the gateway is not ready because of the store (from the last check). */
  problems(): string[];
  close(): Promise<void>;
}

export async function openSharedStore(
  cfg: NonNullable<GatewayConfig['store']>,
  log: (msg: string, extra?: Record<string, unknown>) => void,
  clock: Clock = systemClock,
): Promise<SharedStore> {
  const p = cfg.postgres;
  const db = await PgStore.open({
    url: p.url.reveal(),
    schema: p.schema,
    poolMax: p.poolMax,
    timeoutMs: p.timeoutMs,
    replicaId: p.replicaId,
    log,
    clock,
  });
  const approvals = new PgApprovalStore(db);
  try {
    await approvals.start();
  } catch (err) {
    await db.close();
    throw err;
  }
  let problem: string | undefined;
  return {
    db,
    approvals,
    deliveries: new PgDeliveries(db),
    rates: new PgRateLimiter(db, clock),
    sessionCaps: new PgSessionCaps(db, log),
    keys: (ring, graceMs) => new PgKeys(db, ring, graceMs),
    sessionSeal: () => AesSessionSeal.load(db),
    async check() {
      problem = await db.ping();
      return {
        kind: 'postgres',
        schema: db.schema,
        replica: db.replicaId,
        reachable: problem === undefined,
        listening: db.listening,
        ...(problem !== undefined ? { error: problem } : {}),
      };
    },
    problems: () => (problem === undefined ? [] : [`shared store unreachable: ${problem}`]),
    close: () => db.close(),
  };
}
