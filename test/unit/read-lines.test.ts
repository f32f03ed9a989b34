import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readLines } from '../../src/impact/replay.js';

describe('readLines (impact replay reads audit files in chunks)', () => {
  it('splits lines exactly, across chunk boundaries and inside multi-byte characters', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'gitgate-lines-'));
    // The first line ends 1 byte before the 1 MiB chunk edge, so the "é" (2 bytes) and the
    // "✓" (3 bytes) of the next lines straddle it in every alignment that matters.
    const lines = ['a'.repeat((1 << 20) - 2), 'é✓é', 'x'.repeat(70_000) + '✓', '', 'last'];
    const file = path.join(dir, 'f.jsonl');
    writeFileSync(file, lines.join('\n'));
    expect([...readLines(file)]).toEqual(lines);
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect([...readLines(file)]).toEqual(lines);
    for (const shift of [1, 2, 3]) {
      const shifted = ['b'.repeat((1 << 20) - shift), '✓✓', 'end'];
      writeFileSync(file, shifted.join('\n'));
      expect([...readLines(file)]).toEqual(shifted);
    }
  });
});
