import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { signBody } from '../../src/webhooks/verify-and-receive.js';
import { examplePayload, patchPayload } from './github-webhook-payloads.js';

const require = createRequire(import.meta.url);

interface Operation {
  operationId: string;
  requestBody?: unknown;
  parameters?: ({ $ref: string } | { name: string; in: string })[];
}

/** GitHub's REST OpenAPI description, loaded once per test file. */
let spec:
  | {
      paths: Record<string, Record<string, Operation>>;
      components: { parameters: Record<string, { name: string; in: string }> };
    }
  | undefined;
let ajv: Ajv | undefined;
function openapi() {
  if (spec === undefined) {
    const file = path.join(
      path.dirname(require.resolve('@octokit/openapi/package.json')),
      'generated',
      'api.github.com.json',
    );
    spec = JSON.parse(readFileSync(file, 'utf8')) as NonNullable<typeof spec>;
    ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true, validateSchema: false });
    ajv.addSchema(spec as object, 'github');
  }
  return { spec, ajv: ajv! };
}

interface Route {
  readonly template: string;
  readonly method: string;
  readonly operationId: string;
  readonly regex: RegExp;
  readonly names: string[];
  /** The query parameters the operation declares. */
  readonly query: ReadonlySet<string>;
  validate?: ValidateFunction | null;
}

let routes: Route[] | undefined;
function allRoutes(): Route[] {
  if (routes !== undefined) return routes;
  routes = [];
  const { spec: s } = openapi();
  for (const [template, ops] of Object.entries(s.paths)) {
    const names: string[] = [];
    const re = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, n: string) => {
      names.push(n);
      return n === 'path' || n === 'ref' ? '(.+)' : '([^/]+)';
    });
    for (const [method, op] of Object.entries(ops)) {
      if (typeof op !== 'object' || op === null || !('operationId' in op)) continue;
      const params = (op.parameters ?? []).map((p) =>
        '$ref' in p ? s.components.parameters[p.$ref.split('/').at(-1)!]! : p,
      );
      const query = new Set(params.filter((p) => p.in === 'query').map((p) => p.name));
      routes.push({
        template,
        method: method.toUpperCase(),
        operationId: op.operationId,
        regex: new RegExp(`^${re}$`),
        names,
        query,
      });
    }
  }
  // Literal segments first (e.g. /git/ref/{ref} before /git/{anything}).
  routes.sort((a, b) => b.template.replace(/\{[^}]+\}/g, '').length - a.template.replace(/\{[^}]+\}/g, '').length);
  return routes;
}

function bodyValidator(r: Route): ValidateFunction | null {
  if (r.validate !== undefined) return r.validate;
  const op = openapi().spec.paths[r.template]![r.method.toLowerCase()]!;
  const content = (op.requestBody as { content?: Record<string, unknown> } | undefined)?.content;
  if (content?.['application/json'] === undefined) {
    r.validate = null;
    return null;
  }
  const pointer = `#/paths/${r.template.replaceAll('~', '~0').replaceAll('/', '~1')}/${r.method.toLowerCase()}/requestBody/content/application~1json/schema`;
  r.validate = openapi().ajv.compile({ $ref: `github${pointer}` });
  return r.validate;
}

export interface EmulatedReview {
  id: number;
  login: string;
  state: 'approved' | 'changes_requested' | 'commented' | 'dismissed';
  commit_id: string;
  body: string;
  submitted_at: string;
}

export interface EmulatedPull {
  number: number;
  title: string;
  body: string;
  head: { ref: string; sha: string };
  base: { ref: string };
  state: 'open' | 'closed';
  merged: boolean;
  merged_by: string | null;
  closed_by: string | null;
  user: string;
  requested_reviewers: string[];
  requested_teams: string[];
  reviews: EmulatedReview[];
}

interface Commit {
  readonly tree: ReadonlyMap<string, string>;
  readonly parents: readonly string[];
}

const sha = (s: string) => createHash('sha1').update(s).digest('hex');
const blobSha = (content: string) => sha(`blob ${Buffer.byteLength(content)}\0${content}`);

/**
 * A GitHub REST emulator on loopback for the calls gitgate makes. Every request
 * is matched to an operation of GitHub's OpenAPI description, its query
 * parameters checked against those the operation declares and its JSON body
 * validated against the operation's schema; anything else is a recorded
 * violation. Lists are paginated with Link headers as GitHub does.
 */
export class GitHubEmulator {
  readonly requests: { operationId: string; method: string; path: string; body: unknown }[] = [];
  readonly violations: string[] = [];
  /** Commits by sha: each holds its whole tree (path → content). */
  readonly commits = new Map<string, Commit>([
    [sha('main'), { tree: new Map([['README.md', '# approvals\n']]), parents: [] }],
  ]);
  readonly refs = new Map<string, string>([['heads/main', sha('main')]]);
  /** `<branch>:<path>` → content, as last written through the API. */
  readonly files = new Map<string, string>();
  readonly pulls = new Map<number, EmulatedPull>();
  readonly checkRuns = new Map<number, Record<string, unknown>>();
  readonly comments: { id: number; issue: number; body: string }[] = [];
  readonly teams = new Map<string, Set<string>>();
  /** The Authorization header of every request (GitHub App tests check the token exchange). */
  readonly auth: { operationId: string; authorization: string }[] = [];
  /** GitHub App installations: id → the app's public key (PEM) that must sign the app JWT. */
  readonly installations = new Map<number, { appId: number; publicKey: string }>();
  /** The account gitgate's token belongs to: the author of the pull requests it opens. */
  actor = 'gitgate[bot]';
  /** Called for every request before it is answered (tests move a clock, count calls). */
  onRequest: ((operationId: string) => void | Promise<void>) | undefined;
  readonly #faults = new Map<string, { status: number; times: number }>();
  readonly #pauses = new Map<string, { reached: () => void; released: Promise<void> }>();
  #server: http.Server | undefined;
  #nextId = 1;
  #tick = 0;
  url = '';

  constructor(
    readonly owner = 'acme',
    readonly repo = 'approvals',
  ) {}

  async start(): Promise<this> {
    allRoutes();
    this.#server = http.createServer((req, res) => void this.#handle(req, res));
    await new Promise<void>((r) => this.#server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.#server!.address() as { port: number }).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise((r) => this.#server?.close(r));
  }

  team(org: string, slug: string, members: string[]): void {
    this.teams.set(`${org}/${slug}`, new Set(members));
  }

  /** The next `times` requests of an operation fail with `status` (a GitHub outage or a crash mid-way). */
  fail(operationId: string, status = 500, times = 1): void {
    this.#faults.set(operationId, { status, times });
  }

  /** Hold the next request of an operation until release(); `reached` resolves when it arrives. */
  pause(operationId: string): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const arrived = new Promise<void>((r) => (reached = r));
    const released = new Promise<void>((r) => (release = r));
    this.#pauses.set(operationId, { reached, released });
    return { reached: arrived, release };
  }

  count(operationId: string): number {
    return this.requests.filter((r) => r.operationId === operationId).length;
  }

  /** Pull requests whose head is this branch. */
  pullsFor(branch: string): EmulatedPull[] {
    return [...this.pulls.values()].filter((p) => p.head.ref === branch);
  }

  #resolve(ref: string): string | undefined {
    if (this.commits.has(ref)) return ref;
    return this.refs.get(ref.startsWith('heads/') ? ref : `heads/${ref}`);
  }

  #commit(parent: string, change: (tree: Map<string, string>) => void, salt: string): string {
    const tree = new Map(this.commits.get(parent)?.tree ?? []);
    change(tree);
    const s = sha(`${parent}:${salt}:${[...tree].map(([p, c]) => `${p}=${blobSha(c)}`).join(',')}`);
    this.commits.set(s, { tree, parents: [parent] });
    return s;
  }

  #page<T>(res: http.ServerResponse, url: URL, items: T[]): void {
    const per = Math.min(100, Math.max(1, Number(url.searchParams.get('per_page') ?? 30)));
    const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
    const last = Math.max(1, Math.ceil(items.length / per));
    const link = (n: number, rel: string) => {
      const u = new URL(url.pathname, this.url);
      for (const [k, v] of url.searchParams) if (k !== 'page') u.searchParams.set(k, v);
      u.searchParams.set('page', String(n));
      return `<${u.href}>; rel="${rel}"`;
    };
    const links = [
      ...(page < last ? [link(page + 1, 'next'), link(last, 'last')] : []),
      ...(page > 1 ? [link(1, 'first'), link(page - 1, 'prev')] : []),
    ];
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      ...(links.length > 0 ? { link: links.join(', ') } : {}),
    });
    res.end(JSON.stringify(items.slice((page - 1) * per, page * per)));
  }

  #prJson(p: EmulatedPull) {
    const repo = { name: this.repo, full_name: `${this.owner}/${this.repo}`, owner: { login: this.owner } };
    return {
      id: p.number,
      number: p.number,
      html_url: `https://github.test/${this.owner}/${this.repo}/pull/${p.number}`,
      url: `${this.url}/repos/${this.owner}/${this.repo}/pulls/${p.number}`,
      state: p.state,
      title: p.title,
      body: p.body,
      merged: p.merged,
      merged_by:
        p.merged_by === null
          ? null
          : { login: p.merged_by, id: 1, type: p.merged_by.endsWith('[bot]') ? 'Bot' : 'User' },
      user: { login: p.user, id: 1, type: p.user.endsWith('[bot]') ? 'Bot' : 'User' },
      head: { ref: p.head.ref, sha: p.head.sha, repo },
      base: { ref: p.base.ref, sha: this.refs.get(`heads/${p.base.ref}`), repo },
    };
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', this.url);
    const send = (status: number, body?: unknown) => {
      res
        .writeHead(status, { 'content-type': 'application/json; charset=utf-8' })
        .end(body === undefined ? '' : JSON.stringify(body));
    };
    const route = allRoutes().find((r) => r.method === req.method && r.regex.test(url.pathname));
    if (route === undefined) {
      this.violations.push(`${req.method} ${url.pathname}: no such operation in GitHub's REST API`);
      return send(404, { message: 'Not Found' });
    }
    const m = route.regex.exec(url.pathname)!;
    const params = Object.fromEntries(route.names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)]));
    for (const k of url.searchParams.keys())
      if (!route.query.has(k)) this.violations.push(`${route.operationId}: unknown query parameter ${k}`);
    let body: unknown;
    if (raw !== '') {
      try {
        body = JSON.parse(raw);
      } catch {
        this.violations.push(`${route.operationId}: body is not JSON`);
      }
    }
    const validate = bodyValidator(route);
    if (validate !== null && !validate(body ?? {})) {
      this.violations.push(`${route.operationId}: ${openapi().ajv.errorsText(validate.errors)}`);
    }
    const authz = req.headers.authorization ?? '';
    if (!/^(token|bearer) /i.test(authz)) this.violations.push(`${route.operationId}: no Authorization header`);
    this.auth.push({ operationId: route.operationId, authorization: authz });
    this.requests.push({ operationId: route.operationId, method: req.method!, path: url.pathname, body });
    await this.onRequest?.(route.operationId);
    const pause = this.#pauses.get(route.operationId);
    if (pause !== undefined) {
      this.#pauses.delete(route.operationId);
      pause.reached();
      await pause.released;
    }
    const fault = this.#faults.get(route.operationId);
    if (fault !== undefined) {
      if (--fault.times <= 0) this.#faults.delete(route.operationId);
      return send(fault.status, { message: 'Server Error (emulated)' });
    }
    const b = (body ?? {}) as Record<string, unknown>;
    const pr = (n: string | undefined) => this.pulls.get(Number(n));
    switch (route.operationId) {
      case 'apps/create-installation-access-token': {
        const inst = this.installations.get(Number(params.installation_id));
        const jwt = /^bearer (.+)$/i.exec(authz)?.[1];
        if (inst === undefined || jwt === undefined) return send(404, { message: 'Not Found' });
        try {
          const { jwtVerify, importSPKI } = await import('jose');
          const { payload } = await jwtVerify(jwt, await importSPKI(inst.publicKey, 'RS256'));
          if (String(payload.iss) !== String(inst.appId)) return send(401, { message: 'wrong app' });
        } catch {
          return send(401, { message: 'A JSON web token could not be decoded' });
        }
        return send(201, {
          token: `ghs_installation_${params.installation_id}`,
          expires_at: new Date(Date.now() + 3_600_000).toISOString(),
          permissions: {},
        });
      }
      case 'git/get-ref': {
        const s = this.refs.get(params.ref!);
        return s === undefined
          ? send(404, { message: 'Not Found' })
          : send(200, { ref: `refs/${params.ref}`, object: { sha: s, type: 'commit' } });
      }
      case 'git/create-ref': {
        const ref = String(b.ref).replace(/^refs\//, '');
        if (this.refs.has(ref)) return send(422, { message: 'Reference already exists' });
        this.refs.set(ref, String(b.sha));
        return send(201, { ref: b.ref, object: { sha: b.sha, type: 'commit' } });
      }
      case 'repos/get-content': {
        const at = this.#resolve(url.searchParams.get('ref') ?? 'main');
        const content = at === undefined ? undefined : this.commits.get(at)?.tree.get(params.path!);
        if (content === undefined) return send(404, { message: 'Not Found' });
        // GitHub wraps the base64 at 60 columns.
        const b64 = Buffer.from(content).toString('base64').replace(/.{60}/g, '$&\n');
        return send(200, {
          type: 'file',
          encoding: 'base64',
          name: path.basename(params.path!),
          path: params.path,
          size: Buffer.byteLength(content),
          sha: blobSha(content),
          content: b64,
        });
      }
      case 'repos/create-or-update-file-contents': {
        const branch = `heads/${String(b.branch)}`;
        const parent = this.refs.get(branch);
        if (parent === undefined) return send(404, { message: 'Branch not found' });
        const content = Buffer.from(String(b.content), 'base64').toString('utf8');
        const existing = this.commits.get(parent)?.tree.get(params.path!);
        // As GitHub: replacing a file needs the blob sha of the one it replaces.
        if (existing !== undefined && b.sha !== blobSha(existing))
          return send(422, { message: '"sha" wasn\'t supplied.' });
        const commit = this.#commit(parent, (t) => t.set(params.path!, content), String(b.message));
        this.files.set(`${b.branch}:${params.path}`, content);
        this.refs.set(branch, commit);
        return send(existing === undefined ? 201 : 200, {
          content: { path: params.path, sha: blobSha(content) },
          commit: { sha: commit, message: b.message },
        });
      }
      case 'pulls/create': {
        const head = String(b.head);
        const base = String(b.base);
        if ([...this.pulls.values()].some((p) => p.state === 'open' && p.head.ref === head && p.base.ref === base)) {
          return send(422, {
            message: 'Validation Failed',
            errors: [
              {
                resource: 'PullRequest',
                code: 'custom',
                message: `A pull request already exists for ${this.owner}:${head}.`,
              },
            ],
          });
        }
        const number = this.#nextId++;
        const p: EmulatedPull = {
          number,
          title: String(b.title),
          body: String(b.body ?? ''),
          head: { ref: head, sha: this.refs.get(`heads/${head}`)! },
          base: { ref: base },
          state: 'open',
          merged: false,
          merged_by: null,
          closed_by: null,
          user: this.actor,
          requested_reviewers: [],
          requested_teams: [],
          reviews: [],
        };
        this.pulls.set(number, p);
        return send(201, this.#prJson(p));
      }
      case 'pulls/list': {
        const state = url.searchParams.get('state') ?? 'open';
        const head = url.searchParams.get('head');
        const list = [...this.pulls.values()].filter(
          (p) => (state === 'all' || p.state === state) && (head === null || `${this.owner}:${p.head.ref}` === head),
        );
        return this.#page(
          res,
          url,
          list.map((p) => this.#prJson(p)),
        );
      }
      case 'pulls/request-reviewers': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        p.requested_reviewers.push(...((b.reviewers as string[] | undefined) ?? []));
        p.requested_teams.push(...((b.team_reviewers as string[] | undefined) ?? []));
        return send(201, this.#prJson(p));
      }
      case 'checks/create': {
        const id = this.#nextId++;
        this.checkRuns.set(id, { id, ...b });
        return send(201, { id, ...b });
      }
      case 'checks/update': {
        const c = this.checkRuns.get(Number(params.check_run_id));
        if (!c) return send(404, { message: 'Not Found' });
        Object.assign(c, b);
        return send(200, c);
      }
      case 'pulls/get': {
        const p = pr(params.pull_number);
        return p ? send(200, this.#prJson(p)) : send(404, { message: 'Not Found' });
      }
      case 'pulls/list-reviews': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        return this.#page(
          res,
          url,
          p.reviews.map((r) => ({
            id: r.id,
            user: { login: r.login, id: 1, type: r.login.endsWith('[bot]') ? 'Bot' : 'User' },
            state: r.state.toUpperCase(),
            commit_id: r.commit_id,
            body: r.body,
            submitted_at: r.submitted_at,
          })),
        );
      }
      case 'pulls/list-files': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        const head = this.commits.get(p.head.sha)?.tree ?? new Map<string, string>();
        const base = this.commits.get(this.refs.get(`heads/${p.base.ref}`)!)?.tree ?? new Map<string, string>();
        const files = [...new Set([...head.keys(), ...base.keys()])]
          .sort()
          .filter((f) => head.get(f) !== base.get(f))
          .map((f) => ({
            sha: blobSha(head.get(f) ?? ''),
            filename: f,
            status: !base.has(f) ? 'added' : !head.has(f) ? 'removed' : 'modified',
            additions: 1,
            deletions: 0,
            changes: 1,
          }));
        return this.#page(res, url, files);
      }
      case 'issues/get': {
        const p = pr(params.issue_number);
        if (!p) return send(404, { message: 'Not Found' });
        return send(200, {
          number: p.number,
          state: p.state,
          title: p.title,
          body: p.body,
          user: { login: p.user },
          closed_by: p.closed_by === null ? null : { login: p.closed_by },
          pull_request: { url: this.#prJson(p).url },
        });
      }
      case 'teams/get-membership-for-user-in-org': {
        const members = this.teams.get(`${params.org}/${params.team_slug}`);
        // Logins are case-insensitive on GitHub.
        return [...(members ?? [])].some((m) => m.toLowerCase() === params.username!.toLowerCase())
          ? send(200, { state: 'active', role: 'member', url: '' })
          : send(404, { message: 'Not Found' });
      }
      case 'issues/create-comment': {
        const comment = { id: this.#nextId++, issue: Number(params.issue_number), body: String(b.body) };
        this.comments.push(comment);
        return send(201, { id: comment.id, body: comment.body, user: { login: this.actor } });
      }
      case 'issues/list-comments': {
        const list = this.comments.filter((c) => c.issue === Number(params.issue_number));
        return this.#page(
          res,
          url,
          list.map((c) => ({ id: c.id, body: c.body, user: { login: this.actor } })),
        );
      }
      case 'issues/update-comment': {
        const c = this.comments.find((x) => x.id === Number(params.comment_id));
        if (!c) return send(404, { message: 'Not Found' });
        c.body = String(b.body);
        return send(200, { id: c.id, body: c.body });
      }
      case 'pulls/update': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        if (b.state === 'closed' && p.state === 'open') Object.assign(p, { state: 'closed', closed_by: this.actor });
        return send(200, this.#prJson(p));
      }
      case 'pulls/merge': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        Object.assign(p, { state: 'closed', merged: true, merged_by: this.actor, closed_by: this.actor });
        return send(200, { merged: true, sha: sha(`merge:${p.number}`), message: 'Pull Request successfully merged' });
      }
      default:
        this.violations.push(`${route.operationId}: not emulated`);
        return send(501, { message: `${route.operationId} is not emulated` });
    }
  }

  // --- what people do on GitHub, and the webhooks GitHub would send -------------

  #payload(
    name: 'pull_request' | 'pull_request_review',
    action: string,
    p: EmulatedPull,
    sender: string,
  ): Record<string, unknown> {
    return patchPayload(examplePayload(name, action), { owner: this.owner, name: this.repo }, p, sender);
  }

  /** A review on the PR (of the head unless `commit` says otherwise); returns the webhook payload GitHub sends at that moment. */
  review(
    number: number,
    r: { login: string; state: 'approved' | 'changes_requested' | 'commented'; body?: string; commit?: string },
  ): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    const review: EmulatedReview = {
      id: this.#nextId++,
      login: r.login,
      state: r.state,
      commit_id: r.commit ?? p.head.sha,
      body: r.body ?? '',
      submitted_at: new Date(Date.UTC(2030, 0, 1, 0, 0, this.#tick++)).toISOString(),
    };
    p.reviews.push(review);
    const payload = this.#payload('pull_request_review', 'submitted', p, r.login);
    Object.assign(payload.review as Record<string, unknown>, {
      id: review.id,
      state: r.state,
      commit_id: review.commit_id,
      body: review.body,
      submitted_at: review.submitted_at,
    });
    ((payload.review as Record<string, unknown>).user as Record<string, unknown>).login = r.login;
    return payload;
  }

  /** Dismiss a review (GitHub keeps it, in state DISMISSED); returns the pull_request_review.dismissed payload. */
  dismiss(number: number, reviewId: number, by: string): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    const review = p.reviews.find((r) => r.id === reviewId)!;
    review.state = 'dismissed';
    const payload = this.#payload('pull_request_review', 'dismissed', p, by);
    Object.assign(payload.review as Record<string, unknown>, {
      id: review.id,
      state: 'dismissed',
      commit_id: review.commit_id,
      body: review.body,
    });
    ((payload.review as Record<string, unknown>).user as Record<string, unknown>).login = review.login;
    return payload;
  }

  /** The id of a login's newest review on a PR. */
  reviewId(number: number, login: string): number {
    return this.pulls
      .get(number)!
      .reviews.filter((r) => r.login === login)
      .at(-1)!.id;
  }

  /** Merge or close the PR; returns the pull_request.closed webhook payload. */
  closePull(number: number, by: string, merged: boolean): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    Object.assign(p, { state: 'closed', merged, merged_by: merged ? by : null, closed_by: by });
    return this.#payload('pull_request', 'closed', p, by);
  }

  /** Reopen a closed (unmerged) PR; returns the pull_request.reopened payload. */
  reopen(number: number, by: string): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    Object.assign(p, { state: 'open', closed_by: null });
    return this.#payload('pull_request', 'reopened', p, by);
  }

  /** Edit the PR's title, body or base, as anyone with write access can; returns the pull_request.edited payload. */
  editPull(
    number: number,
    by: string,
    change: { title?: string; body?: string; base?: string },
  ): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    const changes: Record<string, unknown> = {};
    if (change.title !== undefined) {
      changes.title = { from: p.title };
      p.title = change.title;
    }
    if (change.body !== undefined) {
      changes.body = { from: p.body };
      p.body = change.body;
    }
    if (change.base !== undefined) {
      changes.base = { ref: { from: p.base.ref } };
      if (!this.refs.has(`heads/${change.base}`)) this.refs.set(`heads/${change.base}`, this.refs.get('heads/main')!);
      p.base.ref = change.base;
    }
    return { ...this.#payload('pull_request', 'edited', p, by), changes };
  }

  /** A commit pushed to the PR branch (files changed, or none); returns the pull_request.synchronize payload. */
  push(number: number, files: Record<string, string> = {}, by = 'mallory'): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    p.head.sha = this.#commit(
      p.head.sha,
      (t) => {
        for (const [f, c] of Object.entries(files)) t.set(f, c);
      },
      `push ${this.#tick++}`,
    );
    this.refs.set(`heads/${p.head.ref}`, p.head.sha);
    for (const [f, c] of Object.entries(files)) this.files.set(`${p.head.ref}:${f}`, c);
    return this.#payload('pull_request', 'synchronize', p, by);
  }

  /** A file as it is at the head of a PR. */
  fileAtHead(number: number, file: string): string | undefined {
    const p = this.pulls.get(number)!;
    return this.commits.get(p.head.sha)?.tree.get(file);
  }

  /** Deliver a webhook like GitHub: signed body, event and delivery headers. */
  async deliver(
    url: string,
    event: string,
    payload: unknown,
    secret: string,
    opts: { delivery?: string; signature?: string; body?: string } = {},
  ): Promise<{ status: number; body: unknown }> {
    const body = opts.body ?? JSON.stringify(payload);
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-github-event': event,
        'x-github-delivery': opts.delivery ?? randomUUID(),
        'x-hub-signature-256': opts.signature ?? signBody(secret, body),
        'user-agent': 'GitHub-Hookshot/emulator',
      },
      body,
    });
    return { status: res.status, body: await res.json() };
  }
}
