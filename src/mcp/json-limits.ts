/**
 * Bounds on JSON from the network, checked in one linear pass over the text
 * before anything parses or walks it. Everything downstream of a parse (the
 * policy input's JSON.stringify, structuredClone, canonical JSON, mask walks,
 * Ajv) recurses once per nesting level, so depth is capped here, where it is
 * cheap, and a message that passes never reaches them deeper than the cap plus
 * the few levels gitgate wraps around it (policy input, audit record).
 */

/**
 * The deepest nesting of objects and arrays a client message may have (`{}` at
 * the top is depth 1). MCP messages need a handful of levels; tool arguments
 * rarely a dozen. Far below what any recursive walk over a message can take.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * The most values (objects, arrays, and members or elements) a client message may hold. Each one
 * costs the request path a few µs in every walk (policy input, masking, the credential scan,
 * canonical JSON, the audit record): bounded here, one message costs the event loop at most about
 * a tenth of a second whatever its size. Tool arguments of tens of thousands of values belong in a
 * resource, not a call.
 */
export const MAX_JSON_VALUES = 20_000;

export interface JsonLimits {
  /** Deepest nesting of objects and arrays allowed. */
  readonly maxDepth: number;
  /** Most values (containers, and the members and elements after the first of each) allowed; default no limit. */
  readonly maxValues?: number;
  /** Refuse an object that names a key twice (I-JSON, RFC 7493 §2.3): parsers disagree on which one wins. */
  readonly rejectDuplicateKeys?: boolean;
  /** Keys refused anywhere (e.g. `__proto__`, which JavaScript merges treat as the prototype). */
  readonly forbiddenKeys?: readonly string[];
}

export type JsonLimitProblem =
  | { readonly kind: 'utf8'; readonly message: string }
  | { readonly kind: 'depth'; readonly message: string; readonly offset: number }
  | { readonly kind: 'values'; readonly message: string; readonly offset: number }
  | { readonly kind: 'number'; readonly message: string; readonly offset: number }
  | { readonly kind: 'duplicate-key'; readonly message: string; readonly offset: number; readonly key: string }
  | { readonly kind: 'forbidden-key'; readonly message: string; readonly offset: number; readonly key: string };

const OPEN_OBJECT = 0x7b; // {
const OPEN_ARRAY = 0x5b; // [
const CLOSE_OBJECT = 0x7d; // }
const CLOSE_ARRAY = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \
const COMMA = 0x2c; // ,
const MINUS = 0x2d; // -
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/**
 * The first way `text` breaks the limits, or undefined. One pass, no
 * recursion, memory proportional to the open containers (plus their keys when
 * duplicates are refused). It does not validate JSON syntax: run JSON.parse
 * after it; on malformed text it may report a problem JSON.parse would also
 * have refused.
 */
export function checkJsonText(text: string, limits: JsonLimits): JsonLimitProblem | undefined {
  const forbidden = new Set(limits.forbiddenKeys ?? []);
  const dedupe = limits.rejectDuplicateKeys === true;
  const wantKeys = dedupe || forbidden.size > 0;
  // Per open container: whether it is an object, and (objects, when duplicates are refused) the keys seen.
  const isObject: boolean[] = [];
  const seen: (Set<string> | undefined)[] = [];
  // In an object, the next string is a key after `{` and after `,`.
  let expectKey = false;
  const maxValues = limits.maxValues ?? Number.POSITIVE_INFINITY;
  let values = 0;
  const tooMany = (offset: number): JsonLimitProblem => ({
    kind: 'values',
    offset,
    message: `JSON holds more than ${maxValues} values (at offset ${offset})`,
  });
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      // Skip to the closing quote: the next `"` not escaped by an odd run of backslashes.
      const start = i;
      let end = text.indexOf('"', i + 1);
      while (end > 0) {
        let k = end - 1;
        while (text.charCodeAt(k) === BACKSLASH) k--;
        if ((end - 1 - k) % 2 === 0) break;
        end = text.indexOf('"', end + 1);
      }
      if (end < 0) return undefined; // unterminated: JSON.parse reports it
      i = end;
      if (expectKey && wantKeys) {
        let key = text.slice(start + 1, end);
        if (key.includes('\\')) {
          try {
            key = JSON.parse(text.slice(start, end + 1)) as string;
          } catch {
            return undefined; // malformed: JSON.parse reports it
          }
        }
        if (forbidden.has(key))
          return {
            kind: 'forbidden-key',
            key,
            offset: start,
            message: `key ${shown(key)} is not accepted (at offset ${start})`,
          };
        const keys = seen[seen.length - 1];
        if (keys !== undefined) {
          if (keys.has(key))
            return {
              kind: 'duplicate-key',
              key,
              offset: start,
              message: `duplicate key ${shown(key)} in one object (at offset ${start})`,
            };
          keys.add(key);
        }
      }
      expectKey = false;
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (isObject.length >= limits.maxDepth)
        return {
          kind: 'depth',
          offset: i,
          message: `JSON nested deeper than ${limits.maxDepth} levels (at offset ${i})`,
        };
      if (++values > maxValues) return tooMany(i);
      const obj = c === OPEN_OBJECT;
      isObject.push(obj);
      seen.push(obj && dedupe ? new Set<string>() : undefined);
      expectKey = obj;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      isObject.pop();
      seen.pop();
      expectKey = false;
    } else if (c === COMMA) {
      if (++values > maxValues) return tooMany(i);
      expectKey = isObject[isObject.length - 1] === true;
    } else if (c === MINUS || (c >= DIGIT_0 && c <= DIGIT_9)) {
      // A number: one JSON.parse would make Infinity (1e400, or 400 digits) is refused; canonical JSON,
      // the credential's hash and the policy could not agree on what it is.
      let end = i + 1;
      let plain = true;
      for (; end < n; end++) {
        const d = text.charCodeAt(end);
        if (d >= DIGIT_0 && d <= DIGIT_9) continue;
        if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === MINUS) plain = false;
        else break;
      }
      if ((!plain || end - i > 15) && Math.abs(Number(text.slice(i, end))) === Number.POSITIVE_INFINITY)
        return {
          kind: 'number',
          offset: i,
          message: `a number beyond what a double holds (at offset ${i})`,
        };
      i = end - 1;
    }
  }
  return undefined;
}

function shown(key: string): string {
  return JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key);
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Bytes → text, refusing anything that is not well-formed UTF-8 (nothing is silently replaced by U+FFFD). */
export function decodeUtf8(bytes: Uint8Array): string | JsonLimitProblem {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return { kind: 'utf8', message: 'body is not valid UTF-8' };
  }
}

export class JsonLimitError extends Error {
  override readonly name = 'JsonLimitError';
  constructor(readonly problem: JsonLimitProblem) {
    super(problem.message);
  }
}

/**
 * Decode (strict UTF-8), check the limits, then JSON.parse. Throws
 * JsonLimitError for a broken limit and SyntaxError for malformed JSON.
 */
export function parseJsonWithin(body: Uint8Array | string, limits: JsonLimits): unknown {
  const text = typeof body === 'string' ? body : decodeUtf8(body);
  if (typeof text !== 'string') throw new JsonLimitError(text);
  const problem = checkJsonText(text, limits);
  if (problem !== undefined) throw new JsonLimitError(problem);
  return JSON.parse(text) as unknown;
}
