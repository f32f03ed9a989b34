import type { JWK } from 'jose';
import type { GatewayConfig, UpstreamConfig } from '../config/types.js';
import type { UpstreamAuth } from '../mcp/upstream/types.js';
import type { KeyRing } from './keyring.js';
import { mintCredential } from './mint.js';

export interface CallScope {
  readonly subject: string;
  readonly method: string;
  readonly tool?: string;
  readonly arguments?: unknown;
  /** The resource the call names (resources/read, subscribe, unsubscribe; a completion's resource ref). */
  readonly uri?: string;
  /** The prompt a prompts/get names. */
  readonly prompt?: string;
  /** The task a tasks/get, result, update or cancel names. */
  readonly taskId?: string;
  readonly ttlSeconds?: number;
  readonly scopes?: readonly string[];
}

/** Where a stdio child finds its credential (`credential.meta`): gitgate's own key, never a caller's. */
export const META_CREDENTIAL = 'dev.gitgate/credential';

/** Mints the per-request credential each upstream call carries (static secrets are the transport's). */
export class Credentials {
  constructor(
    private readonly config: GatewayConfig,
    readonly keys: KeyRing,
  ) {}

  /** Several replicas: every replica's published keys (src/store/keys.ts); else this ring's. */
  published: (() => Promise<{ keys: JWK[] }>) | undefined;

  /** Several replicas: publish this ring's public keys after each rotation. */
  onRotate: (() => Promise<void>) | undefined;

  /** Rotate the signing key (KeyRing.rotate), then publish the new public key where replicas share them. */
  async rotate(now = this.keys.clock.now(), activationMs?: number): Promise<{ kid: string; activeFrom: number }> {
    const k = await this.keys.rotate(now, activationMs);
    await this.onRotate?.();
    return k;
  }

  /** What /.well-known/jwks.json serves. */
  async jwks(): Promise<{ keys: JWK[] }> {
    return this.published !== undefined ? this.published() : this.keys.jwks();
  }

  /** What to attach to one request to `upstream` for this call. */
  forCall(upstream: UpstreamConfig, call: CallScope): UpstreamAuth {
    const headers: Record<string, string> = {};
    let meta: Record<string, string> | undefined;
    const placement = upstream.credential;
    if (placement !== undefined) {
      const now = this.keys.clock.now();
      const token = mintCredential(
        this.keys.signing(now),
        {
          issuer: this.config.credentials.issuer,
          audience: upstream.audience,
          subject: call.subject,
          method: call.method,
          ...(call.tool !== undefined ? { tool: call.tool } : {}),
          ...(call.arguments !== undefined ? { arguments: call.arguments } : {}),
          ...(call.uri !== undefined ? { uri: call.uri } : {}),
          ...(call.prompt !== undefined ? { prompt: call.prompt } : {}),
          ...(call.taskId !== undefined ? { taskId: call.taskId } : {}),
          ...(call.scopes !== undefined ? { scopes: call.scopes } : {}),
          ttlSeconds: Math.min(call.ttlSeconds ?? 60, this.config.credentials.maxTtlSeconds),
        },
        now,
      );
      if (placement.meta === true) meta = { [META_CREDENTIAL]: token };
      else
        headers[(placement.header ?? 'authorization').toLowerCase()] = placement.scheme
          ? `${placement.scheme} ${token}`
          : token;
    }
    return meta === undefined ? { headers } : { headers, meta };
  }
}
