import { createHash } from 'node:crypto';
import type { LRUCache } from 'lru-cache';
import { boundedCache } from '../cache.js';
import { canonicalJson } from '../canonical-json.js';
import { assertListPage } from '../policy/filter-list.js';

interface Entry {
  readonly first: string;
  latest: string;
  outputSchema: unknown;
}

/** What a caller's session has been shown of each tool, to notice a tool that changes under it (rug pull). */
export class ToolCatalog {
  readonly #tools = new Map<string, Entry>();

  /** Record the tools of a tools/list result (before filtering). */
  observe(tools: unknown): void {
    if (!Array.isArray(tools)) return;
    assertListPage('tools/list', tools);
    for (const t of tools) {
      if (t === null || typeof t !== 'object' || typeof (t as { name?: unknown }).name !== 'string') continue;
      const tool = t as {
        name: string;
        description?: unknown;
        inputSchema?: unknown;
        outputSchema?: unknown;
        annotations?: unknown;
        title?: unknown;
      };
      const fp = createHash('sha256')
        .update(
          canonicalJson({
            d: tool.description ?? null,
            i: tool.inputSchema ?? null,
            o: tool.outputSchema ?? null,
            a: tool.annotations ?? null,
            t: tool.title ?? null,
          }),
        )
        .digest('base64url');
      const e = this.#tools.get(tool.name);
      if (e === undefined) this.#tools.set(tool.name, { first: fp, latest: fp, outputSchema: tool.outputSchema });
      else {
        e.latest = fp;
        e.outputSchema = tool.outputSchema;
      }
    }
  }

  /** Whether the tool's description or schemas differ from what this session first saw. */
  changed(name: string): boolean {
    const e = this.#tools.get(name);
    return e !== undefined && e.first !== e.latest;
  }

  outputSchema(name: string): unknown {
    return this.#tools.get(name)?.outputSchema;
  }
}

/** Catalogs per session (2025) or per caller and upstream (2026-07-28), bounded (least recently used goes). */
export class ToolCatalogs {
  readonly #map: LRUCache<string, ToolCatalog>;

  constructor(max = 10_000) {
    this.#map = boundedCache({ max, ttlMs: 0 });
  }

  get(key: string): ToolCatalog {
    let c = this.#map.get(key);
    if (c === undefined) {
      c = new ToolCatalog();
      this.#map.set(key, c);
    }
    return c;
  }

  delete(key: string): void {
    this.#map.delete(key);
  }
}
