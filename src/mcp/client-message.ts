import { GatewayError } from '../errors.js';
import type { Route } from './bind-session.js';
import { isResponse, type JsonRpcNotification, type JsonRpcResponse } from './jsonrpc.js';

/** A client notification or response that makes sense where it was sent, and what the policy is asked about it. */
export interface ClientMessage {
  readonly kind: 'notification' | 'response';
  /** The notification's method; for a response, the method of the upstream request it answers. */
  readonly method: string;
}

type Check = (
  params: Record<string, unknown> | undefined,
  route: Extract<Route, { kind: 'session' }>,
) => string | undefined;

/** The protocol's client notifications on a session, each with when it makes sense. */
const SESSION_NOTIFICATIONS: Readonly<Record<string, Check>> = {
  'notifications/initialized': () => undefined,
  'notifications/roots/list_changed': () => undefined,
  'notifications/cancelled': (p, r) =>
    r.session.inFlight.hasRequest(p?.requestId) ? undefined : 'names no request of yours in flight on this session',
  'notifications/progress': (p, r) =>
    r.session.inFlight.hasProgressToken(p?.progressToken)
      ? undefined
      : 'carries the progress token of no upstream request waiting for your answer',
};

/**
 * Step: a message without an id (a notification) or without a method (a
 * response) is checked before the policy sees it. A request sent without an
 * id is refused (a plain JSON-RPC server would run it and answer nobody); the
 * protocol's own notifications pass only where they make sense (a cancellation
 * of the caller's own request in flight, progress for an upstream request the
 * caller was shown); other `notifications/*` go to the policy; a response
 * must answer a request the upstream sent on this session, and claims it:
 * it can be answered once.
 */
export function admitClientMessage(
  route: Route,
  msg: JsonRpcNotification | JsonRpcResponse,
  statelessInFlight: (requestId: unknown) => boolean,
): ClientMessage {
  if (isResponse(msg)) {
    const refuse = (why: string) => new GatewayError('INVALID_REQUEST', `Invalid Request: this response ${why}`);
    if (route.kind !== 'session')
      throw refuse('answers nothing: no upstream request waits for a stateless client’s answer');
    const pending = route.session.inFlight.serverRequest(msg.id);
    if (pending === undefined || msg.id === null)
      throw refuse(`(id ${JSON.stringify(msg.id)}) answers no request the upstream sent on this session`);
    // Claimed now, before anything awaits: of two answers racing for one request, only the first goes on
    // (and if the policy refuses it, the request stays unanswered rather than answerable again).
    route.session.inFlight.answered(msg.id);
    return { kind: 'response', method: pending.method };
  }
  const refuse = (why: string) =>
    new GatewayError('INVALID_REQUEST', `Invalid Request: notification ${msg.method} ${why}`);
  if (!msg.method.startsWith('notifications/')) {
    throw new GatewayError(
      'INVALID_REQUEST',
      `Invalid Request: ${msg.method} is a request and needs an id; gitgate forwards no request as a notification`,
    );
  }
  if (route.kind === 'stateless') {
    if (msg.method !== 'notifications/cancelled') throw refuse('has no meaning for a stateless (2026-07-28) client');
    if (!statelessInFlight(msg.params?.requestId)) throw refuse('names no request of yours in flight');
    return { kind: 'notification', method: msg.method };
  }
  if (route.kind !== 'session') throw refuse('needs a session');
  const check = Object.hasOwn(SESSION_NOTIFICATIONS, msg.method) ? SESSION_NOTIFICATIONS[msg.method] : undefined;
  const why = check?.(msg.params, route);
  if (why !== undefined) throw refuse(why);
  return { kind: 'notification', method: msg.method };
}
