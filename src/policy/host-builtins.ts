/**
 * Builtins the OPA WASM SDK does not implement but gitgate supplies to every
 * policy instance. Each needs a declaration (added to the capabilities the
 * policy is compiled against) and a synchronous implementation.
 */

export interface HostBuiltin {
  /** The type declaration, as in OPA's capabilities.json `decl`. */
  readonly decl: Record<string, unknown>;
  readonly nondeterministic?: boolean;
  readonly impl: (...args: unknown[]) => unknown;
}

export const hostBuiltins: Readonly<Record<string, HostBuiltin>> = {
  'time.now_ns': {
    decl: { result: { name: 'now', type: 'number' }, type: 'function' },
    nondeterministic: true,
    impl: () => Date.now() * 1_000_000,
  },
};

export function hostBuiltinImpls(): Record<string, (...args: unknown[]) => unknown> {
  return Object.fromEntries(Object.entries(hostBuiltins).map(([name, b]) => [name, b.impl]));
}
