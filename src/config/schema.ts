import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsImport from 'ajv-formats';
import { schemasDir } from '../paths.js';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsImport as unknown as (ajv: Ajv2020) => Ajv2020;

export type SchemaName = 'config' | 'input' | 'decision' | 'audit-record';

const cache = new Map<string, ValidateFunction>();

/**
 * Compile one of the JSON Schemas in schemas/ (cached). `useDefaults` fills defaults in place.
 * `T` is what a document that validates is (the validator is its type guard).
 */
export function compileSchema<T = unknown>(
  name: SchemaName,
  opts: { useDefaults?: boolean } = {},
): ValidateFunction<T> {
  const key = `${name}:${opts.useDefaults === true}`;
  const hit = cache.get(key) as ValidateFunction<T> | undefined;
  if (hit) return hit;
  const ajv = new Ajv2020({ allErrors: true, strict: false, verbose: true, useDefaults: opts.useDefaults === true });
  addFormats(ajv);
  const schema = JSON.parse(readFileSync(path.join(schemasDir, `${name}.schema.json`), 'utf8')) as object;
  const validate = ajv.compile<T>(schema);
  cache.set(key, validate as ValidateFunction);
  return validate;
}

/** The keys of a oneOf/anyOf whose every alternative only requires one key (`url` | `stdio`, `fromEnv` | `fromFile`). */
function keyChoice(e: ErrorObject): string[] | undefined {
  if ((e.keyword !== 'oneOf' && e.keyword !== 'anyOf') || !Array.isArray(e.schema)) return undefined;
  const keys: string[] = [];
  for (const alt of e.schema as unknown[]) {
    const req = (alt as { required?: unknown } | null)?.required;
    if (
      alt === null ||
      typeof alt !== 'object' ||
      Object.keys(alt).length !== 1 ||
      !Array.isArray(req) ||
      req.length !== 1 ||
      typeof req[0] !== 'string'
    )
      return undefined;
    keys.push(req[0]);
  }
  return keys;
}

const quoted = (keys: readonly string[]) => keys.map((k) => `"${k}"`);

/**
 * One line per problem, each with the JSON path it is about. A choice between keys
 * says which keys are set (or that none is), and a bad key name (propertyNames) names the key.
 */
export function formatSchemaErrors(errors: readonly ErrorObject[] | null | undefined): string[] {
  const all = (errors ?? []).filter((e) => e.keyword !== 'if' && e.keyword !== 'propertyNames');
  const choices = all.filter((e) => keyChoice(e) !== undefined).map((e) => `${e.schemaPath}/`);
  return (
    all
      // the alternatives' own "must have required property" lines: the choice says it better
      .filter((e) => !(e.keyword === 'required' && choices.some((c) => e.schemaPath.startsWith(c))))
      .map((e) => {
        const where = e.instancePath === '' ? '(root)' : e.instancePath.slice(1).replaceAll('/', '.');
        const keys = keyChoice(e);
        if (keys !== undefined) {
          const data = (e.data ?? {}) as Record<string, unknown>;
          const set = keys.filter((k) => Object.hasOwn(data, k));
          if (set.length > 1 && e.keyword === 'oneOf')
            return `${where}: sets both ${quoted(set).join(' and ')}: set exactly one of them`;
          return `${where}: needs ${e.keyword === 'oneOf' ? 'exactly one' : 'one or more'} of ${quoted(keys).join(', ')}`;
        }
        if (e.propertyName !== undefined)
          return `${where}: "${e.propertyName}" is not a valid name: ${e.message ?? 'is invalid'}`;
        if (e.keyword === 'additionalProperties') {
          return `${where}: unknown key "${String((e.params as { additionalProperty: string }).additionalProperty)}"`;
        }
        if (e.keyword === 'enum') {
          return `${where}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
        }
        return `${where}: ${e.message ?? 'is invalid'}`;
      })
  );
}
