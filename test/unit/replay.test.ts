import { describe, expect, it } from 'vitest';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.js';
import { REPLAY_MAX_BYTES, REPLAY_MAX_EVENTS, ReplayBuffer } from '../../src/mcp/replay.js';

const note = (n: number, text = ''): JsonRpcMessage => ({
  jsonrpc: '2.0',
  method: 'notifications/progress',
  params: { progressToken: 't', progress: n, message: text },
});

describe('the replay buffer of a session', () => {
  it('gives each event an id naming its stream; replays what followed an id on that stream only', () => {
    const b = new ReplayBuffer();
    const a = b.stream('post');
    const g = b.stream('get');
    const ids = [a.record(note(1)), g.record(note(100)), a.record(note(2)), a.record(note(3))];
    expect(new Set(ids).size).toBe(4);
    expect(b.after(ids[0]!)).toEqual({ kind: 'post', messages: [note(2), note(3)] });
    expect(b.after(ids[1]!)).toEqual({ kind: 'get', messages: [] });
    expect(b.after(ids[3]!)?.messages).toEqual([]);
  });

  it('ids it never gave, or that do not parse, replay nothing', () => {
    const b = new ReplayBuffer();
    b.stream('post').record(note(1));
    for (const id of ['s9.0', 'x', '', 's1', 's1.1.1', `s1.${'9'.repeat(20)}`]) expect(b.after(id)).toBeUndefined();
  });

  it('keeps copies: a message changed after it was sent does not change what is replayed', () => {
    const b = new ReplayBuffer();
    const s = b.stream('post');
    const m = note(1, 'as sent');
    const id = s.record(note(0));
    s.record(m);
    (m as { params: Record<string, unknown> }).params.message = 'changed';
    expect(b.after(id)?.messages).toEqual([note(1, 'as sent')]);
  });

  it(`is bounded: at most ${REPLAY_MAX_EVENTS} events and ${REPLAY_MAX_BYTES} bytes, oldest first out`, () => {
    const b = new ReplayBuffer();
    const s = b.stream('get');
    const first = s.record(note(0));
    for (let i = 1; i <= REPLAY_MAX_EVENTS; i++) s.record(note(i));
    const kept = b.after('s1.0')?.messages ?? [];
    expect(kept).toHaveLength(REPLAY_MAX_EVENTS);
    expect(kept[0]).toEqual(note(1));
    expect(first).toBe('s1.1');
    const big = new ReplayBuffer();
    const t = big.stream('post');
    const chunk = 'x'.repeat(300_000);
    for (let i = 0; i < 5; i++) t.record(note(i, chunk));
    const left = big.after('s1.0')?.messages ?? [];
    expect(left.length).toBeLessThan(4);
    expect(JSON.stringify(left).length).toBeLessThanOrEqual(REPLAY_MAX_BYTES);
  });
});
