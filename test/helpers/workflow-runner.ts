import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

/**
 * A small local runner for GitHub Actions workflows: runs every `run:` step of a
 * job in order with bash, as a runner would (env, `if:`, `${{ }}` expressions,
 * GITHUB_ENV / GITHUB_PATH / GITHUB_OUTPUT), and expands a composite action
 * (`uses:` of a local action) by running its own steps with its inputs. Steps
 * that only set up the machine (actions/checkout, setup-node, setup-go, cache)
 * are skipped and reported as such: the caller prepares the workspace and tools.
 */

type Value = unknown;
type Ctx = Record<string, Value>;

export interface StepResult {
  readonly name: string;
  readonly status: 'ok' | 'failed' | 'skipped' | 'not run';
  /** Why a step was skipped (its `if:` was false, or it only sets up the machine). */
  readonly why?: string;
  readonly output: string;
  readonly code?: number;
}

export interface RunOptions {
  readonly workspace: string;
  readonly event: { name: string; payload: Record<string, unknown> };
  readonly github?: Record<string, Value>;
  readonly vars?: Record<string, string>;
  readonly secrets?: Record<string, string>;
  /** Environment every step starts from (PATH included). */
  readonly env: Record<string, string>;
  /** RUNNER_TEMP and RUNNER_TOOL_CACHE live here. */
  readonly runnerDir: string;
  /** `uses:` refs resolved to a local action folder (e.g. acme/gitgate@v0.1.0 → this repo's checkout). */
  readonly actions: Readonly<Record<string, string>>;
}

const SETUP_ONLY = /^actions\/(checkout|setup-node|setup-go|cache)@/;

// ---------- expressions (the subset workflows use: paths, literals, ==, !=, &&, ||, !, (), functions, .*.) ----------

function tokenize(src: string): string[] {
  const out: string[] = [];
  const re = /\s*(?:('(?:[^']|'')*')|(==|!=|&&|\|\||[!().,[\]*])|([A-Za-z_][A-Za-z0-9_-]*)|(-?\d+(?:\.\d+)?))/y;
  let i = 0;
  while (i < src.length) {
    if (/^\s*$/.test(src.slice(i))) break;
    re.lastIndex = i;
    const m = re.exec(src);
    if (!m) throw new Error(`cannot parse expression at "${src.slice(i)}"`);
    out.push(m[1] ?? m[2] ?? m[3] ?? m[4]!);
    i = re.lastIndex;
  }
  return out;
}

const truthy = (v: Value) => !(v === false || v === 0 || v === '' || v === null || v === undefined);
const eq = (a: Value, b: Value) =>
  typeof a === 'string' && typeof b === 'string'
    ? a.toLowerCase() === b.toLowerCase()
    : a === b || String(a ?? '') === String(b ?? '');

export function evaluate(src: string, ctx: Ctx): Value {
  const t = tokenize(src);
  let p = 0;
  const peek = () => t[p];
  const take = (want?: string) => {
    const v = t[p++];
    if (want !== undefined && v !== want) throw new Error(`expected ${want} in "${src}", got ${v}`);
    return v!;
  };
  const or = (): Value => {
    let v = and();
    while (peek() === '||') {
      take();
      const r = and();
      v = truthy(v) ? v : r;
    }
    return v;
  };
  const and = (): Value => {
    let v = cmp();
    while (peek() === '&&') {
      take();
      const r = cmp();
      v = truthy(v) ? r : v;
    }
    return v;
  };
  const cmp = (): Value => {
    let v = unary();
    while (peek() === '==' || peek() === '!=') {
      const op = take();
      const r = unary();
      v = op === '==' ? eq(v, r) : !eq(v, r);
    }
    return v;
  };
  const unary = (): Value => {
    if (peek() === '!') {
      take();
      return !truthy(unary());
    }
    return primary();
  };
  const call = (name: string, args: Value[]): Value => {
    switch (name.toLowerCase()) {
      case 'contains': {
        const [hay, needle] = args;
        if (Array.isArray(hay)) return hay.some((x) => eq(x, needle));
        return String(hay ?? '')
          .toLowerCase()
          .includes(String(needle ?? '').toLowerCase());
      }
      case 'startswith':
        return String(args[0] ?? '')
          .toLowerCase()
          .startsWith(String(args[1] ?? '').toLowerCase());
      case 'format':
        return String(args[0]).replace(/\{(\d+)\}/g, (_, i: string) => String(args[Number(i) + 1] ?? ''));
      case 'success':
        return ctx.__failed !== true;
      case 'failure':
        return ctx.__failed === true;
      case 'always':
        return true;
      default:
        throw new Error(`function ${name}() is not supported by the test runner`);
    }
  };
  const primary = (): Value => {
    const tok = take();
    if (tok === '(') {
      const v = or();
      take(')');
      return v;
    }
    if (tok.startsWith("'")) return tok.slice(1, -1).replace(/''/g, "'");
    if (/^-?\d/.test(tok)) return Number(tok);
    if (tok === 'true' || tok === 'false') return tok === 'true';
    if (tok === 'null') return null;
    if (peek() === '(') {
      take('(');
      const args: Value[] = [];
      while (peek() !== ')') {
        args.push(or());
        if (peek() === ',') take(',');
      }
      take(')');
      return call(tok, args);
    }
    let v: Value = ctx[tok];
    for (;;) {
      if (peek() === '.') {
        take('.');
        const key = take();
        if (key === '*') v = Array.isArray(v) ? v : v !== null && typeof v === 'object' ? Object.values(v) : [];
        else
          v =
            Array.isArray(v) && key !== 'length'
              ? v.map((x) => (x as Record<string, Value> | null)?.[key])
              : (v as Record<string, Value> | null | undefined)?.[key];
      } else if (peek() === '[') {
        take('[');
        const k = or();
        take(']');
        v = (v as Record<string, Value> | null | undefined)?.[String(k)];
      } else return v;
    }
  };
  const v = or();
  if (p !== t.length) throw new Error(`trailing tokens in "${src}"`);
  return v;
}

const show = (v: Value) => (v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));

/** Replace every `${{ … }}` in a string. */
export function interpolate(text: string, ctx: Ctx): string {
  return text.replace(/\$\{\{([\s\S]*?)\}\}/g, (_, e: string) => show(evaluate(e, ctx)));
}

const condition = (cond: unknown, ctx: Ctx): boolean => {
  if (cond === undefined) return ctx.__failed !== true;
  const text = String(cond).trim();
  const inner = /^\$\{\{([\s\S]*)\}\}$/.exec(text)?.[1] ?? text;
  const usesStatus = /\b(success|failure|always)\(/.test(inner);
  return (usesStatus || ctx.__failed !== true) && truthy(evaluate(inner, ctx));
};

// ---------- steps ----------

interface Step {
  id?: string;
  name?: string;
  if?: string | boolean;
  uses?: string;
  run?: string;
  shell?: string;
  env?: Record<string, unknown>;
  with?: Record<string, unknown>;
  'working-directory'?: string;
}

/** KEY=value lines and KEY<<DELIM heredocs (the GITHUB_ENV / GITHUB_OUTPUT file format). */
function parseKv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^([^=<]+)<<(.+)$/.exec(line);
    if (h) {
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== h[2]; i++) body.push(lines[i]!);
      out[h[1]!] = body.join('\n');
    } else if (line.includes('=')) out[line.slice(0, line.indexOf('='))] = line.slice(line.indexOf('=') + 1);
  }
  return out;
}

function bash(script: string, cwd: string, env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', '-c', script], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

export class WorkflowRunner {
  readonly results: StepResult[] = [];
  #env: Record<string, string>;
  #path: string[] = [];
  #failed = false;
  readonly #temp: string;
  readonly #toolCache: string;
  readonly #files: string;
  #n = 0;

  constructor(private readonly o: RunOptions) {
    this.#temp = path.join(o.runnerDir, 'temp');
    this.#toolCache = path.join(o.runnerDir, 'tool-cache');
    mkdirSync(this.#temp, { recursive: true });
    this.#files = mkdtempSync(path.join(o.runnerDir, 'files-'));
    mkdirSync(this.#toolCache, { recursive: true });
    const eventPath = path.join(this.#files, 'event.json');
    writeFileSync(eventPath, JSON.stringify(o.event.payload));
    this.#env = {
      ...o.env,
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      GITHUB_WORKSPACE: o.workspace,
      GITHUB_EVENT_NAME: o.event.name,
      GITHUB_EVENT_PATH: eventPath,
      RUNNER_TEMP: this.#temp,
      RUNNER_TOOL_CACHE: this.#toolCache,
      RUNNER_OS: 'Linux',
      ...Object.fromEntries(
        Object.entries(o.github ?? {})
          .filter(([, v]) => typeof v === 'string')
          .map(([k, v]) => [`GITHUB_${k.toUpperCase()}`, v as string]),
      ),
    };
  }

  get failed(): boolean {
    return this.#failed;
  }

  #context(extra: Ctx): Ctx {
    return {
      github: {
        event_name: this.o.event.name,
        event: this.o.event.payload,
        workspace: this.o.workspace,
        ...this.o.github,
      },
      vars: this.o.vars ?? {},
      secrets: this.o.secrets ?? {},
      env: this.#env,
      runner: { temp: this.#temp, tool_cache: this.#toolCache, os: 'Linux' },
      __failed: this.#failed,
      ...extra,
    };
  }

  /** Run the (only) job of a workflow file. */
  async runWorkflow(file: string): Promise<StepResult[]> {
    const doc = YAML.parse(readFileSync(file, 'utf8')) as { jobs: Record<string, { steps: Step[] }> };
    const jobs = Object.values(doc.jobs);
    if (jobs.length !== 1) throw new Error(`${file}: the test runner runs one job, found ${jobs.length}`);
    await this.#steps(jobs[0]!.steps, { steps: {} }, '');
    return this.results;
  }

  async #steps(
    steps: Step[],
    scope: Ctx & { steps: Record<string, { outputs: Record<string, string>; outcome: string }> },
    prefix: string,
  ): Promise<void> {
    for (const step of steps) {
      const ctx = this.#context(scope);
      const name = `${prefix}${step.name ?? (step.run !== undefined ? `run: ${step.run.split('\n')[0]}` : `uses: ${step.uses}`)}`;
      if (this.#failed && !/\b(failure|always)\(/.test(String(step.if ?? ''))) {
        this.results.push({ name, status: 'not run', why: 'an earlier step failed', output: '' });
        continue;
      }
      if (!condition(step.if, ctx)) {
        this.results.push({ name, status: 'skipped', why: `if: ${String(step.if)} is false`, output: '' });
        if (step.id !== undefined) scope.steps[step.id] = { outputs: {}, outcome: 'skipped' };
        continue;
      }
      if (step.uses !== undefined) {
        if (SETUP_ONLY.test(step.uses)) {
          this.results.push({
            name,
            status: 'skipped',
            why: `${step.uses.split('@')[0]} only sets up the machine: the test prepared the workspace, node, and opa`,
            output: '',
          });
          if (step.id !== undefined) scope.steps[step.id] = { outputs: {}, outcome: 'skipped' };
          continue;
        }
        const dir = this.o.actions[step.uses];
        if (dir === undefined)
          throw new Error(`uses: ${step.uses} is neither a setup action nor a local action the test knows`);
        await this.#action(dir, step, ctx, name);
        continue;
      }
      const env: Record<string, string> = { ...this.#env, PATH: [...this.#path, this.#env.PATH ?? ''].join(':') };
      for (const [k, v] of Object.entries(step.env ?? {})) env[k] = interpolate(String(v), ctx);
      if (scope.inputs !== undefined) env.GITHUB_ACTION_PATH = String((ctx.github as Ctx).action_path);
      const files = {
        GITHUB_ENV: this.#file('env'),
        GITHUB_PATH: this.#file('path'),
        GITHUB_OUTPUT: this.#file('output'),
      };
      Object.assign(env, files);
      const cwd =
        step['working-directory'] !== undefined
          ? path.resolve(this.o.workspace, interpolate(step['working-directory'], ctx))
          : this.o.workspace;
      const r = await bash(interpolate(step.run ?? '', ctx), cwd, env);
      this.#path.unshift(...readFileSync(files.GITHUB_PATH, 'utf8').split('\n').filter(Boolean).reverse());
      Object.assign(this.#env, parseKv(readFileSync(files.GITHUB_ENV, 'utf8')));
      if (step.id !== undefined)
        scope.steps[step.id] = {
          outputs: parseKv(readFileSync(files.GITHUB_OUTPUT, 'utf8')),
          outcome: r.code === 0 ? 'success' : 'failure',
        };
      this.results.push({ name, status: r.code === 0 ? 'ok' : 'failed', output: r.output, code: r.code });
      if (r.code !== 0) this.#failed = true;
    }
  }

  #file(kind: string): string {
    const f = path.join(this.#files, `${kind}-${++this.#n}`);
    writeFileSync(f, '');
    return f;
  }

  /** A composite action: its inputs (with defaults), then its steps with github.action_path set. */
  async #action(dir: string, step: Step, ctx: Ctx, name: string): Promise<void> {
    const action = YAML.parse(readFileSync(path.join(dir, 'action.yml'), 'utf8')) as {
      inputs?: Record<string, { default?: unknown }>;
      runs: { using: string; steps: Step[] };
    };
    if (action.runs.using !== 'composite') throw new Error(`${dir}/action.yml is not a composite action`);
    const known = new Set(Object.keys(action.inputs ?? {}));
    for (const k of Object.keys(step.with ?? {}))
      if (!known.has(k)) throw new Error(`${step.uses}: unknown input ${k}`);
    const inputs: Record<string, string> = {};
    for (const [k, spec] of Object.entries(action.inputs ?? {})) {
      const given = step.with?.[k];
      inputs[k] = given !== undefined ? interpolate(String(given), ctx) : interpolate(String(spec.default ?? ''), ctx);
    }
    const github = { ...(ctx.github as Ctx), action_path: dir };
    await this.#steps(action.runs.steps, { inputs, github, steps: {} } as never, `${name} › `);
  }
}
