import type { JWTPayload } from 'jose';
import type { IdentityConfig } from '../config/types.js';

/** Who is calling, as the policy sees it. */
export interface Identity {
  readonly sub: string;
  readonly email?: string;
  readonly groups: readonly string[];
  readonly githubLogin?: string;
  readonly issuer: string;
}

function claim(payload: JWTPayload, name: string): unknown {
  // Claim names may be dotted paths into nested objects (e.g. "realm_access.roles").
  let v: unknown = payload;
  for (const part of name.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** Map verified token claims to an Identity, using the configured claim names. */
export function mapClaims(payload: JWTPayload, claims: IdentityConfig['claims']): Identity {
  const sub = claim(payload, claims.sub);
  const email = claim(payload, claims.email);
  const groupsRaw = claim(payload, claims.groups);
  const login = claim(payload, claims.githubLogin);
  const groups = Array.isArray(groupsRaw)
    ? groupsRaw.filter((g): g is string => typeof g === 'string')
    : typeof groupsRaw === 'string'
      ? groupsRaw.split(/[ ,]+/).filter(Boolean)
      : [];
  return {
    sub: typeof sub === 'string' ? sub : '',
    groups,
    issuer: payload.iss ?? '',
    ...(typeof email === 'string' ? { email } : {}),
    ...(typeof login === 'string' ? { githubLogin: login } : {}),
  };
}
