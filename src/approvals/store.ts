import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../atomic-file.js';
import type { ApprovalRecord } from './types.js';

/** Where approvals persist (files under the data dir; in-memory in unit tests). */
export interface ApprovalStore {
  all(): ApprovalRecord[];
  get(id: string): ApprovalRecord | undefined;
  /** Durable before it returns (or its promise resolves). */
  put(a: ApprovalRecord): void | Promise<void>;
  /**
   * A shared store (several replicas, src/store/approvals.ts) also has these. create: insert a new approval, false
   * when another replica made this call's approval of that generation first. claim: approved → executed in one
   * atomic step, true for exactly one claimant. sync/syncRef/syncLive: read the newest state before deciding.
   * onChange: another replica changed an approval.
   */
  create?(a: ApprovalRecord): Promise<boolean>;
  claim?(a: ApprovalRecord): Promise<boolean>;
  sync?(callHash: string): Promise<void>;
  syncRef?(ref: string): Promise<void>;
  syncLive?(): Promise<void>;
  onChange?(f: (id: string) => void): void;
}

/** <dataDir>/approvals/<id>.json, each written atomically and durably (src/atomic-file.ts). */
export class FileApprovalStore implements ApprovalStore {
  readonly #cache = new Map<string, ApprovalRecord>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const f of readdirSync(dir)) {
      if (!f.endsWith('.json')) continue;
      try {
        const a = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as ApprovalRecord;
        this.#cache.set(a.id, a);
      } catch {
        // a torn temp file from a crash is ignored; the renamed files are whole
      }
    }
  }

  all(): ApprovalRecord[] {
    return [...this.#cache.values()];
  }

  get(id: string): ApprovalRecord | undefined {
    return this.#cache.get(id);
  }

  put(a: ApprovalRecord): void {
    writeFileAtomicSync(path.join(this.dir, `${a.id}.json`), JSON.stringify(a, null, 2), { mode: 0o600 });
    this.#cache.set(a.id, a);
  }
}
