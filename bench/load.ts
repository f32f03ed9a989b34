import http from 'node:http';

export interface Target {
  readonly name: string;
  readonly url: string;
  readonly headers: Record<string, string>;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function post(
  url: URL,
  headers: Record<string, string>,
  body: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          ...headers,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export interface Call {
  readonly name: string;
  readonly arguments: Record<string, unknown>;
  /** A substring every successful answer contains. */
  readonly expect: string;
}

export const ECHO: Call = {
  name: 'echo',
  arguments: { message: 'benchmark payload' },
  expect: 'echo: benchmark payload',
};

/** One MCP session: initialize + initialized, then tools/call in a loop. */
export async function openSession(t: Target, call: Call = ECHO): Promise<(id: number) => Promise<void>> {
  const url = new URL(t.url);
  const init = await post(
    url,
    t.headers,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench', version: '1' } },
    }),
  );
  if (init.status !== 200) throw new Error(`${t.name}: initialize answered ${init.status}: ${init.text}`);
  const sid = String(init.headers['mcp-session-id']);
  const h = { ...t.headers, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
  await post(url, h, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
  return async (id: number) => {
    const r = await post(
      url,
      h,
      JSON.stringify({
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: call.name, arguments: call.arguments },
      }),
    );
    if (r.status !== 200 || !r.text.includes(call.expect))
      throw new Error(`${t.name}: tools/call answered ${r.status}: ${r.text.slice(0, 200)}`);
  };
}

export interface RunResult {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** `total` tools/call requests over `concurrency` sessions (bounded loop). */
export async function run(
  t: Target,
  concurrency: number,
  total: number,
  warmup: number,
  call: Call = ECHO,
): Promise<RunResult> {
  const calls = await Promise.all(Array.from({ length: concurrency }, () => openSession(t, call)));
  let next = 0;
  const worker = async (call: (id: number) => Promise<void>, n: number, lat: number[] | undefined) => {
    while (next < n) {
      const id = ++next;
      const t0 = process.hrtime.bigint();
      await call(id);
      lat?.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  await Promise.all(calls.map((c) => worker(c, warmup, undefined)));
  next = 0;
  const lat: number[] = [];
  const start = process.hrtime.bigint();
  await Promise.all(calls.map((c) => worker(c, total, lat)));
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  lat.sort((a, b) => a - b);
  return { rps: total / secs, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}
