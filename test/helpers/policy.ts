import { readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/paths.js';
import { ensureOpa } from '../../src/policy/opa-binary.js';

export const opa = (): Promise<string> => ensureOpa(() => {}, process.env.GITGATE_OPA);

/** The default policy's own data (policies/config/data.json): its method lists are the tests' too. */
const DEFAULT_DATA = JSON.parse(
  readFileSync(path.join(packageRoot, 'policies', 'config', 'data.json'), 'utf8'),
) as Record<
  'protocol_methods' | 'list_methods' | 'task_methods' | 'client_notifications' | 'server_requests',
  string[]
>;

/** Test upstreams governed by the repo's own default Rego, with test data. */
export const TEST_POLICY_DATA = {
  protocol_methods: DEFAULT_DATA.protocol_methods,
  list_methods: DEFAULT_DATA.list_methods,
  task_methods: DEFAULT_DATA.task_methods,
  client_notifications: DEFAULT_DATA.client_notifications,
  server_requests: DEFAULT_DATA.server_requests,
  upstreams: Object.fromEntries(
    ['http', 'stdio', 'demo', 'down', 'slow'].map((name) => [
      name,
      {
        full_access_groups: ['eng'],
        public_tools: ['echo', 'add', 'slow', 'ask-llm', 'ask-user', 'hang', 'get-sum'],
        high_risk_tools: { 'get-env': { approvers: ['eng'], min_approvals: 1, ttl_seconds: 900 } },
        mask: [{ path: '$.result', detectors: ['email', 'aws_access_key'] }],
        credential_ttl_seconds: 60,
      },
    ]),
  ),
};

/** A policy folder: the default policy's Rego plus the given data (default TEST_POLICY_DATA). */
export async function makePolicyDir(
  data: unknown = TEST_POLICY_DATA,
  extraRego?: Record<string, string>,
): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'gitgate-policy-'));
  await cp(path.join(packageRoot, 'policies', 'gitgate'), path.join(dir, 'gitgate'), { recursive: true });
  await mkdir(path.join(dir, 'config'), { recursive: true });
  await writeFile(path.join(dir, 'config', 'data.json'), JSON.stringify(data));
  for (const [name, text] of Object.entries(extraRego ?? {})) await writeFile(path.join(dir, name), text);
  return dir;
}
