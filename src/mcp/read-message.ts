import { GatewayError } from '../errors.js';
import { type JsonRpcMessage, parseMessage } from './jsonrpc.js';
import { classifyProtocol, type Headers, header, type ProtocolContext } from './protocol.js';

export interface IncomingMessage {
  readonly message: JsonRpcMessage;
  readonly protocol: ProtocolContext;
}

function accepts(headers: Headers, ...types: string[]): boolean {
  const accept = (header(headers, 'accept') ?? '').toLowerCase();
  if (accept.includes('*/*')) return true;
  return types.every((t) => accept.includes(t));
}

export function requireAccept(headers: Headers, ...types: string[]): void {
  if (!accepts(headers, ...types)) {
    throw new GatewayError('NOT_ACCEPTABLE', `Not Acceptable: the Accept header must list ${types.join(' and ')}`);
  }
}

/** Step: a POST body → one validated JSON-RPC message and the protocol era it speaks. */
export function readMessage(headers: Headers, body: Buffer | undefined): IncomingMessage {
  const ct = (header(headers, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct !== 'application/json') {
    throw new GatewayError(
      'UNSUPPORTED_MEDIA_TYPE',
      `Unsupported Media Type: Content-Type must be application/json${ct ? `, got ${ct}` : ''}`,
    );
  }
  requireAccept(headers, 'application/json', 'text/event-stream');
  if (body === undefined || body.length === 0) throw new GatewayError('PARSE_ERROR', 'Parse error: empty body');
  const message = parseMessage(body);
  return { message, protocol: classifyProtocol(headers, message) };
}
