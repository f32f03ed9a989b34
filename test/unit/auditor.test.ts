import { createHash, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createAuditor } from '../../src/audit/auditor.js';
import { AuditLog } from '../../src/audit/log.js';
import { auditSigner, parseLine, type AuditRecord } from '../../src/audit/record.js';
import { localSealer } from '../../src/audit/sealer-port.js';
import type { WalEntry, WriteAheadLog } from '../../src/audit/wal.js';
import type { Identity } from '../../src/identity/identity.js';
import { compileMask } from '../../src/masking/mask.js';
import type { JsonRpcRequest, JsonRpcResponse } from '../../src/mcp/jsonrpc.js';
import type { DecisionOutcome } from '../../src/policy/decide.js';
import type { PolicyInput } from '../../src/policy/input.js';

const signer = auditSigner('k', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);

function harness(maxRecordedBytes: number) {
  const entries: WalEntry[] = [];
  const wal: WriteAheadLog = { append: (es) => void entries.push(...es), roll: () => 0, close: async () => undefined };
  const log = new AuditLog(() => localSealer(signer, wal), () => undefined);
  const auditor = createAuditor(log, { maxRecordedBytes });
  return { auditor, records: (): AuditRecord[] => entries.map((e) => parseLine(e.line).record) };
}

const identity = { sub: 'ann', groups: ['eng'], issuer: 'urn:test' } as unknown as Identity;
const request: JsonRpcRequest = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message: 'mail me at ann@example.com' } } };
const input: PolicyInput = {
  identity: { sub: 'ann', groups: ['eng'], issuer: 'urn:test' },
  mcp: { kind: 'request', method: 'tools/call', tool: 'echo', arguments: { message: 'mail me at ann@example.com' }, protocol_version: '2025-11-25', era: 'legacy' },
  upstream: { name: 'demo', transport: 'http' },
  request: { id: 'r1', time_ns: 1 },
} as PolicyInput;

function outcome(mask: { path: string; detectors: string[] }[]): DecisionOutcome {
  return {
    decision: { allow: true, valid: true, reasons: ['ok'], risk: 'low', approval: { required: false, approvers: [], min_approvals: 1, ttl_seconds: 900 }, mask, maskRules: compileMask(mask as never), credential: { ttl_seconds: 60, scopes: [] } },
    revision: { commit: null, bundleDigest: 'sha256:x' },
    inputJson: JSON.stringify(input),
  } as unknown as DecisionOutcome;
}

async function exchange(h: ReturnType<typeof harness>, o: DecisionOutcome, response: JsonRpcResponse) {
  const x = h.auditor.begin('x1');
  x.caller(identity, 'demo');
  x.bind({ stateless: 'demo' });
  x.decided(input, o, request);
  await x.answered(response, 0);
}

describe('what the auditor records of an exchange', () => {
  it('the unmasked policy input as exactly the bytes evaluated, the result, and the response size', async () => {
    const h = harness(64 * 1024);
    const response: JsonRpcResponse = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'écho ✓' }] } };
    await exchange(h, outcome([]), response);
    const [decision, answer] = h.records();
    const text = JSON.stringify(input);
    expect((decision!.data as { input_sha256: string }).input_sha256).toBe(createHash('sha256').update(text).digest('hex'));
    expect(JSON.stringify((decision!.data as { input: unknown }).input)).toBe(text);
    expect(answer!.data).toMatchObject({ ok: true, result: response.result, bytes: Buffer.byteLength(JSON.stringify(response)), relayed: 0 });
  });

  it('the input as its mask rules leave the arguments (the hash still covers what the policy saw)', async () => {
    const h = harness(64 * 1024);
    await exchange(h, outcome([{ path: '$.params.arguments', detectors: ['email'] }]), { jsonrpc: '2.0', id: 1, result: {} });
    const decision = h.records()[0]!;
    const data = decision.data as { input: PolicyInput; input_sha256: string };
    expect(JSON.stringify(data.input)).not.toContain('ann@example.com');
    expect(data.input.mcp.arguments).toEqual({ message: 'mail me at [redacted:email]' });
    expect(data.input_sha256).toBe(createHash('sha256').update(JSON.stringify(input)).digest('hex'));
  });

  it('a result over maxRecordedBytes as its size and canonical hash; the response size is still exact', async () => {
    const h = harness(256);
    const response: JsonRpcResponse = { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'x'.repeat(1000) }] } };
    await exchange(h, outcome([]), response);
    const answer = h.records()[1]!;
    expect(answer.data).toMatchObject({ ok: true, bytes: Buffer.byteLength(JSON.stringify(response)), result: { truncated: true, bytes: Buffer.byteLength(JSON.stringify(response.result)) } });
    expect((answer.data as { result: { sha256: string } }).result.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});
