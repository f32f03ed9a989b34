export type Algorithm =
  | 'RS256'
  | 'RS384'
  | 'RS512'
  | 'PS256'
  | 'PS384'
  | 'PS512'
  | 'ES256'
  | 'ES384'
  | 'ES512'
  | 'EdDSA';

export interface StdioCommand {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd?: string;
}

import type { Secret } from './secret.js';

/** What a policy repo's routes may ask of the gateway's host (config `policy.repo.routes`). */
export interface RoutesAllowance {
  readonly allowStdio: boolean;
  readonly allowEnv: readonly string[];
  readonly allowFiles: readonly string[];
}

export interface CredentialPlacement {
  readonly header?: string;
  readonly scheme?: string;
  readonly meta?: boolean;
}

export interface StaticSecret {
  readonly header?: string;
  readonly scheme?: string;
  readonly envVar?: string;
  readonly value: Secret;
}

export interface UpstreamConfig {
  readonly name: string;
  /** aud of the credentials minted for this upstream. */
  readonly audience: string;
  /** Where the per-request credential travels; undefined = not sent. */
  readonly credential?: CredentialPlacement;
  readonly secret?: StaticSecret;
  readonly url?: string;
  readonly stdio?: StdioCommand;
  readonly timeoutMs: number;
  readonly maxSessions: number;
  /** Sessions one caller may hold on this upstream. */
  readonly maxSessionsPerCaller: number;
  readonly idleTimeoutMs: number;
  /** The largest JSON body, SSE line or event, or stdio line read from this upstream. */
  readonly maxResponseBytes: number;
  /** The most bytes of unfinished answers held for this upstream at once. */
  readonly maxInFlightBytes: number;
}

/** How the groups claim is read: a JSON array of strings, or one string split on whitespace or on commas. */
export type GroupsFormat = 'array' | 'space-delimited' | 'comma-delimited';

export interface IdentityConfig {
  readonly mode: 'dev' | 'oidc';
  readonly issuer?: string;
  readonly jwksUri?: string;
  readonly audience: string;
  readonly algorithms: readonly Algorithm[];
  readonly clockToleranceSeconds: number;
  /** A longer bearer token is refused before it is decoded. */
  readonly maxTokenBytes: number;
  readonly claims: {
    readonly sub: string;
    readonly email: string;
    readonly groups: string;
    readonly githubLogin: string;
    /** How the groups claim is read (schema default: array). */
    readonly groupsFormat: GroupsFormat;
  };
}

export interface GatewayConfig {
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly publicUrl?: string;
    readonly bodyLimitBytes: number;
    /** Request bodies held at once, all clients together (503 SERVER_BUSY past it). */
    readonly maxBufferedBodyBytes: number;
    readonly allowedOrigins: readonly string[];
    /** Time a client has to send a request's headers (then 408). */
    readonly headersTimeoutMs: number;
    /** Time a client has to send a whole request, headers and body (then 408); responses are not limited. */
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    /** Open connections per client address; 0 = no limit. */
    readonly maxConnectionsPerClient: number;
  };
  /** Absolute path; all state lives under it. */
  readonly dataDir: string;
  readonly identity: IdentityConfig;
  readonly policy: {
    readonly dir: string;
    readonly entrypoint: 'gitgate/decision';
    readonly repo?: {
      readonly url: string;
      readonly branch: string;
      readonly dir: string;
      readonly pollSeconds: number;
      readonly token?: Secret;
      readonly sshKeyFile?: string;
      readonly compile: boolean;
      /** What the repo's gitgate.routes.yaml may ask of this host (allowFiles: absolute paths). */
      readonly routes: RoutesAllowance;
      readonly verification?: { readonly publicKey: Secret; readonly algorithm: string; readonly keyId?: string };
      readonly webhook: boolean;
    };
  };
  readonly upstreams: Readonly<Record<string, UpstreamConfig>>;
  readonly credentials: {
    readonly issuer: string;
    readonly maxTtlSeconds: number;
    readonly keyActivationSeconds: number;
    readonly rotateAfterHours?: number;
  };
  readonly audit: {
    readonly enabled: boolean;
    readonly repo: string;
    readonly remote?: string;
    /** Where each committed checkpoint is also published (audit/anchors.ts). */
    readonly anchors: readonly (
      | { readonly file: string }
      | { readonly url: string }
      | { readonly git: string; readonly ref?: string }
    )[];
    /** Verifier keys `gitgate audit verify --config` trusts besides --key. */
    readonly keys: readonly string[];
    readonly commitEveryRecords: number;
    readonly commitEveryMs: number;
    readonly maxRecordedBytes: number;
  };
  readonly approvals: {
    readonly provider: 'local' | 'github';
    readonly holdSeconds: number;
    readonly pollSeconds: number;
    readonly logins: Readonly<Record<string, string>>;
    readonly local: { readonly repo: string; readonly teams: Readonly<Record<string, readonly string[]>> };
    readonly github?: {
      readonly baseUrl: string;
      readonly owner: string;
      readonly repo: string;
      readonly baseBranch: string;
      readonly token?: Secret;
      readonly app?: { readonly appId: number; readonly installationId: number; readonly privateKey: Secret };
      readonly onFinish: 'close' | 'merge';
    };
    /** The webhook secrets accepted (several while one is rotated); empty: webhooks are refused. */
    readonly webhookSecrets: readonly Secret[];
  };
  /** Multi-replica mode: state shared through PostgreSQL (absent: one process, files under dataDir). */
  readonly store?: {
    readonly postgres: {
      readonly url: Secret;
      readonly schema: string;
      readonly poolMax: number;
      readonly timeoutMs: number;
      readonly replicaId: string;
    };
  };
  readonly log: { readonly level: string };
  /** Where the config came from, for logs and /readyz. */
  readonly source: string;
}
