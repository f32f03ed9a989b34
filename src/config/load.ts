import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import YAML from 'yaml';
import { GatewayError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { compileSchema, formatSchemaErrors } from './schema.js';
import type { GatewayConfig, UpstreamConfig } from './types.js';

export interface ConfigOverrides {
  port?: number;
  host?: string;
  dataDir?: string;
}

/** The embedded default: dev issuer, this repo's policies/, server-everything over stdio as `demo`. */
export function embeddedConfigDocument(): Record<string, unknown> {
  const require = createRequire(import.meta.url);
  const everything = require.resolve('@modelcontextprotocol/server-everything/dist/index.js');
  return {
    identity: { mode: 'dev' },
    policy: { dir: path.join(packageRoot, 'policies') },
    upstreams: {
      demo: { stdio: { command: process.execPath, args: [everything, 'stdio'] } },
    },
  };
}

/**
 * Read the config file (or the embedded default), apply overrides, validate
 * against schemas/config.schema.json reporting every problem at once, resolve
 * paths, and freeze. This is the only module that reads process.env.
 */
export function loadConfig(file: string | undefined, overrides: ConfigOverrides = {}, cwd = process.cwd()): GatewayConfig {
  let doc: Record<string, unknown>;
  let baseDir = cwd;
  let source = 'embedded default';
  if (file !== undefined) {
    const abs = path.resolve(cwd, file);
    if (!existsSync(abs)) throw new GatewayError('CONFIG_INVALID', `config file not found: ${abs}`);
    const parsed: unknown = YAML.parse(readFileSync(abs, 'utf8'), { prettyErrors: true });
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new GatewayError('CONFIG_INVALID', `${abs}: the config must be a YAML mapping`);
    }
    doc = parsed as Record<string, unknown>;
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
  doc.identity ??= {};
  doc.policy ??= {};
  doc.log ??= {};
  const ids = doc.identity as Record<string, unknown>;
  ids.claims ??= {};
  const validate = compileSchema('config', { useDefaults: true });
  if (!validate(doc)) {
    const problems = formatSchemaErrors(validate.errors);
    throw new GatewayError('CONFIG_INVALID', `${source}: ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`, {
      data: { problems },
    });
  }
  const env = process.env;
  const logLevel = env.GITGATE_LOG_LEVEL ?? (doc.log as { level: string }).level;
  const upstreams: Record<string, UpstreamConfig> = {};
  for (const [name, raw] of Object.entries((doc.upstreams ?? {}) as Record<string, Record<string, unknown>>)) {
    const stdio = raw.stdio as { command: string; args?: string[]; env?: Record<string, string>; cwd?: string } | undefined;
    upstreams[name] = {
      name,
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
      idleTimeoutMs: raw.idleTimeoutMs as number,
    };
  }
  if (Object.keys(upstreams).length === 0) {
    throw new GatewayError('CONFIG_INVALID', `${source}: 1 problem(s):\n  - upstreams: at least one upstream is required`);
  }
  const policy = doc.policy as { dir: string; entrypoint: 'gitgate/decision' };
  const config: GatewayConfig = {
    server: {
      ...(server as { host: string; port: number; publicUrl?: string; bodyLimitBytes: number }),
      allowedOrigins: (server.allowedOrigins as string[] | undefined) ?? [],
    },
    dataDir: path.resolve(baseDir, doc.dataDir as string),
    identity: doc.identity as GatewayConfig['identity'],
    policy: { dir: path.resolve(baseDir, policy.dir), entrypoint: policy.entrypoint },
    upstreams,
    log: { level: logLevel },
    source,
  };
  return deepFreeze(config);
}

/** Environment knobs that are not part of the config file (tooling, not behaviour). */
export function toolEnv(): { opaPath: string | undefined; ci: boolean } {
  return { opaPath: process.env.GITGATE_OPA, ci: process.env.CI === 'true' };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}
