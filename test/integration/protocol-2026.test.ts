import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from '../helpers/client.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { makePolicyDir, TEST_POLICY_DATA } from '../helpers/policy.js';

/** The conformance upstream speaks 2026-07-28 itself (and 2025-11-25 sessions): gitgate forwards 2026 requests as they are. */
async function startUpstream(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [path.join(packageRoot, 'test', 'fixtures', 'conformance-upstream.mjs')], {
    env: { ...process.env, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`upstream exited ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/mcp`, child };
}

type Capabilities = NonNullable<NonNullable<ConstructorParameters<typeof Client>[1]>['capabilities']>;

async function client2026(url: string, token: string, capabilities: Capabilities, mode: 'auto' | { pin: string }) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  const client = new Client(
    { name: 'protocol-2026-test', version: '1.0.0' },
    {
      capabilities,
      versionNegotiation: { mode },
    },
  );
  if (capabilities?.elicitation)
    client.setRequestHandler('elicitation/create', async (req) => {
      const props = Object.keys(
        (req.params as { requestedSchema?: { properties?: object } }).requestedSchema?.properties ?? {},
      );
      const answers: Record<string, string | boolean> = {
        name: 'Ada',
        color: 'teal',
        context: 'ctx',
        value: 'v',
        ok: true,
      };
      return { action: 'accept', content: Object.fromEntries(props.map((p) => [p, answers[p] ?? 'x'])) };
    });
  if (capabilities?.sampling)
    client.setRequestHandler('sampling/createMessage', async () => ({
      role: 'assistant',
      content: { type: 'text', text: 'Paris' },
      model: 'test-model',
    }));
  if (capabilities?.roots)
    client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///work', name: 'work' }] }));
  await client.connect(transport);
  return client;
}

const text = (r: unknown): string =>
  ((r as { content?: { text?: string }[] }).content ?? []).map((c) => c.text).join('');

describe('2026-07-28 end to end: a real v2 client through gitgate to a 2026 upstream', () => {
  let gw: TestGateway;
  let upstream: { url: string; child: ChildProcess };
  let client: Client;
  const all: Capabilities = { elicitation: {}, sampling: {}, roots: {} };

  beforeAll(async () => {
    upstream = await startUpstream();
    const policyDir = await makePolicyDir({
      ...TEST_POLICY_DATA,
      upstreams: { ...TEST_POLICY_DATA.upstreams, c26: { full_access_groups: ['eng'], credential_ttl_seconds: 60 } },
    });
    gw = await startGateway({ upstreams: { c26: { url: upstream.url } }, policyDir });
    client = await client2026(`${gw.url}/mcp/c26`, await gw.token('alice', ['eng']), all, { pin: '2026-07-28' });
  });
  afterAll(async () => {
    await client?.close();
    await gw?.close();
    upstream?.child.kill();
  });

  it('discovers the upstream itself: its tools, including those it offers only at 2026', async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    expect(names).toContain('test_simple_text');
    expect(names).toContain('test_input_required_result_elicitation');
    // 2025-only tools (server-to-client requests on a session) are not what the upstream offers at 2026.
    expect(names).not.toContain('test_sampling');
  });

  it('tools, resources, prompts and progress', async () => {
    expect(text(await client.callTool({ name: 'test_simple_text', arguments: {} }))).toBe(
      'This is a simple text response for testing.',
    );
    const progress: number[] = [];
    const r = await client.callTool(
      { name: 'test_tool_with_progress', arguments: {} },
      { onprogress: (p) => progress.push(p.progress) },
    );
    expect(progress).toEqual([0, 50, 100]);
    expect(text(r)).not.toBe('');
    const res = await client.readResource({ uri: 'test://static-text' });
    expect(res.contents[0]).toMatchObject({ text: 'This is the content of the static text resource.' });
    const p = await client.getPrompt({ name: 'test_prompt_with_arguments', arguments: { arg1: 'a', arg2: 'b' } });
    expect(p.messages[0]?.content).toMatchObject({ text: "Prompt with arguments: arg1='a', arg2='b'" });
  });

  it('elicitation, sampling and roots reach the caller within the request (input-required rounds)', async () => {
    expect(text(await client.callTool({ name: 'test_input_required_result_elicitation', arguments: {} }))).toBe(
      'Hello, Ada!',
    );
    expect(text(await client.callTool({ name: 'test_input_required_result_sampling', arguments: {} }))).toBe(
      'Sampling result: Paris',
    );
    expect(text(await client.callTool({ name: 'test_input_required_result_list_roots', arguments: {} }))).toBe(
      'Found 1 root(s)',
    );
    expect(text(await client.callTool({ name: 'test_input_required_result_multi_round', arguments: {} }))).toBe(
      'Multi-round complete for Ada who likes teal',
    );
    const prompt = await client.getPrompt({ name: 'test_input_required_result_prompt' });
    expect(prompt.messages[0]?.content).toMatchObject({ text: 'Prompt with context: ctx' });
  });

  it("the upstream sees the caller's own capabilities, not gitgate's", async () => {
    expect(text(await client.callTool({ name: 'test_input_required_result_capabilities', arguments: {} }))).toBe(
      'capabilities-ok: received elicit_input,sample_input',
    );
    const bare = await client2026(`${gw.url}/mcp/c26`, await gw.token('bob', ['eng']), {}, { pin: '2026-07-28' });
    try {
      expect(text(await bare.callTool({ name: 'test_input_required_result_capabilities', arguments: {} }))).toBe(
        'No supported capabilities declared',
      );
      // The upstream's own error for a capability the caller lacks reaches the caller (-32021).
      await expect(bare.callTool({ name: 'test_missing_capability', arguments: {} })).rejects.toMatchObject({
        code: -32021,
      });
    } finally {
      await bare.close();
    }
  });

  it('subscriptions/listen: acknowledged with the honored filter, list-changed notifications arrive', async () => {
    const changed = new Promise<string>((resolve) =>
      client.setNotificationHandler('notifications/tools/list_changed', (n) => resolve(n.method)),
    );
    const sub = await client.listen({ toolsListChanged: true });
    try {
      expect(sub.honoredFilter).toMatchObject({ toolsListChanged: true });
      await client.callTool({ name: 'test_trigger_tool_change', arguments: {} });
      expect(await changed).toBe('notifications/tools/list_changed');
    } finally {
      await sub.close();
    }
  });

  it('a 2025-11-25 client: the upstream drops the SSE response mid-call, gitgate resumes it, the answer arrives', async () => {
    const legacy = await connectClient(`${gw.url}/mcp/c26`, await gw.token('dave', ['eng']));
    try {
      // test_reconnection closes its POST stream before answering (2025-11-25 polling); the answer comes on GET + Last-Event-ID.
      const r = await legacy.client.callTool({ name: 'test_reconnection', arguments: {} });
      expect(text(r)).toBe('Reconnection test completed successfully.');
    } finally {
      await legacy.close();
    }
  });

  it('an auto-negotiating v2 client lands on 2026-07-28 and keeps sampling', async () => {
    const auto = await client2026(`${gw.url}/mcp/c26`, await gw.token('carol', ['eng']), all, 'auto');
    try {
      expect(text(await auto.callTool({ name: 'test_input_required_result_sampling', arguments: {} }))).toBe(
        'Sampling result: Paris',
      );
    } finally {
      await auto.close();
    }
  });

  it('the policy still decides: a caller without access is refused before the upstream', async () => {
    const eve = await client2026(`${gw.url}/mcp/c26`, await gw.token('eve'), all, { pin: '2026-07-28' });
    try {
      await expect(eve.callTool({ name: 'test_simple_text', arguments: {} })).rejects.toMatchObject({ code: -32010 });
    } finally {
      await eve.close();
    }
  });
});

describe('2026-07-28 end to end: a real v2 client through gitgate to a 2025-only upstream', () => {
  let gw: TestGateway;
  let upstream: {
    url: string;
    received: { message: { method?: string; params?: Record<string, unknown> } }[];
    close(): Promise<void>;
  };
  let client: Client;

  beforeAll(async () => {
    upstream = await startHttpServer();
    gw = await startGateway({ upstreams: { http: { url: upstream.url } } });
    client = await client2026(
      `${gw.url}/mcp/http`,
      await gw.token('alice', ['eng']),
      { elicitation: {}, sampling: {}, roots: {} },
      { pin: '2026-07-28' },
    );
  });
  afterAll(async () => {
    await client?.close();
    await gw?.close();
    await upstream?.close();
  });

  it('tools, progress, resources and prompts over the shared session', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain('ask-llm');
    expect(text(await client.callTool({ name: 'echo', arguments: { message: 'hi' } }))).toContain('hi');
  });

  it("the upstream's sampling request reaches the 2026 caller as an input-required round, and its answer the upstream", async () => {
    expect(text(await client.callTool({ name: 'ask-llm', arguments: { prompt: 'capital of France?' } }))).toBe(
      'model said: Paris',
    );
  });

  it('and so does elicitation', async () => {
    expect(text(await client.callTool({ name: 'ask-user', arguments: {} }))).toBe('user accept: Ada');
  });

  it('a caller that did not declare sampling is not asked: the upstream is refused for it, as before', async () => {
    const bare = await client2026(`${gw.url}/mcp/http`, await gw.token('bob', ['eng']), {}, { pin: '2026-07-28' });
    try {
      const r = await bare.callTool({ name: 'ask-llm', arguments: { prompt: 'x' } }).catch((e: unknown) => e);
      expect(JSON.stringify(r)).not.toContain('Paris');
    } finally {
      await bare.close();
    }
  });

  it('subscriptions/listen over the shared session: acknowledged, list-changed notifications tagged with the subscription', async () => {
    const changed = new Promise<Record<string, unknown> | undefined>((resolve) =>
      client.setNotificationHandler('notifications/tools/list_changed', (n) => resolve(n.params?._meta)),
    );
    const sub = await client.listen({ toolsListChanged: true, resourceSubscriptions: ['test://readme'] });
    try {
      // Resource subscriptions would change the session every caller shares: not honored.
      expect(sub.honoredFilter).toEqual({ toolsListChanged: true });
      await client.callTool({ name: 'mutate', arguments: {} });
      expect(await changed).toMatchObject({ 'io.modelcontextprotocol/subscriptionId': expect.any(String) });
    } finally {
      await sub.close();
    }
  });

  it("a requestState is the caller's own: another caller's retry with it is refused, never answered", async () => {
    const raw = async (token: string, body: unknown) => {
      const res = await fetch(`${gw.url}/mcp/http`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2026-07-28',
          'mcp-method': 'tools/call',
          'mcp-name': 'ask-llm',
        },
        body: JSON.stringify(body),
      });
      const t = await res.text();
      const data = t.startsWith('{')
        ? t
        : (
            t
              .split('\n')
              .filter((l) => l.startsWith('data: '))
              .pop() ?? ''
          ).slice(6);
      return JSON.parse(data) as { result?: Record<string, unknown>; error?: { code: number; message: string } };
    };
    const meta = {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientCapabilities': { sampling: {} },
    };
    const call = (extra: Record<string, unknown>) => ({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'ask-llm', arguments: { prompt: 'p' }, _meta: meta, ...extra },
    });
    const first = await raw(await gw.token('alice', ['eng']), call({}));
    expect(first.result).toMatchObject({
      resultType: 'input_required',
      inputRequests: { upstream_request: { method: 'sampling/createMessage' } },
    });
    const requestState = first.result?.requestState as string;
    const answer = {
      inputResponses: { upstream_request: { role: 'assistant', content: { type: 'text', text: 'X' }, model: 'm' } },
    };
    const stolen = await raw(await gw.token('mallory', ['eng']), call({ requestState, ...answer }));
    expect(stolen.error).toMatchObject({ code: -32602 });
    const own = await raw(await gw.token('alice', ['eng']), call({ requestState, ...answer }));
    expect(own.result).toMatchObject({ content: [{ type: 'text', text: 'model said: X' }] });
    // Used once.
    const again = await raw(await gw.token('alice', ['eng']), call({ requestState, ...answer }));
    expect(again.error).toMatchObject({ code: -32602 });
  });
});
