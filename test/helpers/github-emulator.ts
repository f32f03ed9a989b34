import http from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { signBody } from '../../src/webhooks/verify-and-receive.js';

const require = createRequire(import.meta.url);

/** GitHub's REST OpenAPI description, loaded once per test file. */
let spec: { paths: Record<string, Record<string, { operationId: string; requestBody?: unknown }>> } | undefined;
let ajv: Ajv | undefined;
function openapi() {
  if (spec === undefined) {
    const file = path.join(path.dirname(require.resolve('@octokit/openapi/package.json')), 'generated', 'api.github.com.json');
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
  validate?: ValidateFunction | null;
}

let routes: Route[] | undefined;
function allRoutes(): Route[] {
  if (routes !== undefined) return routes;
  routes = [];
  for (const [template, ops] of Object.entries(openapi().spec.paths)) {
    const names: string[] = [];
    const re = template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{([^}]+)\}/g, (_m, n: string) => {
      names.push(n);
      return n === 'path' || n === 'ref' ? '(.+)' : '([^/]+)';
    });
    for (const [method, op] of Object.entries(ops)) {
      if (typeof op !== 'object' || op === null || !('operationId' in op)) continue;
      routes.push({ template, method: method.toUpperCase(), operationId: op.operationId, regex: new RegExp(`^${re}$`), names });
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
  if (content?.['application/json'] === undefined) return (r.validate = null);
  const pointer = `#/paths/${r.template.replaceAll('~', '~0').replaceAll('/', '~1')}/${r.method.toLowerCase()}/requestBody/content/application~1json/schema`;
  r.validate = openapi().ajv.compile({ $ref: `github${pointer}` });
  return r.validate;
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
  user: string;
  requested_reviewers: string[];
  requested_teams: string[];
  reviews: { id: number; login: string; state: string; commit_id: string; body: string }[];
}

const sha = (s: string) => createHash('sha1').update(s).digest('hex');

/**
 * A GitHub REST emulator on loopback for the calls gitgate makes. Every request
 * is matched to an operation of GitHub's OpenAPI description and its JSON body
 * validated against that operation's schema; anything else is a recorded violation.
 */
export class GitHubEmulator {
  readonly requests: { operationId: string; method: string; path: string; body: unknown }[] = [];
  readonly violations: string[] = [];
  readonly refs = new Map<string, string>([['heads/main', sha('main')]]);
  readonly files = new Map<string, string>();
  readonly pulls = new Map<number, EmulatedPull>();
  readonly checkRuns = new Map<number, Record<string, unknown>>();
  readonly comments: { id: number; issue: number; body: string }[] = [];
  readonly teams = new Map<string, Set<string>>();
  /** The Authorization header of every request (GitHub App tests check the token exchange). */
  readonly auth: { operationId: string; authorization: string }[] = [];
  /** GitHub App installations: id → the app's public key (PEM) that must sign the app JWT. */
  readonly installations = new Map<number, { appId: number; publicKey: string }>();
  #server: http.Server | undefined;
  #nextId = 1;
  url = '';

  constructor(readonly owner = 'acme', readonly repo = 'approvals') {}

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

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', this.url);
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(body === undefined ? '' : JSON.stringify(body));
    };
    const route = allRoutes().find((r) => r.method === req.method && r.regex.test(url.pathname));
    if (route === undefined) {
      this.violations.push(`${req.method} ${url.pathname}: no such operation in GitHub's REST API`);
      return send(404, { message: 'Not Found' });
    }
    const m = route.regex.exec(url.pathname)!;
    const params = Object.fromEntries(route.names.map((n, i) => [n, decodeURIComponent(m[i + 1]!)]));
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
    const b = (body ?? {}) as Record<string, unknown>;
    const pr = (n: string | undefined) => this.pulls.get(Number(n));
    const prJson = (p: EmulatedPull) => ({
      id: p.number,
      number: p.number,
      html_url: `https://github.test/${this.owner}/${this.repo}/pull/${p.number}`,
      url: `${this.url}/repos/${this.owner}/${this.repo}/pulls/${p.number}`,
      state: p.state,
      title: p.title,
      body: p.body,
      merged: p.merged,
      merged_by: p.merged_by === null ? null : { login: p.merged_by, id: 1, type: 'User' },
      user: { login: p.user, id: 1, type: 'User' },
      head: { ref: p.head.ref, sha: p.head.sha },
      base: { ref: p.base.ref, sha: this.refs.get(`heads/${p.base.ref}`) },
    });
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
        return send(201, { token: `ghs_installation_${params.installation_id}`, expires_at: new Date(Date.now() + 3_600_000).toISOString(), permissions: {} });
      }
      case 'git/get-ref': {
        const s = this.refs.get(params.ref!);
        return s === undefined ? send(404, { message: 'Not Found' }) : send(200, { ref: `refs/${params.ref}`, object: { sha: s, type: 'commit' } });
      }
      case 'git/create-ref': {
        const ref = String(b.ref).replace(/^refs\//, '');
        if (this.refs.has(ref)) return send(422, { message: 'Reference already exists' });
        this.refs.set(ref, String(b.sha));
        return send(201, { ref: b.ref, object: { sha: b.sha, type: 'commit' } });
      }
      case 'repos/create-or-update-file-contents': {
        const branch = `heads/${String(b.branch)}`;
        const content = Buffer.from(String(b.content), 'base64').toString('utf8');
        const commit = sha(`${this.refs.get(branch)}:${params.path}:${content}`);
        this.files.set(`${b.branch}:${params.path}`, content);
        this.refs.set(branch, commit);
        return send(201, { content: { path: params.path, sha: sha(content) }, commit: { sha: commit, message: b.message } });
      }
      case 'pulls/create': {
        const number = this.#nextId++;
        const head = String(b.head);
        const p: EmulatedPull = { number, title: String(b.title), body: String(b.body ?? ''), head: { ref: head, sha: this.refs.get(`heads/${head}`)! }, base: { ref: String(b.base) }, state: 'open', merged: false, merged_by: null, user: 'gitgate[bot]', requested_reviewers: [], requested_teams: [], reviews: [] };
        this.pulls.set(number, p);
        return send(201, prJson(p));
      }
      case 'pulls/request-reviewers': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        p.requested_reviewers.push(...((b.reviewers as string[] | undefined) ?? []));
        p.requested_teams.push(...((b.team_reviewers as string[] | undefined) ?? []));
        return send(201, prJson(p));
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
        return p ? send(200, prJson(p)) : send(404, { message: 'Not Found' });
      }
      case 'pulls/list-reviews': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        return send(200, p.reviews.map((r) => ({ id: r.id, user: { login: r.login, id: 1, type: 'User' }, state: r.state.toUpperCase(), commit_id: r.commit_id, body: r.body, submitted_at: new Date().toISOString() })));
      }
      case 'teams/get-membership-for-user-in-org': {
        const members = this.teams.get(`${params.org}/${params.team_slug}`);
        return members?.has(params.username!) ? send(200, { state: 'active', role: 'member', url: '' }) : send(404, { message: 'Not Found' });
      }
      case 'issues/create-comment': {
        const comment = { id: this.#nextId++, issue: Number(params.issue_number), body: String(b.body) };
        this.comments.push(comment);
        return send(201, { id: comment.id, body: comment.body, user: { login: 'gitgate[bot]' } });
      }
      case 'issues/list-comments': {
        const list = this.comments.filter((c) => c.issue === Number(params.issue_number));
        return send(200, list.map((c) => ({ id: c.id, body: c.body, user: { login: 'gitgate[bot]' } })));
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
        if (b.state === 'closed') p.state = 'closed';
        return send(200, prJson(p));
      }
      case 'pulls/merge': {
        const p = pr(params.pull_number);
        if (!p) return send(404, { message: 'Not Found' });
        p.state = 'closed';
        p.merged = true;
        p.merged_by = 'gitgate[bot]';
        return send(200, { merged: true, sha: sha(`merge:${p.number}`), message: 'Pull Request successfully merged' });
      }
      default:
        this.violations.push(`${route.operationId}: not emulated`);
        return send(501, { message: `${route.operationId} is not emulated` });
    }
  }

  // --- what reviewers do, and the webhooks GitHub would send -------------------

  #example(name: string, action: string): Record<string, unknown> {
    const all = require('@octokit/webhooks-examples') as { name: string; examples: Record<string, unknown>[] }[];
    const ex = all.find((e) => e.name === name)!.examples.find((x) => x.action === action)!;
    return structuredClone(ex);
  }

  #patchPull(payload: Record<string, unknown>, p: EmulatedPull): void {
    const pull = payload.pull_request as Record<string, unknown>;
    pull.number = p.number;
    pull.state = p.state;
    (pull.head as Record<string, unknown>).sha = p.head.sha;
    (pull.head as Record<string, unknown>).ref = p.head.ref;
    const repo = payload.repository as Record<string, unknown>;
    repo.name = this.repo;
    (repo.owner as Record<string, unknown>).login = this.owner;
  }

  /** A review on the PR; returns the webhook payload GitHub would send. */
  review(number: number, r: { login: string; state: 'approved' | 'changes_requested' | 'commented'; body?: string; commit?: string }): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    const review = { id: this.#nextId++, login: r.login, state: r.state, commit_id: r.commit ?? p.head.sha, body: r.body ?? '' };
    p.reviews.push(review);
    const payload = this.#example('pull_request_review', 'submitted');
    this.#patchPull(payload, p);
    Object.assign(payload.review as Record<string, unknown>, { id: review.id, state: r.state, commit_id: review.commit_id, body: review.body });
    ((payload.review as Record<string, unknown>).user as Record<string, unknown>).login = r.login;
    (payload.sender as Record<string, unknown>).login = r.login;
    return payload;
  }

  /** Merge or close the PR; returns the pull_request.closed webhook payload. */
  closePull(number: number, by: string, merged: boolean): Record<string, unknown> {
    const p = this.pulls.get(number)!;
    p.state = 'closed';
    p.merged = merged;
    p.merged_by = merged ? by : null;
    const payload = this.#example('pull_request', 'closed');
    this.#patchPull(payload, p);
    const pull = payload.pull_request as Record<string, unknown>;
    pull.merged = merged;
    pull.merged_by = merged ? { ...((pull.user as object) ?? {}), login: by } : null;
    (payload.sender as Record<string, unknown>).login = by;
    return payload;
  }

  /** A new commit on the PR branch (reviews of the old head go stale). */
  push(number: number): string {
    const p = this.pulls.get(number)!;
    p.head.sha = sha(`${p.head.sha}:more`);
    this.refs.set(`heads/${p.head.ref}`, p.head.sha);
    return p.head.sha;
  }

  /** Deliver a webhook like GitHub: signed body, event and delivery headers. */
  async deliver(url: string, event: string, payload: unknown, secret: string, opts: { delivery?: string; signature?: string } = {}): Promise<{ status: number; body: unknown }> {
    const body = JSON.stringify(payload);
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
