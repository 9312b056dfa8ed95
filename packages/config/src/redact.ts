import type { ConfigFile } from './schema.js';

export const REDACTED = '<redacted>';

/** A copy of the file form with passwords, tokens and URL credentials replaced. */
export function redactConfig(config: ConfigFile): ConfigFile {
  const copy = structuredClone(config);
  if (copy.control?.token !== undefined) copy.control.token = REDACTED;
  for (const proxy of copy.proxy ?? []) {
    if (proxy.users) for (const user of Object.keys(proxy.users)) proxy.users[user] = REDACTED;
    if (proxy.parent) proxy.parent = proxy.parent.replace(/\/\/[^@/]*@/, `//${REDACTED}@`);
  }
  for (const upstream of copy.upstream ?? []) {
    const check = upstream.health_check;
    if (check && check.headers) {
      for (const name of Object.keys(check.headers)) if (/authorization|cookie|token|key/i.test(name)) check.headers[name] = REDACTED;
    }
  }
  return copy;
}
