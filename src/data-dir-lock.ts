import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { type Clock, systemClock } from './clock.js';
import { GatewayError } from './errors.js';

/** What a lock file says about the gateway holding it. */
interface LockInfo {
  readonly pid: number;
  readonly host: string;
  /** The kernel's boot id (Linux): a lock from another boot is stale. */
  readonly boot?: string;
  /** The process's start time in clock ticks since boot (Linux): tells a live holder from a reused pid. */
  readonly started?: string;
  readonly since: string;
  /** A Unix socket the holder listens on while it runs (same kernel: works across PID namespaces and containers). */
  readonly beacon?: string;
}

export interface DataDirLock {
  readonly file: string;
  /** Give the lock up (idempotent). */
  release(): Promise<void>;
}

export const LOCK_FILE = 'gitgate.lock';

const readText = (file: string): string | undefined => {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
};

/** Field 22 of /proc/<pid>/stat: when the process started (ticks since boot). */
function startTime(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

const bootId = (): string | undefined => readText('/proc/sys/kernel/random/boot_id');

/** Whether a Unix socket has a listener (the holder is alive); undefined when it cannot be told (no socket file, say). */
function probe(socket: string, clock: Clock): Promise<boolean | undefined> {
  return new Promise((resolve) => {
    const c = net.connect({ path: socket });
    const timer = clock.after(5_000, () => {
      c.destroy();
      resolve(undefined);
    });
    c.once('connect', () => {
      timer.cancel();
      c.destroy();
      resolve(true);
    });
    c.once('error', (err: NodeJS.ErrnoException) => {
      timer.cancel();
      resolve(err.code === 'ECONNREFUSED' ? false : undefined);
    });
  });
}

/**
 * Whether the gateway that wrote `info` may still run; what cannot be told
 * counts as alive (the lock holds and the operator is told what to remove).
 */
async function alive(info: LockInfo, dir: string, clock: Clock): Promise<boolean> {
  const boot = bootId();
  const sameHost = info.host === os.hostname();
  if (info.boot !== undefined && boot !== undefined && info.boot !== boot) return !sameHost; // this host rebooted since; another host may still run
  const sameKernel = info.boot !== undefined && info.boot === boot;
  if (info.beacon !== undefined) {
    // A listener answers on the same kernel whatever its PID namespace or container; a socket with none left is a dead holder.
    const up = await probe(path.join(dir, info.beacon), clock);
    if (up === true) return true;
    if (up === false && sameKernel) return false;
  }
  if (!sameHost) return true;
  if (info.pid === process.pid) return false; // our own pid: a previous run of this process (a container's pid 1)
  try {
    process.kill(info.pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const started = startTime(info.pid);
  return info.started === undefined || started === undefined || started === info.started;
}

/** Listen on a fresh Unix socket in `dir`; undefined when that cannot be done (a path too long, say). */
async function beacon(dir: string): Promise<{ name: string; server: net.Server } | undefined> {
  const name = `gitgate-${randomBytes(6).toString('hex')}.sock`;
  const server = net.createServer((c) => c.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path.join(dir, name), () => resolve());
    });
  } catch {
    server.close();
    return undefined;
  }
  server.unref();
  return { name, server };
}

/**
 * Take `<dir>/gitgate.lock` for this process, or throw CONFIG_INVALID naming the
 * gateway that holds it. Two gateways on one data dir would number WAL segments
 * alike, drop each other's uncommitted segments and commit to one repo at once.
 * The lock is created whole (written, synced, then hard-linked into place), so
 * it is never seen half-written. One left by a gateway that died is taken over:
 * its kernel rebooted, its beacon socket has no listener, or (same host) its
 * pid is gone or belongs to a newer process. Released on close; a crash leaves
 * it, stale, for the next start to take over.
 */
export async function lockDataDir(dir: string, clock: Clock = systemClock): Promise<DataDirLock> {
  const file = path.join(dir, LOCK_FILE);
  const b = await beacon(dir);
  const started = startTime(process.pid);
  const boot = bootId();
  const info: LockInfo = {
    pid: process.pid,
    host: os.hostname(),
    ...(boot !== undefined ? { boot } : {}),
    ...(started !== undefined ? { started } : {}),
    since: new Date(clock.now()).toISOString(),
    ...(b !== undefined ? { beacon: b.name } : {}),
  };
  const text = `${JSON.stringify(info)}\n`;
  const temp = path.join(dir, `${LOCK_FILE}.${randomBytes(6).toString('hex')}`);
  const fd = openSync(temp, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const giveUp = () => {
    rmSync(temp, { force: true });
    if (b !== undefined) {
      b.server.close();
      rmSync(path.join(dir, b.name), { force: true });
    }
  };
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(temp, file);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw err;
      }
      const held = readText(file);
      let other: LockInfo | undefined;
      try {
        other = held === undefined ? undefined : (JSON.parse(held) as LockInfo);
      } catch {
        other = undefined;
      }
      if (held === undefined) continue; // removed meanwhile: try again
      if (other !== undefined && (await alive(other, dir, clock))) {
        throw new GatewayError(
          'CONFIG_INVALID',
          `data dir ${dir} is in use by another gitgate (pid ${other.pid} on ${other.host}, since ${other.since}); two gateways on one data dir would interleave their audit WAL and repo. If that gateway is gone, remove ${file}.`,
        );
      }
      // Stale (or unreadable: never written by gitgate's whole-file link): take it over, unless it changed meanwhile.
      const aside = `${file}.stale-${randomBytes(6).toString('hex')}`;
      try {
        renameSync(file, aside);
      } catch {
        continue;
      }
      if (readText(aside) === held) {
        rmSync(aside, { force: true });
        if (other?.beacon !== undefined) rmSync(path.join(dir, other.beacon), { force: true });
      } else {
        // Someone else's fresh lock: put it back (if nothing took its place) and look again.
        try {
          linkSync(aside, file);
        } catch {
          // another lock is there now; it is looked at next
        }
        rmSync(aside, { force: true });
      }
    }
  } catch (err) {
    giveUp();
    throw err;
  }
  rmSync(temp, { force: true });
  // Leftovers of gateways that died (their beacons, half-made lock files).
  for (const f of readdirSync(dir)) {
    if ((/^gitgate-[0-9a-f]{12}\.sock$/.test(f) && f !== b?.name) || /^gitgate\.lock\.(stale-)?[0-9a-f]{12}$/.test(f))
      rmSync(path.join(dir, f), { force: true });
  }
  let released = false;
  return {
    file,
    async release() {
      if (released) return;
      released = true;
      if (readText(file) === text.trim()) rmSync(file, { force: true });
      if (b !== undefined) {
        await new Promise<void>((resolve) => b.server.close(() => resolve()));
        rmSync(path.join(dir, b.name), { force: true });
      }
    },
  };
}
