import { GatewayError } from '../errors.js';

/** Which list results gitgate filters, and how each item maps to the request it stands for. */
const LISTS: Readonly<Record<string, { field: string; method: string; key: 'tool' | 'uri' | 'prompt'; from: string }>> =
  {
    'tools/list': { field: 'tools', method: 'tools/call', key: 'tool', from: 'name' },
    'resources/list': { field: 'resources', method: 'resources/read', key: 'uri', from: 'uri' },
    'resources/templates/list': {
      field: 'resourceTemplates',
      method: 'resources/read',
      key: 'uri',
      from: 'uriTemplate',
    },
    'prompts/list': { field: 'prompts', method: 'prompts/get', key: 'prompt', from: 'name' },
  };

export interface ListItemQuestion {
  /** The request the item stands for: tools/call, resources/read or prompts/get. */
  readonly method: string;
  readonly key: 'tool' | 'uri' | 'prompt';
  readonly value: string;
}

/**
 * The most items gitgate takes from one page of a list result. Each item is one
 * policy decision (about 20 µs) and, for tools, one fingerprint: a page of a
 * million tiny items from an upstream would hold the event loop for seconds.
 * MCP lists paginate (nextCursor); a longer page is refused.
 */
export const MAX_LIST_ITEMS = 10_000;

/** UPSTREAM_TOO_LARGE for a page of a list result longer than MAX_LIST_ITEMS. */
export function assertListPage(method: string, items: readonly unknown[]): void {
  if (items.length > MAX_LIST_ITEMS) {
    throw new GatewayError(
      'UPSTREAM_TOO_LARGE',
      `the upstream's ${method} result lists ${items.length} items in one page; gitgate takes at most ${MAX_LIST_ITEMS} (it should paginate)`,
    );
  }
}

export function isFilteredList(method: string): boolean {
  return Object.hasOwn(LISTS, method);
}

/**
 * Keep only the items the caller may use: `mayUse` asks the policy about each.
 * Pagination (nextCursor) is left as the upstream sent it. Returns how many were hidden.
 */
export function filterList(method: string, result: unknown, mayUse: (q: ListItemQuestion) => boolean): number {
  const spec = LISTS[method];
  if (spec === undefined || result === null || typeof result !== 'object') return 0;
  const items = (result as Record<string, unknown>)[spec.field];
  if (!Array.isArray(items)) return 0;
  assertListPage(method, items);
  const kept = items.filter((item: unknown) => {
    const v = item !== null && typeof item === 'object' ? (item as Record<string, unknown>)[spec.from] : undefined;
    return typeof v === 'string' && mayUse({ method: spec.method, key: spec.key, value: v });
  });
  (result as Record<string, unknown>)[spec.field] = kept;
  return items.length - kept.length;
}
