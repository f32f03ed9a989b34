import { parseDuration } from '../config/duration.js';
import { loadConfig } from '../config/load.js';
import { loadDevIssuer } from '../identity/dev-issuer.js';

export interface TokenOptions {
  config?: string;
  dataDir?: string;
  sub: string;
  groups?: string;
  email?: string;
  githubLogin?: string;
  ttl?: string;
}

/** `gitgate token`: a token from the embedded dev issuer (only the token is printed). */
export async function token(opts: TokenOptions, out: (line: string) => void): Promise<number> {
  const config = loadConfig(opts.config, opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {});
  if (config.identity.mode !== 'dev')
    throw new Error('gitgate token mints dev-issuer tokens; this config uses an OIDC issuer');
  const issuer = await loadDevIssuer(config.dataDir);
  const groups = (opts.groups ?? '')
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  out(
    await issuer.mint({
      sub: opts.sub,
      groups,
      audience: config.identity.audience,
      ttlSeconds: Math.max(1, Math.round(parseDuration(opts.ttl ?? '1h'))),
      ...(opts.email !== undefined ? { email: opts.email } : {}),
      ...(opts.githubLogin !== undefined ? { githubLogin: opts.githubLogin } : {}),
    }),
  );
  return 0;
}
