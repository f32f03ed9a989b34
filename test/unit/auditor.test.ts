import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createAuditor } from '../../src/audit/auditor.js';
import { AuditLog } from '../../src/audit/log.js';
import type { AuditRecord } from '../../src/audit/record.js';
import { localSigning, loopSealer, sealerTree } from '../../src/audit/sealer-port.js';
import type { WalEntry, WriteAheadLog } from '../../src/audit/wal.js';
import { GatewayError } from '../../src/errors.js';
import type { Identity } from '../../src/identity/identity.js';
import { compileMask, maskedCopy } from '../../src/masking/mask.js';
import type { JsonRpcRequest, JsonRpcResponse } from '../../src/mcp/jsonrpc.js';
import type { DecisionOutcome } from '../../src/policy/decide.js';
import type { PolicyInput } from '../../src/policy/input.js';

const logKey = generateKeyPairSync('ed25519').privateKey;
const parseLine = (line: string) => ({ record: JSON.parse(line) as AuditRecord });

function harness(maxRecordedBytes: number) {
  const entries: WalEntry[] = [];
  /** Each WAL write (one group, one fdatasync): the records' "stream type". */
  const groups: string[][] = [];
  const wal: WriteAheadLog = {
    append: async (es) => {
      entries.push(...es);
      groups.push(
        es.map((e) => {
          const r = parseLine(e.line).record;
          return `${r.stream.split('/')[0]} ${r.type}`;
        }),
      );
    },
    roll: () => 0,
    close: async () => undefined,
  };
  const log = new AuditLog(
    () =>
      loopSealer(
        sealerTree(
          mkdtempSync(path.join(tmpdir(), 'gitgate-tree-')),
          { origin: 'gitgate.test/a', key: logKey },
          localSigning({ origin: 'gitgate.test/a', key: logKey }),
        ),
        wal,
      ),
    () => undefined,
  );
  const auditor = createAuditor(log, { maxRecordedBytes });
  return { auditor, groups, records: (): AuditRecord[] => entries.map((e) => parseLine(e.line).record) };
}

const identity = { sub: 'ann', groups: ['eng'], issuer: 'urn:test' } as unknown as Identity;
const request: JsonRpcRequest = {
  jsonrpc: '2.0',
  id: 1,
  method: 'tools/call',
  params: { name: 'echo', arguments: { message: 'mail me at ann@example.com' } },
};
const input: PolicyInput = {
  identity: { sub: 'ann', groups: ['eng'], issuer: 'urn:test' },
  mcp: {
    kind: 'request',
    method: 'tools/call',
    tool: 'echo',
    arguments: { message: 'mail me at ann@example.com' },
    protocol_version: '2025-11-25',
    era: 'legacy',
  },
  upstream: { name: 'demo', transport: 'http' },
  request: { id: 'r1', time_ns: 1 },
} as PolicyInput;

function outcome(mask: { path: string; detectors: string[] }[]): DecisionOutcome {
  return {
    decision: {
      allow: true,
      valid: true,
      reasons: ['ok'],
      risk: 'low',
      approval: { required: false, approvers: [], min_approvals: 1, ttl_seconds: 900 },
      mask,
      maskRules: compileMask(mask as never),
      credential: { ttl_seconds: 60, scopes: [] },
    },
    revision: { commit: null, bundleDigest: 'sha256:x' },
    inputJson: JSON.stringify(input),
  } as unknown as DecisionOutcome;
}

async function exchange(h: ReturnType<typeof harness>, o: DecisionOutcome, response: JsonRpcResponse) {
  const x = h.auditor.begin('x1');
  x.caller(identity, 'demo');
  x.bind({ stateless: 'demo' });
  // As the pipeline gives it: the request as the decision's mask rules leave it.
  x.asked(input);
  x.decided(o, maskedCopy(request, o.decision.maskRules));
  await x.answered(response, 0);
}

describe('what the auditor records of an exchange', () => {
  it('the unmasked policy input as exactly the bytes evaluated, the result, and the response size', async () => {
    const h = harness(64 * 1024);
    const response: JsonRpcResponse = {
      jsonrpc: '2.0',
      id: 1,
      result: { content: [{ type: 'text', text: 'écho ✓' }] },
    };
    await exchange(h, outcome([]), response);
    const [decision, answer] = h.records();
    const text = JSON.stringify(input);
    expect((decision!.data as { input_sha256: string }).input_sha256).toBe(
      createHash('sha256').update(text).digest('hex'),
    );
    expect(JSON.stringify((decision!.data as { input: unknown }).input)).toBe(text);
    expect(answer!.data).toMatchObject({
      ok: true,
      result: response.result,
      bytes: Buffer.byteLength(JSON.stringify(response)),
      relayed: 0,
    });
  });

  it('the input as its mask rules leave the arguments (the hash still covers what the policy saw)', async () => {
    const h = harness(64 * 1024);
    await exchange(h, outcome([{ path: '$.params.arguments', detectors: ['email'] }]), {
      jsonrpc: '2.0',
      id: 1,
      result: {},
    });
    const decision = h.records()[0]!;
    const data = decision.data as { input: PolicyInput; input_sha256: string };
    expect(JSON.stringify(data.input)).not.toContain('ann@example.com');
    expect(data.input.mcp.arguments).toEqual({ message: 'mail me at [redacted:email]' });
    expect(data.input_sha256).toBe(createHash('sha256').update(JSON.stringify(input)).digest('hex'));
  });

  it('a result over maxRecordedBytes as its size and canonical hash; the response size is still exact', async () => {
    const h = harness(256);
    const response: JsonRpcResponse = {
      jsonrpc: '2.0',
      id: 1,
      result: { content: [{ type: 'text', text: 'x'.repeat(1000) }] },
    };
    await exchange(h, outcome([]), response);
    const answer = h.records()[1]!;
    expect(answer.data).toMatchObject({
      ok: true,
      bytes: Buffer.byteLength(JSON.stringify(response)),
      result: { truncated: true, bytes: Buffer.byteLength(JSON.stringify(response.result)) },
    });
    expect((answer.data as { result: { sha256: string } }).result.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('when the decision becomes durable', () => {
  const ok: JsonRpcResponse = { jsonrpc: '2.0', id: 1, result: {} };

  it('durable() writes it before the answer; decisions asked for in one turn share one group (one fdatasync)', async () => {
    const h = harness(64 * 1024);
    const xs = ['x1', 'x2', 'x3'].map((id) => {
      const x = h.auditor.begin(id);
      x.caller(identity, 'demo');
      x.bind({ stateless: 'demo' });
      x.asked(input);
      return x;
    });
    await Promise.all(xs.map((x) => x.decided(outcome([]), request).durable()));
    expect(h.groups).toEqual([['stateless decision', 'stateless decision', 'stateless decision']]);
    await Promise.all(xs.map((x) => x.answered(ok, 0)));
    expect(h.groups[1]).toEqual(['stateless response', 'stateless response', 'stateless response']);
  });

  it('a decision nobody asks to be durable (a denial) rides with its error: one group', async () => {
    const h = harness(64 * 1024);
    const x = h.auditor.begin('x1');
    x.caller(identity, 'demo');
    x.bind({ stateless: 'demo' });
    x.asked(input);
    x.decided(outcome([]), request);
    await x.failed(new GatewayError('POLICY_DENIED'), 1);
    expect(h.groups).toEqual([['stateless decision', 'stateless error']]);
  });

  it("before the exchange has a stream (initialize), durable() puts the decision in the gateway's stream; session.open and the answer go to the session's", async () => {
    const h = harness(64 * 1024);
    const x = h.auditor.begin('x1');
    x.caller(identity, 'demo');
    x.asked(input);
    await x.decided(outcome([]), request).durable();
    expect(h.groups).toEqual([['gateway decision']]);
    x.opened({ id: 'sid', createdAt: 0 }, '2025-11-25');
    await x.answered(ok, 0);
    expect(h.groups[1]).toEqual(['sessions session.open', 'sessions response']);
    expect(h.records().every((r) => r.exchange === 'x1')).toBe(true);
  });

  it("once linked to an approval, durable() also waits for the approval's records (executed before the released call goes)", async () => {
    const h = harness(64 * 1024);
    const x = h.auditor.begin('x1');
    x.caller(identity, 'demo');
    x.bind({ stateless: 'demo' });
    x.asked(input);
    const decision = x.decided(outcome([]), request);
    await decision.durable();
    x.link({ approval_id: 'ap-1' });
    h.auditor.approval({
      type: 'approval.executed',
      approval: { id: 'ap-1', createdAt: '2025-01-01T00:00:00.000Z', url: null },
      upstream: 'demo',
      caller: { sub: 'ann' },
      method: 'tools/call',
      data: {},
    });
    await decision.durable();
    expect(h.groups.at(-1)).toEqual(['approvals approval.executed']);
  });
});
