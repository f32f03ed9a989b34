import { createHash } from 'node:crypto';
import type { SessionLimits, SharedSessionCaps } from '../mcp/sessions.js';
import { lockKey, type PgStore } from './postgres.js';

/**
 * `maxSessions` and `maxSessionsPerCaller` counted across replicas: one row per session slot, claimed under a
 * transaction-scoped advisory lock per upstream (so concurrent initializes on different replicas cannot all
 * pass the count), touched while in use, and counted only while seen within the upstream's idleTimeoutMs.
 * A store that cannot be reached opens no session (STORE_UNAVAILABLE).
 */
export class PgSessionCaps implements SharedSessionCaps {
  constructor(
    private readonly db: PgStore,
    private readonly log: (msg: string, extra?: Record<string, unknown>) => void,
  ) {}

  async claim(slot: string, upstream: string, owner: string, limits: SessionLimits): Promise<'ok' | 'limit' | 'quota'> {
    const ownerHash = createHash('sha256').update(owner).digest('hex');
    return this.db.transaction(async (q) => {
      await q('SELECT pg_advisory_xact_lock($1)', [lockKey(this.db.schema, `sessions:${upstream}`)]);
      const r = await q<{ total: number; mine: number }>(
        `SELECT count(*)::int AS total, count(*) FILTER (WHERE owner_hash = $2)::int AS mine FROM session_slots
         WHERE upstream = $1 AND last_seen > now() - make_interval(secs => $3::double precision / 1000)`,
        [upstream, ownerHash, limits.idleTimeoutMs],
      );
      const { total, mine } = r.rows[0] ?? { total: 0, mine: 0 };
      if (limits.maxSessionsPerCaller !== undefined && mine >= limits.maxSessionsPerCaller) return 'quota';
      if (total >= limits.maxSessions) return 'limit';
      await q('INSERT INTO session_slots (slot, upstream, owner_hash, replica) VALUES ($1, $2, $3, $4)', [
        slot,
        upstream,
        ownerHash,
        this.db.replicaId,
      ]);
      return 'ok';
    });
  }

  touch(slot: string, limits: SessionLimits): void {
    void this.renew(slot, limits).catch((err: unknown) =>
      this.log('session slot not touched', { err: (err as Error).message }),
    );
  }

  async renew(slot: string, limits: SessionLimits): Promise<boolean> {
    // Only a slot still counted: one that idled out everywhere is not brought back past the caps.
    const r = await this.db.query(
      `UPDATE session_slots SET last_seen = now()
       WHERE slot = $1 AND last_seen > now() - make_interval(secs => $2::double precision / 1000) RETURNING slot`,
      [slot, limits.idleTimeoutMs],
    );
    return (r.rowCount ?? 0) > 0;
  }

  release(slot: string): void {
    void this.db
      .query('DELETE FROM session_slots WHERE slot = $1', [slot])
      .catch((err: unknown) => this.log('session slot not released (it idles out)', { err: (err as Error).message }));
  }
}
