import { errors as joseErrors } from 'jose';
import { type Clock, systemClock } from '../clock.js';
import type { GatewayConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { DEV_ISSUER, type DevIssuer, loadDevIssuer } from './dev-issuer.js';
import { createLocalVerifier, createOidcVerifier, type TokenVerifier } from './verifier.js';

/**
 * Dev mode: a token whose key is not this gateway's dev issuer key was, almost always,
 * minted with another data dir. Say so, and how to mint one here.
 */
function withDevHint(verifier: TokenVerifier, dataDir: string): TokenVerifier {
  return {
    issuer: verifier.issuer,
    async verify(token) {
      try {
        return await verifier.verify(token);
      } catch (err) {
        const cause = err instanceof GatewayError ? err.cause : undefined;
        if (
          !(cause instanceof joseErrors.JWKSNoMatchingKey || cause instanceof joseErrors.JWSSignatureVerificationFailed)
        )
          throw err;
        throw new GatewayError(
          'AUTH_INVALID',
          `${err instanceof Error ? err.message : String(err)}: the token was not issued by this gateway's dev issuer (data dir ${dataDir}); mint one with \`gitgate token --data-dir ${dataDir} --sub <id>\``,
          { cause },
        );
      }
    },
  };
}

/** The token verifier of the configured issuer: the dev issuer under the data dir, or the OIDC issuer. */
export async function configuredVerifier(
  config: GatewayConfig,
  clock: Clock = systemClock,
): Promise<{ verifier: TokenVerifier; devIssuer?: DevIssuer }> {
  if (config.identity.mode === 'dev') {
    const devIssuer = await loadDevIssuer(config.dataDir, clock);
    const verifier = createLocalVerifier(
      { ...config.identity, issuer: DEV_ISSUER, algorithms: ['ES256'] },
      devIssuer.jwks(),
      { clock },
    );
    return { devIssuer, verifier: withDevHint(verifier, config.dataDir) };
  }
  return { verifier: createOidcVerifier(config.identity, { clock }) };
}
