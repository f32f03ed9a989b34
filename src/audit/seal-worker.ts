import type { KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { auditSigner } from './record.js';
import { Sealer, serveSealer, type ToSealer } from './sealer.js';
import { FileWal } from './wal.js';

/** The sealer's thread: the audit key and the WAL's open segment live here. */
const { dir, kid, key } = workerData as { dir: string; kid: string; key: KeyObject };
const port = parentPort!;
const receive = serveSealer(new Sealer(auditSigner(kid, key), new FileWal(dir), (m) => port.postMessage(m)));
port.on('message', (m: ToSealer) => receive(m));
