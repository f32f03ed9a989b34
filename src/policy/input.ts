import type { Identity } from '../identity/identity.js';
import type { JsonRpcRequest } from '../mcp/jsonrpc.js';
import { callerMeta } from '../mcp/protocol.js';

export interface PolicyInput {
  readonly identity: {
    readonly sub: string;
    readonly email?: string;
    readonly groups: readonly string[];
    readonly github_login?: string;
    readonly issuer: string;
  };
  readonly mcp: {
    /** What the client sent: a request (with an id), a notification, or a response to an upstream request. */
    readonly kind: 'request' | 'notification' | 'response';
    /** The request's or notification's method; for a response, the method of the upstream request it answers. */
    readonly method: string;
    readonly tool?: string;
    readonly arguments?: Record<string, unknown>;
    readonly uri?: string;
    readonly prompt?: string;
    readonly protocol_version: string;
    readonly era: 'legacy' | 'modern';
    readonly tool_changed?: boolean;
    /** The caller's own `_meta` (without the progress token and the 2026 envelope): it reaches the upstream. */
    readonly meta?: Record<string, unknown>;
    /** tools/call: the task it asks to run as (2025-11-25 tasks). */
    readonly task?: Record<string, unknown>;
    /** 2026-07-28 retry after an input-required result: the client's answers, keyed as the upstream asked. */
    readonly input_responses?: Record<string, unknown>;
    /** 2026-07-28 retry: the upstream's opaque state, sent back as is. */
    readonly request_state?: string;
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
  /** When the request is decided, ms since the epoch (the gateway's clock). */
  readonly now: number;
  /** Whether a tool changed since this caller's session first listed it. */
  readonly toolChanged?: (name: string) => boolean;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Build the policy input (schemas/input.schema.json) for one JSON-RPC request.
 * Its params were checked first (mcp/params.ts): the tool name, uri and
 * arguments are read from the very message that is forwarded.
 */
export function buildPolicyInput(identity: Identity, msg: JsonRpcRequest, ctx: InputContext): PolicyInput {
  const params = msg.params ?? {};
  const mcp: Mutable<PolicyInput['mcp']> = {
    kind: 'request',
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
      mcp.arguments = (params.arguments as Record<string, unknown> | undefined) ?? {};
      if (params.task !== undefined) mcp.task = params.task as Record<string, unknown>;
      break;
    }
    case 'prompts/get': {
      const name = str(params.name);
      if (name !== undefined) mcp.prompt = name;
      mcp.arguments = (params.arguments as Record<string, unknown> | undefined) ?? {};
      break;
    }
    case 'completion/complete': {
      // What is being completed is what the policy decides on: the prompt or the resource.
      const ref = params.ref as { type: string; name?: string; uri?: string };
      if (ref.type === 'ref/prompt' && ref.name !== undefined) mcp.prompt = ref.name;
      else if (ref.uri !== undefined) mcp.uri = ref.uri;
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
  if (params.inputResponses !== undefined) mcp.input_responses = params.inputResponses as Record<string, unknown>;
  if (typeof params.requestState === 'string') mcp.request_state = params.requestState;
  const meta = callerMeta(msg.params);
  if (meta !== undefined) mcp.meta = meta;
  return assemble(identity, mcp, ctx, msg.id);
}

/**
 * The policy input for a message that is not a request with params: a client
 * notification, a client response to an upstream request (its method is the
 * request's), or a legacy GET stream (decided as `subscriptions/listen`).
 */
export function buildMessageInput(
  identity: Identity,
  message: { kind: PolicyInput['mcp']['kind']; method: string },
  ctx: InputContext,
): PolicyInput {
  return assemble(
    identity,
    { kind: message.kind, method: message.method, protocol_version: ctx.protocolVersion, era: ctx.era },
    ctx,
    undefined,
  );
}

function assemble(
  identity: Identity,
  mcp: PolicyInput['mcp'],
  ctx: InputContext,
  jsonrpcId: string | number | undefined,
): PolicyInput {
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
      ...(jsonrpcId !== undefined ? { jsonrpc_id: jsonrpcId } : {}),
      ...(ctx.sessionId !== undefined ? { session_id: ctx.sessionId } : {}),
      time_ns: ctx.now * 1_000_000,
    },
  };
}
