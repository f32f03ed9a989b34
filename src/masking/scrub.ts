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

/** The stable middle of base64(x) for x at byte offsets 0, 1 and 2 of a longer encoded text. */
function base64Cores(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  // Encoded on its own (the usual echo): the whole of it, padding included.
  const out: string[] = [bytes.toString('base64'), bytes.toString('base64url')];
  for (let k = 0; k < 3; k++) {
    const padded = Buffer.concat([Buffer.alloc(k), bytes]);
    const b64 = padded.toString('base64').replace(/=+$/, '');
    // Leading characters mix in the k unknown bytes before it, the last one the bytes after.
    const skip = k === 0 ? 0 : k === 1 ? 2 : 3;
    const tail = (k + bytes.length) % 3 === 0 ? 0 : 1;
    const core = b64.slice(skip, b64.length - tail);
    if (core.length >= MIN_VARIANT_CHARS) out.push(core, core.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return out;
}

/** The secrets sent on one call, with every form to look for. */
export class SentSecrets {
  #needles = new Set<string>();
  #sorted: string[] | undefined;
  #shortest = Number.POSITIVE_INFINITY;

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
      this.#needles.add(f);
      this.#shortest = Math.min(this.#shortest, f.length);
      if (f.length < MIN_VARIANT_CHARS) continue;
      for (const v of base64Cores(f)) this.#needles.add(v);
      const pct = encodeURIComponent(f);
      if (pct !== f) this.#needles.add(pct);
      const json = JSON.stringify(f).slice(1, -1);
      if (json !== f) this.#needles.add(json);
      // Cheap re-encodings an upstream might echo: either case, and hex of the bytes.
      for (const v of [f.toUpperCase(), f.toLowerCase()]) if (v !== f) this.#needles.add(v);
      const hex = Buffer.from(f, 'utf8').toString('hex');
      this.#needles.add(hex).add(hex.toUpperCase());
    }
    this.#sorted = undefined;
    return this;
  }

  /** Remember what one call's credentials put in headers and `_meta`; returns them unchanged. */
  addAuth<T extends UpstreamAuth | undefined>(auth: T): T {
    if (auth === undefined) return auth;
    for (const v of Object.values(auth.headers)) this.add(v);
    for (const v of Object.values(auth.meta ?? {})) this.add(v);
    return auth;
  }

  get size(): number {
    return this.#needles.size;
  }

  /** `text` with every form of every secret replaced by `[redacted:secret]`. */
  text(text: string): string {
    if (this.#needles.size === 0 || text.length < this.#shortest) return text;
    // Longest first, so a token inside a longer form it belongs to goes with it.
    this.#sorted ??= [...this.#needles].sort((a, b) => b.length - a.length);
    let out = text;
    for (const n of this.#sorted) if (out.includes(n)) out = out.split(n).join(SECRET_MARK);
    return out;
  }
}

/**
 * The upstream's static secret (header value as sent, or the env var's value), the
 * password in its URL (sent as HTTP Basic), plus the given credentials.
 */
export function sentSecrets(
  upstream: { readonly secret?: StaticSecret; readonly url?: string },
  ...auths: (UpstreamAuth | undefined)[]
): SentSecrets {
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
  for (const a of auths) s.addAuth(a);
  return s;
}

/**
 * Scrub one message in place: every string and every object key under it.
 * Iterative (upstream JSON may nest deep). Returns how many strings changed.
 */
export function scrubMessage(message: unknown, secrets: SentSecrets): number {
  if (secrets.size === 0) return 0;
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
