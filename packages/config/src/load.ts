/**
 * Reading a configuration: the format is chosen by extension (`.toml`,
 * `.yaml`/`.yml`, `.json`), a file in the original wmproxy's format is
 * converted (with a warning per key without an equivalent), then the schema
 * and the cross-checks run and every problem is reported at once, each
 * naming the file, the key path, what was expected and what was found.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve as resolvePath } from 'node:path';
import * as TOML from 'smol-toml';
import * as YAML from 'yaml';
import { ConfigError, IssueList } from './errors.js';
import { convertOriginal, isOriginalFormat } from './original.js';
import { resolveConfig } from './resolve.js';
import type { ConfigFile } from './schema.js';
import type { WmproxyConfig } from './types.js';
import { validateSchema, withoutInvalid } from './validate.js';

export type ConfigFormat = 'toml' | 'yaml' | 'json';

export function formatOf(file: string): ConfigFormat | undefined {
  switch (extname(file).toLowerCase()) {
    case '.toml':
      return 'toml';
    case '.yaml':
    case '.yml':
      return 'yaml';
    case '.json':
      return 'json';
    default:
      return undefined;
  }
}

/** Parse text of a format; a syntax error becomes a ConfigError naming the line. */
export function parseText(text: string, format: ConfigFormat, file: string): unknown {
  try {
    if (format === 'toml') return TOML.parse(text);
    if (format === 'json') return JSON.parse(text);
    const document = YAML.parseDocument(text, { prettyErrors: false });
    if (document.errors.length > 0) {
      const issues = new IssueList(file);
      for (const error of document.errors) {
        const line = error.linePos?.[0];
        issues.add(line ? `line ${line.line}, column ${line.col}` : '', 'valid YAML', error.message.split('\n')[0]!);
      }
      issues.throwIfAny();
    }
    return document.toJS() ?? {};
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const issues = new IssueList(file);
    const message = error instanceof Error ? error.message : String(error);
    const position = /line (\d+), column (\d+)/i.exec(message);
    issues.add(position ? `line ${position[1]}, column ${position[2]}` : '', `valid ${format.toUpperCase()}`, message.split('\n')[0]!);
    throw new ConfigError(file, issues.issues);
  }
}

export interface LoadOptions {
  /** Directory that relative paths in the file are relative to (default: the file's directory). */
  baseDir?: string;
  /** Reject a file in the original wmproxy format instead of converting it (default false). */
  noConvert?: boolean;
}

/** Validate parsed data as a configuration; throws ConfigError with every issue. */
export function buildConfig(data: unknown, file: string, options: LoadOptions = {}): WmproxyConfig {
  const warnings: string[] = [];
  let source = data;
  if (isOriginalFormat(data)) {
    if (options.noConvert) {
      throw new ConfigError(file, [{ file, path: '', expected: 'the wmproxy format', found: 'the original wmproxy format (run `wmproxy convert`)' }]);
    }
    const converted = convertOriginal(data);
    warnings.push(...converted.warnings.map((warning) => `${file}: ${warning}`));
    source = converted.config;
  }
  const issues = new IssueList(file);
  if (source === null || typeof source !== 'object' || Array.isArray(source)) {
    issues.add('', 'a table of settings', Array.isArray(source) ? 'a list' : String(source));
    issues.throwIfAny();
  }
  const invalid = validateSchema(source, issues);
  const baseDir = options.baseDir ?? (file.startsWith('<') ? process.cwd() : dirname(resolvePath(file)));
  if (invalid.length > 0) {
    // Still run the cross-checks on what is valid, so that every error is reported at once.
    const extra = new IssueList(file);
    try {
      resolveConfig(withoutInvalid(source, invalid) as ConfigFile, extra, baseDir);
    } catch {
      /* a shape the schema already rejected */
    }
    const known = new Set(issues.issues.map((issue) => issue.path));
    for (const issue of extra.issues) if (!known.has(issue.path)) issues.issues.push(issue);
    issues.throwIfAny();
  }
  const resolved = resolveConfig(source as ConfigFile, issues, baseDir);
  issues.throwIfAny();
  return { ...resolved, file, warnings, source: source as ConfigFile };
}

/** Parse and validate configuration text. */
export function parseConfig(text: string, format: ConfigFormat, file = '<inline>', options: LoadOptions = {}): WmproxyConfig {
  return buildConfig(parseText(text, format, file), file, options);
}

function formatOrThrow(file: string): ConfigFormat {
  const format = formatOf(file);
  if (!format) throw new ConfigError(file, [{ file, path: '', expected: 'a file ending in .toml, .yaml, .yml or .json', found: extname(file) || 'no extension' }]);
  return format;
}

function readError(file: string, error: unknown): ConfigError {
  const code = (error as NodeJS.ErrnoException).code;
  return new ConfigError(file, [{ file, path: '', expected: 'a readable file', found: code === 'ENOENT' ? 'no such file' : String((error as Error).message) }]);
}

/** Read, parse and validate a configuration file. */
export async function loadConfig(file: string, options: LoadOptions = {}): Promise<WmproxyConfig> {
  const format = formatOrThrow(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw readError(file, error);
  }
  return parseConfig(text, format, file, options);
}

/** The same, synchronously (for the CLI's `check` and tests). */
export function loadConfigSync(file: string, options: LoadOptions = {}): WmproxyConfig {
  const format = formatOrThrow(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw readError(file, error);
  }
  return parseConfig(text, format, file, options);
}

/** Text of a configuration in a format (for `wmproxy convert`). */
export function stringifyConfig(config: ConfigFile, format: ConfigFormat): string {
  if (format === 'json') return JSON.stringify(config, null, 2) + '\n';
  if (format === 'yaml') return YAML.stringify(config);
  return TOML.stringify(config) + '\n';
}
