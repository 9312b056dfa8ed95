/** One problem in a configuration file: where, what was expected, what was found. */
export interface ConfigIssue {
  /** The file (or `<default>`, `<inline>`). */
  file: string;
  /** Key path: `upstream[0].servers[1].address` (empty for the whole file). */
  path: string;
  /** What a valid value looks like. */
  expected: string;
  /** What the file has there (`"abc" (string)`, `nothing`, `unknown key`). */
  found: string;
}

/** Every issue of a file, thrown at once. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  readonly file: string;

  constructor(file: string, issues: ConfigIssue[]) {
    super(formatIssues(file, issues));
    this.name = 'ConfigError';
    this.file = file;
    this.issues = issues;
  }
}

export function formatIssue(issue: ConfigIssue): string {
  const where = issue.path === '' ? issue.file : `${issue.file}: ${issue.path}`;
  return `${where}: expected ${issue.expected}, found ${issue.found}`;
}

export function formatIssues(file: string, issues: readonly ConfigIssue[]): string {
  const head = `${file}: ${issues.length} error${issues.length === 1 ? '' : 's'}`;
  return [head, ...issues.map((issue) => `  ${formatIssue(issue)}`)].join('\n');
}

/** How a value reads in an error message. */
export function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return `${JSON.stringify(value.length > 80 ? value.slice(0, 77) + '...' : value)} (string)`;
  if (typeof value === 'number') return `${value} (number)`;
  if (typeof value === 'boolean') return `${value} (boolean)`;
  if (Array.isArray(value)) return `a list of ${value.length} item${value.length === 1 ? '' : 's'}`;
  if (typeof value === 'object') return 'a table';
  return typeof value;
}

/** `a.b[0].c` from path segments. */
export function joinPath(segments: ReadonlyArray<string | number>): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** Collects issues of one file. */
export class IssueList {
  readonly issues: ConfigIssue[] = [];
  constructor(readonly file: string) {}

  add(path: ReadonlyArray<string | number> | string, expected: string, found: string): void {
    this.issues.push({ file: this.file, path: typeof path === 'string' ? path : joinPath(path), expected, found });
  }

  throwIfAny(): void {
    if (this.issues.length > 0) throw new ConfigError(this.file, this.issues);
  }
}
