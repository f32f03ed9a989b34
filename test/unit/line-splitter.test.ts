import { describe, expect, it } from 'vitest';
import { inFlightBudget } from '../../src/byte-budget.js';
import { GatewayError } from '../../src/errors.js';
import { LineSplitter } from '../../src/mcp/upstream/line-splitter.js';

const b = (s: string) => Buffer.from(s);

describe('LineSplitter (stdio lines, bounded)', () => {
  it('splits across chunks, drops the CR of CRLF, keeps multi-byte characters split between chunks', () => {
    const s = new LineSplitter(100, 'upstream t');
    const bytes = b('é✓');
    expect(s.push(b('{"a":1}\r\n{"b"'))).toEqual(['{"a":1}']);
    expect(s.push(Buffer.concat([b(':"'), bytes.subarray(0, 1)]))).toEqual([]);
    expect(s.push(Buffer.concat([bytes.subarray(1), b('"}\n\n')]))).toEqual(['{"b":"é✓"}', '']);
    expect(s.pending).toBe(0);
  });

  it('a line over the cap throws UPSTREAM_TOO_LARGE and holds nothing; the budget is given back', () => {
    const budget = inFlightBudget(1000, 't');
    const s = new LineSplitter(10, 'upstream t', budget);
    s.push(b('12345'));
    expect(budget.held).toBe(5);
    let err: unknown;
    try {
      s.push(b('678901'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('UPSTREAM_TOO_LARGE');
    expect(s.pending).toBe(0);
    expect(budget.held).toBe(0);
    expect(s.push(b('ok\n'))).toEqual(['ok']);
  });

  it("lines of all of an upstream's children share its in-flight budget", () => {
    const budget = inFlightBudget(8, 't');
    const one = new LineSplitter(100, 'upstream t', budget);
    const two = new LineSplitter(100, 'upstream t', budget);
    one.push(b('aaaaa'));
    expect(() => two.push(b('bbbb'))).toThrow(/maxInFlightBytes/);
    expect(one.push(b('\n'))).toEqual(['aaaaa']);
    expect(budget.held).toBe(0);
  });

  it('truncating (stderr): a longer line is cut at the cap and the rest of it dropped', () => {
    const s = new LineSplitter(4, 'stderr', undefined, true);
    expect(s.push(b('abcdefgh'))).toEqual([]);
    expect(s.push(b('ijk\nxy\n'))).toEqual(['abcd', 'xy']);
  });
});
