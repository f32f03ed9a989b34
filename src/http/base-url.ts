import type { FastifyRequest } from 'fastify';
import type { GatewayConfig } from '../config/types.js';

/** The gateway's base URL as clients see it: config `server.publicUrl`, else the request's Host. */
export function baseUrlOf(config: GatewayConfig, req: FastifyRequest): string {
  if (config.server.publicUrl !== undefined) return config.server.publicUrl.replace(/\/+$/, '');
  return `${req.protocol}://${req.host}`;
}
