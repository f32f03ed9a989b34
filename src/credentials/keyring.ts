import { createPrivateKey, createPublicKey, type KeyObject, randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import { writeFileAtomic } from '../atomic-file.js';
import { type Clock, systemClock } from '../clock.js';
import { generateSigningKey, type SigningAlg } from './algorithms.js';

interface StoredKey {
  readonly kid: string;
  /** Absent on keys stored before ES256 was the default: those are Ed25519. */
  readonly alg?: SigningAlg;
  readonly jwk: JWK;
  readonly createdAt: number;
  /** Published from creation; signs from here on (pre-publication lets verifiers' JWKS caches catch up). */
  readonly activeFrom: number;
  /** Set when a newer key takes over: published until then, so tokens it signed still verify. */
  retireAt?: number;
}

export interface SigningKey {
  readonly kid: string;
  readonly alg: SigningAlg;
  readonly key: KeyObject;
}

export interface KeyRingTimes {
  /** How long a retired key stays published (longest credential TTL + clock skew). */
  readonly graceMs: number;
  /** How long a new key is published before it signs. */
  readonly activationMs: number;
  /** The clock of creation, activation and retirement (default: the system clock). */
  readonly clock?: Clock;
}

/**
 * gitgate's own signing keys (ES256 for new keys; Ed25519 ones made earlier
 * still sign and verify), kept under <dataDir>/keys. Rotation pre-publishes
 * the next key, switches to it once verifiers have had time to fetch it, and
 * keeps the previous key published until every token it signed has expired.
 */
export class KeyRing {
  #keys: StoredKey[];
  readonly #file: string;
  readonly #times: KeyRingTimes;
  readonly #objects = new Map<string, SigningKey>();

  readonly #alg: SigningAlg;
  /** The ring's clock; what it signs is dated on it too. */
  readonly clock: Clock;

  private constructor(file: string, keys: StoredKey[], times: KeyRingTimes, alg: SigningAlg) {
    this.#file = file;
    this.#keys = keys;
    this.#times = times;
    this.#alg = alg;
    this.clock = times.clock ?? systemClock;
  }

  /** Load (or create) the ring `name`; `alg` is what new keys are made with. */
  static async load(
    dataDir: string,
    times: KeyRingTimes,
    name = 'gateway-signing',
    alg: SigningAlg = 'ES256',
  ): Promise<KeyRing> {
    const file = path.join(dataDir, 'keys', `${name}.json`);
    let keys: StoredKey[] = [];
    try {
      keys = (JSON.parse(await readFile(file, 'utf8')) as { keys: StoredKey[] }).keys.map((k) => ({
        ...k,
        activeFrom: k.activeFrom ?? k.createdAt,
      }));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const now = (times.clock ?? systemClock).now();
    const ring = new KeyRing(file, keys.length > 0 ? keys : [newKey(alg, now, now)], times, alg);
    if (keys.length === 0) await ring.#save();
    return ring;
  }

  /** The key that signs now: the newest one already active. */
  signing(now = this.clock.now()): SigningKey {
    const k = this.#keys.find((x) => x.activeFrom <= now) ?? this.#keys.at(-1)!;
    let obj = this.#objects.get(k.kid);
    if (obj === undefined) {
      obj = { kid: k.kid, alg: k.alg ?? 'EdDSA', key: createPrivateKey({ key: k.jwk as never, format: 'jwk' }) };
      this.#objects.set(k.kid, obj);
    }
    return obj;
  }

  /** Age of the newest key in ms. */
  age(now = this.clock.now()): number {
    return now - this.#keys[0]!.createdAt;
  }

  /**
   * Publish a new key now; it signs after the activation delay. The keys it
   * replaces are retired once tokens they may still sign have expired.
   */
  async rotate(
    now = this.clock.now(),
    activationMs = this.#times.activationMs,
  ): Promise<{ kid: string; activeFrom: number }> {
    const next = newKey(this.#alg, now, now + activationMs);
    for (const k of this.#keys) k.retireAt ??= next.activeFrom + this.#times.graceMs;
    this.#keys = [next, ...this.#keys.filter((k) => (k.retireAt ?? Infinity) > now)];
    await this.#save();
    return { kid: next.kid, activeFrom: next.activeFrom };
  }

  /** The public keys to publish at /.well-known/jwks.json (pending, current and not yet retired). */
  jwks(now = this.clock.now()): { keys: JWK[] } {
    return {
      keys: this.#keys
        .filter((k) => (k.retireAt ?? Infinity) > now)
        .map((k) => ({
          ...(createPublicKey(createPrivateKey({ key: k.jwk as never, format: 'jwk' })).export({
            format: 'jwk',
          }) as JWK),
          kid: k.kid,
          alg: k.alg ?? 'EdDSA',
          use: 'sig',
        })),
    };
  }

  async #save(): Promise<void> {
    await mkdir(path.dirname(this.#file), { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.#file, JSON.stringify({ keys: this.#keys }), { mode: 0o600 });
  }
}

function newKey(alg: SigningAlg, now: number, activeFrom: number): StoredKey {
  const jwk = generateSigningKey(alg).export({ format: 'jwk' }) as JWK;
  return { kid: `gg-${now.toString(36)}-${randomBytes(3).toString('hex')}`, alg, jwk, createdAt: now, activeFrom };
}
