import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { SealedSession, SessionSeal } from '../mcp/sessions.js';
import type { PgStore } from './postgres.js';

const PREFIX = 'gs1.';
const AAD = Buffer.from('gitgate mcp session v1');
/** A sealed id is short; anything longer is not one of ours (and is not decrypted). */
const MAX_ID = 2048;

/**
 * What a session needs, sealed inside its Mcp-Session-Id (AES-256-GCM: a client can neither read the upstream's
 * session id nor forge or alter any field), so any replica can continue a session another opened. The key is
 * made once by the first replica and shared through the store; it never leaves the replicas and the database.
 */
export class AesSessionSeal implements SessionSeal {
  private constructor(private readonly key: Buffer) {}

  /** A seal over a given 32-byte key (tests; load() is how replicas get the shared one). */
  static withKey(key: Buffer): AesSessionSeal {
    if (key.length !== 32) throw new Error('a session key is 32 bytes');
    return new AesSessionSeal(key);
  }

  static async load(db: PgStore): Promise<AesSessionSeal> {
    await db.query('INSERT INTO session_keys (id, key) VALUES (1, $1) ON CONFLICT DO NOTHING', [randomBytes(32)]);
    const r = await db.query<{ key: Buffer }>('SELECT key FROM session_keys WHERE id = 1');
    const key = r.rows[0]?.key;
    if (key === undefined || key.length !== 32) throw new Error('the shared session key is missing or malformed');
    return AesSessionSeal.withKey(key);
  }

  seal(s: SealedSession): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(AAD);
    const body = Buffer.concat([c.update(JSON.stringify(s), 'utf8'), c.final()]);
    return PREFIX + Buffer.concat([iv, body, c.getAuthTag()]).toString('base64url');
  }

  open(id: string): SealedSession | undefined {
    if (!id.startsWith(PREFIX) || id.length > MAX_ID) return undefined;
    const raw = Buffer.from(id.slice(PREFIX.length), 'base64url');
    if (raw.length < 12 + 16 + 2) return undefined;
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
      d.setAAD(AAD);
      d.setAuthTag(raw.subarray(raw.length - 16));
      const text = Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]).toString('utf8');
      const v = JSON.parse(text) as Partial<SealedSession>;
      if (
        typeof v.upstream !== 'string' ||
        typeof v.owner !== 'string' ||
        typeof v.protocolVersion !== 'string' ||
        typeof v.upstreamId !== 'string' ||
        typeof v.createdAt !== 'number' ||
        (v.slot !== undefined && typeof v.slot !== 'string')
      )
        return undefined;
      return v as SealedSession;
    } catch {
      return undefined;
    }
  }
}
