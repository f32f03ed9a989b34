import type { GatewayConfig } from '../config/types.js';
import { DEV_ISSUER, loadDevIssuer, type DevIssuer } from './dev-issuer.js';
import { createLocalVerifier, createOidcVerifier, type TokenVerifier } from './verifier.js';

/** The token verifier of the configured issuer: the dev issuer under the data dir, or the OIDC issuer. */
export async function configuredVerifier(config: GatewayConfig): Promise<{ verifier: TokenVerifier; devIssuer?: DevIssuer }> {
  if (config.identity.mode === 'dev') {
    const devIssuer = await loadDevIssuer(config.dataDir);
    return { devIssuer, verifier: createLocalVerifier({ ...config.identity, issuer: DEV_ISSUER, algorithms: ['ES256'] }, devIssuer.jwks()) };
  }
  return { verifier: createOidcVerifier(config.identity) };
}
