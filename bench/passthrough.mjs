// A bare L7 passthrough: forwards each request to the target and pipes the answer back.
// No auth, no policy, no parsing: the floor any proxy pays for one extra hop.
import http from 'node:http';

const target = new URL(process.argv[2]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const server = http.createServer((req, res) => {
  const headers = { ...req.headers, host: target.host };
  const up = http.request(
    { host: target.hostname, port: target.port, path: target.pathname, method: req.method, headers, agent },
    (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      ur.pipe(res);
    },
  );
  up.on('error', () => res.writeHead(502).end());
  req.pipe(up);
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening http://127.0.0.1:${server.address().port}/mcp\n`));
