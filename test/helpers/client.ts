import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

/** A real MCP SDK client connected through the gateway with a bearer token. */
export async function connectClient(
  url: string,
  token: string,
  opts: { sampling?: boolean; elicitation?: boolean } = {},
) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  const client = new Client(
    { name: 'gitgate-test-client', version: '1.0.0' },
    {
      capabilities: {
        ...(opts.sampling ? { sampling: {} } : {}),
        ...(opts.elicitation ? { elicitation: { form: {} } } : {}),
      },
    },
  );
  if (opts.sampling) {
    client.setRequestHandler(CreateMessageRequestSchema, async (req) => ({
      model: 'test-model',
      role: 'assistant',
      content: {
        type: 'text',
        text: `sampled(${(req.params.messages[0]?.content as { text?: string } | undefined)?.text ?? ''})`,
      },
    }));
  }
  if (opts.elicitation) {
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: 'Ada' } }));
  }
  await client.connect(transport);
  return {
    client,
    transport,
    async close() {
      await transport.terminateSession().catch(() => undefined);
      await client.close();
    },
  };
}
