import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import { writeFileAtomic } from '../atomic-file.js';

interface StoredKey {
  readonly kid: string;
  readonly jwk: JWK;
  readonly createdAt: number;
  /** Published from creation; signs from here on (pre-publication lets verifiers' JWKS caches catch up). */
  readonly activeFrom: number;
  /** Set when a newer key takes over: published until then, so tokens it signed still verify. */
  retireAt?: number;
}

export interface SigningKey {
  readonly kid: string;
  readonly alg: 'EdDSA';
  readonly key: KeyObject;
}

export interface KeyRingTimes {
  /** How long a retired key stays published (longest credential TTL + clock skew). */
  readonly graceMs: number;
  /** How long a new key is published before it signs. */
  readonly activationMs: number;
}

/**
 * gitgate's own Ed25519 signing keys (for just-in-time upstream credentials),
 * kept under <dataDir>/keys. Rotation pre-publishes the next key, switches to it
 * once verifiers have had time to fetch it, and keeps the previous key published
 * until every token it signed has expired.
 */
export class KeyRing {
  #keys: StoredKey[];
  readonly #file: string;
  readonly #times: KeyRingTimes;
  readonly #objects = new Map<string, SigningKey>();

  private constructor(file: string, keys: StoredKey[], times: KeyRingTimes) {
    this.#file = file;
    this.#keys = keys;
    this.#times = times;
  }

  static async load(dataDir: string, times: KeyRingTimes, name = 'gateway-signing'): Promise<KeyRing> {
    const file = path.join(dataDir, 'keys', `${name}.json`);
    let keys: StoredKey[] = [];
    try {
      keys = (JSON.parse(await readFile(file, 'utf8')) as { keys: StoredKey[] }).keys.map((k) => ({ ...k, activeFrom: k.activeFrom ?? k.createdAt }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const now = Date.now();
    const ring = new KeyRing(file, keys.length > 0 ? keys : [newKey(now, now)], times);
    if (keys.length === 0) await ring.#save();
    return ring;
  }

  /** The key that signs now: the newest one already active. */
  signing(now = Date.now()): SigningKey {
    const k = this.#keys.find((x) => x.activeFrom <= now) ?? this.#keys.at(-1)!;
    let obj = this.#objects.get(k.kid);
    if (obj === undefined) {
      obj = { kid: k.kid, alg: 'EdDSA', key: createPrivateKey({ key: k.jwk as never, format: 'jwk' }) };
      this.#objects.set(k.kid, obj);
    }
    return obj;
  }

  /** Age of the newest key in ms. */
  age(now = Date.now()): number {
    return now - this.#keys[0]!.createdAt;
  }

  /**
   * Publish a new key now; it signs after the activation delay. The keys it
   * replaces are retired once tokens they may still sign have expired.
   */
  async rotate(now = Date.now(), activationMs = this.#times.activationMs): Promise<{ kid: string; activeFrom: number }> {
    const next = newKey(now, now + activationMs);
    for (const k of this.#keys) k.retireAt ??= next.activeFrom + this.#times.graceMs;
    this.#keys = [next, ...this.#keys.filter((k) => (k.retireAt ?? Infinity) > now)];
    await this.#save();
    return { kid: next.kid, activeFrom: next.activeFrom };
  }

  /** The public keys to publish at /.well-known/jwks.json (pending, current and not yet retired). */
  jwks(now = Date.now()): { keys: JWK[] } {
    return {
      keys: this.#keys
        .filter((k) => (k.retireAt ?? Infinity) > now)
        .map((k) => ({ ...(createPublicKey(createPrivateKey({ key: k.jwk as never, format: 'jwk' })).export({ format: 'jwk' }) as JWK), kid: k.kid, alg: 'EdDSA', use: 'sig' })),
    };
  }

  async #save(): Promise<void> {
    await mkdir(path.dirname(this.#file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#file, JSON.stringify({ keys: this.#keys }), { mode: 0o600 });
  }
}

function newKey(now: number, activeFrom: number): StoredKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { kid: `gg-${now.toString(36)}-${randomBytes(3).toString('hex')}`, jwk: privateKey.export({ format: 'jwk' }) as JWK, createdAt: now, activeFrom };
}
