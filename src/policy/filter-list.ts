/** Which list results gitgate filters, and how each item maps to the request it stands for. */
const LISTS: Readonly<Record<string, { field: string; method: string; key: 'tool' | 'uri' | 'prompt'; from: string }>> = {
  'tools/list': { field: 'tools', method: 'tools/call', key: 'tool', from: 'name' },
  'resources/list': { field: 'resources', method: 'resources/read', key: 'uri', from: 'uri' },
  'resources/templates/list': { field: 'resourceTemplates', method: 'resources/read', key: 'uri', from: 'uriTemplate' },
  'prompts/list': { field: 'prompts', method: 'prompts/get', key: 'prompt', from: 'name' },
};

export interface ListItemQuestion {
  /** The request the item stands for: tools/call, resources/read or prompts/get. */
  readonly method: string;
  readonly key: 'tool' | 'uri' | 'prompt';
  readonly value: string;
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
  const kept = items.filter((item: unknown) => {
    const v = item !== null && typeof item === 'object' ? (item as Record<string, unknown>)[spec.from] : undefined;
    return typeof v === 'string' && mayUse({ method: spec.method, key: spec.key, value: v });
  });
  (result as Record<string, unknown>)[spec.field] = kept;
  return items.length - kept.length;
}
