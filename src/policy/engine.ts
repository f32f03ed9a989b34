import { type LoadedPolicy, loadPolicy } from '@open-policy-agent/opa-wasm';
import { type Clock, systemClock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { ENTRYPOINT } from './build.js';
import type { PolicyBundle } from './bundle.js';
import { type Decision, decisionOfResultSet, denyDecision, normalizeDecision } from './decision.js';
import { hostBuiltinImpls } from './host-builtins.js';
import type { PolicyInput } from './input.js';

export interface PolicyRevision {
  /** Where the policy came from: a folder, or a git commit (GitOps). */
  readonly source: string;
  /** Commit SHA when the policy came from git. */
  readonly commit?: string;
  /** sha256 of the bundle bytes. */
  readonly bundleDigest: string;
  readonly loadedAt: string;
}

/** One compiled policy in its own WASM instance (one linear memory that never shrinks). */
export interface PolicyInstance {
  readonly revision: PolicyRevision;
  evaluate(input: PolicyInput): Decision;
  /** Evaluate an input already serialized as JSON (UTF-8): replays encode it once for both revisions. */
  evaluateJson(input: ArrayBuffer): Decision;
}

export interface DecisionEngine {
  /** The instance serving now, if any. Capture it once per request. */
  current(): PolicyInstance | undefined;
}

/** A smoke input every policy must answer with a valid decision before it may serve. */
export const SMOKE_INPUT: PolicyInput = Object.freeze({
  identity: { sub: 'gitgate-smoke', groups: [], issuer: 'gitgate' },
  mcp: { kind: 'request', method: 'ping', protocol_version: '2025-11-25', era: 'legacy' },
  upstream: { name: 'gitgate-smoke', transport: 'http' },
  request: { id: 'smoke', time_ns: 0 },
}) as PolicyInput;

/** The request time an input carries, ns (undefined when it has none, as the smoke input). */
function timeOf(input: PolicyInput | ArrayBuffer): number | undefined {
  const t =
    input instanceof ArrayBuffer
      ? (JSON.parse(new TextDecoder().decode(input)) as { request?: { time_ns?: unknown } }).request?.time_ns
      : input.request.time_ns;
  return typeof t === 'number' && t > 0 ? t : undefined;
}

/**
 * Load a bundle into its own WASM instance. `clock` dates `loadedAt`, and is what `time.now_ns`
 * answers for an input that carries no request time; otherwise `time.now_ns` is the request's time.
 */
export async function instantiate(
  bundle: PolicyBundle,
  revision: Omit<PolicyRevision, 'bundleDigest' | 'loadedAt'>,
  clock: Clock = systemClock,
): Promise<PolicyInstance> {
  let policy: LoadedPolicy;
  // The input being evaluated: time.now_ns reads its request time (parsed only if a policy asks).
  let evaluating: PolicyInput | ArrayBuffer | undefined;
  const nowNs = () => (evaluating === undefined ? undefined : timeOf(evaluating)) ?? clock.now() * 1_000_000;
  try {
    policy = await loadPolicy(bundle.wasm, undefined, hostBuiltinImpls({ nowNs }));
    policy.setData(bundle.data);
  } catch (err) {
    throw new GatewayError('POLICY_BUILD_FAILED', `cannot load policy.wasm: ${String(err)}`, { cause: err });
  }
  if (!Object.hasOwn(policy.entrypoints, ENTRYPOINT)) {
    throw new GatewayError('POLICY_BUILD_FAILED', `policy.wasm has no entrypoint ${ENTRYPOINT}`);
  }
  const full: PolicyRevision = {
    ...revision,
    bundleDigest: bundle.digest,
    loadedAt: new Date(clock.now()).toISOString(),
  };
  const raw = rawEvaluator(policy, policy.entrypoints[ENTRYPOINT] as number);
  const runJson = (input: ArrayBuffer): Decision => {
    if (raw === undefined) return run(input);
    let text: string;
    evaluating = input;
    try {
      text = raw(new Uint8Array(input));
    } catch (err) {
      return denyDecision(`policy evaluation failed: ${String(err)}`, false);
    } finally {
      evaluating = undefined;
    }
    return decisionOfResultSet(text);
  };
  const run = (input: PolicyInput | ArrayBuffer): Decision => {
    let rs: unknown;
    evaluating = input;
    try {
      rs = policy.evaluate(input, ENTRYPOINT);
    } catch (err) {
      return denyDecision(`policy evaluation failed: ${String(err)}`, false);
    } finally {
      evaluating = undefined;
    }
    const first = Array.isArray(rs) ? (rs[0] as { result?: unknown } | undefined) : undefined;
    return normalizeDecision(first?.result);
  };
  const instance: PolicyInstance = { revision: full, evaluate: run, evaluateJson: runJson };
  const smoke = instance.evaluate(SMOKE_INPUT);
  if (!smoke.valid) throw new GatewayError('POLICY_BUILD_FAILED', `smoke decision failed: ${smoke.reasons.join('; ')}`);
  return instance;
}

const decoder = new TextDecoder();
const WASM_PAGE = 64 * 1024;

/**
 * The result set of one evaluation as the JSON text the policy's WASM wrote, for ABI 1.2 and later:
 * what `LoadedPolicy.evaluate` does for an input given as JSON bytes (the input copied above the
 * data, `opa_eval`, its result read), without parsing the result and without a decoder per call.
 * Undefined for an older ABI (evaluate is used then).
 */
function rawEvaluator(policy: LoadedPolicy, entrypoint: number): ((input: Uint8Array) => string) | undefined {
  if (typeof policy.minorVersion !== 'number' || policy.minorVersion < 2) return undefined;
  const wasm = ('instance' in policy.wasmInstance ? policy.wasmInstance.instance : policy.wasmInstance) as {
    exports: { opa_eval?: unknown };
  };
  const opaEval = wasm.exports.opa_eval;
  if (typeof opaEval !== 'function') return undefined;
  const evaluate = opaEval as (...args: number[]) => number;
  return (input) => {
    const mem = policy.mem;
    const inputAddr = policy.dataHeapPtr as number;
    const delta = inputAddr + input.byteLength - mem.buffer.byteLength;
    if (delta > 0) mem.grow(Math.ceil(delta / WASM_PAGE));
    new Uint8Array(mem.buffer).set(input, inputAddr);
    const at = evaluate(0, entrypoint, policy.dataAddr, inputAddr, input.byteLength, inputAddr + input.byteLength, 0);
    const bytes = new Uint8Array(mem.buffer);
    const end = bytes.indexOf(0, at);
    return decoder.decode(bytes.subarray(at, end < 0 ? bytes.length : end));
  };
}

/** Holds the serving instance; `swap` replaces it atomically (in-flight decisions keep the one they captured). */
export class PolicyHolder implements DecisionEngine {
  #current: PolicyInstance | undefined;
  readonly #listeners = new Set<(rev: PolicyRevision) => void>();

  current(): PolicyInstance | undefined {
    return this.#current;
  }

  swap(next: PolicyInstance): void {
    this.#current = next;
    for (const l of this.#listeners) l(next.revision);
  }

  onSwap(listener: (rev: PolicyRevision) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
