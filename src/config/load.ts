import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { GatewayError } from '../errors.js';
import { packageRoot } from '../paths.js';
import type { ConfigDocument, SecretRef, UpstreamDocument } from './document.js';
import { compileSchema, formatSchemaErrors } from './schema.js';
import { Secret } from './secret.js';
import type { CredentialPlacement, GatewayConfig, RoutesAllowance, StaticSecret, UpstreamConfig } from './types.js';

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
  const server = section(doc, 'server');
  if (overrides.port !== undefined) server.port = overrides.port;
  if (overrides.host !== undefined) server.host = overrides.host;
  if (overrides.dataDir !== undefined) doc.dataDir = overrides.dataDir;
  if (
    overrides.policyRepo !== undefined ||
    overrides.policyBranch !== undefined ||
    overrides.pollInterval !== undefined
  ) {
    const repo = section(section(doc, 'policy'), 'repo');
    if (overrides.policyRepo !== undefined) repo.url = overrides.policyRepo;
    if (overrides.policyBranch !== undefined) repo.branch = overrides.policyBranch;
    if (overrides.pollInterval !== undefined) repo.pollSeconds = overrides.pollInterval;
  }
  if (overrides.approvalHold !== undefined) section(doc, 'approvals').holdSeconds = overrides.approvalHold;
  const validate = compileSchema<ConfigDocument>('config', { useDefaults: true });
  if (!validate(doc)) throw invalid(source, formatSchemaErrors(validate.errors));
  return resolveConfig(doc, baseDir, source);
}

const invalid = (source: string, problems: string[]) =>
  new GatewayError('CONFIG_INVALID', `${source}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`, {
    data: { problems },
  });

/**
 * A validated document (every schema default filled in) → the frozen config: paths resolved
 * against `baseDir`, secrets read, and the defaults that depend on other keys derived.
 */
function resolveConfig(doc: ConfigDocument, baseDir: string, source: string): GatewayConfig {
  const env = process.env;
  const problems: string[] = [];
  const { server, approvals: appr, audit, credentials: creds, policy } = doc;
  const upstreams = normalizeUpstreams(doc.upstreams, baseDir, env, problems);
  if (Object.keys(upstreams).length === 0) problems.push('upstreams: at least one upstream is required');
  if (server.headersTimeoutMs > server.requestTimeoutMs) {
    problems.push(
      `server.headersTimeoutMs (${server.headersTimeoutMs}) must not exceed server.requestTimeoutMs (${server.requestTimeoutMs})`,
    );
  }
  if (problems.length > 0) throw invalid(source, problems);
  const secretOf = (where: string, ref: SecretRef | undefined) => readSecret(where, ref, baseDir, env, problems)?.value;
  const gh = appr.github;
  const ghToken = secretOf('approvals.github.token', gh?.token);
  const ghKey = secretOf('approvals.github.app.privateKey', gh?.app?.privateKey);
  // One secret, or a list while one is rotated (any of them verifies).
  const hooks = appr.webhookSecret;
  const webhookSecrets = (
    hooks === undefined
      ? []
      : isSecretList(hooks)
        ? hooks.map((ref, i) => secretOf(`approvals.webhookSecret[${i}]`, ref))
        : [secretOf('approvals.webhookSecret', hooks)]
  ).filter((x) => x !== undefined);
  const storePg = doc.store?.postgres;
  const storeUrl = storePg === undefined ? undefined : secretOf('store.postgres.url', storePg.url);
  const pr = policy.repo;
  const repoToken = secretOf('policy.repo.token', pr?.token);
  const verifyKey = secretOf('policy.repo.verification.publicKey', pr?.verification?.publicKey);
  // A secret that is missing or empty is a problem, never a silent default (an empty webhook secret would let anyone sign).
  if (problems.length > 0) throw invalid(source, problems);
  const config: GatewayConfig = {
    server,
    dataDir: path.resolve(baseDir, doc.dataDir),
    identity: doc.identity,
    policy: {
      dir: path.resolve(baseDir, policy.dir),
      entrypoint: policy.entrypoint,
      ...(pr !== undefined
        ? {
            repo: {
              url: isRemoteUrl(pr.url) ? pr.url : path.resolve(baseDir, pr.url),
              branch: pr.branch,
              dir: pr.dir,
              pollSeconds: pr.pollSeconds,
              ...(repoToken !== undefined ? { token: repoToken } : {}),
              ...(pr.sshKey?.fromFile !== undefined ? { sshKeyFile: path.resolve(baseDir, pr.sshKey.fromFile) } : {}),
              compile: pr.compile,
              routes: {
                allowStdio: pr.routes.allowStdio,
                allowEnv: pr.routes.allowEnv,
                // Routes resolve fromFile against the data dir: so are these.
                allowFiles: pr.routes.allowFiles.map((f) => path.resolve(baseDir, doc.dataDir, f)),
              },
              ...(pr.verification !== undefined && verifyKey !== undefined
                ? {
                    verification: {
                      publicKey: verifyKey,
                      algorithm: pr.verification.algorithm,
                      ...(pr.verification.keyId !== undefined ? { keyId: pr.verification.keyId } : {}),
                    },
                  }
                : {}),
              webhook: pr.webhook,
            },
          }
        : {}),
    },
    upstreams,
    credentials: {
      // Derived: the gateway's public URL when it has one.
      issuer: creds.issuer ?? server.publicUrl ?? 'urn:gitgate',
      maxTtlSeconds: creds.maxTtlSeconds,
      keyActivationSeconds: creds.keyActivationSeconds,
      ...(creds.rotateAfterHours !== undefined ? { rotateAfterHours: creds.rotateAfterHours } : {}),
    },
    audit: {
      enabled: audit.enabled,
      // Derived: inside the data dir unless set.
      repo: path.resolve(baseDir, audit.repo ?? path.join(doc.dataDir, 'audit')),
      ...(audit.remote !== undefined ? { remote: audit.remote } : {}),
      anchors: audit.anchors.map((a) =>
        'file' in a
          ? { file: path.resolve(baseDir, a.file) }
          : // A git anchor's relative path is of the config's folder, as a file's is.
            'git' in a && a.git.startsWith('.')
            ? { ...a, git: path.resolve(baseDir, a.git) }
            : a,
      ),
      keys: audit.keys,
      commitEveryRecords: audit.commitEveryRecords,
      commitEveryMs: audit.commitEveryMs,
      maxRecordedBytes: audit.maxRecordedBytes,
    },
    approvals: {
      provider: appr.provider,
      holdSeconds: appr.holdSeconds,
      pollSeconds: appr.pollSeconds,
      logins: appr.logins,
      local: {
        repo: path.resolve(baseDir, appr.local.repo ?? path.join(doc.dataDir, 'approvals.git')),
        teams: appr.local.teams,
      },
      ...(gh !== undefined
        ? {
            github: {
              baseUrl: gh.baseUrl.replace(/\/+$/, ''),
              owner: gh.owner,
              repo: gh.repo,
              baseBranch: gh.baseBranch,
              ...(ghToken !== undefined ? { token: ghToken } : {}),
              ...(gh.app !== undefined && ghKey !== undefined
                ? { app: { appId: gh.app.appId, installationId: gh.app.installationId, privateKey: ghKey } }
                : {}),
              onFinish: gh.onFinish,
            },
          }
        : {}),
      webhookSecrets,
    },
    ...(storePg !== undefined && storeUrl !== undefined
      ? {
          store: {
            postgres: {
              url: storeUrl,
              schema: storePg.schema,
              poolMax: storePg.poolMax,
              timeoutMs: storePg.timeoutMs,
              replicaId:
                storePg.replicaId ??
                (hostname()
                  .replace(/[^A-Za-z0-9._-]/g, '-')
                  .replace(/\.{2,}/g, '.')
                  .replace(/^[^A-Za-z0-9]+/, '')
                  .slice(0, 63)
                  .replace(/(\.lock)?\.*$/, '') ||
                  'replica'),
            },
          },
        }
      : {}),
    // The environment overrides the file (tooling, not behaviour).
    log: { level: env.GITGATE_LOG_LEVEL ?? doc.log.level },
    source,
  };
  return deepFreeze(config);
}

const isSecretList = (v: SecretRef | readonly SecretRef[]): v is readonly SecretRef[] => Array.isArray(v);

/** Schema-validated upstream entries → UpstreamConfig (shared by the config file and the policy repo's routes). */
export function normalizeUpstreams(
  rawAll: Readonly<Record<string, UpstreamDocument>>,
  baseDir: string,
  env: NodeJS.ProcessEnv,
  problems: string[],
): Record<string, UpstreamConfig> {
  const upstreams: Record<string, UpstreamConfig> = {};
  for (const [name, raw] of Object.entries(rawAll)) {
    const { stdio, url, credential: placement } = raw;
    // Ajv fills no defaults inside the credential's oneOf: Authorization: Bearer is applied here.
    const credential: CredentialPlacement | undefined =
      placement === false
        ? undefined
        : placement !== undefined
          ? { header: 'authorization', scheme: 'Bearer', ...placement }
          : url !== undefined
            ? { header: 'authorization', scheme: 'Bearer' }
            : undefined;
    // In params._meta only a stdio child reads it: an HTTP upstream would get no credential at all.
    if (url !== undefined && placement !== undefined && placement !== false && placement.meta === true)
      problems.push(
        `upstreams.${name}.credential.meta: only a stdio upstream takes the credential in params._meta; an HTTP upstream takes it in a header`,
      );
    const secret = readSecret(`upstreams.${name}.secret`, raw.secret, baseDir, env, problems);
    upstreams[name] = {
      name,
      // Derived: the upstream's URL, else a name of its own.
      audience: raw.audience ?? url ?? `gitgate:upstream:${name}`,
      ...(credential !== undefined ? { credential } : {}),
      ...(secret !== undefined ? { secret } : {}),
      ...(url !== undefined ? { url } : {}),
      ...(stdio !== undefined
        ? {
            stdio: {
              command: stdio.command,
              args: stdio.args,
              env: stdio.env,
              ...(stdio.cwd !== undefined ? { cwd: path.resolve(baseDir, stdio.cwd) } : {}),
            },
          }
        : {}),
      timeoutMs: raw.timeoutMs,
      maxSessions: raw.maxSessions,
      maxSessionsPerCaller: raw.maxSessionsPerCaller,
      idleTimeoutMs: raw.idleTimeoutMs,
      maxResponseBytes: raw.maxResponseBytes,
      maxInFlightBytes: raw.maxInFlightBytes,
    };
  }
  return upstreams;
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
export function validateRoutes(
  raw: unknown,
  baseDir: string,
  source: string,
  allowed: RoutesAllowance,
): Record<string, UpstreamConfig> {
  if (raw === null || raw === undefined || (typeof raw === 'object' && Object.keys(raw).length === 0)) return {};
  const validate = compileSchema<ConfigDocument>('config', { useDefaults: true });
  const doc = { upstreams: structuredClone(raw) };
  if (!validate(doc)) throw invalid(source, formatSchemaErrors(validate.errors));
  const problems: string[] = [];
  // The repo's writers get what the config file's owner grants this host, nothing more: no command
  // spawned, no environment variable or file read, unless policy.repo.routes allows it by name.
  for (const [name, u] of Object.entries(doc.upstreams)) {
    if (u.stdio !== undefined && !allowed.allowStdio)
      problems.push(
        `upstreams.${name}.stdio: routes from the policy repo may not start commands (policy.repo.routes.allowStdio is off)`,
      );
    const env = u.secret?.fromEnv;
    if (env !== undefined && !allowed.allowEnv.includes(env))
      problems.push(`upstreams.${name}.secret.fromEnv: ${env} is not in policy.repo.routes.allowEnv`);
    const file = u.secret?.fromFile;
    if (file !== undefined && !allowed.allowFiles.includes(path.resolve(baseDir, file)))
      problems.push(`upstreams.${name}.secret.fromFile: ${file} is not in policy.repo.routes.allowFiles`);
  }
  if (problems.length > 0) throw new GatewayError('CONFIG_INVALID', `${source}: ${problems.join('; ')}`);
  const upstreams = normalizeUpstreams(doc.upstreams, baseDir, process.env, problems);
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
export function toolEnv(): { opaPath: string | undefined; sourceDateEpoch: number | undefined } {
  // SOURCE_DATE_EPOCH (reproducible-builds.org): the time a build records, here a bundle's signing time.
  const epoch = process.env.SOURCE_DATE_EPOCH;
  const seconds = epoch !== undefined && /^\d{1,15}$/.test(epoch) ? Number(epoch) : undefined;
  if (epoch !== undefined && seconds === undefined)
    throw new Error(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${JSON.stringify(epoch.slice(0, 40))}`);
  return { opaPath: process.env.GITGATE_OPA, sourceDateEpoch: seconds };
}

/** doc[key] as an object, created when absent (an override writes into it before validation). */
function section(doc: Record<string, unknown>, key: string): Record<string, unknown> {
  doc[key] ??= {};
  return doc[key] as Record<string, unknown>;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
