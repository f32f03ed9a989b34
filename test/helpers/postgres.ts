/**
 * A real PostgreSQL for tests: Debian's server binaries (/usr/lib/postgresql/<n>/bin), a fresh cluster
 * in a temp dir (initdb, trust auth, loopback only, its unix socket in the temp dir), started on a free
 * port and removed afterwards. PostgreSQL refuses to run as root: as root the cluster belongs to the
 * `postgres` account the Debian package creates, and every server command runs through runuser.
 *
 * No binaries, or a server that does not start, is a test failure with the reason, never a skip.
 * A fresh CI machine installs them first (.ci/run: `apt-get install -y postgresql`, as root, when missing).
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestPostgres {
  /** postgres://gitgate@127.0.0.1:<port>/gitgate */
  readonly url: string;
  readonly port: number;
  /** Stop the server (fast shutdown: connections are cut), keeping the cluster. */
  stop(): Promise<void>;
  /** Start it again on the same port. */
  start(): Promise<void>;
  /** Stop and remove the cluster. */
  destroy(): Promise<void>;
}

/** The newest Debian PostgreSQL bin dir, or a clear error. */
function findPostgresBin(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(path.join(root, v, 'bin', 'postgres')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const v = versions[0];
  if (v === undefined)
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install them (as root: apt-get install -y postgresql); .ci/run does this on CI',
    );
  return path.join(root, v, 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Start a throwaway cluster; throws (with initdb's or the server's own words) when it cannot. */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = findPostgresBin();
  const root = userInfo().uid === 0;
  let uid: number | undefined;
  let gid: number | undefined;
  if (root) {
    try {
      const { stdout } = await run('id', ['-u', 'postgres']);
      uid = Number(stdout.trim());
      gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
    } catch {
      throw new Error(
        'running as root and there is no postgres account (PostgreSQL refuses root): install the postgresql package, which creates it, or run the tests as another user',
      );
    }
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-pg-'));
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'sock');
  if (uid !== undefined && gid !== undefined) {
    chownSync(dir, uid, gid);
    chmodSync(dir, 0o700);
  }
  const as = (cmd: string, args: string[]) =>
    root ? run('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args]) : run(path.join(bin, cmd), args);
  const explain = (what: string, err: unknown) => {
    const e = err as { stderr?: string; stdout?: string; message: string };
    return new Error(`PostgreSQL could not ${what}: ${(e.stderr || e.stdout || e.message).trim().slice(0, 2000)}`);
  };
  try {
    await as('initdb', ['-D', data, '-U', 'gitgate', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw explain('initdb a cluster', err);
  }
  mkdirSync(sock, { mode: 0o700 });
  if (uid !== undefined && gid !== undefined) chownSync(sock, uid, gid);
  const port = await freePort();
  const start = async () => {
    try {
      await as('pg_ctl', [
        '-D',
        data,
        '-w',
        '-t',
        '60',
        '-l',
        path.join(dir, 'server.log'),
        '-o',
        `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`,
        'start',
      ]);
    } catch (err) {
      throw explain(`start on 127.0.0.1:${port} (log: ${path.join(dir, 'server.log')})`, err);
    }
  };
  const stop = async () => {
    await as('pg_ctl', ['-D', data, '-w', '-m', 'fast', 'stop']).catch(() => undefined);
  };
  await start();
  try {
    await as('createdb', ['-h', sock, '-p', String(port), '-U', 'gitgate', 'gitgate']);
  } catch (err) {
    await stop();
    rmSync(dir, { recursive: true, force: true });
    throw explain('create the test database', err);
  }
  return {
    url: `postgres://gitgate@127.0.0.1:${port}/gitgate`,
    port,
    stop,
    start,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
