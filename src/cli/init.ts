import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gitText } from '../git/run.js';
import { packageRoot } from '../paths.js';

const WORKFLOW = `name: policy
on:
  pull_request:
    paths: ['policies/**']
  push:
    branches: [main]
    paths: ['policies/**']
permissions:
  contents: write
jobs:
  policy:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-node@v4
        with: { node-version: 20 }
      - uses: actions/setup-go@v5
        with: { go-version: '1.24' }
      - run: npm install --no-save gitgate
      # opa fmt (fail on diff), opa check --strict, opa test with a 90% coverage gate
      - run: npx gitgate policy test --dir policies --coverage 90
      # opa build -t wasm against gitgate's capabilities: a builtin the runtime lacks fails here
      - run: npx gitgate policy build --dir policies --out /tmp/policy-check
      # Impact of the change on last week's recorded traffic (needs a clone of the audit repo)
      - if: github.event_name == 'pull_request' && vars.AUDIT_REPO_URL != ''
        env: { GITHUB_TOKEN: \${{ github.token }} }
        run: |
          git fetch --no-tags origin "\${{ github.base_ref }}"
          git clone --quiet --depth 1 "\${{ vars.AUDIT_REPO_URL }}" /tmp/audit
          npx gitgate policy impact --base "origin/\${{ github.base_ref }}" --head HEAD --audit /tmp/audit --since 7d \\
            --guard 'deny->allow:high' --github-comment \${{ contains(github.event.pull_request.labels.*.name, 'policy-impact-ack') && '--ack' || '' }}
      # On main: build, sign with the repository secret, and publish the bundle next to its sources
      - if: github.event_name == 'push'
        env: { POLICY_SIGNING_KEY: \${{ secrets.POLICY_SIGNING_KEY }} }
        run: |
          printf '%s' "$POLICY_SIGNING_KEY" > /tmp/signing.pem
          npx gitgate policy build --dir policies --sign-key /tmp/signing.pem
          rm /tmp/signing.pem
          git config user.name gitgate-ci && git config user.email ci@gitgate.invalid
          git add policies/bundle.tar.gz
          git commit -m "build: signed policy bundle for \${GITHUB_SHA::12}" || echo "bundle unchanged"
          git push
`;

/** `gitgate init policy-repo <dir>`: a policy repo that passes its own CI out of the box. */
export async function initPolicyRepo(dir: string, out: (line: string) => void): Promise<number> {
  const root = path.resolve(dir);
  if (existsSync(root) && readdirSync(root).length > 0) throw new Error(`${root} exists and is not empty`);
  mkdirSync(root, { recursive: true });
  cpSync(path.join(packageRoot, 'policies'), path.join(root, 'policies'), { recursive: true, filter: (f) => !f.endsWith('bundle.tar.gz') });
  mkdirSync(path.join(root, '.github', 'workflows'), { recursive: true });
  writeFileSync(path.join(root, '.github', 'workflows', 'policy.yml'), WORKFLOW);
  writeFileSync(path.join(root, 'CODEOWNERS'), '# Merging is deploying: the security team owns what decides.\n/policies/           @your-org/security\n/gitgate.routes.yaml @your-org/security\n/CODEOWNERS          @your-org/security\n/.github/workflows/  @your-org/security\n');
  writeFileSync(
    path.join(root, 'gitgate.routes.yaml'),
    '# Upstream routes, reviewed like policy. Same keys as `upstreams:` in gitgate.yaml;\n# they swap in together with the policy of the same commit.\nupstreams: {}\n',
  );
  writeFileSync(
    path.join(root, 'README.md'),
    '# Policy repo for gitgate\n\n- `policies/`: Rego (package `gitgate`, entrypoint `gitgate/decision`), tests, and data.\n- CI runs `gitgate policy test` and `gitgate policy build` on every PR; on main it signs the bundle and commits it.\n- Point a gateway at it: `gitgate serve --policy-repo <url> --policy-branch main`.\n',
  );
  await gitText(root, ['init', '-q', '-b', 'main']);
  await gitText(root, ['add', '-A']);
  await gitText(root, ['commit', '-q', '-m', 'policy repo scaffolded by gitgate']);
  out(`initialised ${root}: policies/, .github/workflows/policy.yml, CODEOWNERS, gitgate.routes.yaml`);
  return 0;
}
