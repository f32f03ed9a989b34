import type { Deliveries } from '../webhooks/verify-and-receive.js';
import type { PgStore } from './postgres.js';

/** How long a handled delivery id is remembered (GitHub redelivers within days, not months). */
const KEEP_DAYS = 30;

/** Webhook delivery ids handled by any replica: a delivery replayed to another replica is still a replay. */
export class PgDeliveries implements Deliveries {
  #adds = 0;

  constructor(private readonly db: PgStore) {}

  async has(id: string): Promise<boolean> {
    return (await this.db.query('SELECT 1 FROM webhook_deliveries WHERE id = $1', [id])).rowCount === 1;
  }

  async add(id: string): Promise<void> {
    await this.db.query('INSERT INTO webhook_deliveries (id, replica) VALUES ($1, $2) ON CONFLICT DO NOTHING', [
      id,
      this.db.replicaId,
    ]);
    if (++this.#adds % 1000 === 0)
      await this.db
        .query(`DELETE FROM webhook_deliveries WHERE at < now() - interval '${KEEP_DAYS} days'`)
        .catch(() => undefined);
  }
}
