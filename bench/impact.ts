/**
 * Policy impact replay speed: N recorded decision inputs (signed records in a
 * real audit repo) replayed on two policy revisions, signatures verified.
 *   npx tsx bench/impact.ts   (DECISIONS=100000)
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { GitAuditStore } from '../src/audit/store.js';
import { verifierOf } from '../src/audit/tlog/note.js';
import { openAuditTrail } from '../src/audit/trail.js';
import { replayImpactParallel } from '../src/impact/parallel.js';
import { replayImpact } from '../src/impact/replay.js';
import { packageRoot } from '../src/paths.js';
import { buildPolicyBundle } from '../src/policy/build.js';
import { readBundle } from '../src/policy/bundle.js';
import { instantiate } from '../src/policy/engine.js';
import { ensureOpa } from '../src/policy/opa-binary.js';

const N = Number(process.env.DECISIONS ?? 100_000);

async function revision(data: unknown): Promise<Uint8Array> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-bench-impact-rev-'));
  cpSync(path.join(packageRoot, 'policies', 'gitgate'), path.join(dir, 'gitgate'), { recursive: true });
  mkdirSync(path.join(dir, 'config'));
  writeFileSync(path.join(dir, 'config', 'data.json'), JSON.stringify(data));
  const built = await buildPolicyBundle({ opa: await ensureOpa(), srcDir: dir, outDir: path.join(dir, 'out') });
  return readFileSync(built.path);
}

async function main(): Promise<void> {
  const baseData = JSON.parse(readFileSync(path.join(packageRoot, 'policies', 'config', 'data.json'), 'utf8')) as {
    upstreams: { demo: { public_tools: string[] } };
  };
  const headData = structuredClone(baseData);
  headData.upstreams.demo.public_tools = ['get-sum', 'get-tiny-image'];
  const [base, head] = await Promise.all([revision(baseData), revision(headData)]);

  const root = mkdtempSync(path.join(tmpdir(), 'gitgate-bench-impact-'));
  const key = generateKeyPairSync('ed25519').privateKey;
  const store = await GitAuditStore.open(path.join(root, 'audit'), verifierOf('gitgate.bench/audit', key).text);
  const { log, committer } = openAuditTrail(store, {
    walDir: path.join(root, 'wal'),
    origin: 'gitgate.bench/audit',
    key,
    everyRecords: 20_000,
    everyMs: 5_000,
  });
  const tools = ['echo', 'get-sum', 'get-tiny-image', 'get-env'];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (next < N) {
        const i = next++;
        const tool = tools[i % tools.length]!;
        const input = {
          identity: { sub: `user${i % 40}`, groups: i % 5 === 0 ? ['eng'] : [], issuer: 'urn:gitgate:dev-issuer' },
          mcp: {
            method: 'tools/call',
            tool,
            arguments: { message: `m${i}` },
            protocol_version: '2025-11-25',
            era: 'legacy',
          },
          upstream: { name: 'demo', transport: 'stdio' },
          request: { id: `r${i}`, time_ns: 0 },
        };
        // A record shaped like the gateway's (schemas/audit-record.schema.json), not a bare input.
        await log.append(`sessions/bench/s${Math.floor(i / 20)}`, {
          type: 'decision',
          exchange: `x${i}`,
          caller: { sub: input.identity.sub, groups: input.identity.groups, issuer: input.identity.issuer },
          upstream: 'demo',
          session: `s${Math.floor(i / 20)}`,
          method: 'tools/call',
          tool,
          ts: new Date(Date.UTC(2026, 10, 26, 12, 0, 0, i)).toISOString(),
          data: {
            policy: { revision: 'b'.repeat(40), bundle_digest: `sha256:${'c'.repeat(64)}` },
            allow: true,
            valid: true,
            reasons: [
              `tools/call of ${tool} allowed for ${input.identity.sub} (groups: [${input.identity.groups.join(',')}])`,
            ],
            risk: 'low',
            approval_required: false,
            mask: [],
            credential_ttl_seconds: 60,
            // As the gateway records it: of the exact JSON the policy evaluated.
            input_sha256: createHash('sha256').update(JSON.stringify(input)).digest('hex'),
            input,
          },
        });
      }
    }),
  );
  await committer.stop();
  await log.close();
  console.log(`generated ${N} signed decision records in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  for (const workers of [1, availableParallelism()]) {
    const t1 = performance.now();
    const report =
      workers === 1
        ? replayImpact(
            path.join(root, 'audit'),
            await instantiate(await readBundle(base), { source: 'base' }),
            await instantiate(await readBundle(head), { source: 'head' }),
          )
        : await replayImpactParallel(path.join(root, 'audit'), base, head, { workers });
    const secs = (performance.now() - t1) / 1000;
    console.log(
      `${workers} thread(s): replayed ${report.replayed} recorded decisions on both revisions (${report.replayed * 2} evaluations, records verified) in ${secs.toFixed(1)} s: ${(report.replayed / secs).toFixed(0)} decisions/s, transitions ${JSON.stringify(report.transitions)}`,
    );
  }
}

void main();
