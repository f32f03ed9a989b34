import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../config/duration.js';
import { toolEnv } from '../config/load.js';
import { GatewayError } from '../errors.js';
import { ensureOpa } from '../policy/opa-binary.js';
import { VERSION } from '../version.js';
import { approvalsApprove, approvalsDeny, approvalsList, type DecideOptions } from './approvals.js';
import {
  auditCheckpoint,
  auditConsistency,
  auditExport,
  auditProve,
  auditPublicKey,
  auditReplay,
  auditVerify,
  auditVerifyProof,
} from './audit.js';
import { type ImpactOptions, policyImpact } from './impact.js';
import { DEFAULT_ACTION_OWNER, initPolicyRepo } from './init.js';
import { policyBuild, policyStatus, policyTest } from './policy.js';
import { serve } from './serve.js';
import { storeMigrate } from './store.js';
import { token } from './token.js';

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

/** Set once stdout's reader has gone (`gitgate approvals list | head`). */
let stdoutClosed = false;
let stdoutWatched = false;

/**
 * EPIPE on stdout, for every command, handled here once: the reader of a pipe
 * went away, which is not a failure of the command. Nothing more is written to
 * stdout (the next `out` stops the command) and gitgate exits quietly with the
 * command's code. Any other stdout error still fails loudly.
 */
function watchStdout(): void {
  if (stdoutWatched) return;
  stdoutWatched = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED') {
      stdoutClosed = true;
      return;
    }
    throw e;
  });
}

/**
 * The `gitgate` command line. Returns the exit code. `io`: where the command's lines go instead
 * of stdout and stderr (an in-process caller, e.g. a test).
 */
export async function main(argv: string[], io?: { out(line: string): void; err(line: string): void }): Promise<number> {
  if (io === undefined) watchStdout();
  const out =
    io?.out ??
    ((line: string) => {
      // Stop the command: its output has nowhere to go. main() catches this and exits quietly.
      if (stdoutClosed) throw new GatewayError('INTERNAL', 'stdout closed');
      process.stdout.write(`${line}\n`);
    });
  const err = io?.err ?? ((line: string) => process.stderr.write(`${line}\n`));
  let code = 0;
  const program = new Command('gitgate')
    .description('Policy-as-code GitOps gateway for MCP traffic')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  if (io !== undefined)
    program.configureOutput({
      writeOut: (s) => io.out(s.replace(/\n$/, '')),
      writeErr: (s) => io.err(s.replace(/\n$/, '')),
    });

  program
    .command('serve')
    .description('run the gateway (without --config: the embedded default with the dev issuer and the demo upstream)')
    .option('-c, --config <file>', 'gitgate.yaml')
    .option('-p, --port <port>', 'listen port', port)
    .option('--host <host>', 'listen address')
    .option('-d, --data-dir <dir>', 'where keys, builds and local repos live')
    .option(
      '--approval-hold <seconds>',
      'hold a parked call this long before answering with the approval link (0 = at once)',
      (v) => {
        const n = Number(v);
        if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('must be a number of seconds >= 0');
        return n;
      },
    )
    .option('--policy-repo <path|url>', 'GitOps: pull policies from this git repo')
    .option('--policy-branch <branch>', 'branch of the policy repo (default main)')
    .option('--poll-interval <duration>', 'how often to fetch the policy repo, e.g. 30s', (v) => parseDuration(v))
    .action(
      async (o: {
        config?: string;
        port?: number;
        host?: string;
        dataDir?: string;
        approvalHold?: number;
        policyRepo?: string;
        policyBranch?: string;
        pollInterval?: number;
      }) => {
        code = await serve(o, err);
      },
    );

  program
    .command('token')
    .description('print a token from the embedded dev issuer')
    .requiredOption('--sub <id>', 'subject (caller id)')
    .option('--groups <a,b>', 'comma-separated groups')
    .option('--email <email>')
    .option('--github-login <login>')
    .option('--ttl <duration>', 'lifetime, e.g. 15m, 1h', '1h')
    .option('-c, --config <file>', 'gitgate.yaml')
    .option('-d, --data-dir <dir>', 'the gateway data dir')
    .action(async (o: Parameters<typeof token>[0]) => {
      code = await token(o, out);
    });

  const policy = program.command('policy').description('build and test Rego policies with the pinned opa');
  policy
    .command('build')
    .description('opa build -b -t wasm with gitgate capabilities; revision = the sources digest')
    .option('--dir <dir>', 'policy folder', 'policies')
    .option('--out <dir>', 'output folder (default: the policy folder, where a gateway looks for bundle.tar.gz)')
    .option('--sign-key <pem>', 'sign the bundle (OPA bundle signing) with this private key')
    .option('--signing-alg <alg>', 'RS256, PS256, ES256, …', 'RS256')
    .option(
      '--routes <file>',
      'the routes file the revision covers (default: gitgate.routes.yaml at the root of the git repo holding --dir)',
    )
    .action(async (o: { dir: string; out?: string; signKey?: string; signingAlg?: string; routes?: string }) => {
      code = await policyBuild(o, out);
    });
  policy
    .command('impact')
    .description('replay recorded decisions on two policy revisions and report which would change')
    .requiredOption('--base <ref>', 'the revision in force (e.g. origin/main)')
    .requiredOption('--head <ref>', 'the proposed revision (e.g. HEAD)')
    .option('--repo <dir>', 'the policy git repo', '.')
    .option('--dir <dir>', 'policy folder inside the repo', 'policies')
    .option(
      '--audit <repo>',
      'the audit repo (a clone); repeatable: one per replica, all replayed together (default: .gitgate/audit)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--since <when>', 'only decisions since, e.g. 7d')
    .option('--format <format>', 'markdown or json', 'markdown')
    .option(
      '--guard <transition>',
      'fail (exit 2) when decisions make this transition, e.g. deny->allow:high (repeatable; default: deny->allow:high and approval->allow; none: no guard)',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option(
      '--ack',
      'the change is acknowledged (e.g. the PR has the policy-impact-ack label): report guards, do not fail',
    )
    .option(
      '--allow-empty',
      'pass when nothing was replayed (missing or empty audit repo, no decision in the window); default: exit 1',
    )
    .option('--github-comment', 'post or update one comment on the pull request (GITHUB_TOKEN, GITHUB_REPOSITORY)')
    .option('--pr <number>', 'the pull request (default: from GITHUB_EVENT_PATH)')
    .action(async (o: Omit<ImpactOptions, 'audit'> & { audit?: string[] }) => {
      if (o.format !== 'markdown' && o.format !== 'json')
        throw new InvalidArgumentError('--format must be markdown or json');
      code = await policyImpact({ ...o, audit: o.audit ?? ['.gitgate/audit'] }, out, err);
    });
  policy
    .command('status')
    .description('the policy revision a running gateway serves')
    .option('--url <url>', 'the gateway', 'http://127.0.0.1:8080')
    .action(async (o: { url: string }) => {
      code = await policyStatus(o, out);
    });
  program
    .command('init')
    .description('scaffold a repository')
    .command('policy-repo <dir>')
    .description('a new policy repo (policies, tests, data, workflows, CODEOWNERS) that passes its own CI')
    .option(
      '--action-owner <owner>',
      'GitHub owner of the gitgate repository whose action the workflow uses (<owner>/gitgate@v<version>)',
      DEFAULT_ACTION_OWNER,
    )
    .action(async (dir: string, o: { actionOwner: string }) => {
      code = await initPolicyRepo(dir, o, out);
    });
  policy
    .command('test')
    .description('opa fmt, opa check --strict, opa test with a coverage gate')
    .option('--dir <dir>', 'policy folder', 'policies')
    .option(
      '--coverage <percent>',
      'minimum coverage of the policy (its _test.rego files not counted)',
      (v) => {
        const n = Number(v);
        if (v.trim() === '' || !Number.isFinite(n) || n < 0 || n > 100)
          throw new InvalidArgumentError('must be a percentage (0-100)');
        return v;
      },
      '90',
    )
    .action(async (o: { dir: string; coverage: string }) => {
      code = await policyTest(o, out);
    });

  program
    .command('store')
    .description('the shared PostgreSQL store of multi-replica mode (store.postgres)')
    .command('migrate')
    .description('apply the pending migrations under the advisory lock (serve does this at start), then exit')
    .option('-c, --config <file>', 'gitgate.yaml')
    .action(async (o: { config?: string }) => {
      code = await storeMigrate(o, out);
    });

  const audit = program.command('audit').description('check and read an audit repo (works offline, on any clone)');
  const keys = (v: string, prev: string[] = []) => [...prev, v];
  audit
    .command('verify <repo...>')
    .description(
      'check each repo is a log one of the given keys signed (several: one per replica, then a summary over all): every record, the Merkle tree, the signed checkpoint, work tree = HEAD, and (with --checkpoint, one repo) that it extends a checkpoint saved earlier; exit 1 naming what is wrong',
    )
    .option(
      '--key <verifier-key>',
      "the log's verifier key, or a file of them (repeatable); keys in the repo are not trusted",
      keys,
    )
    .option('--checkpoint <file>', 'a checkpoint saved earlier: the repo must be consistent with it')
    .option('--config <file>', 'also trust the verifier keys pinned in this config (audit.keys)')
    .option(
      '--allow-old-format',
      "check a repo of the old format (signed records) against the keys it holds itself, though keys are given: it proves no more than the repo's self-consistency",
    )
    .action(
      async (
        repos: string[],
        o: { key?: string[]; checkpoint?: string; config?: string; allowOldFormat?: boolean },
      ) => {
        code = await auditVerify(repos, o, out);
      },
    );
  audit
    .command('checkpoint [repo]')
    .description(
      'print the latest signed checkpoint (of a repo, or the one the gateway signed last in a data dir) to keep',
    )
    .option('--data-dir <dir>', "the gateway's data dir")
    .action(async (repo: string | undefined, o: { dataDir?: string }) => {
      code = await auditCheckpoint({ ...o, ...(repo !== undefined ? { repo } : {}) }, out);
    });
  audit
    .command('public-key')
    .description("print the log's verifier key (C2SP signed-note format): what --key takes")
    .option('--data-dir <dir>', "the gateway's data dir", '.gitgate')
    .action(async (o: { dataDir?: string }) => {
      code = await auditPublicKey(o, out);
    });
  audit
    .command('prove <exchange-or-leaf>')
    .description('proof bundles (record, inclusion proof, checkpoint), one JSON line per record, to show a third party')
    .option('--repo <repo>', 'the audit repo', '.gitgate/audit')
    .option('--key <verifier-key>', 'check the repo checkpoint with this key first (repeatable)', keys)
    .option(
      '--hashes <file>',
      "the log's stored hashes, read O(log n) a proof when they hold the checkpoint's tree (default: <repo>/../audit-wal/tree.hashes; else computed from the records)",
    )
    .action(async (target: string, o: { repo: string; key?: string[]; hashes?: string }) => {
      code = await auditProve(target, o, out);
    });
  audit
    .command('verify-proof <bundle>')
    .description('check proof bundles offline against the given key')
    .option('--key <verifier-key>', "the log's verifier key (repeatable)", keys)
    .action(async (bundle: string, o: { key?: string[] }) => {
      code = await auditVerifyProof(bundle, o, out);
    });
  audit
    .command('consistency <old-checkpoint> <repo>')
    .description("print a consistency proof from a saved checkpoint to the repo's tree")
    .option('--key <verifier-key>', "the log's verifier key (repeatable)", keys)
    .action(async (old: string, repo: string, o: { key?: string[] }) => {
      code = await auditConsistency(old, repo, o, out);
    });
  audit
    .command('replay <repo>')
    .description(
      'show exchanges as one timeline in time order across sessions, with arguments and the approval that released a call',
    )
    .option('--session <id>', 'one MCP session')
    .option('--caller <sub>', 'one caller')
    .option('--since <when>', 'e.g. 7d, 12h, or an ISO date')
    .option('--json', 'one JSON record per line')
    .action(async (repo: string, o: { session?: string; caller?: string; since?: string; json?: boolean }) => {
      code = await auditReplay(repo, o, out);
    });
  audit
    .command('export <repo>')
    .description('JSON Lines for a SIEM, one record per line')
    .option('--since <when>', 'e.g. 7d, 12h, or an ISO date')
    .action(async (repo: string, o: { since?: string }) => {
      code = await auditExport(repo, o, out);
    });

  const approvals = program
    .command('approvals')
    .description('parked high-risk calls (the embedded default decides them locally; with GitHub, review the PR)');
  const common = (c: Command) =>
    c.option('-c, --config <file>', 'gitgate.yaml').option('-d, --data-dir <dir>', 'the gateway data dir');
  common(approvals.command('list').option('--all', 'include decided ones')).action(
    async (o: { config?: string; dataDir?: string; all?: boolean }) => {
      code = await approvalsList(o, out, err);
    },
  );
  const decider = (c: Command) =>
    common(c)
      .option(
        '--token <jwt>',
        'your token from the configured issuer (default: $GITGATE_TOKEN; in dev mode `gitgate token --sub <you>` mints one)',
      )
      .addOption(new Option('--as <login>', 'no longer accepted: the token says who you are').hideHelp());
  decider(
    approvals
      .command('approve <id>')
      .description('approve as the holder of the token (not the requester; must be eligible)'),
  ).action(async (id: string, o: DecideOptions) => {
    code = await approvalsApprove(id, o, out, process.env, err);
  });
  decider(
    approvals
      .command('deny <id>')
      .description('deny as the holder of the token')
      .option('--reason <text>', 'what the caller is told'),
  ).action(async (id: string, o: DecideOptions) => {
    code = await approvalsDeny(id, o, out, process.env, err);
  });

  program
    .command('setup')
    .description('install the pinned opa (go install into tools/) unless a matching one is on PATH')
    .action(async () => {
      out(`opa: ${await ensureOpa(out, toolEnv().opaPath)}`);
    });

  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (stdoutClosed) return code;
    const ce = e as { code?: string; exitCode?: number };
    if (typeof ce.code === 'string' && ce.code.startsWith('commander.')) return ce.exitCode ?? 1;
    err(`gitgate: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
  return code;
}
