import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { approvalsApprove, approvalsDeny } from '../../src/cli/approvals.js';
import { DEV_ISSUER } from '../../src/identity/dev-issuer.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from '../helpers/client.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';

/**
 * The local provider: `gitgate approvals approve|deny` decides as the holder of
 * a token of the configured issuer, never as a name typed on the command line.
 */
describe('local approvals: the approver proves who they are', () => {
  let upstream: { url: string; calls: { tool: string; message?: string }[]; close(): Promise<void> };
  let gw: TestGateway;
  let configFile: string;
  const clients: { close(): Promise<void> }[] = [];
  const teams = { eng: ['alice', 'carol', 'dave'] };

  beforeAll(async () => {
    upstream = await startHttpServer();
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: {
        gh: {
          full_access_groups: ['eng'],
          public_tools: [],
          high_risk_tools: {
            echo: { approvers: ['eng'], min_approvals: 1, ttl_seconds: 900 },
            add: { approvers: ['eng'], min_approvals: 2, ttl_seconds: 900 },
          },
          mask: [],
          credential_ttl_seconds: 60,
        },
      },
    });
    const approvals = { provider: 'local', pollSeconds: 3600, local: { teams } };
    gw = await startGateway({ policyDir, upstreams: { gh: { url: upstream.url } }, approvals });
    // The CLI reads the same config (and data dir) as the gateway.
    configFile = path.join(gw.dataDir, 'gitgate.yaml');
    writeFileSync(
      configFile,
      JSON.stringify({
        dataDir: gw.dataDir,
        identity: { mode: 'dev' },
        policy: { dir: policyDir },
        upstreams: { gh: { url: upstream.url } },
        approvals,
      }),
    );
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close().catch(() => undefined);
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  const park = async (tool: string, args: Record<string, unknown>) => {
    const c = await connectClient(`${gw.url}/mcp/gh`, await gw.token('alice', ['eng']));
    clients.push(c);
    const call = () =>
      c.client.callTool({ name: tool, arguments: args }).then(
        (r) => ({ ok: true as const, content: r.content }),
        (e: { code: number; data: { approval_id: string; status: string } }) => ({
          ok: false as const,
          code: e.code,
          data: e.data,
        }),
      );
    const first = await call();
    if (first.ok) throw new Error('not parked');
    return { id: first.data.approval_id, call };
  };
  const lines: string[] = [];
  const out = (l: string) => void lines.push(l);
  const approve = (id: string, o: { token?: string; as?: string }, env: NodeJS.ProcessEnv = {}) =>
    approvalsApprove(id, { config: configFile, ...o }, out, env);
  const status = async (id: string) => {
    await gw.gw.approvals.poll();
    return gw.gw.approvals.get(id);
  };

  it('a name on the command line proves nothing: --as carol without a token is refused, and the call stays parked', async () => {
    const { id, call } = await park('echo', { message: 'as-carol' });
    await expect(approve(id, { as: 'carol' })).rejects.toThrow(/--token|token is required|not accepted/);
    await expect(approve(id, {})).rejects.toThrow(/token is required/);
    expect((await status(id))?.status).toBe('pending');
    expect(await call()).toMatchObject({ ok: false, code: -32011 });
    expect(upstream.calls.filter((c) => c.message === 'as-carol')).toHaveLength(0);
  });

  it('the approver is the verified token: the requester, unknown users, other issuers and expired tokens are refused', async () => {
    const { id } = await park('echo', { message: 'who-approves' });
    await expect(approve(id, { token: await gw.token('alice', ['eng']) })).rejects.toThrow(
      'alice requested this call and cannot approve or deny it',
    );
    // The requester under another name that is still theirs (a token for "Alice").
    await expect(approve(id, { token: await gw.token('Alice') })).rejects.toThrow(/requested this call/);
    await expect(approve(id, { token: await gw.token('bob') })).rejects.toThrow('bob is not a known user');
    // A token signed by another key, claiming the dev issuer.
    const { privateKey } = await generateKeyPair('ES256');
    const foreign = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(DEV_ISSUER)
      .setSubject('carol')
      .setAudience('gitgate')
      .setExpirationTime('1h')
      .sign(privateKey);
    await expect(approve(id, { token: foreign })).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    // carol's token, properly signed, but expired an hour ago.
    const jwk = JSON.parse(readFileSync(path.join(gw.dataDir, 'keys', 'dev-issuer.private.jwk'), 'utf8')) as JWK;
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: jwk.kid! })
      .setIssuer(DEV_ISSUER)
      .setSubject('carol')
      .setAudience('gitgate')
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(await importJWK(jwk, 'ES256'));
    await expect(approve(id, { token: expired })).rejects.toMatchObject({
      code: 'AUTH_INVALID',
      message: 'token expired',
    });
    expect((await status(id))?.status).toBe('pending');
  });

  it("carol's token (from GITGATE_TOKEN) approves as carol; the call runs once", async () => {
    const { id, call } = await park('echo', { message: 'by-carol' });
    expect(await approve(id, {}, { GITGATE_TOKEN: await gw.token('carol') })).toBe(0);
    expect(lines.at(-1)).toContain(`approved ${id} as carol`);
    expect(await status(id)).toMatchObject({ status: 'approved', approvals: [{ login: 'carol' }] });
    expect(await call()).toMatchObject({ ok: true });
    expect(await call()).toMatchObject({ ok: false, code: -32011 });
    expect(upstream.calls.filter((c) => c.message === 'by-carol')).toHaveLength(1);
  });

  it('deny takes a token too, and min_approvals 2 needs two distinct verified approvers', async () => {
    const denied = await park('echo', { message: 'deny-me' });
    await expect(approvalsDeny(denied.id, { config: configFile, as: 'dave', reason: 'no' }, out, {})).rejects.toThrow(
      /not accepted/,
    );
    expect(
      await approvalsDeny(
        denied.id,
        { config: configFile, token: await gw.token('dave'), reason: 'Not today.' },
        out,
        {},
      ),
    ).toBe(0);
    expect(await status(denied.id)).toMatchObject({ status: 'denied', denial: { by: 'dave', reason: 'Not today.' } });
    const two = await park('add', { a: 1, b: 2 });
    expect(await approve(two.id, { token: await gw.token('carol') })).toBe(0);
    await expect(approve(two.id, { token: await gw.token('carol') })).rejects.toThrow('carol already decided');
    expect((await status(two.id))?.status).toBe('pending');
    expect(await approve(two.id, { token: await gw.token('dave') })).toBe(0);
    expect((await status(two.id))?.status).toBe('approved');
    expect(await two.call()).toEqual({ ok: true, content: [{ type: 'text', text: '3' }] });
  });
});
