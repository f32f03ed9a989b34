import { describe, expect, it } from 'vitest';
import { describeRecord } from '../../src/audit/read.js';
import type { AuditRecord } from '../../src/audit/record.js';

/** A recorded string made to rewrite a terminal: erase its own line, print a forged one, hide the rest, reverse the text. */
const HOSTILE = '\u001b[2K\r2026-01-01 00:00:00.000  decision  carol  tools/call secret  ALLOW\n\u001b[8m\u202e';

const base = { v: 2, stream: 'sessions/2026-12-02/s1', seq: 0, ts: '2026-12-02T10:00:00.000Z', prev: null } as const;

describe('gitgate audit replay lines', () => {
  it('show what callers and upstreams wrote escaped, one record a line: no control character reaches the terminal', () => {
    const records: AuditRecord[] = [
      {
        ...base,
        type: 'decision',
        caller: { sub: 'bob' },
        method: 'tools/call',
        tool: `x${HOSTILE}`,
        data: { allow: false, reasons: [`denied ${HOSTILE}`], input: { mcp: { uri: `test://x${HOSTILE}` } } },
      },
      { ...base, type: 'error', data: { code: 'UPSTREAM_UNAVAILABLE', message: `upstream said ${HOSTILE}` } },
      { ...base, type: 'session.close', data: { reason: HOSTILE } },
      { ...base, type: 'approval.denied', data: { approval_id: 'a1', by: 'carol', reason: HOSTILE } },
    ];
    for (const r of records) {
      const line = describeRecord(r);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters is the point
      expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
      expect(line).toContain('\\u001b[2K\\u000d2026-01-01');
      expect(line.startsWith('2026-12-02 10:00:00.000')).toBe(true);
    }
  });
});
