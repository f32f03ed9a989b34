import { walFiles } from '../../src/audit/wal.js';

/** What is durable in a WAL directory right now, read from disk the way recovery reads it. */
export function durableWalRecords<R = Record<string, unknown>>(walDir: string): R[] {
  return walFiles(walDir)
    .recover()
    .entries.map((e) => JSON.parse(e.line) as R);
}
