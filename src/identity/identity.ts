import type { JWTPayload } from 'jose';
import type { GroupsFormat, IdentityConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';

/** Who is calling, as the policy sees it. */
export interface Identity {
  readonly sub: string;
  readonly email?: string;
  readonly groups: readonly string[];
  readonly githubLogin?: string;
  readonly issuer: string;
  /** When the caller's token expires (ms since the epoch, from `exp`): a call held past it is not released. */
  readonly expiresAt?: number;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function wrongType(name: string, expected: string, got: string, hint = ''): GatewayError {
  return new GatewayError('AUTH_INVALID', `claim "${name}" must be ${expected}, got ${got}${hint}`);
}

/**
 * A claim by its configured name; dotted names are paths into nested objects
 * (e.g. "realm_access.roles"). Only own properties count. `undefined` when the
 * claim is absent; a path through something that is not an object is a wrong type.
 */
function claim(payload: JWTPayload, name: string): unknown {
  let v: unknown = payload;
  const parts = name.split('.');
  for (let i = 0; i < parts.length; i++) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      throw wrongType(parts.slice(0, i).join('.'), 'an object', typeName(v), ` (reading claim "${name}")`);
    }
    const part = parts[i]!;
    if (!Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function optionalString(payload: JWTPayload, name: string): string | undefined {
  const v = claim(payload, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw wrongType(name, 'a string', typeName(v));
  return v;
}

function groupsOf(payload: JWTPayload, name: string, format: GroupsFormat): string[] {
  const v = claim(payload, name);
  if (v === undefined) return [];
  if (Array.isArray(v)) {
    const bad = v.findIndex((g) => typeof g !== 'string');
    if (bad >= 0) throw wrongType(name, 'an array of strings', `${typeName(v[bad])} at index ${bad}`);
    return v as string[];
  }
  if (typeof v === 'string') {
    if (format === 'space-delimited') return v.split(/\s+/).filter((g) => g !== '');
    if (format === 'comma-delimited')
      return v
        .split(',')
        .map((g) => g.trim())
        .filter((g) => g !== '');
    throw wrongType(
      name,
      'an array of strings',
      'a string',
      ' (set identity.claims.groupsFormat to read a delimited string)',
    );
  }
  throw wrongType(name, format === 'array' ? 'an array of strings' : 'an array of strings or a string', typeName(v));
}

/**
 * Map verified token claims to an Identity, using the configured claim names.
 * A claim of the wrong type is refused (AUTH_INVALID naming it), never read
 * leniently: `sub` must be a non-empty string; `email` and the GitHub login,
 * when present, strings; groups an array of strings, or one delimited string
 * only when `identity.claims.groupsFormat` says so.
 */
export function mapClaims(payload: JWTPayload, claims: IdentityConfig['claims']): Identity {
  const sub = claim(payload, claims.sub);
  if (sub === undefined) throw new GatewayError('AUTH_INVALID', `claim "${claims.sub}" is missing`);
  if (typeof sub !== 'string') throw wrongType(claims.sub, 'a string', typeName(sub));
  if (sub === '') throw new GatewayError('AUTH_INVALID', `claim "${claims.sub}" is empty`);
  const email = optionalString(payload, claims.email);
  const login = optionalString(payload, claims.githubLogin);
  const groups = groupsOf(payload, claims.groups, claims.groupsFormat);
  return {
    sub,
    groups,
    issuer: payload.iss ?? '',
    ...(email !== undefined ? { email } : {}),
    ...(login !== undefined ? { githubLogin: login } : {}),
    ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {}),
  };
}
