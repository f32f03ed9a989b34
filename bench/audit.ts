/**
 * Audit log throughput: records made leaves of the log's Merkle tree and durable (WAL, group
 * commit, fdatasync), then committed to a real git repo with the signed checkpoint.
 * Reports records/s, commit lag, heap over the run (it should stay flat), the cost of one
 * checkpoint signature, inclusion and consistency proof generation (from the stored-hash file)
 * and verification, and a full `audit verify` of the repo with its time and peak memory.
 *
 *   npx tsx --expose-gc bench/audit.ts   (AUDIT_RECORDS=1000000; heap is sampled after a forced GC)
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { treeHashFile } from '../src/audit/sealer-port.js';
import { GitAuditStore } from '../src/audit/store.js';
import { HashFile } from '../src/audit/tlog/hash-file.js';
import {
  consistencyProof,
  inclusionProof,
  treeHash,
  verifyConsistency,
  verifyInclusion,
} from '../src/audit/tlog/merkle.js';
import { noteSigner, signCheckpoint, verifierOf } from '../src/audit/tlog/note.js';
import { openAuditTrail } from '../src/audit/trail.js';
import { verifyAuditRepo } from '../src/audit/verify.js';

const TOTAL = Number(process.env.AUDIT_RECORDS ?? 1_000_000);
/** Records per session stream (a session of ~10 exchanges = 20 records); 0 = everything in one hot stream. */
const PER_STREAM = Number(process.env.AUDIT_PER_STREAM ?? 20);
const IN_FLIGHT = 256;

async function main(): Promise<void> {
  const root = mkdtempSync(path.join(tmpdir(), 'gitgate-bench-audit-'));
  const key = generateKeyPairSync('ed25519').privateKey;
  const store = await GitAuditStore.open(path.join(root, 'audit'), verifierOf('gitgate.bench/audit', key).text);
  const { log, committer } = openAuditTrail(store, {
    walDir: path.join(root, 'wal'),
    origin: 'gitgate.bench/audit',
    key,
    everyRecords: 10_000,
    everyMs: 1000,
  });
  committer.start();
  const event = (i: number) => ({
    type: 'response' as const,
    exchange: `x${i}`,
    caller: { sub: `user${i % 50}`, groups: ['eng'] },
    upstream: 'demo',
    method: 'tools/call',
    tool: 'echo',
    data: {
      ok: true,
      result: { content: [{ type: 'text', text: `echo: message number ${i}` }] },
      bytes: 64,
      relayed: 0,
      ms: 1.2,
    },
  });
  console.log(
    `audit bench: ${TOTAL} records, ${PER_STREAM === 0 ? 'one hot stream' : `${PER_STREAM} per session stream`}, ${IN_FLIGHT} in flight, node ${process.version}`,
  );
  const heap: number[] = [];
  /** Durable records not yet committed at each heap sample: what the writer holds in memory for the committer. */
  const backlog: number[] = [];
  const lags: number[] = [];
  const start = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < TOTAL) {
      const i = next++;
      await log.append(
        PER_STREAM === 0 ? 'stateless/bench/hot' : `sessions/bench/s${Math.floor(i / PER_STREAM)}`,
        event(i),
      );
      if (i % 100_000 === 0) {
        global.gc?.();
        heap.push(process.memoryUsage().heapUsed / 2 ** 20);
        backlog.push(log.status().uncommitted);
        const lag = committer.status().lastLagMs;
        if (lag !== undefined) lags.push(lag);
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const durableSecs = Number(process.hrtime.bigint() - start) / 1e9;
  await committer.stop();
  const totalSecs = Number(process.hrtime.bigint() - start) / 1e9;
  await log.close();
  lags.sort((a, b) => a - b);
  console.log(`durable (leaves): ${(TOTAL / durableSecs).toFixed(0)} records/s (${durableSecs.toFixed(1)} s)`);
  console.log(
    `committed to git: ${(TOTAL / totalSecs).toFixed(0)} records/s end to end, ${committer.status().commits} commits`,
  );
  console.log(
    `commit lag (sampled): median ${lags[Math.floor(lags.length / 2)]?.toFixed(0) ?? '-'} ms, worst ${lags.at(-1)?.toFixed(0) ?? '-'} ms`,
  );
  console.log(`heap MiB every 100k records: ${heap.map((h) => h.toFixed(0)).join(' ')}`);
  console.log(`uncommitted records at those samples: ${backlog.join(' ')}`);
  // One checkpoint signature (Ed25519), as the sealer makes one per WAL roll.
  const signer = noteSigner('gitgate.bench/audit', key);
  const hf = HashFile.openReadOnly(treeHashFile(path.join(root, 'wal')));
  const size = hf.size;
  const root0 = hf.root();
  const SIGNS = 2_000;
  let t = process.hrtime.bigint();
  for (let i = 0; i < SIGNS; i++) signCheckpoint({ origin: signer.name, size, root: root0, extensions: [] }, signer);
  console.log(
    `checkpoint signature (Ed25519 signed note): ${(Number(process.hrtime.bigint() - t) / 1e3 / SIGNS).toFixed(1)} µs each`,
  );
  // Proofs from the stored-hash file (O(log n) reads), at leaves and sizes spread over the tree.
  const read = (l: number, i: number) => hf.read(l, i);
  const PROOFS = 1_000;
  const spots = Array.from({ length: PROOFS }, (_, k) =>
    Math.floor((((k * 2_654_435_761) % 2 ** 32) / 2 ** 32) * size),
  );
  t = process.hrtime.bigint();
  const incl = spots.map((i) => inclusionProof(read, i, size));
  const genUs = Number(process.hrtime.bigint() - t) / 1e3 / PROOFS;
  const leaves = spots.map((i) => hf.read(0, i));
  t = process.hrtime.bigint();
  let ok = 0;
  for (let k = 0; k < PROOFS; k++) if (verifyInclusion(spots[k]!, size, leaves[k]!, incl[k]!, root0)) ok++;
  const verUs = Number(process.hrtime.bigint() - t) / 1e3 / PROOFS;
  console.log(
    `inclusion proof at ${size} leaves: generate ${genUs.toFixed(1)} µs, verify ${verUs.toFixed(1)} µs (${ok}/${PROOFS} ok, ${incl[0]?.length ?? 0} hashes)`,
  );
  t = process.hrtime.bigint();
  const olds = spots.map((m) => Math.max(1, m));
  const cons = olds.map((m) => consistencyProof(read, m, size));
  const cGenUs = Number(process.hrtime.bigint() - t) / 1e3 / PROOFS;
  const oldRoots = olds.slice(0, 100).map((m) => treeHash(read, m));
  t = process.hrtime.bigint();
  ok = 0;
  for (let k = 0; k < 100; k++) if (verifyConsistency(olds[k]!, size, oldRoots[k]!, root0, cons[k]!)) ok++;
  console.log(
    `consistency proof to ${size}: generate ${cGenUs.toFixed(1)} µs, verify ${(Number(process.hrtime.bigint() - t) / 1e3 / 100).toFixed(1)} µs (${ok}/100 ok)`,
  );
  hf.close();
  if (process.env.AUDIT_VERIFY !== '0') {
    global.gc?.();
    const rssBefore = process.resourceUsage().maxRSS / 1024;
    const t0 = process.hrtime.bigint();
    const report = await verifyAuditRepo(path.join(root, 'audit'), { keys: [verifierOf('gitgate.bench/audit', key)] });
    console.log(
      `verify --key: ${report.ok ? 'ok' : `FAILED ${JSON.stringify(report.error)}`} — ${report.records} records in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s, peak RSS ${rssBefore.toFixed(0)} MiB before, ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB after (leaf hashes: 32 bytes per record)`,
    );
  }
}

void main();
