import { closeSync, openSync, readSync, statSync } from 'node:fs';

/** The last non-empty line of a file, read backwards in chunks (files can be large). */
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
    let end = size;
    let text = '';
    while (end > 0) {
      const start = Math.max(0, end - 65536);
      const buf = Buffer.alloc(end - start);
      readSync(fd, buf, 0, buf.length, start);
      text = buf.toString('utf8') + text;
      const trimmed = text.replace(/\n+$/, '');
      const nl = trimmed.lastIndexOf('\n');
      if (nl >= 0) return trimmed.slice(nl + 1);
      if (start === 0) return trimmed === '' ? undefined : trimmed;
      end = start;
    }
    return undefined;
  } finally {
    closeSync(fd);
  }
}
