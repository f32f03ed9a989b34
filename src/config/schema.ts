import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsImport from 'ajv-formats';
import { schemasDir } from '../paths.js';

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsImport as unknown as (ajv: Ajv2020) => Ajv2020;

export type SchemaName = 'config' | 'input' | 'decision' | 'audit-record';

const cache = new Map<string, ValidateFunction>();

/** Compile one of the JSON Schemas in schemas/ (cached). `useDefaults` fills defaults in place. */
export function compileSchema(name: SchemaName, opts: { useDefaults?: boolean } = {}): ValidateFunction {
  const key = `${name}:${opts.useDefaults === true}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const ajv = new Ajv2020({ allErrors: true, strict: false, useDefaults: opts.useDefaults === true });
  addFormats(ajv);
  const schema = JSON.parse(readFileSync(path.join(schemasDir, `${name}.schema.json`), 'utf8')) as object;
  const validate = ajv.compile(schema);
  cache.set(key, validate);
  return validate;
}

/** One line per problem, each with the JSON path it is about. */
export function formatSchemaErrors(errors: readonly ErrorObject[] | null | undefined): string[] {
  return (errors ?? [])
    .filter((e) => e.keyword !== 'if')
    .map((e) => {
      const where = e.instancePath === '' ? '(root)' : e.instancePath.slice(1).replaceAll('/', '.');
      if (e.keyword === 'additionalProperties') {
        return `${where}: unknown key "${String((e.params as { additionalProperty: string }).additionalProperty)}"`;
      }
      if (e.keyword === 'enum') {
        return `${where}: must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
      }
      return `${where}: ${e.message ?? 'is invalid'}`;
    });
}
