/**
 * A message with the credentials of every URL in it replaced (`scheme://user:secret@host` →
 * `scheme://[redacted]@host`): for errors and warnings that quote a URL an operator configured
 * (a database URL, a git remote), which may carry a password or token.
 */
export function redactUrlCredentials(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]{0,31}:\/\/)[^\s/@'"]+@/gi, '$1[redacted]@');
}
