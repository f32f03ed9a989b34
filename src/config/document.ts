import type { CredentialPlacement, IdentityConfig, RoutesAllowance } from './types.js';

/**
 * A gitgate.yaml as it is once it validates against schemas/config.schema.json
 * with its defaults filled in by Ajv (`useDefaults`): every key with a default in
 * the schema is present here. The schema is the one source of those defaults;
 * load.ts only resolves paths and secrets and derives what depends on other keys.
 */
export interface SecretRef {
  readonly fromEnv?: string;
  readonly fromFile?: string;
  readonly header?: string;
  readonly scheme?: string;
  readonly envVar?: string;
}

export interface UpstreamDocument {
  readonly url?: string;
  readonly stdio?: {
    readonly command: string;
    readonly args: readonly string[];
    readonly env: Readonly<Record<string, string>>;
    readonly cwd?: string;
  };
  readonly audience?: string;
  readonly credential?: CredentialPlacement | false;
  readonly secret?: SecretRef;
  readonly timeoutMs: number;
  readonly maxSessions: number;
  readonly maxSessionsPerCaller: number;
  readonly idleTimeoutMs: number;
  readonly maxResponseBytes: number;
  readonly maxInFlightBytes: number;
}

export interface ConfigDocument {
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly publicUrl?: string;
    readonly bodyLimitBytes: number;
    readonly maxBufferedBodyBytes: number;
    readonly allowedOrigins: readonly string[];
    readonly headersTimeoutMs: number;
    readonly requestTimeoutMs: number;
    readonly keepAliveTimeoutMs: number;
    readonly maxConnectionsPerClient: number;
  };
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
      readonly token?: SecretRef;
      readonly sshKey?: SecretRef;
      readonly compile: boolean;
      readonly routes: RoutesAllowance;
      readonly verification?: { readonly publicKey: SecretRef; readonly algorithm: string; readonly keyId?: string };
      readonly webhook: boolean;
    };
  };
  readonly upstreams: Readonly<Record<string, UpstreamDocument>>;
  readonly log: { readonly level: string };
  readonly store?: {
    readonly postgres?: {
      readonly url: SecretRef;
      readonly schema: string;
      readonly poolMax: number;
      readonly timeoutMs: number;
      readonly replicaId?: string;
    };
  };
  readonly credentials: {
    readonly issuer?: string;
    readonly maxTtlSeconds: number;
    readonly keyActivationSeconds: number;
    readonly rotateAfterHours?: number;
  };
  readonly audit: {
    readonly enabled: boolean;
    readonly repo?: string;
    readonly remote?: string;
    readonly anchors: readonly (
      | { readonly file: string }
      | { readonly url: string }
      | { readonly git: string; readonly ref?: string }
    )[];
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
    readonly local: { readonly repo?: string; readonly teams: Readonly<Record<string, readonly string[]>> };
    readonly github?: {
      readonly baseUrl: string;
      readonly owner: string;
      readonly repo: string;
      readonly baseBranch: string;
      readonly token?: SecretRef;
      readonly app?: { readonly appId: number; readonly installationId: number; readonly privateKey: SecretRef };
      readonly onFinish: 'close' | 'merge';
    };
    readonly webhookSecret?: SecretRef | readonly SecretRef[];
  };
}
