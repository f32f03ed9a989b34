import type { KeyObject } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { Sealer, serveSealer, type ToSealer } from './sealer.js';
import { sealerTree } from './sealer-port.js';
import { FileWal } from './wal.js';

/** The sealer's thread: the log key, the tree's stored hashes and the WAL's open segment live here. */
const { dir, origin, key, segmentBytes } = workerData as {
  dir: string;
  origin: string;
  key: KeyObject;
  segmentBytes?: number;
};
const port = parentPort!;
const receive = serveSealer(
  new Sealer(sealerTree(dir, { origin, key }), new FileWal(dir, segmentBytes), (m) => port.postMessage(m)),
);
port.on('message', (m: ToSealer) => receive(m));
