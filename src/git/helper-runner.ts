import { type ChildProcess, spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { gitEnvironment } from './run.js';

/**
 * The helper process's program (CommonJS, for `node -e`): one request per stdin line
 * ({id, cwd, args, stdin (base64)}), each run as `git <args>` in `cwd` with the helper's
 * environment, answered on stdout ({id, code, out (base64), err}) when git has exited and
 * its output is read. It exits when its stdin closes (the gateway is gone); a git it
 * started runs to its end.
 */
const HELPER = `
const { spawn } = require('node:child_process');
const reply = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const r = JSON.parse(line);
  let done = false;
  const finish = (m) => { if (!done) { done = true; reply(m); } };
  const p = spawn('git', r.args, { cwd: r.cwd, env: process.env });
  const out = [];
  let err = '';
  p.stdout.on('data', (d) => out.push(d));
  p.stderr.on('data', (d) => (err += d.toString()));
  p.on('error', (e) => finish({ id: r.id, code: -1, out: '', err: e.message }));
  p.on('close', (code) => finish({ id: r.id, code, out: Buffer.concat(out).toString('base64'), err }));
  p.stdin.on('error', () => undefined);
  if (r.stdin !== undefined) p.stdin.end(Buffer.from(r.stdin, 'base64'));
  else p.stdin.end();
}).on('close', () => process.exitCode = 0);
`;

interface Reply {
  readonly id: number;
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

/** Runs git commands, as `git()` does, but each spawned by a long-lived helper process. */
export interface GitRunner {
  run(dir: string, args: readonly string[], stdin?: string): Promise<Buffer>;
}

/**
 * A git runner whose commands a small helper process (node, started once) spawns: the
 * gateway's event loop then never forks. A fork copies the forking process's page tables,
 * which for a gateway of a few hundred MiB costs milliseconds of its event loop per git run
 * (most of what committing the audit log cost it). The helper gets the environment `git()`
 * gives git (PATH, HOME, TMPDIR, LANG and the committer identity), nothing else. When it
 * dies, the commands it was running fail (the committer retries) and the next run starts
 * a new one. It never keeps the gateway alive: it is referenced only while a command runs.
 */
export function gitRunner(): GitRunner {
  let child: ChildProcess | undefined;
  const pending = new Map<number, { resolve: (b: Buffer) => void; reject: (e: Error) => void; what: string }>();
  let nextId = 1;
  const reference = (on: boolean) => {
    if (child === undefined) return;
    const streams = [child.stdin, child.stdout] as unknown as (Socket | null)[];
    if (on) {
      child.ref();
      for (const s of streams) s?.ref?.();
    } else {
      child.unref();
      for (const s of streams) s?.unref?.();
    }
  };
  const start = (): ChildProcess => {
    const c = spawn(process.execPath, ['-e', HELPER], {
      cwd: '/',
      env: gitEnvironment(),
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let buf = '';
    c.stdout!.setEncoding('utf8');
    c.stdout!.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const r = JSON.parse(buf.slice(0, nl)) as Reply;
        buf = buf.slice(nl + 1);
        const p = pending.get(r.id);
        pending.delete(r.id);
        if (pending.size === 0) reference(false);
        if (p === undefined) continue;
        if (r.code === 0) p.resolve(Buffer.from(r.out, 'base64'));
        else p.reject(new Error(`git ${p.what} failed (${r.code}): ${r.err.trim().slice(0, 500)}`));
      }
    });
    const gone = (why: string) => {
      if (child !== c) return;
      child = undefined;
      for (const p of pending.values()) p.reject(new Error(`git ${p.what} failed: the git helper process ${why}`));
      pending.clear();
    };
    c.on('error', (e) => gone(`could not run (${e.message})`));
    c.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    c.stdin!.on('error', () => undefined);
    return c;
  };
  return {
    run(dir, args, stdin) {
      child ??= start();
      const c = child;
      const id = nextId++;
      return new Promise<Buffer>((resolve, reject) => {
        pending.set(id, { resolve, reject, what: args[0] ?? '' });
        reference(true);
        const req: Record<string, unknown> = { id, cwd: dir, args };
        if (stdin !== undefined) req.stdin = Buffer.from(stdin).toString('base64');
        c.stdin!.write(`${JSON.stringify(req)}\n`);
      });
    },
  };
}
