import { generateKeyPairSync } from 'node:crypto';
/**
 * Audit log throughput: records signed (ES256, the default audit key) and made durable (WAL, group
 * commit, fdatasync), then committed to a real git repo with checkpoints.
 * Reports records/s, commit lag, and heap over the run (it should stay flat).
 *
 *   npx tsx --expose-gc bench/audit.ts   (AUDIT_RECORDS=1000000; heap is sampled after a forced GC)
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GitAuditStore } from '../src/audit/store.js';
import { verifierOf } from '../src/audit/tlog/note.js';
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
  console.log(`signed + durable: ${(TOTAL / durableSecs).toFixed(0)} records/s (${durableSecs.toFixed(1)} s)`);
  console.log(
    `committed to git: ${(TOTAL / totalSecs).toFixed(0)} records/s end to end, ${committer.status().commits} commits`,
  );
  console.log(
    `commit lag (sampled): median ${lags[Math.floor(lags.length / 2)]?.toFixed(0) ?? '-'} ms, worst ${lags.at(-1)?.toFixed(0) ?? '-'} ms`,
  );
  console.log(`heap MiB every 100k records: ${heap.map((h) => h.toFixed(0)).join(' ')}`);
  if (process.env.AUDIT_VERIFY !== '0') {
    const t0 = process.hrtime.bigint();
    const report = await verifyAuditRepo(path.join(root, 'audit'), { keys: [verifierOf('gitgate.bench/audit', key)] });
    console.log(
      `verify: ${report.ok ? 'ok' : `FAILED ${JSON.stringify(report.error)}`} — ${report.records} records in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s`,
    );
  }
}

void main();
