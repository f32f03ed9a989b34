import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileSchema, formatSchemaErrors } from '../../src/config/schema.js';
import type { Identity } from '../../src/identity/identity.js';
import type { JsonRpcRequest } from '../../src/mcp/jsonrpc.js';
import { checkParams } from '../../src/mcp/params.js';
import { buildMessageInput, buildPolicyInput, type InputContext } from '../../src/policy/input.js';
import { testSeed } from '../helpers/soak.js';

/**
 * schemas/input.schema.json is the policy's contract: whatever buildPolicyInput
 * produces for a request the gateway admits (its params checked first, as the
 * pipeline does) validates against it, and so does buildMessageInput's.
 */
const SEED = testSeed('policy-input-schema');
const validate = compileSchema('input');
const problems = (v: unknown) => (validate(v) ? [] : formatSchemaErrors(validate.errors));

const identity = fc.record(
  {
    sub: fc.string({ minLength: 1, maxLength: 12 }),
    groups: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
    issuer: fc.constantFrom('urn:gitgate:dev-issuer', 'https://idp.example'),
    email: fc.emailAddress(),
    githubLogin: fc.string({ minLength: 1, maxLength: 12 }),
  },
  { requiredKeys: ['sub', 'groups', 'issuer'] },
) as fc.Arbitrary<Identity>;

const context = fc.record(
  {
    upstream: fc.record({
      name: fc.string({ minLength: 1, maxLength: 8 }),
      transport: fc.constantFrom('http', 'stdio'),
    }),
    protocolVersion: fc.constantFrom('2025-06-18', '2025-11-25', '2026-07-28'),
    era: fc.constantFrom('legacy', 'modern'),
    requestId: fc.uuid(),
    sessionId: fc.uuid(),
    now: fc.integer({ min: 1_700_000_000_000, max: 2_000_000_000_000 }),
    toolChanged: fc.boolean().map((b) => () => b),
  },
  { requiredKeys: ['upstream', 'protocolVersion', 'era', 'requestId', 'now'] },
) as fc.Arbitrary<InputContext>;

const value = fc.jsonValue({ maxDepth: 3 });
const params = fc.record(
  {
    name: fc.oneof(fc.string({ maxLength: 10 }), value),
    uri: fc.oneof(fc.webUrl(), value),
    arguments: fc.oneof(fc.dictionary(fc.string({ maxLength: 6 }), value, { maxKeys: 4 }), value),
    task: fc.oneof(fc.record({ ttl: fc.nat() }), value),
    ref: fc.oneof(
      fc.record({ type: fc.constant('ref/prompt'), name: fc.string({ maxLength: 8 }) }),
      fc.record({ type: fc.constant('ref/resource'), uri: fc.webUrl() }),
      value,
    ),
    argument: fc.record({ name: fc.string({ maxLength: 6 }), value: fc.string({ maxLength: 6 }) }),
    _meta: fc.oneof(fc.dictionary(fc.string({ maxLength: 10 }), value, { maxKeys: 3 }), value),
    cursor: fc.string({ maxLength: 6 }),
  },
  { requiredKeys: [] },
);
const request = fc.record(
  {
    jsonrpc: fc.constant('2.0' as const),
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 8 })),
    method: fc.constantFrom(
      'tools/call',
      'tools/list',
      'prompts/get',
      'completion/complete',
      'resources/read',
      'resources/subscribe',
      'resources/unsubscribe',
      'resources/list',
      'initialize',
      'ping',
      'logging/setLevel',
    ),
    params,
  },
  { requiredKeys: ['jsonrpc', 'id', 'method'] },
) as fc.Arbitrary<JsonRpcRequest>;

const admitted = (msg: JsonRpcRequest): boolean => {
  try {
    checkParams(msg);
    return true;
  } catch {
    return false;
  }
};

describe('the policy input validates against schemas/input.schema.json', () => {
  it('for every request the gateway admits', () => {
    let checked = 0;
    fc.assert(
      fc.property(identity, request, context, (id, msg, ctx) => {
        fc.pre(admitted(msg));
        checked++;
        expect(problems(buildPolicyInput(id, msg, ctx))).toEqual([]);
      }),
      { seed: SEED, numRuns: 400 },
    );
    // The generator is not so hostile that nothing passes the params check.
    expect(checked).toBeGreaterThan(100);
  });

  it('for notifications, client responses and GET streams', () => {
    fc.assert(
      fc.property(
        identity,
        fc.constantFrom('request', 'notification', 'response'),
        fc.string({ minLength: 1, maxLength: 30 }),
        context,
        (id, kind, method, ctx) => {
          expect(problems(buildMessageInput(id, { kind, method }, ctx))).toEqual([]);
        },
      ),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('and the schema is not vacuous: what it forbids is refused', () => {
    const good = buildPolicyInput(
      { sub: 'alice', groups: ['eng'], issuer: 'urn:test' },
      { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { a: 1 } } },
      {
        upstream: { name: 'u', transport: 'http' },
        protocolVersion: '2025-11-25',
        era: 'legacy',
        requestId: 'r',
        now: 1,
      },
    );
    expect(problems(good)).toEqual([]);
    expect(problems({ ...good, extra: true })).not.toEqual([]);
    expect(problems({ ...good, mcp: { ...good.mcp, era: 'future' } })).not.toEqual([]);
    expect(problems({ ...good, identity: { sub: 'alice', issuer: 'x' } })).not.toEqual([]);
  });
});
