import { closeSync, openSync, readSync, statSync } from 'node:fs';

const CHUNK = 65536;
const NL = 0x0a;

/**
 * The last non-empty line of a file, read backwards in chunks (files can be
 * large). Bytes are decoded only once the whole line is in hand: a multi-byte
 * character split across two chunks would otherwise decode to U+FFFD, and the
 * line's hash (the next record's `prev`) would be wrong.
 */
export function readLastLine(file: string): string | undefined {
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    return undefined;
  }
  if (size === 0) return undefined;
  const fd = openSync(file, 'r');
  try {
    const chunks: Buffer[] = [];
    let end = size;
    // Trailing newlines end the file, not the line.
    let lineEnd: number | undefined;
    while (end > 0) {
      const start = Math.max(0, end - CHUNK);
      const buf = Buffer.alloc(end - start);
      readSync(fd, buf, 0, buf.length, start);
      let i = buf.length - 1;
      if (lineEnd === undefined) {
        while (i >= 0 && buf[i] === NL) i--;
        if (i < 0) {
          end = start;
          continue;
        }
        lineEnd = start + i + 1;
      }
      const nl = buf.lastIndexOf(NL, i);
      if (nl >= 0) {
        chunks.unshift(buf.subarray(nl + 1, Math.min(buf.length, lineEnd - start)));
        return Buffer.concat(chunks).toString('utf8');
      }
      chunks.unshift(buf.subarray(0, Math.min(buf.length, lineEnd - start)));
      end = start;
    }
    return lineEnd === undefined ? undefined : Buffer.concat(chunks).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
