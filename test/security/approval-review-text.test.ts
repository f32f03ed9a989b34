import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { approvalBody, approvalDocument, approvalTitle } from '../../src/approvals/request-text.js';
import type { ApprovalRecord } from '../../src/approvals/types.js';
// @ts-expect-error plain JS fixture
import { startHttpServer } from '../fixtures/demo-server.mjs';
import { connectClient } from '../helpers/client.js';
import { startGateway } from '../helpers/gateway.js';

/** Every prompts/get needs a reviewer. */
const REGO = `package gitgate
import rego.v1
decision := {
  "allow": true,
  "reasons": ["needs a human"],
  "approval": {"required": input.mcp.method == "prompts/get", "approvers": ["eng"], "min_approvals": 1, "ttl_seconds": 900},
}
`;

it("reviewers of a prompts/get read the prompt's name: in the title, the description and the approval file", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-prompt-policy-'));
  await mkdir(path.join(dir, 'gitgate'));
  await writeFile(path.join(dir, 'gitgate', 'decision.rego'), REGO);
  const upstream = (await startHttpServer()) as { url: string; close(): Promise<void> };
  const gw = await startGateway({
    policyDir: dir,
    upstreams: { gh: { url: upstream.url } },
    approvals: { provider: 'local', local: { teams: { eng: ['carol'] } } },
  });
  try {
    const c = await connectClient(`${gw.url}/mcp/gh`, await gw.token('alice', ['eng']));
    const err = (await c.client
      .getPrompt({ name: 'exfiltrate-all-customer-data', arguments: {} })
      .catch((e: unknown) => e)) as { code?: number };
    expect(err.code).toBe(-32011);
    const folder = path.join(gw.dataDir, 'approvals');
    const file = (await readdir(folder)).find((f) => f.endsWith('.json'))!;
    const a = JSON.parse(await readFile(path.join(folder, file), 'utf8')) as ApprovalRecord;
    expect(a.call).toMatchObject({ method: 'prompts/get', prompt: 'exfiltrate-all-customer-data' });
    expect(approvalTitle(a)).toContain('prompts/get exfiltrate-all-customer-data');
    expect(approvalBody(a)).toContain('`prompts/get exfiltrate-all-customer-data`');
    expect(approvalDocument(a)).toContain('prompt: "exfiltrate-all-customer-data"');
    await c.close();
  } finally {
    await gw.close();
    await upstream.close();
  }
});
