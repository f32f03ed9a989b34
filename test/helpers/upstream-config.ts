/** The limits an HTTP upstream gets in connector tests: roomy, so each test's outcome is the upstream's doing. */
export function httpUpstreamConfig(name: string, url: string) {
  return {
    name,
    url,
    audience: url,
    timeoutMs: 5000,
    maxSessions: 10,
    maxSessionsPerCaller: 10,
    idleTimeoutMs: 60_000,
    maxResponseBytes: 1 << 20,
    maxInFlightBytes: 4 << 20,
  };
}
