import { spawn } from 'node:child_process';

/** What git may see of our environment, plus identity; everything else is passed explicitly. */
const IDENTITY = {
  GIT_AUTHOR_NAME: 'gitgate',
  GIT_AUTHOR_EMAIL: 'gitgate@localhost',
  GIT_COMMITTER_NAME: 'gitgate',
  GIT_COMMITTER_EMAIL: 'gitgate@localhost',
  GIT_TERMINAL_PROMPT: '0',
};

/** The environment git runs with: PATH, HOME, TMPDIR and LANG of ours, gitgate's identity, and `extraEnv`. */
export function gitEnvironment(extraEnv: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'LANG']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  return { ...env, ...IDENTITY, ...extraEnv };
}

/** Bounds on one git run over a repo someone else writes. */
export interface GitLimits {
  /** git is stopped, and the run fails, once its output would pass this (a listing). */
  readonly maxOutputBytes?: number;
  /** git is stopped, and the run fails, when it has not finished by then (a fetch from a remote that stalls). */
  readonly timeoutMs?: number;
}

/** Run git with an argument list (no shell); secrets travel in `env`, never in argv. */
export function git(
  dir: string,
  args: readonly string[],
  extraEnv: Record<string, string> = {},
  stdin?: string | Buffer,
  limits: GitLimits = {},
): Promise<Buffer> {
  const maxOutputBytes = limits.maxOutputBytes ?? Number.POSITIVE_INFINITY;
  return new Promise((resolve, reject) => {
    const p = spawn('git', args, { cwd: dir, env: gitEnvironment(extraEnv) });
    const timer =
      limits.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            p.kill('SIGKILL');
            reject(new Error(`git ${args[0]} did not finish within ${limits.timeoutMs} ms`));
          }, limits.timeoutMs);
    p.once('close', () => clearTimeout(timer));
    const out: Buffer[] = [];
    let outBytes = 0;
    let err = '';
    p.stdout.on('data', (d: Buffer) => {
      outBytes += d.length;
      if (outBytes > maxOutputBytes) {
        p.kill('SIGKILL');
        reject(new Error(`git ${args[0]} wrote more than ${maxOutputBytes} bytes`));
        return;
      }
      out.push(d);
    });
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    // 'close', not 'exit': only then has all of stdout been read (exit can come first under load).
    p.on('close', (code) =>
      code === 0
        ? resolve(Buffer.concat(out))
        : reject(new Error(`git ${args[0]} failed (${code}): ${err.trim().slice(0, 500)}`)),
    );
    // git may exit without reading stdin: never let that become an unhandled EPIPE.
    p.stdin.on('error', () => undefined);
    if (stdin !== undefined) p.stdin.end(stdin);
    else p.stdin.end();
  });
}

export async function gitText(
  dir: string,
  args: readonly string[],
  extraEnv: Record<string, string> = {},
  stdin?: string,
): Promise<string> {
  return (await git(dir, args, extraEnv, stdin)).toString('utf8');
}
