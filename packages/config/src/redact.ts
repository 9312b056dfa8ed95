import type { ConfigFile, HeaderRulesFile } from './schema.js';
import { parseHeaderRule } from './resolve.js';

export const REDACTED = '<redacted>';

/**
 * Header names whose values are secrets: `Authorization`,
 * `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, and any name
 * containing token, secret, key, pass, pwd, auth, cookie, session or
 * credential. Over-matching only hides a value from `GET /config`.
 */
const SECRET_WORDS = /token|secret|key|pass|pwd|auth|cookie|session|credential/i;

function isSecretHeader(name: string): boolean {
  return SECRET_WORDS.test(name);
}

function redactRules(rules: HeaderRulesFile | undefined): void {
  if (!rules) return;
  rules.forEach((rule, index) => {
    if (typeof rule === 'string') {
      const parsed = parseHeaderRule(rule);
      // An unparsable rule never got this far (the file was validated); keep it out of sight anyway.
      if (typeof parsed === 'string') rules[index] = REDACTED;
      else if (parsed.op !== 'remove' && isSecretHeader(parsed.name)) rules[index] = `${parsed.op} ${parsed.name} ${REDACTED}`;
    } else if (rule.op !== 'remove' && rule.value !== undefined && isSecretHeader(rule.name)) {
      rule.value = REDACTED;
    }
  });
}

function redactHeaders(headers: Record<string, string> | undefined): void {
  if (!headers) return;
  for (const name of Object.keys(headers)) if (isSecretHeader(name)) headers[name] = REDACTED;
}

/** `/health?access_token=T&x=1` → `/health?access_token=<redacted>&x=1`. */
function redactQuery(path: string): string {
  const query = path.indexOf('?');
  if (query === -1) return path;
  const pairs = path
    .slice(query + 1)
    .split('&')
    .map((pair) => {
      const equals = pair.indexOf('=');
      return equals !== -1 && isSecretHeader(pair.slice(0, equals)) ? `${pair.slice(0, equals)}=${REDACTED}` : pair;
    });
  return `${path.slice(0, query + 1)}${pairs.join('&')}`;
}

/**
 * A copy of the file form with every secret-bearing value replaced: the
 * control token, proxy passwords, credentials in parent-proxy URLs, values of
 * secret headers (header rules at every level, `respond` headers, health-check
 * headers), secret query parameters of health-check paths, and health-check
 * `send` bytes that mention a credential (Redis `AUTH`, `PASS`). File paths
 * (TLS certificates and keys) stay: the key's contents are never in the file.
 */
export function redactConfig(config: ConfigFile): ConfigFile {
  const copy = structuredClone(config);
  if (copy.control?.token !== undefined) copy.control.token = REDACTED;
  for (const proxy of copy.proxy ?? []) {
    if (proxy.users) for (const user of Object.keys(proxy.users)) proxy.users[user] = REDACTED;
    if (proxy.parent) proxy.parent = proxy.parent.replace(/\/\/[^@/]*@/, `//${REDACTED}@`);
  }
  for (const upstream of copy.upstream ?? []) {
    const check = upstream.health_check;
    if (!check) continue;
    redactHeaders(check.headers);
    if (check.path !== undefined) check.path = redactQuery(check.path);
    if (check.send !== undefined && SECRET_WORDS.test(check.send)) check.send = REDACTED;
  }
  const redactWsAuth = (auth: { users?: Record<string, string>; bearer?: string[] } | undefined): void => {
    if (auth?.users) for (const user of Object.keys(auth.users)) auth.users[user] = REDACTED;
    if (auth?.bearer) auth.bearer = auth.bearer.map(() => REDACTED);
  };
  for (const bridge of copy.ws_proxy ?? []) {
    redactWsAuth(bridge.auth);
    redactHeaders(bridge.headers);
    if (bridge.url) bridge.url = bridge.url.replace(/\/\/[^@/]*@/, `//${REDACTED}@`);
  }
  redactHeaders(copy.reverse?.tracing?.otlp_headers);
  redactRules(copy.reverse?.request_headers);
  redactRules(copy.reverse?.response_headers);
  for (const server of copy.server ?? []) {
    redactRules(server.request_headers);
    redactRules(server.response_headers);
    for (const location of server.location) {
      redactRules(location.request_headers);
      redactRules(location.response_headers);
      redactHeaders(location.respond?.headers);
      redactWsAuth(location.websocket_to_tcp?.auth);
    }
  }
  return copy;
}
