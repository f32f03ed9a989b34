import { type Clock, systemClock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { isResponse, type JsonRpcMessage, type JsonRpcRequest } from '../mcp/jsonrpc.js';
import type { RequestOptions, UpstreamAuth, UpstreamConnector, UpstreamSession } from '../mcp/upstream/types.js';
import type { UpstreamOutcome } from '../metrics/metrics.js';

export interface TrackedConnector extends UpstreamConnector {
  /**
   * The route was replaced: refuse new sessions, and let each session report
   * itself closed as soon as it has no request in flight (so the session store
   * drops it and its client initializes on the new route). Resolves once every
   * session has; the caller then closes them and shuts the connector down.
   */
  retire(): Promise<void>;
  readonly retired: boolean;
  /** Requests in flight through this connector's sessions. */
  readonly inFlight: number;
}

/** Sessions below this many are not swept as a whole between retirements. */
const MIN_SWEEP = 64;

export interface TrackOptions {
  /** Called once per request that got an answer, or failed without one. */
  readonly observe?: (seconds: number, outcome: UpstreamOutcome) => void;
  /** The clock requests are timed on (default: the system clock). */
  readonly clock?: Clock;
}

/**
 * Wraps an upstream connector (HTTP pool or stdio children) to time every
 * request and to know when a connector replaced by a GitOps route change has
 * finished its in-flight work, so it can be shut down then instead of at exit.
 */
export function trackConnector(inner: UpstreamConnector, opts: TrackOptions = {}): TrackedConnector {
  const clock = opts.clock ?? systemClock;
  const now = () => clock.now();
  const live = new Set<Tracked>();
  let retired = false;
  let shutdown: Promise<void> | undefined;
  let drained: (() => void) | undefined;
  let retiring: Promise<void> | undefined;
  let total = 0;

  interface Tracked {
    readonly inner: UpstreamSession;
    inFlight: number;
  }
  /** A session is done when its process or connection ended, or (retired) nothing is in flight on it. */
  const done = (t: Tracked) => t.inner.closed || (retired && t.inFlight === 0);
  /** live's size at which every session is looked at again (twice its size after the last full sweep). */
  let sweepAt = MIN_SWEEP;
  /** Every session looked at: on retire, and when live has doubled since the last sweep (amortized O(1) a request). */
  const sweep = () => {
    for (const t of live) if (done(t)) live.delete(t);
    sweepAt = Math.max(MIN_SWEEP, live.size * 2);
    if (retired && live.size === 0) drained?.();
  };
  /**
   * One session's request ended or it closed: only that session can have become done by it (a retired
   * connector's other sessions were swept at retire, and each is looked at again when its own last
   * request ends), so only it is looked at.
   */
  const check = (t: Tracked) => {
    if (done(t)) live.delete(t);
    if (live.size >= sweepAt) sweep();
    else if (retired && live.size === 0) drained?.();
  };

  const wrap = (s: UpstreamSession): UpstreamSession => {
    const t: Tracked = { inner: s, inFlight: 0 };
    live.add(t);
    if (live.size >= sweepAt) sweep();
    return {
      get closed() {
        return done(t);
      },
      get upstreamId() {
        return s.upstreamId;
      },
      async *request(msg: JsonRpcRequest, ro?: RequestOptions): AsyncGenerator<JsonRpcMessage> {
        t.inFlight++;
        total++;
        const started = now();
        let answered = false;
        try {
          for await (const m of s.request(msg, ro)) {
            if (!answered && isResponse(m) && m.id === msg.id) {
              answered = true;
              opts.observe?.((now() - started) / 1000, m.error === undefined ? 'ok' : 'error');
            }
            yield m;
          }
        } catch (err) {
          if (!answered) opts.observe?.((now() - started) / 1000, 'failed');
          throw err;
        } finally {
          t.inFlight--;
          total--;
          check(t);
        }
      },
      send: (m, auth?: UpstreamAuth) => s.send(m, auth),
      listen: (signal, auth) => s.listen(signal, auth),
      async close(auth) {
        await s.close(auth);
        check(t);
      },
    };
  };

  return {
    name: inner.name,
    transport: inner.transport,
    get retired() {
      return retired;
    },
    get inFlight() {
      return total;
    },
    async open() {
      if (retired) {
        throw new GatewayError(
          'UPSTREAM_UNAVAILABLE',
          `upstream ${inner.name} was just replaced by a new route; retry`,
          { headers: { 'retry-after': '1' } },
        );
      }
      return wrap(await inner.open());
    },
    ...(inner.resume !== undefined
      ? {
          resume: (upstreamId: string, protocolVersion: string) => {
            if (retired)
              throw new GatewayError(
                'UPSTREAM_UNAVAILABLE',
                `upstream ${inner.name} was just replaced by a new route; retry`,
                {
                  headers: { 'retry-after': '1' },
                },
              );
            return wrap(inner.resume!(upstreamId, protocolVersion));
          },
        }
      : {}),
    retire() {
      if (retiring !== undefined) return retiring;
      retired = true;
      retiring = new Promise<void>((resolve) => (drained = resolve));
      sweep();
      return retiring;
    },
    shutdown() {
      shutdown ??= inner.shutdown();
      return shutdown;
    },
  };
}
