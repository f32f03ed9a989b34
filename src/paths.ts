import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The gitgate package root (works from src/ under vitest and from dist/ when built). */
export const packageRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const schemasDir: string = path.join(packageRoot, 'schemas');
