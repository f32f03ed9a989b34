import type { JWK } from 'jose';
import type { KeyRing } from '../credentials/keyring.js';
import type { PgStore } from './postgres.js';

const MAX_KEYS = 1000;

/**
 * Each replica's JIT-credential public keys, published in the shared store; every replica serves the union
 * at /.well-known/jwks.json. Only public JWKs leave the replica (KeyRing.jwks() exports public parts only).
 * A row lives until `retire_at`, pushed forward by each publish (at start, on rotation, and on a heartbeat):
 * the keys of a replica that died stop being served once every credential they signed has expired.
 */
export class PgKeys {
  /** The union as last read: served when the store cannot be read (public keys only, so stale is safe). */
  #last: JWK[] = [];

  constructor(
    private readonly db: PgStore,
    private readonly ring: KeyRing,
    /** How long a published key stays served without a heartbeat (longest credential TTL + clock skew + margin). */
    private readonly graceMs: number,
  ) {}

  /** Publish this replica's current keys and withdraw its retired ones (one statement). */
  async publish(now = this.ring.clock.now()): Promise<void> {
    const keys = this.ring.jwks(now).keys;
    await this.db.query(
      `WITH k AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(kid text, jwk jsonb)),
       gone AS (DELETE FROM published_keys WHERE replica = $2 AND kid NOT IN (SELECT kid FROM k))
       INSERT INTO published_keys (kid, replica, jwk, retire_at)
       SELECT kid, $2, jwk, to_timestamp($3::double precision / 1000) FROM k
       ON CONFLICT (kid) DO UPDATE SET retire_at = EXCLUDED.retire_at, jwk = EXCLUDED.jwk
       WHERE published_keys.replica = EXCLUDED.replica`,
      [JSON.stringify(keys.map((jwk) => ({ kid: jwk.kid, jwk }))), this.db.replicaId, now + this.graceMs],
    );
  }

  /** Every replica's live public keys, this replica's own always included. */
  async jwks(now = this.ring.clock.now()): Promise<{ keys: JWK[] }> {
    const own = this.ring.jwks(now).keys;
    try {
      const r = await this.db.query<{ jwk: JWK }>(
        `SELECT jwk FROM published_keys WHERE retire_at > now() ORDER BY published_at, kid LIMIT ${MAX_KEYS}`,
      );
      this.#last = r.rows.map((x) => x.jwk);
    } catch {
      // Stale is safe for public keys; this replica's own are always current.
    }
    const seen = new Set(own.map((k) => k.kid));
    return { keys: [...own, ...this.#last.filter((k) => !seen.has(k.kid))] };
  }
}
