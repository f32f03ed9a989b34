import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import addFormatsImport from 'ajv-formats';
import { RE2JS } from 're2js';
import { boundedCache } from '../cache.js';

const addFormats = addFormatsImport as unknown as <T>(ajv: T) => T;

/**
 * Output schemas come from the upstream: their `pattern`s run on RE2 (linear time),
 * never on the backtracking engine, so `^(a+)+$` cannot stall the event loop. A
 * pattern RE2 cannot compile (lookaround, backreference) makes the schema
 * uncompilable, and an uncompilable schema is not enforced.
 */
const re2: RegExpEngine = Object.assign(
  (pattern: string) => {
    const test = re2Test(pattern);
    // ajv keys compiled patterns by their toString().
    return { test, toString: () => `/${pattern}/` };
  },
  { code: 're2js' },
);

/**
 * A pattern as RE2 tests. RE2 has no lookahead, but the common form, lookaheads
 * right after the leading `^` (`^(?!\.)(?!.*\.\.)…`, as schema generators write
 * e-mail patterns), is exactly a set of anchored tests of their own.
 */
function re2Test(pattern: string): (s: string) => boolean {
  const ahead: { negative: boolean; re: RE2JS }[] = [];
  let rest = pattern;
  if (pattern.startsWith('^')) {
    let i = 1;
    while (pattern.startsWith('(?!', i) || pattern.startsWith('(?=', i)) {
      const end = groupEnd(pattern, i);
      if (end < 0) break;
      ahead.push({ negative: pattern[i + 2] === '!', re: RE2JS.compile(`^(?:${pattern.slice(i + 3, end)})`) });
      i = end + 1;
    }
    if (ahead.length > 0) rest = `^${pattern.slice(i)}`;
  }
  const main = RE2JS.compile(rest);
  return (s) => ahead.every((a) => a.re.test(s) !== a.negative) && main.test(s);
}

/** The index of the `)` closing the group that opens at `start` (escapes and classes skipped), or -1. */
function groupEnd(p: string, start: number): number {
  let depth = 0;
  let inClass = false;
  for (let i = start; i < p.length; i++) {
    const c = p[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')' && --depth === 0) return i;
  }
  return -1;
}

/**
 * One Ajv per output schema, dropped with its cache entry: a shared instance keeps every
 * schema it ever compiled (its own cache, keyed by object) and refuses a second schema
 * with an `$id` it has seen, so two upstreams' `$id: "result"` would leave one unenforced.
 * No meta-schemas: the instance is small, and an upstream `$id` cannot shadow one.
 * Tool output schemas come in both dialects (SDKs built on zod emit draft-07).
 */
function engineFor(schema: unknown): Ajv | Ajv2020 {
  const opts = { strict: false, allErrors: false, meta: false, validateSchema: false, code: { regExp: re2 } };
  const dialect = (schema as { $schema?: unknown } | null)?.$schema;
  return typeof dialect === 'string' && /draft-0[4-7]/.test(dialect)
    ? addFormats(new Ajv(opts))
    : addFormats(new Ajv2020(opts));
}

/** No placeholder is built longer than this (an upstream schema may ask for minItems: 2^32 - 1). */
const MAX_PLACEHOLDER_SIZE = 1024;
const sizeOf = (v: unknown) => Math.min(Math.max(0, Number(v ?? 0) || 0), MAX_PLACEHOLDER_SIZE);
/** Compiled output schemas by their JSON text: bounded, least recently used out first. */
const compiled = boundedCache<string, { readonly validate: ValidateFunction | null }>({
  max: 256,
  ttlMs: 3_600_000,
});

function validatorFor(schema: unknown): ValidateFunction | null {
  const key = JSON.stringify(schema);
  const hit = compiled.get(key);
  if (hit !== undefined) return hit.validate;
  let validate: ValidateFunction | null;
  try {
    validate = engineFor(schema).compile(schema as object);
  } catch {
    validate = null; // an output schema gitgate cannot compile is not enforced here
  }
  compiled.set(key, { validate });
  return validate;
}

const FORMAT_PLACEHOLDERS: Readonly<Record<string, string>> = {
  email: 'redacted@redacted.invalid',
  uri: 'https://redacted.invalid/',
  url: 'https://redacted.invalid/',
  'date-time': '1970-01-01T00:00:00Z',
  date: '1970-01-01',
  time: '00:00:00Z',
  uuid: '00000000-0000-0000-0000-000000000000',
  ipv4: '0.0.0.0',
  ipv6: '::',
  hostname: 'redacted.invalid',
};

/**
 * The smallest value a JSON Schema accepts, built from its types, formats, enums and
 * required members; sizes are capped (MAX_PLACEHOLDER_SIZE), so a schema asking for
 * more gets a placeholder that fails it, and the structured content is dropped.
 */
export function placeholderFor(schema: unknown): unknown {
  if (schema === null || typeof schema !== 'object') return null;
  const s = schema as Record<string, unknown>;
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0];
  for (const k of ['anyOf', 'oneOf'] as const)
    if (Array.isArray(s[k]) && s[k].length > 0) return placeholderFor(s[k][0]);
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  switch (type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const k of (s.required ?? []) as string[]) out[k] = placeholderFor(props[k]);
      return out;
    }
    case 'array':
      return Array.from({ length: sizeOf(s.minItems) }, () => placeholderFor(s.items));
    case 'string': {
      const f = typeof s.format === 'string' ? FORMAT_PLACEHOLDERS[s.format] : undefined;
      if (f !== undefined) return f;
      return 'redacted'.padEnd(sizeOf(s.minLength), '*');
    }
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number'
        ? s.minimum
        : typeof s.exclusiveMinimum === 'number'
          ? s.exclusiveMinimum + 1
          : 0;
    case 'boolean':
      return false;
    case 'null':
      return null;
    default:
      return {};
  }
}

/**
 * After masking a tools/call result: if structuredContent no longer validates
 * against the tool's output schema, replace it with a typed placeholder and say
 * so in the text content. Returns whether it replaced anything.
 */
export function fitStructuredContent(result: Record<string, unknown>, outputSchema: unknown): boolean {
  if (result.structuredContent === undefined || outputSchema === undefined) return false;
  const validate = validatorFor(outputSchema);
  if (validate === null || validate(result.structuredContent)) return false;
  const placeholder = placeholderFor(outputSchema);
  if (validate(placeholder)) result.structuredContent = placeholder;
  else delete result.structuredContent;
  const note = {
    type: 'text',
    text: '[gitgate] structuredContent was masked by policy; the masked value no longer matched the tool output schema, so a placeholder replaces it.',
  };
  result.content = [...(Array.isArray(result.content) ? result.content : []), note];
  return true;
}
