/**
 * Reading a configuration: the format is chosen by extension (`.toml`,
 * `.yaml`/`.yml`, `.json`), a file in the original wmproxy's format is
 * converted (with a warning per key without an equivalent, an error per
 * wrongly typed value or unknown key), then the schema and the cross-checks
 * run and every problem is reported at once, each naming the file, the key
 * path (of the original file, for a converted one), what was expected and
 * what was found.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve as resolvePath } from 'node:path';
import * as TOML from 'smol-toml';
import * as YAML from 'yaml';
import { ConfigError, IssueList, type ConfigIssue } from './errors.js';
import { convertOriginal, isOriginalFormat, type ConversionResult } from './original.js';
import { resolveConfig } from './resolve.js';
import type { ConfigFile } from './schema.js';
import type { WmproxyConfig } from './types.js';
import { validateSchema, withoutInvalid } from './validate.js';
import { interpolateEnv, type Environment } from './env.js';

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
  /** Where `${NAME}` references in values are looked up (default `process.env`; see env.ts). */
  env?: Environment;
}

/** Validate parsed data as a configuration; throws ConfigError with every issue. */
export function buildConfig(data: unknown, file: string, options: LoadOptions = {}): WmproxyConfig {
  const warnings: string[] = [];
  // `source` keeps the references as written: what is shown, stored and pushed never holds the values (secrets).
  const referenceIssues = new IssueList(file);
  const written = data;
  data = interpolateEnv(data, options.env ?? process.env, referenceIssues);
  referenceIssues.throwIfAny();
  let source = data;
  let converted: ConversionResult | undefined;
  if (isOriginalFormat(data)) {
    if (options.noConvert) {
      throw new ConfigError(file, [{ file, path: '', expected: 'the wmproxy format', found: 'the original wmproxy format (run `wmproxy convert`)' }]);
    }
    converted = convertOriginal(data, { file, keepGoing: true });
    warnings.push(...converted.warnings.map((warning) => `${file}: ${warning}`));
    // Errors about a conversion that dropped values would be about what is missing, not about the file.
    if (!converted.complete) throw new ConfigError(file, converted.issues);
    source = converted.config;
  }
  const baseDir = options.baseDir ?? (file.startsWith('<') ? process.cwd() : dirname(resolvePath(file)));
  const { issues, resolved } = validate(source, file, baseDir);
  if (converted) {
    // Name the key the author of the original file wrote, not the converted one; the converter's own issue on a key wins.
    const own = new Set(converted.issues.map((issue) => issue.path));
    const mapped = issues.map((issue) => toOriginalPath(issue, converted.origins)).filter((issue) => !own.has(issue.path));
    issues.splice(0, issues.length, ...converted.issues, ...mapped);
  }
  if (issues.length > 0 || !resolved) throw new ConfigError(file, issues);
  // What GET /config shows: the references as written, never the values they stood for.
  const shown = converted ? convertOriginal(written, { file, keepGoing: true }).config : written;
  return { ...resolved, file, warnings, source: shown as ConfigFile };
}

/** Schema, then cross-checks; every issue, and the resolved configuration when there is none. */
function validate(source: unknown, file: string, baseDir: string): { issues: ConfigIssue[]; resolved?: ReturnType<typeof resolveConfig> } {
  const issues = new IssueList(file);
  if (source === null || typeof source !== 'object' || Array.isArray(source)) {
    issues.add('', 'a table of settings', Array.isArray(source) ? 'a list' : String(source));
    return { issues: issues.issues };
  }
  const invalid = validateSchema(source, issues);
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
    return { issues: issues.issues };
  }
  const resolved = resolveConfig(source as ConfigFile, issues, baseDir);
  return { issues: issues.issues, resolved };
}

/** The last segment of a key path: `.key`, `[0]` or `["a b"]`. */
const LAST_SEGMENT = /(?:\.[A-Za-z_$][\w$-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])$/;

/** An issue of a converted file, at the key of the original file its value came from (the nearest one recorded). */
function toOriginalPath(issue: ConfigIssue, origins: ReadonlyMap<string, string>): ConfigIssue {
  let path = issue.path;
  for (;;) {
    const original = origins.get(path);
    if (original !== undefined) {
      return path === issue.path ? { ...issue, path: original } : { ...issue, path: original, found: `${issue.found} (at ${issue.path} once converted)` };
    }
    if (path === '') break;
    const shorter = path.replace(LAST_SEGMENT, '');
    path = shorter === path ? '' : shorter;
  }
  return { ...issue, path: '', found: issue.path === '' ? issue.found : `${issue.found} (at ${issue.path} once converted)` };
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
