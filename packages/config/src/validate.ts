/**
 * Schema validation with every error reported, each as key path + expected +
 * found. TypeBox finds the errors; this turns them into sentences.
 */
import { FormatRegistry, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { isIP } from 'node:net';
import { parseAddress, parseCidr } from '@wmproxy/core-net';
import { describeValue, joinPath, type IssueList } from './errors.js';
import { ConfigSchema } from './schema.js';
import { parseDuration, parseSize } from './units.js';

function succeeds(check: () => unknown): boolean {
  try {
    check();
    return true;
  } catch {
    return false;
  }
}

if (!FormatRegistry.Has('wmproxy-address')) {
  FormatRegistry.Set('wmproxy-address', (value) => succeeds(() => parseAddress(value)));
  FormatRegistry.Set('wmproxy-cidr', (value) => succeeds(() => parseCidr(value)));
  FormatRegistry.Set('wmproxy-ip', (value) => isIP(value) !== 0);
  FormatRegistry.Set('wmproxy-regex', (value) => succeeds(() => new RegExp(value)));
  FormatRegistry.Set('wmproxy-duration', (value) => succeeds(() => parseDuration(value)));
  FormatRegistry.Set('wmproxy-size', (value) => succeeds(() => parseSize(value)));
}

/** `/upstream/0/servers/1` → `upstream[0].servers[1]`; with `data`, a digit key of a table stays a key (`health["0"]`), only list positions are indices. */
export function pointerToPath(pointer: string, data?: unknown): string {
  if (pointer === '') return '';
  let node = data;
  const segments = pointer
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => {
      const index = /^\d+$/.test(part) && (data === undefined || Array.isArray(node));
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
      return index ? Number(part) : part;
    });
  return joinPath(segments);
}

type SchemaLike = TSchema & Record<string, unknown>;

/** In words, what a schema accepts. */
export function expectedOf(schema: SchemaLike): string {
  if (typeof schema['x-expected'] === 'string') return schema['x-expected'];
  if (schema.const !== undefined) return JSON.stringify(schema.const);
  switch (schema.type) {
    case 'string': {
      const parts = ['a string'];
      if (typeof schema.minLength === 'number' && schema.minLength > 0) parts.push(`of at least ${schema.minLength} character${schema.minLength === 1 ? '' : 's'}`);
      if (typeof schema.pattern === 'string') parts.push(`matching ${schema.pattern}`);
      return parts.join(' ');
    }
    case 'integer':
    case 'number': {
      const noun = schema.type === 'integer' ? 'an integer' : 'a number';
      const min = schema.minimum as number | undefined;
      const max = schema.maximum as number | undefined;
      if (min !== undefined && max !== undefined) return `${noun} from ${min} to ${max}`;
      if (min !== undefined) return `${noun} of at least ${min}`;
      if (max !== undefined) return `${noun} of at most ${max}`;
      return noun;
    }
    case 'boolean':
      return 'true or false';
    case 'array':
      return typeof schema.minItems === 'number' && schema.minItems > 0 ? `a list of at least ${schema.minItems} item${schema.minItems === 1 ? '' : 's'}` : 'a list';
    case 'object':
      return 'a table';
  }
  if (Array.isArray(schema.anyOf)) return (schema.anyOf as SchemaLike[]).map(expectedOf).join(' or ');
  return 'a valid value';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Closest known key, for "did you mean". */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = levenshtein(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const saved = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = saved;
    }
  }
  return row[b.length]!;
}

/** Expected and found of an unknown key, with a "did you mean" when a known key is close (the original format's loader says the same). */
export function unknownKey(key: string, known: readonly string[]): { expected: string; found: string } {
  const guess = closest(key, [...known]);
  return { expected: guess ? `a known key (did you mean "${guess}"?)` : `one of the keys ${known.join(', ')}`, found: `unknown key "${key}"` };
}

function report(error: ValueError, issues: IssueList, seen: Set<string>, data: unknown): void {
  const schema = error.schema as SchemaLike;
  // A union (e.g. "address or table"): when the value's shape picks one variant, report inside it.
  if (error.type === ValueErrorType.Union && Array.isArray(schema.anyOf)) {
    const variants = schema.anyOf as SchemaLike[];
    const shape = Array.isArray(error.value) ? 'array' : isPlainObject(error.value) ? 'object' : undefined;
    const index = shape ? variants.findIndex((variant) => variant.type === shape) : -1;
    if (index >= 0 && variants.filter((variant) => variant.type === shape).length === 1) {
      for (const inner of error.errors[index]!) report(inner, issues, seen, data);
      return;
    }
  }
  let path = pointerToPath(error.path, data);
  let expected = expectedOf(schema);
  let found = describeValue(error.value);
  if (error.type === ValueErrorType.ObjectAdditionalProperties) {
    // TypeBox reports the unknown key's own path, with the object's schema.
    const key = error.path.slice(error.path.lastIndexOf('/') + 1).replace(/~1/g, '/').replace(/~0/g, '~');
    ({ expected, found } = unknownKey(key, Object.keys((schema.properties as Record<string, unknown>) ?? {})));
  } else if (error.type === ValueErrorType.ObjectRequiredProperty || error.value === undefined) {
    expected = `${expectedOf(schema)} (required)`;
    found = 'nothing';
  } else if (error.type === ValueErrorType.ArrayUniqueItems) {
    expected = 'a list without repeated items';
  }
  if (path === undefined) path = '';
  const key = `${path}\u0000${found}`;
  if (seen.has(key)) return;
  seen.add(key);
  issues.add(path, expected, found);
}

/**
 * Adds an issue for every schema violation of `data`. Returns the JSON
 * pointers of the offending values (empty when the data is valid).
 */
export function validateSchema(data: unknown, issues: IssueList, schema: TSchema = ConfigSchema): string[] {
  if (Value.Check(schema, data)) return [];
  const seen = new Set<string>();
  const pointers: string[] = [];
  for (const error of Value.Errors(schema, data)) {
    pointers.push(error.path);
    report(error, issues, seen, data);
  }
  return pointers;
}

/** A copy of `data` without the values at `pointers`, so that cross-checks can still run on the rest. */
export function withoutInvalid(data: unknown, pointers: readonly string[]): unknown {
  const copy = structuredClone(data) as Record<string, unknown>;
  for (const pointer of pointers) {
    const parts = pointer.slice(1).split('/').map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
    let node: unknown = copy;
    for (let i = 0; i < parts.length - 1 && node !== undefined; i++) node = (node as Record<string, unknown>)?.[parts[i]!];
    if (node && typeof node === 'object') delete (node as Record<string, unknown>)[parts[parts.length - 1]!];
  }
  return copy;
}
