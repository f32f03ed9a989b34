import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HashFile } from '../../src/audit/tlog/hash-file.js';
import {
  consistencyProof,
  EMPTY_ROOT,
  Frontier,
  type Hash,
  inclusionProof,
  leafHash,
  nodeHash,
  type SubtreeReader,
  storedHashCount,
  treeHash,
  verifyConsistency,
  verifyInclusion,
} from '../../src/audit/tlog/merkle.js';
import {
  checkpointText,
  noteSigner,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signCheckpoint,
  signNote,
  verifierOf,
} from '../../src/audit/tlog/note.js';
import { packageRoot } from '../../src/paths.js';
import { testSeed } from '../helpers/soak.js';

// RFC 6962 test vectors as published by Certificate Transparency (transparency-dev/merkle testonly), as data.
const DATA = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(
  (h) => Buffer.from(h, 'hex'),
);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];
const INCLUSION = [
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];
const CONSISTENCY = [
  {
    first: 2,
    second: 8,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    first: 6,
    second: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    first: 2,
    second: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];

const hex = (h: Hash) => h.toString('hex');

/** An in-memory reader of complete-subtree hashes, built the slow, obvious way (as the RFC defines MTH). */
function memoryReader(leaves: readonly Hash[]): SubtreeReader {
  const mth = (lo: number, hi: number): Hash => {
    if (hi - lo === 1) return leaves[lo]!;
    let k = 1;
    while (k * 2 < hi - lo) k *= 2;
    return nodeHash(mth(lo, lo + k), mth(lo + k, hi));
  };
  return (level, index) => {
    const w = 2 ** level;
    if ((index + 1) * w > leaves.length) throw new Error('outside the tree');
    return mth(index * w, (index + 1) * w);
  };
}

const LEAVES = DATA.map((d) => leafHash(d));

describe('Merkle tree (RFC 6962 / 9162)', () => {
  it('matches the published root of every tree size 0..8, from the frontier and from stored hashes', () => {
    expect(hex(EMPTY_ROOT)).toBe(ROOTS[0]);
    const f = new Frontier();
    for (let n = 0; n <= LEAVES.length; n++) {
      expect(hex(f.root()), `size ${n}`).toBe(ROOTS[n]);
      expect(hex(treeHash(memoryReader(LEAVES.slice(0, n)), n))).toBe(ROOTS[n]);
      if (n < LEAVES.length) f.append(LEAVES[n]!);
    }
  });

  it('produces and accepts the published inclusion proofs', () => {
    const read = memoryReader(LEAVES);
    for (const v of INCLUSION) {
      const proof = inclusionProof(read, v.index, v.size);
      expect(proof.map(hex)).toEqual(v.proof);
      expect(verifyInclusion(v.index, v.size, LEAVES[v.index]!, proof, Buffer.from(ROOTS[v.size]!, 'hex'))).toBe(true);
    }
  });

  it('produces and accepts the published consistency proofs', () => {
    const read = memoryReader(LEAVES);
    for (const v of CONSISTENCY) {
      const proof = consistencyProof(read, v.first, v.second);
      expect(proof.map(hex)).toEqual(v.proof);
      const [a, b] = [Buffer.from(ROOTS[v.first]!, 'hex'), Buffer.from(ROOTS[v.second]!, 'hex')];
      expect(verifyConsistency(v.first, v.second, a, b, proof)).toBe(true);
      expect(verifyConsistency(v.first, v.second, b, a, proof)).toBe(false);
    }
  });

  it('every proof of every shape up to 40 leaves verifies, and every change to it is refused', () => {
    const seed = testSeed('merkle proofs');
    const leaves = Array.from({ length: 40 }, (_, i) => leafHash(`leaf ${seed} ${i}`));
    const read = memoryReader(leaves);
    const flip = (h: Hash) => {
      const c = Buffer.from(h);
      c[0] = c[0]! ^ 1;
      return c;
    };
    for (let n = 1; n <= leaves.length; n++) {
      const root = treeHash(read, n);
      for (let i = 0; i < n; i++) {
        const p = inclusionProof(read, i, n);
        expect(verifyInclusion(i, n, leaves[i]!, p, root)).toBe(true);
        expect(verifyInclusion(i, n, flip(leaves[i]!), p, root)).toBe(false);
        if (n > 1) expect(verifyInclusion((i + 1) % n, n, leaves[i]!, p, root)).toBe(false);
        for (let j = 0; j < p.length; j++)
          expect(verifyInclusion(i, n, leaves[i]!, p.toSpliced(j, 1, flip(p[j]!)), root)).toBe(false);
        expect(verifyInclusion(i, n, leaves[i]!, [...p, root], root)).toBe(false);
      }
      for (let m = 0; m <= n; m++) {
        const old = treeHash(read, m);
        const p = consistencyProof(read, m, n);
        expect(verifyConsistency(m, n, old, root, p), `${m} -> ${n}`).toBe(true);
        if (m > 0 && m < n) {
          expect(verifyConsistency(m, n, flip(old), root, p)).toBe(false);
          expect(verifyConsistency(m, n, old, flip(root), p)).toBe(false);
          for (let j = 0; j < p.length; j++)
            expect(verifyConsistency(m, n, old, root, p.toSpliced(j, 1, flip(p[j]!)))).toBe(false);
          expect(verifyConsistency(m, n, old, root, p.slice(0, -1))).toBe(false);
        }
      }
    }
  });
});

describe('stored hash file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-tlog-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('holds 2n - popcount(n) hashes, reopens to the same frontier, proves from disk, and cuts a torn tail', () => {
    const file = path.join(dir, 'hashes');
    const leaves = Array.from({ length: 77 }, (_, i) => leafHash(`r${i}`));
    const hf = HashFile.open(file);
    hf.append(leaves.slice(0, 30));
    hf.append(leaves.slice(30));
    expect(statSync(file).size).toBe(storedHashCount(77) * 32);
    const mem = memoryReader(leaves);
    expect(hex(hf.root())).toBe(hex(treeHash(mem, 77)));
    const read: SubtreeReader = (l, i) => hf.read(l, i);
    expect(inclusionProof(read, 41, 77).map(hex)).toEqual(inclusionProof(mem, 41, 77).map(hex));
    expect(consistencyProof(read, 13, 77).map(hex)).toEqual(consistencyProof(mem, 13, 77).map(hex));
    hf.close();
    // A write cut short: the file ends mid-leaf. Reopening keeps the whole leaves.
    truncateSync(file, storedHashCount(77) * 32 - 10);
    const again = HashFile.open(file);
    expect(again.size).toBe(76);
    expect(hex(again.root())).toBe(hex(treeHash(mem, 76)));
    again.truncate(50);
    expect(hex(again.root())).toBe(hex(treeHash(mem, 50)));
    again.append(leaves.slice(50));
    expect(hex(again.root())).toBe(hex(treeHash(mem, 77)));
    again.close();
  });
});

describe('signed notes and checkpoints (C2SP)', () => {
  const { privateKey } = generateKeyPairSync('ed25519');
  const signer = noteSigner('gitgate.test/audit', privateKey);
  const cp = { origin: 'gitgate.test/audit', size: 8, root: Buffer.from(ROOTS[8]!, 'hex'), extensions: [] };

  it('formats the verifier key as name+hash+base64(0x01||key) and parses it back', () => {
    expect(signer.verifier.text).toMatch(/^gitgate\.test\/audit\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$/);
    const parsed = parseVerifierKey(signer.verifier.text);
    expect(parsed.id.equals(signer.verifier.id)).toBe(true);
    const [name, id] = signer.verifier.text.split('+') as [string, string];
    const key = signer.verifier.text.slice(name.length + id.length + 2);
    expect(() => parseVerifierKey(`other+${id}+${key}`)).toThrow(/does not match/);
    expect(() => parseVerifierKey(`${name}+${id}`)).toThrow(/name\+hash\+key/);
    expect(() => parseVerifierKey(`${name}+${id}+AAAA`)).toThrow(/32-byte Ed25519/);
  });

  it('signs a checkpoint the way the spec lays it out, and opens it only with the given key', () => {
    const note = signCheckpoint(cp, signer);
    expect(
      note.startsWith(`gitgate.test/audit\n8\n${Buffer.from(ROOTS[8]!, 'hex').toString('base64')}\n\n\u2014 `),
    ).toBe(true);
    const opened = openCheckpoint(note, [signer.verifier], 'gitgate.test/audit');
    expect(opened.size).toBe(8);
    expect(opened.verifiedBy).toEqual(['gitgate.test/audit']);
    expect(() => openCheckpoint(note, [signer.verifier], 'another/log')).toThrow(/of log "gitgate.test\/audit"/);
    const other = noteSigner('gitgate.test/audit', generateKeyPairSync('ed25519').privateKey);
    expect(() => openCheckpoint(note, [other.verifier])).toThrow(/signed only by keys not given/);
  });

  it('refuses an edited body, a forged signature by a given key, and a note with no signature', () => {
    const note = signCheckpoint(cp, signer);
    expect(() => openNote(note.replace('\n8\n', '\n9\n'), [signer.verifier])).toThrow(/does not verify/);
    const sigLine = note.split('\n').at(-2)!;
    const b = Buffer.from(sigLine.split(' ').at(-1)!, 'base64');
    b[10] = b[10]! ^ 1;
    expect(() => openNote(note.replace(sigLine.split(' ').at(-1)!, b.toString('base64')), [signer.verifier])).toThrow(
      /does not verify/,
    );
    expect(() => openNote(checkpointText(cp), [signer.verifier])).toThrow(/blank line/);
    // A second signature by a key the verifier was not given is informational only.
    const other = noteSigner('someone.else', generateKeyPairSync('ed25519').privateKey);
    const cosigned = `${note}${signNote(checkpointText(cp), other).split('\n\n')[1]!}`;
    expect(openNote(cosigned, [signer.verifier]).unknown).toEqual([
      `someone.else+${other.verifier.id.toString('hex')}`,
    ]);
  });

  it('parses checkpoints strictly', () => {
    expect(parseCheckpoint(checkpointText(cp)).root.equals(cp.root)).toBe(true);
    expect(() => parseCheckpoint('o\n01\nAAAA\n')).toThrow(/tree size/);
    expect(() => parseCheckpoint('o\n1\nAAAA\n')).toThrow(/root hash/);
    expect(() => parseCheckpoint('o\n1\n')).toThrow(/origin, a tree size and a root/);
  });

  it('derives the same verifier from a private key given as a JWK', () => {
    const jwk = privateKey.export({ format: 'jwk' });
    const again = verifierOf('gitgate.test/audit', createPrivateKey({ key: jwk, format: 'jwk' }));
    expect(again.text).toBe(signer.verifier.text);
  });
});

describe('tlog formats (golden files)', () => {
  // A key that exists only for this test; Ed25519 signatures are deterministic, so the note is too.
  const key = createPrivateKey({
    key: JSON.parse(readFileSync(path.join(packageRoot, 'test/fixtures/audit-log-key.jwk'), 'utf8')) as never,
    format: 'jwk',
  });
  const signer = noteSigner('gitgate.test/audit', key);

  it('locks the verifier key, leaf hashes and the signed checkpoint note', () => {
    const f = new Frontier();
    for (const l of LEAVES) f.append(l);
    const text = [
      `verifier-key: ${signer.verifier.text}`,
      ...DATA.map((d, i) => `leaf ${i} ${d.toString('hex') || '(empty)'}: ${hex(LEAVES[i]!)}`),
      '',
      signCheckpoint({ origin: 'gitgate.test/audit', size: 8, root: f.root(), extensions: [] }, signer),
    ].join('\n');
    const golden = path.join(packageRoot, 'test/golden/tlog-checkpoint.txt');
    if (process.env.GITGATE_UPDATE_GOLDEN === '1') writeFileSync(golden, text);
    expect(text).toBe(readFileSync(golden, 'utf8'));
    const note = text.slice(text.indexOf('\n\n') + 2);
    expect(openCheckpoint(note, [parseVerifierKey(signer.verifier.text)]).root.toString('hex')).toBe(ROOTS[8]);
  });
});
