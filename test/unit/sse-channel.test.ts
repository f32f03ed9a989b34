import { describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import { Channel } from '../../src/mcp/channel.js';
import { encodeSse, SseParser } from '../../src/mcp/sse.js';

const LIMITS = { maxLineBytes: 1 << 20, maxEventBytes: 1 << 20, source: 'upstream t' };

describe('SSE', () => {
  it('parses events split across chunks, CRLF, comments and multi-line data', () => {
    const p = new SseParser(LIMITS);
    expect(p.push(': keepalive\n\nevent: message\nid: 7\nda')).toEqual([]);
    expect(p.push('ta: {"a":\r\ndata: 1}\r\n\r\ndata: x\n')).toEqual([
      { event: 'message', data: '{"a":\n1}', id: '7' },
    ]);
    expect(p.push('\n')).toEqual([{ event: 'message', data: 'x', id: '7' }]);
  });

  it('round-trips what it encodes', () => {
    const p = new SseParser(LIMITS);
    const msg = { jsonrpc: '2.0', id: 1, result: { text: 'line1\nline2' } };
    const [ev] = p.push(encodeSse(msg));
    expect(JSON.parse(ev!.data)).toEqual(msg);
  });

  it('a CRLF split between chunks is one line break, not an empty line (the old parser ended the event early)', () => {
    const p = new SseParser(LIMITS);
    expect(p.push('data: a\r')).toEqual([]);
    expect(p.push('\ndata: b\r\n\r\n')).toEqual([{ event: 'message', data: 'a\nb' }]);
    expect([...p.push(Buffer.from('data: c\r')), ...p.push(Buffer.from('\r')), ...p.push(Buffer.from('\n'))]).toEqual([
      { event: 'message', data: 'c' },
    ]);
  });

  it('a line or an event over its cap fails with UPSTREAM_TOO_LARGE before it is parsed', () => {
    const p = new SseParser({ maxLineBytes: 100, maxEventBytes: 250, source: 'upstream t' });
    expect(p.push(`data: ${'x'.repeat(90)}\n`)).toEqual([]);
    expect(p.push(`data: ${'x'.repeat(90)}\n\n`)).toEqual([
      { event: 'message', data: `${'x'.repeat(90)}\n${'x'.repeat(90)}` },
    ]);
    const tooLong = () => p.push(`data: ${'y'.repeat(95)}`);
    expect(tooLong).toThrow(GatewayError);
    expect(tooLong).toThrow(/line over 100 bytes/);
    const q = new SseParser({ maxLineBytes: 100, maxEventBytes: 250, source: 'upstream t' });
    q.push(`data: ${'x'.repeat(90)}\r\n: comment ${'c'.repeat(80)}\r\n`);
    expect(() => q.push(`data: ${'x'.repeat(60)}`)).toThrow(/event over 250 bytes/);
    try {
      q.push('x');
    } catch (err) {
      expect((err as GatewayError).code).toBe('UPSTREAM_TOO_LARGE');
    }
  });

  it('counts bytes, not characters', () => {
    const p = new SseParser({ maxLineBytes: 20, maxEventBytes: 100, source: 'upstream t' });
    expect(() => p.push(`data: ${'é'.repeat(8)}`)).toThrow(/line over 20 bytes/);
  });

  it('handles multi-byte characters split between chunks', () => {
    const p = new SseParser(LIMITS);
    const bytes = Buffer.from('data: é\n\n');
    expect([...p.push(bytes.subarray(0, 7)), ...p.push(bytes.subarray(7))]).toEqual([{ event: 'message', data: 'é' }]);
  });
});

describe('Channel', () => {
  it('delivers pushed items in order, then ends', async () => {
    const ch = new Channel<number>();
    ch.push(1);
    // Later, once the consumer waits (no timer: the next turn of the event loop).
    setImmediate(() => {
      ch.push(2);
      ch.close();
    });
    const got: number[] = [];
    for await (const v of ch) got.push(v);
    expect(got).toEqual([1, 2]);
  });

  it('fails the consumer with the error', async () => {
    const ch = new Channel<number>();
    setImmediate(() => ch.fail(new Error('boom')));
    await expect(
      (async () => {
        for await (const _ of ch) void _;
      })(),
    ).rejects.toThrow('boom');
  });

  it('tells a paused producer when the consumer has taken everything, or gave up', async () => {
    const ch = new Channel<number>();
    for (const n of [1, 2, 3]) ch.push(n);
    expect(ch.size).toBe(3);
    let drained = 0;
    ch.onDrain(() => drained++);
    await ch.next();
    await ch.next();
    expect(drained).toBe(0);
    await ch.next();
    expect(drained).toBe(1);
    ch.onDrain(() => drained++);
    expect(drained).toBe(2);
    const other = new Channel<number>();
    other.push(1);
    other.onDrain(() => drained++);
    await other[Symbol.asyncIterator]().return!();
    expect(drained).toBe(3);
  });

  it('a bounded channel drops the oldest', async () => {
    const ch = new Channel<number>(2);
    for (const n of [1, 2, 3]) ch.push(n);
    ch.close();
    const got: number[] = [];
    for await (const v of ch) got.push(v);
    expect(got).toEqual([2, 3]);
    expect(ch.dropped).toBe(1);
  });
});
