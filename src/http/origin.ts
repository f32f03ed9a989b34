import type { GatewayConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import { type Headers, header } from '../mcp/protocol.js';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Step: browsers send Origin; only loopback and configured origins may call (DNS-rebinding defence). */
export function checkOrigin(config: GatewayConfig, headers: Headers): void {
  const origin = header(headers, 'origin');
  if (origin === undefined) return;
  if (config.server.allowedOrigins.includes(origin)) return;
  try {
    if (LOOPBACK.has(new URL(origin).hostname)) return;
  } catch {
    // falls through to the refusal
  }
  throw new GatewayError('ORIGIN_FORBIDDEN', `Forbidden: origin ${origin} is not allowed`);
}
