import type { ApprovalStore } from '../approvals/store.js';
import type { ApprovalRecord } from '../approvals/types.js';
import type { PgStore } from './postgres.js';

interface Row {
  id: string;
  record: ApprovalRecord;
  version: string;
}

const MAX_ROWS = 10_000;

/**
 * Approvals shared by every replica. PostgreSQL holds the truth; this replica keeps a cache of the rows it
 * has read, refreshed before each decision that depends on them (admit, webhook, poll, hold) and whenever a
 * NOTIFY says a row changed. Writes never move an approval out of a final state: `executed` is reached only
 * through claim(), one conditional UPDATE, so of all replicas racing for one approved call exactly one wins.
 */
export class PgApprovalStore implements ApprovalStore {
  readonly #cache = new Map<string, ApprovalRecord>();
  readonly #versions = new Map<string, bigint>();
  readonly #changed = new Set<(id: string) => void>();

  constructor(private readonly db: PgStore) {}

  /** Listen for other replicas' changes; after a reconnect, every live approval is read again. */
  async start(): Promise<void> {
    // The NOTIFY is a hint only, the row is read: any role that can connect to the database may NOTIFY on
    // any channel (it needs no privilege), so nothing in a payload is adopted.
    await this.db.listen('approvals', (payload) => {
      const [id, version] = payload.split(' ');
      if (id === undefined || id === '' || id.length > 200 || !/^\d{1,19}$/.test(version ?? '')) return;
      // Our own write, or one already read: nothing to fetch.
      if ((this.#versions.get(id) ?? -1n) >= BigInt(version!)) return;
      void this.#reload(id).catch(() => undefined);
    });
    this.db.onReconnect = () => void this.syncLive().catch(() => undefined);
    await this.syncLive();
  }

  onChange(f: (id: string) => void): void {
    this.#changed.add(f);
  }

  all(): ApprovalRecord[] {
    return [...this.#cache.values()];
  }

  get(id: string): ApprovalRecord | undefined {
    return this.#cache.get(id);
  }

  /** Keep the newest version of a row: in place, so whoever holds the record object sees the change. */
  #adopt(row: Row, force = false): boolean {
    const v = BigInt(row.version);
    const had = this.#versions.get(row.id);
    if (!force && had !== undefined && had >= v) return false;
    this.#versions.set(row.id, v);
    const cur = this.#cache.get(row.id);
    if (cur === undefined) this.#cache.set(row.id, row.record);
    else {
      for (const k of Object.keys(cur)) if (!(k in row.record)) delete (cur as unknown as Record<string, unknown>)[k];
      Object.assign(cur, row.record);
    }
    return true;
  }

  #adoptAll(rows: Row[], force = false): void {
    for (const r of rows) if (this.#adopt(r, force)) for (const f of this.#changed) f(r.id);
  }

  /** Read one row; `force` also when this version was seen (the cached object was changed here since). */
  async #reload(id: string, force = false): Promise<void> {
    const r = await this.db.query<Row>('SELECT id, record, version FROM approvals WHERE id = $1', [id]);
    this.#adoptAll(r.rows, force);
  }

  async sync(callHash: string): Promise<void> {
    const r = await this.db.query<Row>(
      'SELECT id, record, version FROM approvals WHERE call_hash = $1 ORDER BY generation DESC LIMIT 50',
      [callHash],
    );
    this.#adoptAll(r.rows);
  }

  async syncRef(ref: string): Promise<void> {
    const r = await this.db.query<Row>('SELECT id, record, version FROM approvals WHERE remote_ref = $1 LIMIT 50', [
      ref,
    ]);
    this.#adoptAll(r.rows);
  }

  /** Every live approval, and the final ones whose outcome is not reported yet. */
  async syncLive(): Promise<void> {
    const r = await this.db.query<Row>(
      `SELECT id, record, version FROM approvals
       WHERE status IN ('pending', 'approved') OR NOT coalesce((record->>'finished')::boolean, false)
       ORDER BY updated_at DESC LIMIT ${MAX_ROWS}`,
    );
    this.#adoptAll(r.rows);
  }

  /** An approval's row as create() and put() write it ($1–$7), and the channel their NOTIFY goes to ($8). */
  #rowValues(a: ApprovalRecord): unknown[] {
    return [
      a.id,
      a.callHash,
      a.generation,
      a.status,
      a.remote?.ref ?? null,
      a,
      this.db.replicaId,
      this.db.channel('approvals'),
    ];
  }

  /** Insert a new approval; false when another replica made this call's approval of that generation first. */
  async create(a: ApprovalRecord): Promise<boolean> {
    const r = await this.db.query<{ version: string }>(
      `WITH w AS (
         INSERT INTO approvals (id, call_hash, generation, status, remote_ref, record, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING id, version)
       SELECT version, pg_notify($8, id || ' ' || version) FROM w`,
      this.#rowValues(a),
    );
    const row = r.rows[0];
    if (row === undefined) {
      await this.sync(a.callHash);
      return false;
    }
    this.#versions.set(a.id, BigInt(row.version));
    this.#cache.set(a.id, a);
    return true;
  }

  /**
   * Write a change. A final approval stays final (a replica working from an older read cannot revive or
   * re-approve it), `executed` is never written here (only claim() reaches it), and a remote another replica
   * recorded is kept when this write knows none. When the write is refused, the row as it is now is adopted.
   */
  async put(a: ApprovalRecord): Promise<void> {
    const r = await this.db.query<Row>(
      `WITH w AS (
         INSERT INTO approvals (id, call_hash, generation, status, remote_ref, record, updated_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET
           status = EXCLUDED.status,
           remote_ref = coalesce(EXCLUDED.remote_ref, approvals.remote_ref),
           record = CASE WHEN EXCLUDED.record ? 'remote' OR NOT approvals.record ? 'remote' THEN EXCLUDED.record
                         ELSE EXCLUDED.record || jsonb_build_object('remote', approvals.record->'remote') END,
           version = approvals.version + 1,
           updated_by = EXCLUDED.updated_by,
           updated_at = now()
         WHERE approvals.status IN ('pending', 'approved') AND EXCLUDED.status <> 'executed'
            OR approvals.status = EXCLUDED.status
         RETURNING id, record, version)
       SELECT id, record, version, pg_notify($8, id || ' ' || version) FROM w`,
      this.#rowValues(a),
    );
    const row = r.rows[0];
    if (row === undefined) await this.#reload(a.id, true);
    else this.#adoptAll([row]);
  }

  /** approved → executed in one statement: true for exactly one claimant; false adopts the row as it is. */
  async claim(a: ApprovalRecord): Promise<boolean> {
    const r = await this.db.query<Row>(
      `WITH w AS (
         UPDATE approvals SET status = 'executed', record = $2, version = version + 1, updated_by = $3, updated_at = now()
         WHERE id = $1 AND status = 'approved' RETURNING id, record, version),
       e AS (INSERT INTO approval_events (approval_id, type, replica) SELECT id, 'approval.executed', $3 FROM w)
       SELECT id, record, version, pg_notify($4, id || ' ' || version) FROM w`,
      [a.id, { ...a, status: 'executed' }, this.db.replicaId, this.db.channel('approvals')],
    );
    const row = r.rows[0];
    if (row === undefined) {
      await this.#reload(a.id, true);
      return false;
    }
    this.#adoptAll([row]);
    return true;
  }

  /** An approval event, in the shared event history (the audit record itself goes to this replica's log). */
  async event(id: string, type: string): Promise<void> {
    await this.db.query('INSERT INTO approval_events (approval_id, type, replica) VALUES ($1, $2, $3)', [
      id,
      type,
      this.db.replicaId,
    ]);
  }
}
