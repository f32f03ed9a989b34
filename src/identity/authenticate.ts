import { GatewayError } from '../errors.js';
import type { Identity } from './identity.js';
import type { TokenVerifier } from './verifier.js';

/**
 * An RFC 9110 quoted-string (§5.6.4) carrying `value`: `"` and `\` escaped,
 * control characters dropped and anything outside printable ASCII replaced by
 * `?`, so no value can end the parameter, add one, or break the header.
 */
export function quotedString(value: string): string {
  let out = '';
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c === 0x7f) continue;
    if (c > 0x7e) out += '?';
    else if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else out += ch;
  }
  return `"${out}"`;
}

/** `Bearer` challenge with its auth-params, every value a quoted-string. */
export function bearerChallenge(params: Readonly<Record<string, string>>): string {
  return `Bearer ${Object.entries(params)
    .map(([k, v]) => `${k}=${quotedString(v)}`)
    .join(', ')}`;
}

/**
 * Step 1 of the request path: the caller's bearer token → Identity.
 * Failures carry the RFC 9728 `WWW-Authenticate` challenge.
 */
export async function authenticate(
  verifier: TokenVerifier,
  authorization: string | undefined,
  resourceMetadataUrl: string,
): Promise<Identity> {
  const challenge = (extra: Record<string, string> = {}) => ({
    'www-authenticate': bearerChallenge({ resource_metadata: resourceMetadataUrl, ...extra }),
  });
  const m = authorization === undefined ? null : /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization.trim());
  if (m === null) {
    throw new GatewayError(
      'AUTH_REQUIRED',
      authorization === undefined
        ? 'Authentication required: send Authorization: Bearer <token>'
        : 'Authorization header must be "Bearer <token>"',
      {
        headers: challenge(),
      },
    );
  }
  try {
    return await verifier.verify(m[1]!);
  } catch (err) {
    const reason = err instanceof GatewayError ? err.message : 'token verification failed';
    throw new GatewayError('AUTH_INVALID', `Invalid token: ${reason}`, {
      cause: err,
      // RFC 6750 §3: error_description has no `"` or `\` at all.
      headers: challenge({
        error: 'invalid_token',
        error_description: reason.replaceAll('"', "'").replaceAll('\\', '/'),
      }),
    });
  }
}
