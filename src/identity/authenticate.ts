import { GatewayError } from '../errors.js';
import type { Identity } from './identity.js';
import type { TokenVerifier } from './verifier.js';

/**
 * Step 1 of the request path: the caller's bearer token → Identity.
 * Failures carry the RFC 9728 `WWW-Authenticate` challenge.
 */
export async function authenticate(verifier: TokenVerifier, authorization: string | undefined, resourceMetadataUrl: string): Promise<Identity> {
  const challenge = (extra: string) => ({ 'www-authenticate': `Bearer resource_metadata="${resourceMetadataUrl}"${extra}` });
  const m = authorization === undefined ? null : /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization.trim());
  if (m === null) {
    throw new GatewayError('AUTH_REQUIRED', authorization === undefined ? 'Authentication required: send Authorization: Bearer <token>' : 'Authorization header must be "Bearer <token>"', {
      headers: challenge(''),
    });
  }
  try {
    return await verifier.verify(m[1]!);
  } catch (err) {
    const reason = err instanceof GatewayError ? err.message : 'token verification failed';
    throw new GatewayError('AUTH_INVALID', `Invalid token: ${reason}`, {
      cause: err,
      headers: challenge(`, error="invalid_token", error_description="${reason.replaceAll('"', "'")}"`),
    });
  }
}
