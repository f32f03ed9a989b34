/**
 * A small JSONPath subset for mask rules, compiled once:
 *   $            the message
 *   .key ['key'] a member
 *   [n]          an array element
 *   [*] .*       every element or member
 *   ..key ..*    recursive descent
 */

export type Segment =
  | { readonly kind: 'member'; readonly name: string }
  | { readonly kind: 'index'; readonly index: number }
  | { readonly kind: 'wildcard' }
  | { readonly kind: 'descend'; readonly name: string | undefined };

export class MaskPathError extends Error {
  override readonly name = 'MaskPathError';
}

export function compilePath(path: string): readonly Segment[] {
  if (!path.startsWith('$')) throw new MaskPathError(`mask path must start with $: ${path}`);
  const segs: Segment[] = [];
  let i = 1;
  const ident = /^[A-Za-z_$][\w$-]*/;
  while (i < path.length) {
    const rest = path.slice(i);
    if (rest.startsWith('..')) {
      const after = rest.slice(2);
      if (after.startsWith('*')) {
        segs.push({ kind: 'descend', name: undefined });
        i += 3;
        continue;
      }
      const m = ident.exec(after);
      if (!m) throw new MaskPathError(`mask path ${path}: expected a name after .. at ${i}`);
      segs.push({ kind: 'descend', name: m[0] });
      i += 2 + m[0].length;
    } else if (rest.startsWith('.*')) {
      segs.push({ kind: 'wildcard' });
      i += 2;
    } else if (rest.startsWith('.')) {
      const m = ident.exec(rest.slice(1));
      if (!m) throw new MaskPathError(`mask path ${path}: expected a name after . at ${i}`);
      segs.push({ kind: 'member', name: m[0] });
      i += 1 + m[0].length;
    } else if (rest.startsWith('[*]')) {
      segs.push({ kind: 'wildcard' });
      i += 3;
    } else {
      const idx = /^\[(\d+)\]/.exec(rest);
      const quoted = /^\[(['"])((?:(?!\1)[^\\]|\\.)*)\1\]/.exec(rest);
      if (idx) {
        segs.push({ kind: 'index', index: Number(idx[1]) });
        i += idx[0].length;
      } else if (quoted) {
        segs.push({ kind: 'member', name: quoted[2]!.replace(/\\(.)/g, '$1') });
        i += quoted[0].length;
      } else throw new MaskPathError(`mask path ${path}: cannot parse at "${rest.slice(0, 12)}"`);
    }
  }
  return segs;
}

type Container = Record<string, unknown> | unknown[];
const isContainer = (v: unknown): v is Container => v !== null && typeof v === 'object';

/** Every (parent, key) the path selects in `root`; the caller reads or replaces parent[key]. */
export function select(root: unknown, segs: readonly Segment[]): { parent: Container; key: string | number }[] {
  let current: { parent: Container; key: string | number }[] = [{ parent: { $: root }, key: '$' }];
  const selected = (r: { parent: Container; key: string | number }) =>
    (r.parent as Record<string | number, unknown>)[r.key];
  const children = (v: unknown): { parent: Container; key: string | number }[] =>
    Array.isArray(v)
      ? v.map((_, k) => ({ parent: v, key: k }))
      : isContainer(v)
        ? Object.keys(v).map((k) => ({ parent: v, key: k }))
        : [];
  for (const seg of segs) {
    const next: { parent: Container; key: string | number }[] = [];
    for (const r of current) {
      const v = selected(r);
      switch (seg.kind) {
        case 'member':
          if (isContainer(v) && !Array.isArray(v) && Object.hasOwn(v, seg.name))
            next.push({ parent: v, key: seg.name });
          break;
        case 'index':
          if (Array.isArray(v) && seg.index < v.length) next.push({ parent: v, key: seg.index });
          break;
        case 'wildcard':
          next.push(...children(v));
          break;
        case 'descend': {
          const stack = [v];
          while (stack.length > 0) {
            const node = stack.pop();
            for (const c of children(node)) {
              if (seg.name === undefined || c.key === seg.name) next.push(c);
              stack.push((c.parent as Record<string | number, unknown>)[c.key]);
            }
          }
          break;
        }
      }
    }
    current = next;
  }
  return current;
}
