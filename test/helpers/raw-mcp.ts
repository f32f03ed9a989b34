import { createParser } from 'eventsource-parser';

export interface RawReply {
  readonly status: number;
  readonly headers: Headers;
  /** The JSON body, or the SSE events' data parsed as JSON; undefined for an empty body. */
  readonly messages: Record<string, unknown>[];
}

/** A bare-bones MCP client over fetch, for sending exactly the bytes an attacker would. */
export class RawMcp {
  sessionId: string | undefined;

  constructor(
    readonly url: string,
    readonly token: string,
  ) {}

  async post(message: unknown, extraHeaders: Record<string, string> = {}): Promise<RawReply> {
    const res = await fetch(this.url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${this.token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...(this.sessionId !== undefined
          ? { 'mcp-session-id': this.sessionId, 'mcp-protocol-version': '2025-11-25' }
          : {}),
        ...extraHeaders,
      },
      body: typeof message === 'string' ? message : JSON.stringify(message),
    });
    return { status: res.status, headers: res.headers, messages: await readMessages(res) };
  }

  async initialize(): Promise<void> {
    const r = await this.post({
      jsonrpc: '2.0',
      id: 'init',
      method: 'initialize',
      params: {
        protocolVersion: '2025-11-25',
        capabilities: { sampling: {}, roots: {} },
        clientInfo: { name: 'raw', version: '1' },
      },
    });
    const sid = r.headers.get('mcp-session-id');
    if (r.status !== 200 || sid === null)
      throw new Error(`initialize failed: ${r.status} ${JSON.stringify(r.messages)}`);
    this.sessionId = sid;
    await this.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  /** Open the session's GET stream; messages arrive through `onMessage` until `close()`. */
  async listen(
    onMessage: (m: Record<string, unknown>) => void,
  ): Promise<{ status: number; close(): void; body: Record<string, unknown>[]; ended: Promise<void> }> {
    const ctl = new AbortController();
    const res = await fetch(this.url, {
      method: 'GET',
      headers: {
        authorization: `Bearer ${this.token}`,
        accept: 'text/event-stream',
        'mcp-session-id': this.sessionId ?? '',
        'mcp-protocol-version': '2025-11-25',
      },
      signal: ctl.signal,
    });
    if (!(res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      const body = await readMessages(res);
      return { status: res.status, close: () => ctl.abort(), body, ended: Promise.resolve() };
    }
    const parser = createParser({ onEvent: (ev) => onMessage(JSON.parse(ev.data) as Record<string, unknown>) });
    // Resolves when the gateway ends the stream (or close() aborts it).
    const ended = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as AsyncIterable<Uint8Array>)
          parser.feed(decoder.decode(chunk, { stream: true }));
      } catch {
        // aborted
      }
    })();
    return { status: res.status, close: () => ctl.abort(), body: [], ended };
  }
}

async function readMessages(res: Response): Promise<Record<string, unknown>[]> {
  const text = await res.text();
  if (text === '') return [];
  if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
    const out: Record<string, unknown>[] = [];
    const parser = createParser({ onEvent: (ev) => out.push(JSON.parse(ev.data) as Record<string, unknown>) });
    parser.feed(text);
    return out;
  }
  return [JSON.parse(text) as Record<string, unknown>];
}

/** Wait until `check` holds, polling a bounded number of times on the event loop (no wall-clock assertions). */
export async function until(check: () => boolean, what: string, tries = 2_000): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** The headers of a 2026-07-28 (stateless) POST: the bearer, both media types, the revision, Mcp-Method and Mcp-Name. */
export function modernHeaders(token: string, method: string, name?: string): Record<string, string> {
  return {
    authorization: `Bearer ${token}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-protocol-version': '2026-07-28',
    'mcp-method': method,
    ...(name !== undefined ? { 'mcp-name': name } : {}),
  };
}
