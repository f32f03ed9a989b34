import type { WalEntry, WriteAheadLog } from '../../src/audit/wal.js';

/** A WAL that can be made to fail like a full disk. */
export class FlakyWal implements WriteAheadLog {
  failing = false;
  constructor(private readonly inner: WriteAheadLog) {}
  async append(entries: readonly WalEntry[]) {
    if (this.failing) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    await this.inner.append(entries);
  }
  roll() {
    return this.inner.roll();
  }
  close() {
    return this.inner.close();
  }
}
