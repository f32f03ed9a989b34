import { isUtf8 } from 'node:buffer';

/** Strict standard base64 (padding required, nothing else allowed); undefined when not. */
export function decodeBase64Strict(s: string): Buffer | undefined {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(s)) return undefined;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : undefined;
}

/**
 * The text a base64 string (standard or URL alphabet, padded or not, line-wrapped or not) encodes,
 * when it is UTF-8 text with no NUL; undefined for anything else (binary, or not base64). Linear in
 * the string.
 */
export function decodeBase64Text(s: string): string | undefined {
  let data = 0;
  let pad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x0a || c === 0x0d || c === 0x20) continue;
    if (c === 0x3d) {
      pad++;
      continue;
    }
    const b64 =
      (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2b || c === 0x2f;
    const url = c === 0x2d || c === 0x5f;
    // Padding only at the end, and no data after it.
    if (!(b64 || url) || pad > 0) return undefined;
    data++;
  }
  if (data === 0 || pad > 2 || data % 4 === 1) return undefined;
  const bytes = Buffer.from(s, s.includes('-') || s.includes('_') ? 'base64url' : 'base64');
  if (!isUtf8(bytes) || bytes.includes(0)) return undefined;
  return bytes.toString('utf8');
}
