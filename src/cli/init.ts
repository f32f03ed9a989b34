import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gitText } from '../git/run.js';
import { packageRoot } from '../paths.js';
import { VERSION } from '../version.js';

/** The owner of the gitgate repository whose action (action.yml at its root) policy repos use. */
export const DEFAULT_ACTION_OWNER = 'gitgate';

/**
 * The policy workflow: this version's gitgate action (`<owner>/gitgate@v<version>`) tests and
 * builds the policy with the pinned opa, replays its impact on pull requests, and on main the
 * bundle is signed and committed next to its sources.
 */
export function policyWorkflow(action: string): string {
  return `name: policy
on:
  pull_request:
    paths: ['policies/**', 'gitgate.routes.yaml']
    types: [opened, synchronize, reopened, labeled, unlabeled]
  push:
    branches: [main]
    paths: ['policies/**', 'gitgate.routes.yaml']
permissions:
  contents: write
  pull-requests: write
jobs:
  policy:
    runs-on: ubuntu-latest
    timeout-minutes: 20
    steps:
      - uses: actions/checkout@v4
        with: { fetch-depth: 0 }
      # opa fmt (no diff), opa check --strict, opa test with a 90% coverage gate (tests not counted),
      # opa build -t wasm against gitgate's capabilities (a builtin the gateway lacks fails here), and
      # on pull requests the impact on last week's recorded decisions: one PR comment; loosening a
      # high-risk call or removing an approval fails unless the PR has the policy-impact-ack label.
      # Impact runs when the repository variable AUDIT_REPO_URL names the audit repo the gateway pushes to.
      - uses: ${action}
        with:
          dir: policies
          coverage: '90'
          audit-repo-url: \${{ vars.AUDIT_REPO_URL }}
          audit-token: \${{ secrets.AUDIT_REPO_TOKEN }}
          since: 7d
          ack: \${{ contains(github.event.pull_request.labels.*.name, 'policy-impact-ack') }}
          github-comment: 'true'
      # On main: sign the bundle with the repository secret and publish it next to its sources.
      - if: github.event_name == 'push'
        env: { POLICY_SIGNING_KEY: '\${{ secrets.POLICY_SIGNING_KEY }}' }
        run: |
          if [ -z "$POLICY_SIGNING_KEY" ]; then
            echo "::error::set the repository secret POLICY_SIGNING_KEY to the PEM private key whose public key the gateways verify (policy.repo.verification)"
            exit 1
          fi
          printf '%s' "$POLICY_SIGNING_KEY" > "$RUNNER_TEMP/signing.pem"
          gitgate policy build --dir policies --sign-key "$RUNNER_TEMP/signing.pem"
          rm "$RUNNER_TEMP/signing.pem"
          git config user.name gitgate-ci && git config user.email ci@gitgate.invalid
          git add policies/bundle.tar.gz
          git commit -m "build: signed policy bundle for \${GITHUB_SHA::12}" || echo "bundle unchanged"
          git push
`;
}

/** `gitgate init policy-repo <dir>`: a policy repo that passes its own CI out of the box. */
export async function initPolicyRepo(
  dir: string,
  opts: { actionOwner?: string },
  out: (line: string) => void,
): Promise<number> {
  const owner = opts.actionOwner ?? DEFAULT_ACTION_OWNER;
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/.test(owner))
    throw new Error(`--action-owner "${owner}" is not a GitHub user or organisation name`);
  const action = `${owner}/gitgate@v${VERSION}`;
  const root = path.resolve(dir);
  if (existsSync(root) && readdirSync(root).length > 0) throw new Error(`${root} exists and is not empty`);
  mkdirSync(root, { recursive: true });
  cpSync(path.join(packageRoot, 'policies'), path.join(root, 'policies'), {
    recursive: true,
    filter: (f) => !f.endsWith('bundle.tar.gz'),
  });
  mkdirSync(path.join(root, '.github', 'workflows'), { recursive: true });
  writeFileSync(path.join(root, '.github', 'workflows', 'policy.yml'), policyWorkflow(action));
  writeFileSync(
    path.join(root, 'CODEOWNERS'),
    '# Merging is deploying: the security team owns what decides.\n/policies/           @your-org/security\n/gitgate.routes.yaml @your-org/security\n/CODEOWNERS          @your-org/security\n/.github/workflows/  @your-org/security\n',
  );
  writeFileSync(
    path.join(root, 'gitgate.routes.yaml'),
    '# Upstream routes, reviewed like policy. Same keys as `upstreams:` in gitgate.yaml;\n# they swap in together with the policy of the same commit.\nupstreams: {}\n',
  );
  writeFileSync(
    path.join(root, 'README.md'),
    [
      '# Policy repo for gitgate',
      '',
      '- `policies/`: Rego (package `gitgate`, entrypoint `gitgate/decision`), tests, and data.',
      `- CI (\`.github/workflows/policy.yml\`, the \`${action}\` action) runs \`gitgate policy test\` and \`gitgate policy build\` on every PR, and \`gitgate policy impact\` when the repository variable \`AUDIT_REPO_URL\` names the audit repo (secret \`AUDIT_REPO_TOKEN\` to clone it); on main it signs the bundle with the secret \`POLICY_SIGNING_KEY\` and commits it.`,
      '- Point a gateway at it: `gitgate serve --policy-repo <url> --policy-branch main`.',
      '',
    ].join('\n'),
  );
  await gitText(root, ['init', '-q', '-b', 'main']);
  await gitText(root, ['add', '-A']);
  await gitText(root, ['commit', '-q', '-m', 'policy repo scaffolded by gitgate']);
  out(`initialised ${root}: policies/, .github/workflows/policy.yml (uses ${action}), CODEOWNERS, gitgate.routes.yaml`);
  out(
    'next: replace @your-org/security in CODEOWNERS, set the repository secret POLICY_SIGNING_KEY (bundle signing) and, for impact on PRs, the variable AUDIT_REPO_URL',
  );
  if (opts.actionOwner === undefined || opts.actionOwner === DEFAULT_ACTION_OWNER)
    out(`the workflow uses ${action}; --action-owner <owner> if your gitgate repository is another owner's`);
  return 0;
}
