/**
 * Environment references in configuration values, so that instances sharing
 * one stored configuration (a file in a repository, a key in etcd) differ in
 * ports, addresses and secrets, and the secrets stay out of the store:
 *
 *   `${NAME}`           the variable's value; an error when it is unset
 *   `${NAME:-default}`  the default when the variable is unset or empty
 *   `${NAME-default}`   the default only when it is unset
 *   `$${`               a literal `${`
 *
 * Only string values are read, after the file is parsed, so a value can
 * never inject syntax or keys. A `$` not followed by `{` stays as written
 * (regular expressions end in `$`).
 */
import { IssueList } from './errors.js';

export type Environment = Readonly<Record<string, string | undefined>>;

const REFERENCE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const BODY = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?$/s;

/**
 * `data` with every reference in its strings replaced. Problems (an unset
 * variable without a default, a malformed reference) are added to `issues`
 * at the key path; the value is then left as written.
 */
export function interpolateEnv(data: unknown, env: Environment, issues: IssueList): unknown {
  return walk(data, [], env, issues);
}

function walk(value: unknown, path: Array<string | number>, env: Environment, issues: IssueList): unknown {
  if (typeof value === 'string') return value.includes('${') ? substitute(value, path, env, issues) : value;
  if (Array.isArray(value)) return value.map((item, index) => walk(item, [...path, index], env, issues));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = walk(item, [...path, key], env, issues);
    return out;
  }
  return value;
}

function substitute(text: string, path: Array<string | number>, env: Environment, issues: IssueList): string {
  let failed = false;
  const result = text.replace(REFERENCE, (match, body: string | undefined) => {
    if (match === '$${') return '${';
    const parsed = body === undefined ? null : BODY.exec(body);
    if (!parsed) {
      failed = true;
      issues.add(path, 'an environment reference ${NAME}, ${NAME:-default} or ${NAME-default} ($${ for a literal ${)', JSON.stringify(match === '${' ? text : match));
      return match;
    }
    const [, name, operator, fallback] = parsed;
    const set = env[name!];
    if (operator === ':-' && (set === undefined || set === '')) return fallback!;
    if (operator === '-' && set === undefined) return fallback!;
    if (set === undefined) {
      failed = true;
      issues.add(path, `the environment variable ${name} to be set (or a default: \${${name}:-value})`, `${name} unset`);
      return match;
    }
    return set;
  });
  return failed ? text : result;
}
