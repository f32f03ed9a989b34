import type { Identity } from '../identity/identity.js';
import type { JsonRpcRequest } from '../mcp/jsonrpc.js';

export interface PolicyInput {
  readonly identity: {
    readonly sub: string;
    readonly email?: string;
    readonly groups: readonly string[];
    readonly github_login?: string;
    readonly issuer: string;
  };
  readonly mcp: {
    readonly method: string;
    readonly tool?: string;
    readonly arguments?: Record<string, unknown>;
    readonly uri?: string;
    readonly prompt?: string;
    readonly protocol_version: string;
    readonly era: 'legacy' | 'modern';
    readonly tool_changed?: boolean;
    readonly listing?: boolean;
  };
  readonly upstream: { readonly name: string; readonly transport: 'http' | 'stdio' };
  readonly request: {
    readonly id: string;
    readonly jsonrpc_id?: string | number;
    readonly session_id?: string;
    readonly time_ns: number;
  };
}

export interface InputContext {
  readonly upstream: { readonly name: string; readonly transport: 'http' | 'stdio' };
  readonly protocolVersion: string;
  readonly era: 'legacy' | 'modern';
  readonly requestId: string;
  readonly sessionId?: string;
  /** Whether a tool changed since this caller's session first listed it. */
  readonly toolChanged?: (name: string) => boolean;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Build the policy input (schemas/input.schema.json) for one JSON-RPC request. */
export function buildPolicyInput(identity: Identity, msg: JsonRpcRequest, ctx: InputContext): PolicyInput {
  const params = obj(msg.params) ?? {};
  const mcp: { -readonly [K in keyof PolicyInput['mcp']]: PolicyInput['mcp'][K] } = {
    method: msg.method,
    protocol_version: ctx.protocolVersion,
    era: ctx.era,
  };
  switch (msg.method) {
    case 'tools/call': {
      const name = str(params.name);
      if (name !== undefined) {
        mcp.tool = name;
        if (ctx.toolChanged?.(name) === true) mcp.tool_changed = true;
      }
      mcp.arguments = obj(params.arguments) ?? {};
      break;
    }
    case 'prompts/get': {
      const name = str(params.name);
      if (name !== undefined) mcp.prompt = name;
      mcp.arguments = obj(params.arguments) ?? {};
      break;
    }
    case 'resources/read':
    case 'resources/subscribe':
    case 'resources/unsubscribe': {
      const uri = str(params.uri);
      if (uri !== undefined) mcp.uri = uri;
      break;
    }
    default:
      break;
  }
  return {
    identity: {
      sub: identity.sub,
      groups: identity.groups,
      issuer: identity.issuer,
      ...(identity.email !== undefined ? { email: identity.email } : {}),
      ...(identity.githubLogin !== undefined ? { github_login: identity.githubLogin } : {}),
    },
    mcp,
    upstream: ctx.upstream,
    request: {
      id: ctx.requestId,
      jsonrpc_id: msg.id,
      ...(ctx.sessionId !== undefined ? { session_id: ctx.sessionId } : {}),
      time_ns: Date.now() * 1_000_000,
    },
  };
}
