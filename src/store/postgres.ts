/**
 * The opt-in shared store (`store.postgres`): one bounded pg pool per replica, the schema's versioned
 * migrations applied at start under an advisory lock, LISTEN/NOTIFY for "something changed" hints,
 * and session-level advisory locks for the one-at-a-time jobs (the approvals poller). Every query is
 * bounded (connect and statement timeouts); a failure is reported, never retried forever here: callers
 * fail closed, /readyz reports the store unreachable, and the next query tries again.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { type Clock, systemClock, type Timer } from '../clock.js';
import { GatewayError } from '../errors.js';
import { redactUrlCredentials } from '../masking/url-credentials.js';
import { MIGRATIONS, type Migration } from './migrations.js';

export interface PgStoreOptions {
  readonly url: string;
  /** The PostgreSQL schema gitgate's tables live in (created when missing). */
  readonly schema: string;
  /** The most connections this replica holds in its pool (the LISTEN and lock connections come on top). */
  readonly poolMax: number;
  /** This replica's name in the store (who published a key, who claimed an approval). */
  readonly replicaId: string;
  /** How long a connect or a statement may take. */
  readonly timeoutMs?: number;
  readonly log?: (msg: string, extra?: Record<string, unknown>) => void;
  /** Waits (the LISTEN reconnect); default the system's. */
  readonly clock?: Clock;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The store's words in an error, without the URL or its password (pg never puts them in messages, but a cause may). */
function storeError(what: string, err: unknown): GatewayError {
  const msg = (err as Error)?.message ?? String(err);
  return new GatewayError('STORE_UNAVAILABLE', `the shared store is unavailable (${what}): ${redact(msg)}`, {
    cause: err,
  });
}

function redact(s: string): string {
  return redactUrlCredentials(s).slice(0, 300);
}

/** A stable 63-bit advisory lock key for a name within a schema. */
export function lockKey(schema: string, name: string): string {
  return BigInt.asIntN(
    64,
    BigInt(`0x${createHash('sha256').update(`${schema}\u0000${name}`).digest('hex').slice(0, 16)}`),
  ).toString();
}

export class PgStore {
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly replicaId: string;
  readonly #opts: PgStoreOptions;
  readonly #listeners = new Map<string, Set<(payload: string) => void>>();
  #listener: pg.Client | undefined;
  #listenerConnecting: Promise<void> | undefined;
  readonly #leases = new Map<string, pg.Client>();
  #closed = false;
  #lastError: string | undefined;
  #reconnect: Timer | undefined;
  /** What open() applied. */
  migrated: { applied: number[]; current: number } = { applied: [], current: 0 };
  /** Queries sent to the database (for the benchmark and tests: the allow path sends none without a rate). */
  roundTrips = 0;
  /** Called when the LISTEN connection is (re)established: what was missed meanwhile must be re-read. */
  onReconnect: (() => void) | undefined;

  private constructor(opts: PgStoreOptions) {
    if (!SCHEMA_NAME.test(opts.schema))
      throw new GatewayError(
        'CONFIG_INVALID',
        `store.postgres.schema ${JSON.stringify(opts.schema)} is not a plain lower-case SQL name`,
      );
    this.#opts = opts;
    this.schema = opts.schema;
    this.replicaId = opts.replicaId;
    this.pool = new pg.Pool(this.#clientConfig({ max: opts.poolMax }));
    // An idle client that loses its server is dropped by the pool; without a listener the error would crash the process.
    this.pool.on('error', (err) => this.#fail('idle connection', err));
  }

  #clientConfig(extra: pg.PoolConfig = {}): pg.PoolConfig {
    const t = this.#opts.timeoutMs ?? 5000;
    return {
      connectionString: this.#opts.url,
      connectionTimeoutMillis: t,
      statement_timeout: t,
      query_timeout: t + 1000,
      idle_in_transaction_session_timeout: t,
      application_name: `gitgate ${this.replicaId}`.slice(0, 63),
      options: `-c search_path=${this.schema}`,
      ...extra,
    };
  }

  /** Connect, create the schema if needed and apply the migrations this version knows. */
  static async open(opts: PgStoreOptions): Promise<PgStore> {
    const s = new PgStore(opts);
    try {
      s.migrated = await s.migrate();
    } catch (err) {
      await s.pool.end().catch(() => undefined);
      throw err instanceof GatewayError ? err : storeError('migrating', err);
    }
    return s;
  }

  #fail(what: string, err: unknown): void {
    this.#lastError = `${what}: ${redact((err as Error)?.message ?? String(err))}`;
    this.#opts.log?.('shared store error', { err: this.#lastError });
  }

  /** One statement. Throws STORE_UNAVAILABLE when the database cannot answer. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    this.roundTrips++;
    try {
      const r = await this.pool.query<R>(sql, params);
      this.#lastError = undefined;
      return r;
    } catch (err) {
      if (isConnectionError(err)) {
        this.#fail('query', err);
        throw storeError('query', err);
      }
      throw err;
    }
  }

  /** Several statements in one transaction on one pooled connection (rolled back when `f` throws). */
  async transaction<T>(
    f: (q: <R extends pg.QueryResultRow>(sql: string, params?: unknown[]) => Promise<pg.QueryResult<R>>) => Promise<T>,
  ): Promise<T> {
    let c: pg.PoolClient;
    try {
      this.roundTrips++;
      c = await this.pool.connect();
    } catch (err) {
      this.#fail('connect', err);
      throw storeError('connect', err);
    }
    let broken = false;
    const q = async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => {
      this.roundTrips++;
      try {
        return await c.query<R>(sql, params);
      } catch (err) {
        if (isConnectionError(err)) {
          broken = true;
          this.#fail('query', err);
          throw storeError('query', err);
        }
        throw err;
      }
    };
    try {
      await q('BEGIN');
      const out = await f(q);
      await q('COMMIT');
      this.#lastError = undefined;
      return out;
    } catch (err) {
      if (!broken) await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release(broken);
    }
  }

  /** Apply pending migrations under an advisory lock; refuses a database migrated by a newer gitgate. */
  async migrate(migrations: readonly Migration[] = MIGRATIONS): Promise<{ applied: number[]; current: number }> {
    const c = new pg.Client(this.#clientConfig({ statement_timeout: 60_000, query_timeout: 61_000 }));
    c.on('error', () => undefined);
    await c.connect();
    const applied: number[] = [];
    try {
      // The lock first: CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent one (unique violation).
      await c.query('SELECT pg_advisory_lock($1)', [lockKey(this.schema, 'migrate')]);
      await c.query(`CREATE SCHEMA IF NOT EXISTS ${this.schema}`);
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${this.schema}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const have = new Set(
        (await c.query<{ version: number }>(`SELECT version FROM ${this.schema}.schema_migrations`)).rows.map(
          (r) => r.version,
        ),
      );
      const newest = Math.max(0, ...have);
      const known = Math.max(0, ...migrations.map((m) => m.version));
      if (newest > known)
        throw new GatewayError(
          'CONFIG_INVALID',
          `the shared store's schema ${this.schema} is at version ${newest}, newer than this gitgate knows (${known}): upgrade this replica`,
        );
      for (const m of migrations) {
        if (have.has(m.version)) continue;
        await c.query('BEGIN');
        try {
          await c.query(m.sql);
          await c.query(`INSERT INTO ${this.schema}.schema_migrations (version, name) VALUES ($1, $2)`, [
            m.version,
            m.name,
          ]);
          await c.query('COMMIT');
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw new GatewayError(
            'CONFIG_INVALID',
            `store migration ${m.version} (${m.name}) failed: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
        applied.push(m.version);
      }
      return { applied, current: Math.max(newest, ...applied) };
    } finally {
      await c.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      await c.end().catch(() => undefined);
    }
  }

  /** Reachability for /readyz: one trivial statement. */
  async ping(): Promise<string | undefined> {
    try {
      await this.query('SELECT 1');
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** The channel name of a topic in this schema. */
  channel(topic: string): string {
    return `${this.schema}_${topic}`;
  }

  /** Hear NOTIFYs on `topic` (from any replica, this one included). The connection reconnects by itself. */
  async listen(topic: string, f: (payload: string) => void): Promise<void> {
    const ch = this.channel(topic);
    const set = this.#listeners.get(ch) ?? new Set();
    this.#listeners.set(ch, set);
    set.add(f);
    await this.#ensureListener().catch(() => undefined);
  }

  async #ensureListener(): Promise<void> {
    if (this.#listener !== undefined || this.#closed) return;
    if (this.#listenerConnecting !== undefined) return this.#listenerConnecting;
    this.#listenerConnecting = (async () => {
      const c = new pg.Client(this.#clientConfig({ statement_timeout: 0, query_timeout: 10_000 }));
      const lost = (err?: unknown) => {
        if (this.#listener === c) this.#listener = undefined;
        if (err !== undefined) this.#fail('listen connection', err);
        c.end().catch(() => undefined);
        this.#scheduleReconnect();
      };
      c.on('error', lost);
      c.on('end', () => lost());
      c.on('notification', (n) => {
        for (const f of this.#listeners.get(n.channel) ?? []) f(n.payload ?? '');
      });
      try {
        await c.connect();
        for (const ch of this.#listeners.keys()) await c.query(`LISTEN ${ch}`);
      } catch (err) {
        lost(err);
        throw err;
      }
      this.#listener = c;
      this.onReconnect?.();
    })().finally(() => {
      this.#listenerConnecting = undefined;
    });
    return this.#listenerConnecting;
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnect !== undefined) return;
    this.#reconnect = (this.#opts.clock ?? systemClock).after(500, () => {
      this.#reconnect = undefined;
      this.#ensureListener().catch(() => undefined);
    });
  }

  /** Whether the LISTEN connection is up (else changes are found by polling only). */
  get listening(): boolean {
    return this.#listener !== undefined;
  }

  /**
   * Hold (or keep holding) the advisory lock `name` on a dedicated connection. It is released when this
   * replica dies (its connection ends), so another replica takes the job over at its next try.
   */
  async holdLease(name: string): Promise<boolean> {
    if (this.#closed) return false;
    const held = this.#leases.get(name);
    if (held !== undefined) {
      try {
        this.roundTrips++;
        await held.query('SELECT 1');
        return true;
      } catch {
        this.#leases.delete(name);
        held.end().catch(() => undefined);
      }
    }
    const c = new pg.Client(this.#clientConfig());
    c.on('error', () => {
      if (this.#leases.get(name) === c) this.#leases.delete(name);
    });
    try {
      await c.connect();
      this.roundTrips++;
      const r = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [lockKey(this.schema, name)]);
      if (r.rows[0]?.ok === true) {
        this.#leases.set(name, c);
        return true;
      }
    } catch (err) {
      this.#fail('lease', err);
    }
    await c.end().catch(() => undefined);
    return false;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#reconnect?.cancel();
    await this.#listenerConnecting?.catch(() => undefined);
    const l = this.#listener;
    this.#listener = undefined;
    await l?.end().catch(() => undefined);
    for (const c of this.#leases.values()) await c.end().catch(() => undefined);
    this.#leases.clear();
    await this.pool.end().catch(() => undefined);
  }
}

/** A failure of the connection or the server (not of the statement itself). */
function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string') {
    // 08: connection exception; 57P: operator intervention (shutdown); 53: insufficient resources; 57014: statement timeout
    if (/^(08|57P|53)/.test(e.code) || e.code === '57014') return true;
    if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH'].includes(e.code)) return true;
  }
  return /timeout|terminat|Connection|ECONNREFUSED|not queryable/i.test(e?.message ?? '');
}
