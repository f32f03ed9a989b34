/**
 * Character classes for the detectors' scanners: one ASCII table of bits, so a
 * class is a mask and every test is the same small function (the scanners' hot
 * loops stay monomorphic). A code unit outside ASCII is in no class; `\s` is
 * JavaScript's, Unicode spaces included.
 */

/** What a scanner finds: the code units [start, end) of the text. */
export interface Span {
  readonly start: number;
  readonly end: number;
}

export const DIGIT = 1;
export const UPPER = 2;
export const LOWER = 4;
export const UNDERSCORE = 8;
export const DOT = 16;
export const DASH = 32;
export const PLUS = 64;
export const SLASH = 128;
export const PERCENT = 256;
export const SPACE = 512;
export const TILDE = 1024;
export const URL_QUOTE = 2048; // " ' < >
export const OPEN_PAREN = 4096;
export const LETTER = UPPER | LOWER;
export const ALNUM = DIGIT | LETTER;
/** `\w` without the u flag. */
export const WORD = ALNUM | UNDERSCORE;

const CLS = new Uint16Array(128);
const mark = (bit: number, chars: string) => {
  for (let i = 0; i < chars.length; i++) CLS[chars.charCodeAt(i)]! |= bit;
};
for (let c = 48; c <= 57; c++) CLS[c]! |= DIGIT;
for (let c = 65; c <= 90; c++) CLS[c]! |= UPPER;
for (let c = 97; c <= 122; c++) CLS[c]! |= LOWER;
mark(UNDERSCORE, '_');
mark(DOT, '.');
mark(DASH, '-');
mark(PLUS, '+');
mark(SLASH, '/');
mark(PERCENT, '%');
mark(SPACE, ' ');
mark(TILDE, '~');
mark(URL_QUOTE, '"\'<>');
mark(OPEN_PAREN, '(');

/** Whether code unit `c` is in the class `mask`. */
export function is(c: number, mask: number): boolean {
  return c < 128 && (CLS[c]! & mask) !== 0;
}

/** Whether t[i] exists and is in `mask`. */
export function at(t: string, i: number, mask: number): boolean {
  return i >= 0 && i < t.length && is(t.charCodeAt(i), mask);
}

/** The end of the run of `mask` characters starting at `i` (at most `max` long). */
export function runEnd(t: string, i: number, mask: number, max = t.length): number {
  const stop = Math.min(t.length, i + max);
  let j = i;
  while (j < stop && is(t.charCodeAt(j), mask)) j++;
  return j;
}

/** Whether `n` characters of `mask` start at `i`. */
export function runOf(t: string, i: number, n: number, mask: number): boolean {
  return i >= 0 && i + n <= t.length && runEnd(t, i, mask, n) === i + n;
}

/** JavaScript's `\s`: WhiteSpace and LineTerminator. */
export function isJsSpace(c: number): boolean {
  if (c <= 32) return c === 32 || (c >= 9 && c <= 13);
  if (c < 160) return false;
  return (
    c === 160 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** The end of the run of `\s` characters starting at `i`. */
export function spaceEnd(t: string, i: number): number {
  let j = i;
  while (j < t.length && isJsSpace(t.charCodeAt(j))) j++;
  return j;
}

/** `\b` between t[i-1] and t[i]. */
export function wordBoundary(t: string, i: number): boolean {
  return at(t, i - 1, WORD) !== at(t, i, WORD);
}

/**
 * Try `matchAt` at every position whose character is in `first` and whose
 * predecessor is not in `notAfter` (the patterns' leading lookbehind or \b), left
 * to right; a match (end, or -1) resumes the scan at its end, accepted or not.
 */
export function scanStarts(
  t: string,
  first: number,
  notAfter: number,
  matchAt: (t: string, i: number) => number,
  accept?: (start: number, end: number) => boolean,
): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  let prev = 0x10000;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    const before = prev;
    prev = c;
    if (!is(c, first) || (before < 128 && (CLS[before]! & notAfter) !== 0)) continue;
    const end = matchAt(t, i);
    if (end < 0) continue;
    if (accept === undefined || accept(i, end)) out.push({ start: i, end });
    i = end - 1;
    prev = t.charCodeAt(i);
  }
  return out;
}
