import { createParser } from 'eventsource-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { RawMcp } from '../helpers/raw-mcp.js';

interface Ev {
  id: string | undefined;
  message: Record<string, unknown>;
}

async function events(res: Response): Promise<Ev[]> {
  const out: Ev[] = [];
  const parser = createParser({
    onEvent: (ev) => out.push({ id: ev.id, message: JSON.parse(ev.data) as Record<string, unknown> }),
  });
  parser.feed(await res.text());
  return out;
}

/** gitgate's own SSE streams carry event ids; a reconnect with Last-Event-ID gets what followed. */
describe("gitgate's SSE streams are resumable", () => {
  let gw: TestGateway;
  let upstream: { url: string; close(): Promise<void> };
  let url: string;

  beforeAll(async () => {
    upstream = await startHttpServer();
    gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    url = `${gw.url}/mcp/http`;
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const headers = (raw: RawMcp, extra: Record<string, string> = {}) => ({
    authorization: `Bearer ${raw.token}`,
    'mcp-session-id': raw.sessionId ?? '',
    'mcp-protocol-version': '2025-11-25',
    ...extra,
  });

  it('every event of a POST stream has an id; GET + Last-Event-ID replays what came after it, then ends', async () => {
    const raw = new RawMcp(url, await gw.token('alice', ['eng']));
    await raw.initialize();
    const res = await fetch(url, {
      method: 'POST',
      headers: headers(raw, { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 5,
        method: 'tools/call',
        params: { name: 'slow', arguments: { steps: 3 }, _meta: { progressToken: 'p' } },
      }),
    });
    const sent = await events(res);
    expect(sent.map((e) => e.message.method ?? 'answer')).toEqual([
      'notifications/progress',
      'notifications/progress',
      'notifications/progress',
      'answer',
    ]);
    const ids = sent.map((e) => e.id);
    expect(ids.every((id) => typeof id === 'string')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);

    // As if the connection dropped after the first progress: the rest is replayed.
    const again = await fetch(url, {
      method: 'GET',
      headers: headers(raw, { accept: 'text/event-stream', 'last-event-id': ids[0]! }),
    });
    expect(again.status).toBe(200);
    const replayed = await events(again);
    expect(replayed.map((e) => e.message)).toEqual(sent.slice(1).map((e) => e.message));
  });

  it("another caller's session cannot be replayed, and an id this session never gave replays nothing", async () => {
    const alice = new RawMcp(url, await gw.token('alice', ['eng']));
    await alice.initialize();
    const res = await fetch(url, {
      method: 'POST',
      headers: headers(alice, { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }),
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 6,
        method: 'tools/call',
        params: { name: 'slow', arguments: { steps: 2 }, _meta: { progressToken: 'q' } },
      }),
    });
    const first = (await events(res))[0]!.id!;
    const mallory = new RawMcp(url, await gw.token('mallory', ['eng']));
    await mallory.initialize();
    // Alice's session id with Mallory's token: the session is not hers.
    const stolen = await fetch(url, {
      method: 'GET',
      headers: {
        ...headers(alice, { accept: 'text/event-stream', 'last-event-id': first }),
        authorization: `Bearer ${mallory.token}`,
      },
    });
    expect(stolen.status).toBe(404);
    // Mallory's own session never gave that id: no replay (a plain GET stream, which gives nothing here).
    const ctl = new AbortController();
    const own = await fetch(url, {
      method: 'GET',
      headers: headers(mallory, { accept: 'text/event-stream', 'last-event-id': 's1.0' }),
      signal: ctl.signal,
    });
    expect(own.status).toBe(200);
    ctl.abort();
  });
});
