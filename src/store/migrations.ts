/**
 * The shared store's schema, versioned: each migration runs once, in order, in its own transaction,
 * under an advisory lock (so replicas starting together apply it once). Never edit a released one:
 * add the next version.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'approvals, approval events, webhook deliveries, published keys, rate buckets, poller lease',
    sql: `
CREATE TABLE approvals (
  id text PRIMARY KEY,
  call_hash text NOT NULL,
  generation integer NOT NULL,
  status text NOT NULL CHECK (status IN ('pending', 'approved', 'executed', 'denied', 'expired')),
  remote_ref text,
  record jsonb NOT NULL,
  version bigint NOT NULL DEFAULT 1,
  updated_by text NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (call_hash, generation)
);
CREATE INDEX approvals_live ON approvals (status) WHERE status IN ('pending', 'approved');
CREATE INDEX approvals_remote_ref ON approvals (remote_ref) WHERE remote_ref IS NOT NULL;
CREATE TABLE approval_events (
  seq bigserial PRIMARY KEY,
  approval_id text NOT NULL,
  type text NOT NULL,
  replica text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX approval_events_by_approval ON approval_events (approval_id, seq);
CREATE TABLE webhook_deliveries (
  id text PRIMARY KEY,
  replica text NOT NULL,
  at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE published_keys (
  kid text PRIMARY KEY,
  replica text NOT NULL,
  jwk jsonb NOT NULL,
  retire_at timestamptz,
  published_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rate_buckets (
  key text PRIMARY KEY,
  tokens double precision NOT NULL,
  at_ms bigint NOT NULL,
  calls integer NOT NULL,
  window_ms bigint NOT NULL,
  granted boolean NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'the key that seals session ids',
    sql: 'CREATE TABLE session_keys (id integer PRIMARY KEY CHECK (id = 1), key bytea NOT NULL);',
  },
  {
    version: 3,
    name: 'session slots counted across replicas',
    sql: `
CREATE TABLE session_slots (
  slot text PRIMARY KEY,
  upstream text NOT NULL,
  owner_hash text NOT NULL,
  replica text NOT NULL,
  last_seen timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX session_slots_by_upstream ON session_slots (upstream, owner_hash);
`,
  },
];
