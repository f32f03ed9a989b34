import path from 'node:path';
import { LocalApprovalProvider, LocalGitRepo, recordLocalDecision } from '../approvals/local/provider.js';
import { isRequester } from '../approvals/requester.js';
import { FileApprovalStore } from '../approvals/store.js';
import { loadConfig } from '../config/load.js';

interface Common {
  config?: string;
  dataDir?: string;
}

function context(o: Common) {
  const config = loadConfig(o.config, o.dataDir !== undefined ? { dataDir: o.dataDir } : {});
  return { config, store: new FileApprovalStore(path.join(config.dataDir, 'approvals')) };
}

export async function approvalsList(o: Common & { all?: boolean }, out: (line: string) => void): Promise<number> {
  const { store } = context(o);
  const rows = store
    .all()
    .filter((a) => o.all === true || a.status === 'pending' || a.status === 'approved')
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  if (rows.length === 0) out(o.all === true ? 'no approvals' : 'no pending approvals (use --all for history)');
  for (const a of rows) {
    out(`${a.id}  ${a.status.padEnd(8)} ${a.requester.login} → ${a.call.upstream} ${a.call.method}${a.call.tool ? ` ${a.call.tool}` : ''} ${JSON.stringify(a.call.arguments)}`);
    out(`    needs ${a.minApprovals} from ${a.approvers.join(', ')}; expires ${a.expiresAt}; ${a.remote?.url ?? 'not opened yet'}`);
  }
  return 0;
}

async function decide(o: Common & { as: string; reason?: string }, id: string, action: 'approve' | 'deny', out: (line: string) => void): Promise<number> {
  const { config, store } = context(o);
  if (config.approvals.provider !== 'local') throw new Error('gitgate approvals approve|deny decides local approvals; with GitHub, review the pull request');
  const a = store.get(id);
  if (a === undefined) throw new Error(`no approval ${id} (gitgate approvals list)`);
  if (a.status !== 'pending') throw new Error(`approval ${id} is ${a.status}, not pending`);
  if (isRequester(a.requester, [o.as])) throw new Error(`${o.as} requested this call and cannot approve or deny it`);
  const repo = await LocalGitRepo.open(config.approvals.local.repo);
  const provider = new LocalApprovalProvider(repo, config.approvals.local.teams);
  if (!(await provider.isEligible(o.as, a.approvers))) throw new Error(`${o.as} is not an eligible approver of ${id} (${a.approvers.join(', ')})`);
  await recordLocalDecision(repo, id, { action, by: o.as, ...(o.reason !== undefined ? { reason: o.reason } : {}) });
  out(`${action === 'approve' ? 'approved' : 'denied'} ${id} as ${o.as}; the gateway applies it within ${config.approvals.pollSeconds} s`);
  return 0;
}

export const approvalsApprove = (id: string, o: Common & { as: string }, out: (line: string) => void) => decide(o, id, 'approve', out);
export const approvalsDeny = (id: string, o: Common & { as: string; reason?: string }, out: (line: string) => void) => decide(o, id, 'deny', out);
