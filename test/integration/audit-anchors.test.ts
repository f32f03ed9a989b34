import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_ROOT, verifyConsistency } from '../../src/audit/tlog/merkle.js';
import { openCheckpoint } from '../../src/audit/tlog/note.js';
import { decodeBase64Strict } from '../../src/base64.js';
import { gitText } from '../../src/git/run.js';
import { decisionEvent, openTrail, verifyRepo } from '../helpers/audit-repo.js';

/** A witness after C2SP tlog-witness add-checkpoint: it only ever moves forward along a proved-consistent tree. */
function witness(verifierOf: () => Parameters<typeof openCheckpoint>[1]) {
  const state = { size: 0, root: EMPTY_ROOT, requests: [] as string[], refused: 0 };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      state.requests.push(body);
      const blank = body.indexOf('\n\n');
      const head = body.slice(0, blank).split('\n');
      const old = Number(/^old (\d+)$/.exec(head[0] ?? '')?.[1] ?? Number.NaN);
      const proof = head.slice(1).map((l) => decodeBase64Strict(l)!);
      const cp = openCheckpoint(body.slice(blank + 2), verifierOf());
      if (old !== state.size) {
        state.refused++;
        res.writeHead(409, { 'content-type': 'text/x.tlog.size' }).end(`${state.size}\n`);
        return;
      }
      if (!verifyConsistency(old, cp.size, state.root, cp.root, proof)) {
        res.writeHead(422).end('inconsistent\n');
        return;
      }
      state.size = cp.size;
      state.root = cp.root;
      res.writeHead(200).end('\u2014 witness AAAA\n');
    });
  });
  return { server, state };
}

describe('audit.anchors: each committed checkpoint is also published outside the repo', () => {
  let keys: Parameters<typeof openCheckpoint>[1] = [];
  const w = witness(() => keys);
  let url = '';
  beforeAll(async () => {
    await new Promise<void>((r) => w.server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(w.server.address() as AddressInfo).port}/add-checkpoint`;
  });
  afterAll(() => new Promise<void>((r) => w.server.close(() => r())));

  it('to a file and to a witness (consistency-proved, resent from the size it says it holds)', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-anchors-'));
    const file = path.join(root, 'anchor', 'checkpoint');
    mkdirSync(path.dirname(file));
    const warnings: string[] = [];
    const anchors = [{ file }, { url }];
    const first = await openTrail(root, undefined, { anchors, warn: (m) => warnings.push(m) });
    keys = [first.key.verifier];
    await first.committer.recover();
    for (let i = 0; i < 5; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.committer.commit();
    for (let i = 5; i < 12; i++) await first.log.append('s2', decisionEvent(`b${i}`));
    await first.committer.stop();
    await first.log.close();
    expect(warnings).toEqual([]);
    expect(w.state.size).toBe(12);
    expect(openCheckpoint(readFileSync(file, 'utf8'), keys).size).toBe(12);
    // A restarted gateway does not know what the witness holds: the witness says, and gets the proof from there.
    const second = await openTrail(root, first.key, { anchors, warn: (m) => warnings.push(m) });
    await second.committer.recover();
    for (let i = 0; i < 3; i++) await second.log.append('s3', decisionEvent(`c${i}`));
    await second.committer.stop();
    await second.log.close();
    expect(warnings).toEqual([]);
    expect(w.state.refused).toBeGreaterThan(0);
    expect(w.state.size).toBe(15);
    expect(w.state.requests.at(-1)).toMatch(/^old 12\n(?:[A-Za-z0-9+/]{43}=\n)+\n/);
    // The anchor is what an auditor verifies the repo against.
    const repo = path.join(root, 'audit');
    expect(await verifyRepo(repo, { checkpoint: readFileSync(file, 'utf8') })).toMatchObject({
      ok: true,
      warnings: [],
    });
  });
});

describe('audit.anchors: another git remote', () => {
  it('gets each committed checkpoint pushed to a ref, one commit on top of the last (never forced), also after its local repo is lost', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-anchor-git-'));
    const remote = path.join(root, 'remote.git');
    mkdirSync(remote);
    await gitText(remote, ['init', '-q', '--bare', '.']);
    const warnings: string[] = [];
    const anchors = [{ git: remote, ref: 'refs/gitgate/checkpoint' }];
    const first = await openTrail(root, undefined, { anchors, warn: (m) => warnings.push(m) });
    const keys = [first.key.verifier];
    await first.committer.recover();
    for (let i = 0; i < 4; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.committer.commit();
    for (let i = 4; i < 9; i++) await first.log.append('s1', decisionEvent(`a${i}`));
    await first.committer.stop();
    await first.log.close();
    expect(warnings).toEqual([]);
    const pushed = () => gitText(remote, ['show', 'refs/gitgate/checkpoint:checkpoint']);
    expect(openCheckpoint(await pushed(), keys).size).toBe(9);
    const sizes = async () =>
      (await gitText(remote, ['log', '--format=%s', 'refs/gitgate/checkpoint'])).trim().split('\n');
    expect((await sizes()).slice(0, 2)).toEqual(['audit checkpoint: 9 record(s)', 'audit checkpoint: 4 record(s)']);
    // The gateway's own anchor repo is lost: the next checkpoint goes on top of what the remote holds.
    rmSync(path.join(root, 'wal', 'anchor.git'), { recursive: true, force: true });
    const second = await openTrail(root, first.key, { anchors, warn: (m) => warnings.push(m) });
    await second.committer.recover();
    await second.log.append('s2', decisionEvent('b0'));
    await second.committer.stop();
    await second.log.close();
    expect(warnings).toEqual([]);
    expect(openCheckpoint(await pushed(), keys).size).toBe(10);
    expect((await sizes()).slice(0, 3)).toEqual([
      'audit checkpoint: 10 record(s)',
      'audit checkpoint: 9 record(s)',
      'audit checkpoint: 9 record(s)',
    ]);
    expect(await verifyRepo(path.join(root, 'audit'), { checkpoint: await pushed() })).toMatchObject({ ok: true });
  });

  it('that cannot be reached is a warning with the credentials of its URL redacted', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'gitgate-anchor-git-secret-'));
    const warnings: string[] = [];
    // Nothing listens on port 9: the push fails, and git's error quotes the URL.
    const anchors = [{ git: 'http://anchor-user:s3cr3t-t0ken@127.0.0.1:9/audit.git' }];
    const t = await openTrail(root, undefined, { anchors, warn: (m) => warnings.push(m) });
    await t.committer.recover();
    await t.log.append('s1', decisionEvent('a0'));
    await t.committer.stop();
    await t.log.close();
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings.join('\n')).toContain('[redacted]@127.0.0.1:9');
    expect(warnings.join('\n')).not.toContain('s3cr3t-t0ken');
  });
});
