/**
 * Builtins the OPA WASM SDK does not implement but gitgate supplies to every
 * policy instance. Each needs a declaration (added to the capabilities the
 * policy is compiled against) and a synchronous implementation.
 */

/** What a builtin may know about the evaluation it is called in. */
export interface HostContext {
  /** The time of the request being decided, ns since the epoch (its `request.time_ns`, on the gateway's clock). */
  nowNs(): number;
}

export interface HostBuiltin {
  /** The type declaration, as in OPA's capabilities.json `decl`. */
  readonly decl: Record<string, unknown>;
  readonly nondeterministic?: boolean;
  readonly impl: (ctx: HostContext, ...args: unknown[]) => unknown;
}

export const hostBuiltins: Readonly<Record<string, HostBuiltin>> = {
  'time.now_ns': {
    decl: { result: { name: 'now', type: 'number' }, type: 'function' },
    nondeterministic: true,
    impl: (ctx) => ctx.nowNs(),
  },
};

export function hostBuiltinImpls(ctx: HostContext): Record<string, (...args: unknown[]) => unknown> {
  return Object.fromEntries(
    Object.entries(hostBuiltins).map(([name, b]) => [name, (...args: unknown[]) => b.impl(ctx, ...args)]),
  );
}
