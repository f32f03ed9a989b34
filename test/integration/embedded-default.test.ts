import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitgate, gitgateInProcess, serveProcess } from '../helpers/cli.js';
import { connectClient } from '../helpers/client.js';

describe('the embedded default: `gitgate serve` with no config, server-everything as demo', () => {
  let dataDir: string;
  let server: Awaited<ReturnType<typeof serveProcess>>;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'gitgate-embedded-'));
    // info level: the logs test below must see the per-exchange lines it checks for tokens.
    server = await serveProcess(['--port', '0', '--data-dir', dataDir, '--approval-hold', '0'], {
      GITGATE_LOG_LEVEL: 'info',
    });
  });
  afterAll(() => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
  });

  // The commands below run in this process: the tests are about what they do, not the process (the serve
  // child is); the first test runs the built `gitgate token`, whose stdout must be the JWT alone.
  const token = async (args: string[]) => {
    const r = await gitgateInProcess(['token', '--data-dir', dataDir, ...args]);
    expect(r.code).toBe(0);
    return r.stdout.trim();
  };

  it('`gitgate token` prints only a JWT', async () => {
    const r = await gitgate(['token', '--data-dir', dataDir, '--sub', 'alice', '--groups', 'eng', '--ttl', '10m']);
    expect(r.code).toBe(0);
    const t = r.stdout.trim();
    expect(t).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const payload = JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString()) as {
      sub: string;
      groups: string[];
      exp: number;
      iat: number;
    };
    expect(payload).toMatchObject({ sub: 'alice', groups: ['eng'] });
    expect(payload.exp - payload.iat).toBe(600);
  });

  it('a caller with no groups lists only echo and get-sum, and is refused the rest', async () => {
    const c = await connectClient(`${server.url}/mcp/demo`, await token(['--sub', 'bob']));
    const { tools } = await c.client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['echo', 'get-sum']);
    expect((await c.client.callTool({ name: 'echo', arguments: { message: 'hello' } })).content).toEqual([
      { type: 'text', text: 'Echo: hello' },
    ]);
    const sum = await c.client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
    expect(JSON.stringify(sum.content)).toContain('5');
    const err = (await c.client
      .callTool({ name: 'get-tiny-image', arguments: {} })
      .catch((e: unknown) => e)) as McpError;
    expect(err).toBeInstanceOf(McpError);
    expect(err.message).toContain('tools/call of get-tiny-image denied: bob (groups: []) may only call echo, get-sum');
    await c.close();
  });

  it('echo of an email and an AWS access key comes back masked', async () => {
    const c = await connectClient(`${server.url}/mcp/demo`, await token(['--sub', 'bob']));
    const res = await c.client.callTool({
      name: 'echo',
      arguments: { message: 'mail jane@example.com key AKIAIOSFODNN7EXAMPLE' },
    });
    expect(res.content).toEqual([{ type: 'text', text: 'Echo: mail [redacted:email] key [redacted:aws_access_key]' }]);
    await c.close();
  });

  // Many CLI commands (tokens, list, approve): more room than the default on two busy cores.
  it('eng may use every tool; get-env is parked until another eng member approves it, then runs once', {
    timeout: 90_000,
  }, async () => {
    const aliceToken = await token(['--sub', 'alice', '--groups', 'eng']);
    const c = await connectClient(`${server.url}/mcp/demo`, aliceToken);
    expect((await c.client.listTools()).tools.map((t) => t.name)).toEqual(
      expect.arrayContaining(['echo', 'get-sum', 'get-env', 'get-tiny-image']),
    );
    const img = await c.client.callTool({ name: 'get-tiny-image', arguments: {} });
    expect(JSON.stringify(img.content)).toContain('image/png');
    const parked = (await c.client.callTool({ name: 'get-env', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect(parked.code).toBe(-32011);
    const data = parked.data as { approval_id: string; url: string; status: string; expires_at: string };
    expect(data).toMatchObject({
      status: 'pending',
      approval_id: expect.stringMatching(/^[0-9a-f]{20}-1-[0-9a-f]{8}$/),
    });
    expect(data.url).toContain(`gitgate/approval/${data.approval_id}`);
    // The identical retry maps to the same approval.
    const again = (await c.client.callTool({ name: 'get-env', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect((again.data as { approval_id: string }).approval_id).toBe(data.approval_id);

    const list = await gitgateInProcess(['approvals', 'list', '--data-dir', dataDir]);
    expect(list.stdout).toContain(`${data.approval_id}  pending  alice → demo tools/call get-env`);
    // A name on the command line proves nothing; the approver's token does.
    const claimed = await gitgateInProcess([
      'approvals',
      'approve',
      data.approval_id,
      '--as',
      'carol',
      '--data-dir',
      dataDir,
    ]);
    expect(claimed.code).toBe(1);
    expect(claimed.stderr).toContain('--as is not accepted');
    const self = await gitgateInProcess([
      'approvals',
      'approve',
      data.approval_id,
      '--token',
      aliceToken,
      '--data-dir',
      dataDir,
    ]);
    expect(self.code).toBe(1);
    expect(self.stderr).toContain('alice requested this call and cannot approve or deny it');
    const outsider = await gitgateInProcess(['approvals', 'approve', data.approval_id, '--data-dir', dataDir], {
      env: { GITGATE_TOKEN: await token(['--sub', 'bob']) },
    });
    expect(outsider.code).toBe(1);
    expect(outsider.stderr).toContain('bob is not a known user');
    const ok = await gitgateInProcess(['approvals', 'approve', data.approval_id, '--data-dir', dataDir], {
      env: { GITGATE_TOKEN: await token(['--sub', 'carol']) },
    });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`approved ${data.approval_id} as carol`);

    // Released within a poll interval: the identical retry executes once.
    await expect
      .poll(
        async () => {
          const r = await c.client.callTool({ name: 'get-env', arguments: {} }).catch((e: unknown) => e);
          return r instanceof McpError ? `error ${r.code}` : 'executed';
        },
        { timeout: 20_000, interval: 100 },
      )
      .toBe('executed');
    // A second retry needs a new approval.
    const next = (await c.client.callTool({ name: 'get-env', arguments: {} }).catch((e: unknown) => e)) as McpError;
    expect(next.code).toBe(-32011);
    expect((next.data as { approval_id: string }).approval_id).toMatch(
      new RegExp(`^${data.approval_id.slice(0, 20)}-2-[0-9a-f]{8}$`),
    );
    await c.close();
  });

  it('serves /readyz as JSON, /healthz and Prometheus /metrics', async () => {
    const ready = (await (await fetch(`${server.url}/readyz`)).json()) as {
      ready: boolean;
      policy: { bundle_digest: string; source: string };
    };
    expect(ready.ready).toBe(true);
    expect(ready.policy.source).toMatch(/policies$/);
    expect(ready.policy.bundle_digest).toMatch(/^[0-9a-f]{64}$/);
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(
      /gitgate_requests_total\{upstream="demo",method="tools\/call",outcome="policy_denied"\} \d+/,
    );
    expect(metrics).toMatch(/gitgate_requests_total\{upstream="demo",method="tools\/call",outcome="ok"\} \d+/);
    expect(metrics).toMatch(/gitgate_decision_duration_seconds_count \d+/);
    expect(metrics).toContain('gitgate_policy_info{source=');
    expect(metrics).toMatch(/gitgate_masked_total\{upstream="demo",detector="email"\} \d+/);
    expect(metrics).toMatch(/gitgate_list_items_hidden_total\{upstream="demo"\} \d+/);
  });

  it('logs every exchange, and never a token', async () => {
    const t = await token(['--sub', 'carol']);
    await fetch(`${server.url}/mcp/demo`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${t}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
    });
    // The child's log line crosses a pipe: wait for this very exchange's line.
    await expect
      .poll(() => server.output(), { timeout: 10_000 })
      .toMatch(/"sub":"carol".*"outcome":"session_required".*"msg":"mcp exchange"/);
    expect(server.output()).not.toContain(t);
    expect(server.output()).not.toContain(t.split('.')[2]!);
  });

  it('exits 0 on SIGTERM after draining, and the audit repo verifies and replays the denied and the approved call', async () => {
    server.child.kill('SIGTERM');
    const [code] = (await once(server.child, 'exit')) as [number];
    expect(code).toBe(0);
    const repo = path.join(dataDir, 'audit');
    // The log's key comes from the gateway's data dir, never from the repo being checked.
    const key = await gitgateInProcess(['audit', 'public-key', '--data-dir', dataDir]);
    expect(key.code).toBe(0);
    const verify = await gitgateInProcess(['audit', 'verify', repo, '--key', key.stdout.trim()]);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/^ok: \d+ record\(s\)/);
    const replay = await gitgateInProcess(['audit', 'replay', repo]);
    expect(replay.stdout).toMatch(/decision\s+bob\s+tools\/call get-tiny-image\s+DENY/);
    expect(replay.stdout).toMatch(/decision\s+alice\s+tools\/call get-env\s+APPROVAL REQUIRED/);
    expect(replay.stdout).toMatch(/approval\.approved\s+alice\s+tools\/call get-env/);
    expect(replay.stdout).toMatch(/approval\.executed\s+alice\s+tools\/call get-env/);
    expect(replay.stdout).toMatch(/response\s+alice\s+tools\/call get-env\s+ok/);
  });
});

describe('the CLI reports bad input clearly', () => {
  it('an invalid config file lists every problem with its path', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-cfg-'));
    const file = path.join(dir, 'gitgate.yaml');
    await (await import('node:fs/promises')).writeFile(
      file,
      'server:\n  port: "eighty"\nupstreams:\n  Bad_Name: {url: "ftp://x"}\n  ok: {}\nsurprise: true\n',
    );
    const r = await gitgateInProcess(['serve', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('server.port: must be integer');
    expect(r.stderr).toContain('(root): unknown key "surprise"');
    expect(r.stderr).toContain('upstreams: "Bad_Name" is not a valid name: must match pattern');
    expect(r.stderr).toContain('upstreams.ok: needs exactly one of "url", "stdio"');
  });

  it('`gitgate token` without --sub says what is missing', async () => {
    const r = await gitgateInProcess(['token']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("required option '--sub <id>' not specified");
  });
});
