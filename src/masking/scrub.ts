/**
 * The one scrubber for secrets gitgate itself sent an upstream: the upstream's
 * static secret and the credentials minted for the call. An upstream that echoes
 * them (in a result, a JSON-RPC error, an HTTP error body, its stderr) must not
 * hand them to the caller, the audit log or gitgate's own logs. Every occurrence
 * in any string (object keys included) becomes `[redacted:secret]`, in the forms
 * an echo takes: as sent, the bare token after its scheme, a JWT's signature
 * alone, base64 and base64url (at every alignment, as inside an encoded header
 * dump), percent-encoded and JSON-escaped.
 */
import type { StaticSecret } from '../config/types.js';
import type { UpstreamAuth } from '../mcp/upstream/types.js';
import { DETECTORS, redactText } from './detectors.js';
import type { CompiledRule } from './mask.js';

export const SECRET_MARK = '[redacted:secret]';

/** Variants are looked for only for secrets at least this long (shorter ones would match by chance). */
const MIN_VARIANT_CHARS = 8;

/** `bytes` after `k` zero bytes (the unknown bytes before it in a longer encoded text). */
function shifted(bytes: Buffer, k: number): Buffer {
  if (k === 0) return bytes;
  const b = Buffer.allocUnsafe(k + bytes.length);
  b.fill(0, 0, k);
  bytes.copy(b, k);
  return b;
}

/** The stable middle of base64(x) for x at byte offsets 0, 1 and 2 of a longer encoded text. */
function base64Cores(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const whole = bytes.toString('base64');
  const wholeUrl = bytes.toString('base64url');
  // Encoded on its own (the usual echo): the whole of it, padding included.
  const out: string[] = [whole, wholeUrl];
  for (let k = 0; k < 3; k++) {
    const padded = shifted(bytes, k);
    // base64url has no padding: its length is that of base64 without its trailing '='.
    const url = k === 0 ? wholeUrl : padded.toString('base64url');
    const b64 = (k === 0 ? whole : padded.toString('base64')).slice(0, url.length);
    // Leading characters mix in the k unknown bytes before it, the last one the bytes after.
    const skip = k === 0 ? 0 : k === 1 ? 2 : 3;
    const tail = (k + bytes.length) % 3 === 0 ? 0 : 1;
    const end = url.length - tail;
    if (end - skip >= MIN_VARIANT_CHARS) out.push(b64.slice(skip, end), url.slice(skip, end));
  }
  return out;
}

/** Every form of one secret an echo may take (the form itself included). */
function variantsOf(f: string, into: Set<string>): void {
  into.add(f);
  if (f.length < MIN_VARIANT_CHARS) return;
  for (const v of base64Cores(f)) into.add(v);
  const pct = encodeURIComponent(f);
  if (pct !== f) into.add(pct);
  const json = JSON.stringify(f).slice(1, -1);
  if (json !== f) into.add(json);
  // Cheap re-encodings an upstream might echo: either case, and hex of the bytes.
  for (const v of [f.toUpperCase(), f.toLowerCase()]) if (v !== f) into.add(v);
  const hex = Buffer.from(f, 'utf8').toString('hex');
  into.add(hex).add(hex.toUpperCase());
}

/**
 * The static secrets of one upstream (its URL's password, its configured secret), derived once per
 * upstream configuration: what every call's scrubber starts from.
 */
const staticSecrets = new WeakMap<object, { url?: string; secret?: StaticSecret; forms: SentSecrets }>();

/**
 * The secrets sent on one call, with every form to look for. A secret's encoded forms are derived
 * the first time a text long enough to hold one of its forms is looked at (an answer made of short
 * strings never needs them); what `text` finds is the same either way.
 */
export class SentSecrets {
  #needles: Set<string>;
  /** Forms added whose encoded variants are not derived yet. */
  #pending: string[] = [];
  #sorted: string[] | undefined;
  #shortest: number;

  /** `from`: a scrubber to start from (its secrets are copied, not shared). */
  constructor(from?: SentSecrets) {
    if (from === undefined) {
      this.#needles = new Set();
      this.#shortest = Number.POSITIVE_INFINITY;
      return;
    }
    from.#derive();
    this.#needles = new Set(from.#needles);
    this.#shortest = from.#shortest;
    this.#sorted = from.#sorted;
  }

  /** Remember a secret value gitgate sent. */
  add(value: string | undefined): this {
    if (value === undefined || value === '') return this;
    const forms = [value];
    // "Bearer <token>": the token alone too; a JWT's signature alone too.
    const space = value.lastIndexOf(' ');
    if (space > 0 && space < value.length - 1) forms.push(value.slice(space + 1));
    for (const f of [...forms]) {
      const parts = f.split('.');
      if (parts.length === 3 && parts[2]!.length >= 16) forms.push(parts[2]!);
    }
    for (const f of forms) {
      this.#pending.push(f);
      this.#shortest = Math.min(this.#shortest, f.length);
    }
    this.#sorted = undefined;
    return this;
  }

  #derive(): void {
    if (this.#pending.length === 0) return;
    for (const f of this.#pending) variantsOf(f, this.#needles);
    this.#pending = [];
    this.#sorted = undefined;
  }

  /** Remember what one call's credentials put in headers and `_meta`; returns them unchanged. */
  addAuth<T extends UpstreamAuth | undefined>(auth: T): T {
    if (auth === undefined) return auth;
    for (const v of Object.values(auth.headers)) this.add(v);
    for (const v of Object.values(auth.meta ?? {})) this.add(v);
    return auth;
  }

  /** No secret to look for. */
  get empty(): boolean {
    return this.#needles.size === 0 && this.#pending.length === 0;
  }

  /** `text` with every form of every secret replaced by `[redacted:secret]`. */
  text(text: string): string {
    // No form of any secret (each at least as long as the secret itself) fits in a shorter text.
    if (text.length < this.#shortest || this.empty) return text;
    this.#derive();
    // Longest first, so a token inside a longer form it belongs to goes with it.
    this.#sorted ??= [...this.#needles].sort((a, b) => b.length - a.length);
    let out = text;
    for (const n of this.#sorted) if (out.includes(n)) out = out.split(n).join(SECRET_MARK);
    return out;
  }
}

/**
 * The upstream's static secret (header value as sent, or the env var's value), the
 * password in its URL (sent as HTTP Basic), plus the given credentials. The static
 * part is derived once per upstream configuration.
 */
export function sentSecrets(
  upstream: { readonly secret?: StaticSecret; readonly url?: string },
  ...auths: (UpstreamAuth | undefined)[]
): SentSecrets {
  let known = staticSecrets.get(upstream);
  if (known === undefined || known.url !== upstream.url || known.secret !== upstream.secret) {
    known = {
      ...(upstream.url !== undefined ? { url: upstream.url } : {}),
      ...(upstream.secret !== undefined ? { secret: upstream.secret } : {}),
      forms: staticFormsOf(upstream),
    };
    staticSecrets.set(upstream, known);
  }
  const s = new SentSecrets(known.forms);
  for (const a of auths) s.addAuth(a);
  return s;
}

function staticFormsOf(upstream: { readonly secret?: StaticSecret; readonly url?: string }): SentSecrets {
  const s = new SentSecrets();
  if (upstream.url !== undefined) {
    const u = URL.canParse(upstream.url) ? new URL(upstream.url) : undefined;
    if (u !== undefined && u.password !== '') {
      const password = decodeURIComponent(u.password);
      s.add(password).add(`${decodeURIComponent(u.username)}:${password}`);
    }
  }
  const secret = upstream.secret;
  if (secret !== undefined) {
    s.add(secret.value.reveal());
    if (secret.scheme) s.add(`${secret.scheme} ${secret.value.reveal()}`);
  }
  return s;
}

/**
 * Scrub one message in place: every string and every object key under it.
 * Iterative (upstream JSON may nest deep). Returns how many strings changed.
 */
export function scrubMessage(message: unknown, secrets: SentSecrets): number {
  if (secrets.empty) return 0;
  let changed = 0;
  const stack: unknown[] = [message];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const v: unknown = node[i];
        if (typeof v === 'string') {
          const s = secrets.text(v);
          if (s !== v) {
            node[i] = s;
            changed++;
          }
        } else stack.push(v);
      }
      continue;
    }
    const obj = node as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      const v = obj[key];
      let k = key;
      const cleanKey = secrets.text(key);
      if (cleanKey !== key) {
        delete obj[key];
        k = cleanKey;
        obj[k] = v;
        changed++;
      }
      if (typeof v === 'string') {
        const s = secrets.text(v);
        if (s !== v) {
          obj[k] = s;
          changed++;
        }
      } else stack.push(v);
    }
  }
  return changed;
}

/** JSON string escapes (`\u0041`, `\"`, `\n`, …) decoded, so a secret written escaped is found (one linear pass). */
export function unescapeJsonText(text: string): string {
  if (!text.includes('\\')) return text;
  const simple: Record<string, string> = {
    '"': '"',
    '\\': '\\',
    '/': '/',
    b: '\b',
    f: '\f',
    n: '\n',
    r: '\r',
    t: '\t',
  };
  return text.replace(/\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))/g, (_m, hex: string | undefined, c: string | undefined) =>
    hex !== undefined ? String.fromCharCode(parseInt(hex, 16)) : simple[c!]!,
  );
}

/** Detectors that find credentials of any origin: what stderr and error texts are always scrubbed with. */
export const CREDENTIAL_DETECTORS = [
  'jwt',
  'bearer_token',
  'private_key',
  'aws_access_key',
  'aws_secret_key',
  'github_token',
] as const;

/**
 * Upstream bytes about to become part of an error message (an HTTP error body, a
 * stderr tail): escapes decoded, gitgate's secrets and any credential removed,
 * then the caller's extra masking, then cut to `max` characters (after
 * scrubbing, so no secret survives half-cut).
 */
export function upstreamDetail(
  text: string,
  secrets: SentSecrets,
  max: number,
  mask?: (text: string) => string,
): string {
  let out = secrets.text(unescapeJsonText(text));
  out = redactText(out, CREDENTIAL_DETECTORS).text;
  if (mask !== undefined) out = mask(out);
  return out.length > max ? `${out.slice(0, max)}…` : out;
}

/**
 * A decision's mask rules applied to free text (an upstream's error detail, which
 * no path can select): every detector any rule names; if any rule redacts whole
 * values, the text is withheld.
 */
export function maskText(text: string, rules: readonly CompiledRule[]): string {
  if (rules.length === 0 || text === '') return text;
  if (rules.some((r) => r.redact)) return '[redacted]';
  const detectors = [...new Set(rules.flatMap((r) => r.detectors))].filter((d) => Object.hasOwn(DETECTORS, d));
  return redactText(text, detectors).text;
}
