import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { GatewayError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { compileSchema, formatSchemaErrors } from './schema.js';
import { Secret } from './secret.js';
import type { CredentialPlacement, GatewayConfig, StaticSecret, UpstreamConfig } from './types.js';

export interface ConfigOverrides {
  port?: number;
  host?: string;
  dataDir?: string;
  policyRepo?: string;
  policyBranch?: string;
  /** seconds */
  pollInterval?: number;
  /** --approval-hold seconds */
  approvalHold?: number;
}

/** The demo config the embedded default runs (shipped with the package). */
export const DEMO_CONFIG_FILE: string = path.join(packageRoot, 'examples', 'demo', 'gitgate.yaml');

/**
 * The embedded default: examples/demo/gitgate.yaml (dev issuer, this repo's policies/,
 * the approver directory, server-everything over stdio as `demo`). Its paths are
 * resolved against its folder here, so the data dir stays relative to where gitgate runs;
 * the command `node` is the Node binary running gitgate.
 */
export function embeddedConfigDocument(): Record<string, unknown> {
  const doc = readConfigFile(DEMO_CONFIG_FILE);
  const dir = path.dirname(DEMO_CONFIG_FILE);
  const policy = doc.policy as { dir?: string } | undefined;
  if (policy?.dir !== undefined) policy.dir = path.resolve(dir, policy.dir);
  for (const up of Object.values(
    (doc.upstreams ?? {}) as Record<string, { stdio?: { command: string; cwd?: string } }>,
  )) {
    if (up.stdio === undefined) continue;
    if (up.stdio.command === 'node') up.stdio.command = process.execPath;
    up.stdio.cwd = path.resolve(dir, up.stdio.cwd ?? '.');
  }
  return doc;
}

/**
 * Parse a YAML config file into a mapping. Syntax errors name the file, line and
 * column of each problem (all of them), as CONFIG_INVALID.
 */
export function readConfigFile(abs: string): Record<string, unknown> {
  if (!existsSync(abs)) throw new GatewayError('CONFIG_INVALID', `config file not found: ${abs}`);
  return parseConfigText(readFileSync(abs, 'utf8'), abs);
}

/** Parse YAML config text; `source` (a file name) prefixes every problem as source:line:column. */
export function parseConfigText(text: string, source: string): Record<string, unknown> {
  const parsed = YAML.parseDocument(text, { prettyErrors: true });
  if (parsed.errors.length > 0) {
    const problems = parsed.errors.map((e) => {
      const at = e.linePos?.[0];
      const first = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      return `${source}${at !== undefined ? `:${at.line}:${at.col}` : ''}: ${first}`;
    });
    throw new GatewayError('CONFIG_INVALID', `${source}: invalid YAML:\n  - ${problems.join('\n  - ')}`, {
      data: { problems },
    });
  }
  const value: unknown = parsed.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new GatewayError('CONFIG_INVALID', `${source}: the config must be a YAML mapping`);
  }
  return value as Record<string, unknown>;
}

/**
 * Read the config file (or the embedded default), apply overrides, validate
 * against schemas/config.schema.json reporting every problem at once, resolve
 * paths, and freeze. This is the only module that reads process.env.
 */
/** A git URL (scheme://… or user@host:…) rather than a local path. */
function isRemoteUrl(url: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(url) || url.includes('@');
}

export function loadConfig(
  file: string | undefined,
  overrides: ConfigOverrides = {},
  cwd = process.cwd(),
): GatewayConfig {
  // Paths given on the command line are relative to where the command runs, not to the config file.
  overrides = {
    ...overrides,
    ...(overrides.dataDir !== undefined ? { dataDir: path.resolve(cwd, overrides.dataDir) } : {}),
    ...(overrides.policyRepo !== undefined && !isRemoteUrl(overrides.policyRepo)
      ? { policyRepo: path.resolve(cwd, overrides.policyRepo) }
      : {}),
  };
  let doc: Record<string, unknown>;
  let baseDir = cwd;
  let source = `embedded default (${DEMO_CONFIG_FILE})`;
  if (file !== undefined) {
    const abs = path.resolve(cwd, file);
    doc = readConfigFile(abs);
    baseDir = path.dirname(abs);
    source = abs;
  } else {
    doc = embeddedConfigDocument();
  }
  return validateConfig(doc, overrides, baseDir, source);
}

export function validateConfig(
  input: Record<string, unknown>,
  overrides: ConfigOverrides,
  baseDir: string,
  source: string,
): GatewayConfig {
  const doc = structuredClone(input);
  const server = (doc.server ??= {}) as Record<string, unknown>;
  if (overrides.port !== undefined) server.port = overrides.port;
  if (overrides.host !== undefined) server.host = overrides.host;
  if (overrides.dataDir !== undefined) doc.dataDir = overrides.dataDir;
  if (
    overrides.policyRepo !== undefined ||
    overrides.policyBranch !== undefined ||
    overrides.pollInterval !== undefined
  ) {
    const policyDoc = (doc.policy ??= {}) as Record<string, unknown>;
    const repo = (policyDoc.repo ??= {}) as Record<string, unknown>;
    if (overrides.policyRepo !== undefined) repo.url = overrides.policyRepo;
    if (overrides.policyBranch !== undefined) repo.branch = overrides.policyBranch;
    if (overrides.pollInterval !== undefined) repo.pollSeconds = overrides.pollInterval;
  }
  if (overrides.approvalHold !== undefined)
    ((doc.approvals ??= {}) as Record<string, unknown>).holdSeconds = overrides.approvalHold;
  doc.identity ??= {};
  doc.policy ??= {};
  doc.log ??= {};
  const ids = doc.identity as Record<string, unknown>;
  ids.claims ??= {};
  const validate = compileSchema('config', { useDefaults: true });
  if (!validate(doc)) {
    const problems = formatSchemaErrors(validate.errors);
    throw new GatewayError(
      'CONFIG_INVALID',
      `${source}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`,
      {
        data: { problems },
      },
    );
  }
  const env = process.env;
  const problems: string[] = [];
  const logLevel = env.GITGATE_LOG_LEVEL ?? (doc.log as { level: string }).level;
  const upstreams = normalizeUpstreams(
    (doc.upstreams ?? {}) as Record<string, Record<string, unknown>>,
    baseDir,
    env,
    problems,
  );
  if (Object.keys(upstreams).length === 0) problems.push('upstreams: at least one upstream is required');
  if ((server.headersTimeoutMs as number) > (server.requestTimeoutMs as number)) {
    problems.push(
      `server.headersTimeoutMs (${String(server.headersTimeoutMs)}) must not exceed server.requestTimeoutMs (${String(server.requestTimeoutMs)})`,
    );
  }
  if (problems.length > 0) {
    throw new GatewayError(
      'CONFIG_INVALID',
      `${source}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`,
      { data: { problems } },
    );
  }
  const appr = (doc.approvals ?? {}) as {
    provider?: 'local' | 'github';
    holdSeconds?: number;
    pollSeconds?: number;
    logins?: Record<string, string>;
    local?: { repo?: string; teams?: Record<string, string[]> };
    github?: {
      baseUrl?: string;
      owner: string;
      repo: string;
      baseBranch?: string;
      token?: SecretRef;
      app?: { appId: number; installationId: number; privateKey: SecretRef };
      onFinish?: 'close' | 'merge';
    };
    webhookSecret?: SecretRef;
  };
  const secretOf = (where: string, ref: SecretRef | undefined) => readSecret(where, ref, baseDir, env, problems)?.value;
  const gh = appr.github;
  const ghToken = secretOf('approvals.github.token', gh?.token);
  const ghKey = secretOf('approvals.github.app.privateKey', gh?.app?.privateKey);
  const webhookSecret = secretOf('approvals.webhookSecret', appr.webhookSecret);
  const audit = (doc.audit ?? {}) as {
    enabled?: boolean;
    repo?: string;
    remote?: string;
    anchors?: ({ file: string } | { url: string })[];
    keys?: string[];
    commitEveryRecords?: number;
    commitEveryMs?: number;
    maxRecordedBytes?: number;
  };
  const creds = (doc.credentials ?? {}) as {
    issuer?: string;
    maxTtlSeconds?: number;
    keyActivationSeconds?: number;
    rotateAfterHours?: number;
  };
  const policy = doc.policy as {
    dir: string;
    entrypoint: 'gitgate/decision';
    repo?: {
      url: string;
      branch?: string;
      dir?: string;
      pollSeconds?: number;
      token?: SecretRef;
      sshKey?: SecretRef;
      compile?: boolean;
      verification?: { publicKey: SecretRef; algorithm?: string; keyId?: string };
      webhook?: boolean;
    };
  };
  const pr = policy.repo;
  const repoToken = readSecret('policy.repo.token', pr?.token, baseDir, env, problems)?.value;
  const verifyKey = readSecret(
    'policy.repo.verification.publicKey',
    pr?.verification?.publicKey,
    baseDir,
    env,
    problems,
  )?.value;
  // A secret that is missing or empty is a problem, never a silent default (an empty webhook secret would let anyone sign).
  if (problems.length > 0) {
    throw new GatewayError(
      'CONFIG_INVALID',
      `${source}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`,
      { data: { problems } },
    );
  }
  const config: GatewayConfig = {
    server: {
      ...(server as Omit<GatewayConfig['server'], 'allowedOrigins'>),
      allowedOrigins: (server.allowedOrigins as string[] | undefined) ?? [],
    },
    dataDir: path.resolve(baseDir, doc.dataDir as string),
    identity: doc.identity as GatewayConfig['identity'],
    policy: {
      dir: path.resolve(baseDir, policy.dir),
      entrypoint: policy.entrypoint,
      ...(pr !== undefined
        ? {
            repo: {
              url: isRemoteUrl(pr.url) ? pr.url : path.resolve(baseDir, pr.url),
              branch: pr.branch ?? 'main',
              dir: pr.dir ?? 'policies',
              pollSeconds: pr.pollSeconds ?? 30,
              ...(repoToken !== undefined ? { token: repoToken } : {}),
              ...(pr.sshKey?.fromFile !== undefined ? { sshKeyFile: path.resolve(baseDir, pr.sshKey.fromFile) } : {}),
              compile: pr.compile ?? true,
              ...(pr.verification !== undefined && verifyKey !== undefined
                ? {
                    verification: {
                      publicKey: verifyKey,
                      algorithm: pr.verification.algorithm ?? 'RS256',
                      ...(pr.verification.keyId !== undefined ? { keyId: pr.verification.keyId } : {}),
                    },
                  }
                : {}),
              webhook: pr.webhook ?? true,
            },
          }
        : {}),
    },
    upstreams,
    credentials: {
      issuer: creds.issuer ?? (server.publicUrl as string | undefined) ?? 'urn:gitgate',
      maxTtlSeconds: creds.maxTtlSeconds ?? 300,
      keyActivationSeconds: creds.keyActivationSeconds ?? 300,
      ...(creds.rotateAfterHours !== undefined ? { rotateAfterHours: creds.rotateAfterHours } : {}),
    },
    audit: {
      enabled: audit.enabled ?? true,
      repo: path.resolve(baseDir, audit.repo ?? path.join(doc.dataDir as string, 'audit')),
      ...(audit.remote !== undefined ? { remote: audit.remote } : {}),
      anchors: (audit.anchors ?? []).map((a) =>
        'file' in a ? { file: path.resolve(baseDir, a.file) } : { url: a.url },
      ),
      keys: audit.keys ?? [],
      commitEveryRecords: audit.commitEveryRecords ?? 10_000,
      commitEveryMs: audit.commitEveryMs ?? 1000,
      maxRecordedBytes: audit.maxRecordedBytes ?? 65536,
    },
    approvals: {
      provider: appr.provider ?? 'local',
      holdSeconds: appr.holdSeconds ?? 90,
      pollSeconds: appr.pollSeconds ?? 10,
      logins: appr.logins ?? {},
      local: {
        repo: path.resolve(baseDir, appr.local?.repo ?? path.join(doc.dataDir as string, 'approvals.git')),
        teams: appr.local?.teams ?? {},
      },
      ...(gh !== undefined
        ? {
            github: {
              baseUrl: (gh.baseUrl ?? 'https://api.github.com').replace(/\/+$/, ''),
              owner: gh.owner,
              repo: gh.repo,
              baseBranch: gh.baseBranch ?? 'main',
              ...(ghToken !== undefined ? { token: ghToken } : {}),
              ...(gh.app !== undefined && ghKey !== undefined
                ? { app: { appId: gh.app.appId, installationId: gh.app.installationId, privateKey: ghKey } }
                : {}),
              onFinish: gh.onFinish ?? 'close',
            },
          }
        : {}),
      ...(webhookSecret !== undefined ? { webhookSecret } : {}),
    },
    log: { level: logLevel },
    source,
  };
  return deepFreeze(config);
}

/** Schema-validated upstream entries → UpstreamConfig (shared by the config file and the policy repo's routes). */
export function normalizeUpstreams(
  rawAll: Record<string, Record<string, unknown>>,
  baseDir: string,
  env: NodeJS.ProcessEnv,
  problems: string[],
): Record<string, UpstreamConfig> {
  const upstreams: Record<string, UpstreamConfig> = {};
  for (const [name, raw] of Object.entries(rawAll)) {
    const stdio = raw.stdio as
      | { command: string; args?: string[]; env?: Record<string, string>; cwd?: string }
      | undefined;
    const url = raw.url as string | undefined;
    const placement = raw.credential as CredentialPlacement | false | undefined;
    const credential: CredentialPlacement | undefined =
      placement === false
        ? undefined
        : placement !== undefined
          ? { header: 'authorization', scheme: 'Bearer', ...placement }
          : url !== undefined
            ? { header: 'authorization', scheme: 'Bearer' }
            : undefined;
    const secret = readSecret(`upstreams.${name}.secret`, raw.secret as SecretRef | undefined, baseDir, env, problems);
    upstreams[name] = {
      name,
      audience: (raw.audience as string | undefined) ?? url ?? `gitgate:upstream:${name}`,
      ...(credential !== undefined ? { credential } : {}),
      ...(secret !== undefined ? { secret } : {}),
      ...(raw.url !== undefined ? { url: raw.url as string } : {}),
      ...(stdio !== undefined
        ? {
            stdio: {
              command: stdio.command,
              args: stdio.args ?? [],
              env: stdio.env ?? {},
              ...(stdio.cwd !== undefined ? { cwd: path.resolve(baseDir, stdio.cwd) } : {}),
            },
          }
        : {}),
      timeoutMs: raw.timeoutMs as number,
      maxSessions: raw.maxSessions as number,
      maxSessionsPerCaller: raw.maxSessionsPerCaller as number,
      idleTimeoutMs: raw.idleTimeoutMs as number,
      maxResponseBytes: raw.maxResponseBytes as number,
      maxInFlightBytes: raw.maxInFlightBytes as number,
    };
  }
  return upstreams;
}

interface SecretRef {
  header?: string;
  scheme?: string;
  envVar?: string;
  fromEnv?: string;
  fromFile?: string;
}

function readSecret(
  where: string,
  ref: SecretRef | undefined,
  baseDir: string,
  env: NodeJS.ProcessEnv,
  problems: string[],
): StaticSecret | undefined {
  if (ref === undefined) return undefined;
  let value: string | undefined;
  if (ref.fromEnv !== undefined) {
    value = env[ref.fromEnv];
    if (value === undefined || value === '') problems.push(`${where}: environment variable ${ref.fromEnv} is not set`);
  } else if (ref.fromFile !== undefined) {
    const file = path.resolve(baseDir, ref.fromFile);
    try {
      value = readFileSync(file, 'utf8').trim();
      if (value === '') problems.push(`${where}: ${file} is empty`);
    } catch (err) {
      problems.push(`${where}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  if (value === undefined) return undefined;
  return {
    value: new Secret(value),
    ...(ref.header !== undefined ? { header: ref.header.toLowerCase() } : {}),
    ...(ref.scheme !== undefined ? { scheme: ref.scheme } : {}),
    ...(ref.envVar !== undefined ? { envVar: ref.envVar } : {}),
  };
}

/**
 * The `upstreams:` of a policy repo's gitgate.routes.yaml, validated with the
 * config schema's upstream rules (defaults applied), every problem reported at once.
 */
export function validateRoutes(raw: unknown, baseDir: string, source: string): Record<string, UpstreamConfig> {
  if (raw === null || raw === undefined || (typeof raw === 'object' && Object.keys(raw).length === 0)) return {};
  const validate = compileSchema('config', { useDefaults: true });
  const doc = { upstreams: structuredClone(raw) as Record<string, unknown> };
  if (!validate(doc)) {
    const problems = formatSchemaErrors(validate.errors);
    throw new GatewayError(
      'CONFIG_INVALID',
      `${source}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`,
      { data: { problems } },
    );
  }
  const problems: string[] = [];
  const upstreams = normalizeUpstreams(
    doc.upstreams as Record<string, Record<string, unknown>>,
    baseDir,
    process.env,
    problems,
  );
  if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `${source}: ${problems.join('; ')}`);
  return upstreams;
}

/** What GitHub Actions provides to `gitgate policy impact --github-comment`. */
export function githubCiEnv(): { token?: string; repository?: string; apiUrl: string; eventPath?: string } {
  const e = process.env;
  return {
    ...(e.GITHUB_TOKEN ? { token: e.GITHUB_TOKEN } : {}),
    ...(e.GITHUB_REPOSITORY ? { repository: e.GITHUB_REPOSITORY } : {}),
    apiUrl: e.GITHUB_API_URL ?? 'https://api.github.com',
    ...(e.GITHUB_EVENT_PATH ? { eventPath: e.GITHUB_EVENT_PATH } : {}),
  };
}

/** Environment knobs that are not part of the config file (tooling, not behaviour). */
export function toolEnv(): { opaPath: string | undefined } {
  return { opaPath: process.env.GITGATE_OPA };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
