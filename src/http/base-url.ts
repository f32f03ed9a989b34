import { isIPv6 } from 'node:net';
import type { FastifyRequest } from 'fastify';
import type { GatewayConfig } from '../config/types.js';

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
/** host[:port]: a DNS name or IPv4 address, or a bracketed IPv6 address; the port 1–5 digits. */
const HOST_PORT = new RegExp(`^(?:(${LABEL}(?:\\.${LABEL})*)|\\[([0-9A-Fa-f:.]+)\\])(?::([0-9]{1,5}))?$`);

/** A Host header value that is exactly host[:port] (RFC 9110 §7.2), or undefined. */
export function validHost(value: string | undefined): string | undefined {
  if (value === undefined || value.length > 255) return undefined;
  const m = HOST_PORT.exec(value);
  if (m === null) return undefined;
  if (m[2] !== undefined && !isIPv6(m[2])) return undefined;
  if (m[3] !== undefined && (Number(m[3]) < 1 || Number(m[3]) > 65535)) return undefined;
  return value.toLowerCase();
}

function formatHost(host: string): string {
  const h = host.startsWith('::ffff:') && !host.slice(7).includes(':') ? host.slice(7) : host;
  return h.includes(':') ? `[${h}]` : h;
}

/** A host name that can only mean this machine. */
function isLoopbackHost(hostPort: string): boolean {
  const host = hostPort.startsWith('[') ? hostPort.slice(1, hostPort.indexOf(']')) : hostPort.replace(/:\d+$/, '');
  return host === 'localhost' || host.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(host) || host === '::1';
}

/**
 * The gateway's base URL as clients see it: config `server.publicUrl`; else
 * the request's Host header when it is a well-formed host[:port] that names
 * this gateway (a loopback name, or the configured listen host), so a forged
 * Host cannot put another origin into challenges and metadata that a shared
 * cache may keep; else the
 * address the request arrived on (the configured listen host, or the local
 * address of the connection when listening on all interfaces). Never anything
 * else from the request: this URL is written into headers and documents.
 */
export function baseUrlOf(config: GatewayConfig, req: FastifyRequest): string {
  if (config.server.publicUrl !== undefined) return config.server.publicUrl.replace(/\/+$/, '');
  const scheme = req.protocol === 'https' ? 'https' : 'http';
  const listen = config.server.host;
  const host = validHost(req.headers.host);
  if (host !== undefined && (isLoopbackHost(host) || host.replace(/:\d+$/, '') === listen.toLowerCase()))
    return `${scheme}://${host}`;
  const wildcard = listen === '0.0.0.0' || listen === '::' || listen === '';
  const address = wildcard ? (req.socket.localAddress ?? '127.0.0.1') : listen;
  return `${scheme}://${formatHost(address)}:${req.socket.localPort ?? config.server.port}`;
}
