import { describe, expect, it } from 'vitest';
import { Channel } from '../../src/mcp/channel.js';
import { encodeSse, SseParser } from '../../src/mcp/sse.js';

describe('SSE', () => {
  it('parses events split across chunks, CRLF, comments and multi-line data', () => {
    const p = new SseParser();
    expect(p.push(': keepalive\n\nevent: message\nid: 7\nda')).toEqual([]);
    expect(p.push('ta: {"a":\r\ndata: 1}\r\n\r\ndata: x\n')).toEqual([{ event: 'message', data: '{"a":\n1}', id: '7' }]);
    expect(p.push('\n')).toEqual([{ event: 'message', data: 'x', id: '7' }]);
  });

  it('round-trips what it encodes', () => {
    const p = new SseParser();
    const msg = { jsonrpc: '2.0', id: 1, result: { text: 'line1\nline2' } };
    const [ev] = p.push(encodeSse(msg));
    expect(JSON.parse(ev!.data)).toEqual(msg);
  });

  it('handles multi-byte characters split between chunks', () => {
    const p = new SseParser();
    const bytes = Buffer.from('data: é\n\n');
    expect([...p.push(bytes.subarray(0, 7)), ...p.push(bytes.subarray(7))]).toEqual([{ event: 'message', data: 'é' }]);
  });
});

describe('Channel', () => {
  it('delivers pushed items in order, then ends', async () => {
    const ch = new Channel<number>();
    ch.push(1);
    setTimeout(() => {
      ch.push(2);
      ch.close();
    }, 5);
    const got: number[] = [];
    for await (const v of ch) got.push(v);
    expect(got).toEqual([1, 2]);
  });

  it('fails the consumer with the error', async () => {
    const ch = new Channel<number>();
    setTimeout(() => ch.fail(new Error('boom')), 1);
    await expect((async () => {
      for await (const _ of ch) void _;
    })()).rejects.toThrow('boom');
  });

  it('a bounded channel drops the oldest', async () => {
    const ch = new Channel<number>(2);
    [1, 2, 3].forEach((n) => ch.push(n));
    ch.close();
    const got: number[] = [];
    for await (const v of ch) got.push(v);
    expect(got).toEqual([2, 3]);
    expect(ch.dropped).toBe(1);
  });
});
