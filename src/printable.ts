/**
 * Control characters (line breaks, escape sequences) and the bidi controls that reorder text, as
 * \u escapes: a string from a caller or an upstream shown on a terminal or in a review cannot
 * erase, recolour, reorder or add lines around it.
 */
export function printable(s: string): string {
  return s.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
    /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
