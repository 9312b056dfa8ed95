/**
 * Small glob matcher for hide lists, Cache-Control and header rules.
 * `*` matches within a segment, `**` across segments, `?` one character,
 * `[a-z]` a class, `{a,b}` alternatives. A pattern without `/` is matched
 * against the file name only (like `.gitignore`); with `/`, against the whole
 * path relative to the root (a leading `/` is optional).
 */
export class Glob {
  private readonly regex: RegExp;
  readonly baseNameOnly: boolean;

  constructor(readonly pattern: string) {
    this.baseNameOnly = !pattern.includes('/');
    this.regex = new RegExp('^' + globToRegexSource(pattern.replace(/^\//, '')) + '$');
  }

  /** `relative` has no leading slash: `assets/app.1a2b.js`. */
  matches(relative: string): boolean {
    if (this.baseNameOnly) {
      const slash = relative.lastIndexOf('/');
      return this.regex.test(slash < 0 ? relative : relative.slice(slash + 1));
    }
    return this.regex.test(relative);
  }
}

function globToRegexSource(pattern: string): string {
  let out = '';
  let inGroup = 0;
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!;
    switch (char) {
      case '*':
        if (pattern[i + 1] === '*') {
          i++;
          if (pattern[i + 1] === '/') {
            i++;
            out += '(?:.*/)?';
          } else out += '.*';
        } else out += '[^/]*';
        break;
      case '?':
        out += '[^/]';
        break;
      case '[': {
        const close = pattern.indexOf(']', i + 1);
        if (close < 0) {
          out += '\\[';
          break;
        }
        let body = pattern.slice(i + 1, close).replace(/\\/g, '\\\\');
        if (body.startsWith('!')) body = '^' + body.slice(1);
        out += '[' + body + ']';
        i = close;
        break;
      }
      case '{':
        inGroup++;
        out += '(?:';
        break;
      case '}':
        if (inGroup > 0) {
          inGroup--;
          out += ')';
        } else out += '\\}';
        break;
      case ',':
        out += inGroup > 0 ? '|' : ',';
        break;
      default:
        out += /[.+^$()|\\]/.test(char) ? '\\' + char : char;
    }
  }
  while (inGroup-- > 0) out += ')';
  return out;
}

/** First rule whose glob matches, or undefined. */
export function firstMatch<T extends { glob: Glob }>(rules: readonly T[], relative: string): T | undefined {
  for (const rule of rules) if (rule.glob.matches(relative)) return rule;
  return undefined;
}
