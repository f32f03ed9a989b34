import { existsSync } from 'node:fs';
import path from 'node:path';
import { recordLocalDecision } from '../approvals/local/decisions.js';
import { LocalGitRepo } from '../approvals/local/git-repo.js';
import { LocalApprovalProvider } from '../approvals/local/provider.js';
import { callWhat } from '../approvals/request-text.js';
import { isRequester, loginOf, namesOf } from '../approvals/requester.js';
import { FileApprovalStore } from '../approvals/store.js';
import type { ApprovalRecord } from '../approvals/types.js';
import { systemClock } from '../clock.js';
import { loadConfig } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { configuredVerifier } from '../identity/configured-verifier.js';
import { printable } from '../printable.js';
import { PgStore } from '../store/postgres.js';

interface Common {
  config?: string;
  dataDir?: string;
}

export interface DecideOptions extends Common {
  /** The approver's bearer token (else GITGATE_TOKEN): who decides is who the token says. */
  token?: string;
  /** No longer accepted: a name on the command line proves nothing. */
  as?: string;
  reason?: string;
}

const stderrLine = (line: string) => void process.stderr.write(`${line}\n`);

/**
 * The config and approvals store the command reads. It says (on stderr) which data dir
 * that is and where that came from, and fails when the dir holds no approvals store
 * (a gateway creates `<data-dir>/approvals/` when it starts): no silent `./.gitgate`.
 */
function context(o: Common, err: (line: string) => void) {
  const config = loadConfig(o.config, o.dataDir !== undefined ? { dataDir: o.dataDir } : {});
  const from =
    o.dataDir !== undefined
      ? '--data-dir'
      : o.config !== undefined
        ? `dataDir of ${config.source}`
        : 'default: no --data-dir or --config';
  err(`gitgate: data dir ${config.dataDir} (${from})`);
  const dir = path.join(config.dataDir, 'approvals');
  if (!existsSync(dir)) {
    throw new GatewayError(
      'CONFIG_INVALID',
      `${config.dataDir} holds no approvals store (no ${dir}): pass the gateway's data dir with --data-dir <dir>, or its config with --config <gitgate.yaml> (the gateway prints its data dir when it starts)`,
    );
  }
  return { config, store: new FileApprovalStore(dir) };
}

/** At most this many approvals are listed from the shared store (newest first), as the gateway caches. */
const MAX_SHARED_ROWS = 10_000;

/**
 * Multi-replica mode: the approvals every replica shares, read from PostgreSQL (the data dir's
 * files hold none of them). Opening the store applies pending migrations, as `serve` would.
 */
async function sharedApprovals(
  p: NonNullable<ReturnType<typeof loadConfig>['store']>['postgres'],
  all: boolean,
  source: string,
  err: (line: string) => void,
): Promise<ApprovalRecord[]> {
  err(`gitgate: shared store, schema ${p.schema} (store.postgres of ${source})`);
  const db = await PgStore.open({
    url: p.url.reveal(),
    schema: p.schema,
    poolMax: 1,
    timeoutMs: p.timeoutMs,
    replicaId: p.replicaId,
  });
  try {
    const r = await db.query<{ record: ApprovalRecord }>(
      `SELECT record FROM approvals ${all ? '' : "WHERE status IN ('pending', 'approved')"}
       ORDER BY updated_at DESC LIMIT ${MAX_SHARED_ROWS}`,
    );
    return r.rows.map((x) => x.record);
  } finally {
    await db.close();
  }
}

export async function approvalsList(
  o: Common & { all?: boolean },
  out: (line: string) => void,
  err: (line: string) => void = stderrLine,
): Promise<number> {
  const config = loadConfig(o.config, o.dataDir !== undefined ? { dataDir: o.dataDir } : {});
  const pg = config.store?.postgres;
  const found =
    pg !== undefined ? await sharedApprovals(pg, o.all === true, config.source, err) : context(o, err).store.all();
  const rows = found
    .filter((a) => o.all === true || a.status === 'pending' || a.status === 'approved')
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  if (rows.length === 0) out(o.all === true ? 'no approvals' : 'no pending approvals (use --all for history)');
  for (const a of rows) {
    // Strings from the call are printed with control characters escaped: what a reviewer reads is the call.
    out(
      printable(
        `${a.id}  ${a.status.padEnd(8)} ${a.requester.login} → ${a.call.upstream} ${callWhat(a.call)}${a.call.uri !== undefined ? ` ${a.call.uri}` : ''} ${JSON.stringify(a.call.arguments)}${a.call.otherParams !== undefined ? ` ${JSON.stringify(a.call.otherParams)}` : ''}`,
      ),
    );
    out(
      `    needs ${a.required ?? a.minApprovals} from ${a.approvers.join(', ')}; expires ${a.expiresAt}; ${a.remote?.url ?? 'not opened yet'}`,
    );
  }
  return 0;
}

/**
 * approve|deny a local approval as the holder of a token of the configured
 * issuer (dev: `gitgate token`; OIDC: a token of that issuer). The approver is
 * the verified identity, never a name given on the command line.
 */
async function decide(
  o: DecideOptions,
  id: string,
  action: 'approve' | 'deny',
  out: (line: string) => void,
  env: NodeJS.ProcessEnv,
  err: (line: string) => void,
): Promise<number> {
  const { config, store } = context(o, err);
  if (config.approvals.provider !== 'local')
    throw new Error('gitgate approvals approve|deny decides local approvals; with GitHub, review the pull request');
  if (o.as !== undefined)
    throw new GatewayError(
      'AUTH_REQUIRED',
      '--as is not accepted: prove who you are with --token <jwt> or GITGATE_TOKEN (in dev mode `gitgate token --sub <you>` mints one)',
    );
  const token = o.token ?? env.GITGATE_TOKEN;
  if (token === undefined || token === '')
    throw new GatewayError(
      'AUTH_REQUIRED',
      'a token is required to approve or deny: --token <jwt> or GITGATE_TOKEN (in dev mode `gitgate token --sub <you>` mints one)',
    );
  const identity = await (await configuredVerifier(config)).verifier.verify(token);
  const by = loginOf(identity, config.approvals.logins);
  const a = store.get(id);
  if (a === undefined) throw new Error(`no approval ${id} (gitgate approvals list)`);
  if (a.status !== 'pending') throw new Error(`approval ${id} is ${a.status}, not pending`);
  if (isRequester(a.requester, namesOf({ ...identity, login: by })))
    throw new Error(`${by} requested this call and cannot approve or deny it`);
  const repo = await LocalGitRepo.open(config.approvals.local.repo);
  const provider = new LocalApprovalProvider(repo, config.approvals.local.teams);
  if (!provider.isKnown(by)) throw new Error(`${by} is not a known user (approvals.local.teams)`);
  if (!(await provider.isEligible(by, a.approvers)))
    throw new Error(`${by} is not an eligible approver of ${id} (${a.approvers.join(', ')})`);
  await recordLocalDecision(
    repo,
    id,
    {
      action,
      by,
      sub: identity.sub,
      issuer: identity.issuer,
      ...(identity.email !== undefined ? { email: identity.email } : {}),
      ...(o.reason !== undefined ? { reason: o.reason } : {}),
    },
    new Date(systemClock.now()),
  );
  out(
    `${action === 'approve' ? 'approved' : 'denied'} ${id} as ${by}; the gateway applies it within ${config.approvals.pollSeconds} s`,
  );
  return 0;
}

export const approvalsApprove = (
  id: string,
  o: DecideOptions,
  out: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  err: (line: string) => void = stderrLine,
): Promise<number> => decide(o, id, 'approve', out, env, err);
export const approvalsDeny = (
  id: string,
  o: DecideOptions,
  out: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  err: (line: string) => void = stderrLine,
): Promise<number> => decide(o, id, 'deny', out, env, err);
