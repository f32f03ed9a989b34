import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors.js';
import { packageRoot } from '../../src/paths.js';

describe('docs/errors.md', () => {
  it('lists every error code with the status and JSON-RPC code of src/errors.ts', () => {
    const doc = readFileSync(path.join(packageRoot, 'docs', 'errors.md'), 'utf8');
    const rows = new Map([...doc.matchAll(/^\| ([A-Z_]+) \| (\d+) \| (-\d+) \|/gm)].map((m) => [m[1]!, { status: Number(m[2]), rpc: Number(m[3]) }]));
    for (const [code, e] of Object.entries(ERRORS)) expect({ code, ...rows.get(code) }).toEqual({ code, status: e.status, rpc: e.rpc });
    expect([...rows.keys()].sort()).toEqual(Object.keys(ERRORS).sort());
  });
});
