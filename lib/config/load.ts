import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { type FleetConfig, FleetConfigSchema } from './schema.ts';

/** Formats zod issues as `path: reason` lines (`routes.1.serverName: must be …`). */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => {
    const path = issue.path.map(String).join('.');
    return `${path === '' ? '(root)' : path}: ${issue.message}`;
  });
}

/**
 * Validates a fleet configuration object and applies defaults.
 * @throws ValidationError listing every issue as `path: reason`; `path` is the first issue's path.
 */
export function parseFleetConfig(input: unknown, source = 'fleet config'): FleetConfig {
  const result = FleetConfigSchema.safeParse(input);
  if (result.success) return result.data;
  const lines = formatIssues(result.error.issues);
  const first = result.error.issues[0];
  throw new ValidationError(`invalid ${source}:\n  ${lines.join('\n  ')}`, {
    cause: result.error,
    ...(first !== undefined ? { path: first.path.map(String).join('.') } : {}),
  });
}

/**
 * Reads a fleet configuration from a YAML (`.yaml`/`.yml`) or JSON file.
 * @throws ValidationError for unreadable files, syntax errors and schema violations.
 */
export async function loadFleetConfig(path: string): Promise<FleetConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ValidationError(`cannot read fleet config ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let document: unknown;
  try {
    document = extname(path) === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ValidationError(
      `fleet config ${path} is not valid ${extname(path) === '.json' ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  return parseFleetConfig(document, `fleet config ${path}`);
}
