import http from 'node:http';

/**
 * A small round-robin load balancer on loopback, in front of gitgate replicas. Requests go to the next
 * replica in turn; a replica that refuses the connection is skipped. `sticky` routes a request carrying an
 * Mcp-Session-Id to the replica that issued it (the setting docs/scale-out.md gives while sessions are
 * per replica); otherwise every request is round-robin.
 */
export async function startBalancer(backends: string[], opts: { sticky?: boolean } = {}) {
  let next = 0;
  const owners = new Map<string, string>();
  const served: string[] = [];
  const pick = (tried: Set<string>): string | undefined => {
    for (let i = 0; i < backends.length; i++) {
      const b = backends[next++ % backends.length]!;
      if (!tried.has(b)) return b;
    }
    return undefined;
  };
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const sid = req.headers['mcp-session-id'];
    const tried = new Set<string>();
    const owner = opts.sticky === true && typeof sid === 'string' ? owners.get(sid) : undefined;
    for (let backend = owner ?? pick(tried); backend !== undefined; backend = owner ? undefined : pick(tried)) {
      tried.add(backend);
      const ok = await new Promise<boolean>((resolve) => {
        const up = http.request(
          `${backend}${req.url}`,
          { method: req.method, headers: { ...req.headers, host: new URL(backend).host } },
          (r) => {
            const s = r.headers['mcp-session-id'];
            if (typeof s === 'string') owners.set(s, backend);
            served.push(backend);
            res.writeHead(r.statusCode ?? 502, r.headers);
            r.pipe(res);
            r.on('end', () => resolve(true));
            r.on('error', () => resolve(true));
          },
        );
        up.on('error', (err: NodeJS.ErrnoException) => {
          if (res.headersSent) {
            res.destroy();
            resolve(true);
          } else if (err.code === 'ECONNREFUSED') resolve(false);
          else {
            res.writeHead(502).end();
            resolve(true);
          }
        });
        up.end(body);
      });
      if (ok) return;
    }
    if (!res.headersSent) res.writeHead(502).end('no replica reachable');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    url,
    /** The backend of each response, in order. */
    served,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
