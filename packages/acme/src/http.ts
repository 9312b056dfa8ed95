/**
 * The two HTTP answers automatic HTTPS adds to plain listeners, as location
 * handlers (the shape `@wmproxy/reverse` takes): ACME HTTP-01 validation,
 * matched ahead of every configured location, and the HTTP→HTTPS redirect.
 */
import { isValidHostname } from '@wmproxy/core-net';
import { ACME_CHALLENGE_PREFIX, type ChallengeStore } from './challenges.js';

interface Request {
  method: string;
  target: string;
  path: string;
  header(lower: string): string | undefined;
}
interface Answer {
  status: number;
  headers: Array<[string, string]>;
  body?: string;
  length?: number;
}
export interface HttpHandler {
  handle(request: Request): Promise<Answer>;
}

function text(status: number, body: string, extra: Array<[string, string]> = []): Answer {
  return { status, headers: [['Content-Type', 'text/plain; charset=utf-8'], ['Cache-Control', 'no-store'], ...extra], body, length: Buffer.byteLength(body) };
}

/** Answers /.well-known/acme-challenge/<token> with the key authorization, 404 for unknown tokens. */
export function acmeChallengeHandler(store: Pick<ChallengeStore, 'httpAnswer'>): HttpHandler {
  return {
    async handle(request) {
      const answer = await store.httpAnswer(request.path);
      return answer === undefined ? text(404, 'unknown ACME challenge token\n') : text(200, answer);
    },
  };
}

/** The location prefix of `acmeChallengeHandler`. */
export const ACME_CHALLENGE_PATH = ACME_CHALLENGE_PREFIX;

/** Host of a Host header, without the port; undefined when it is not a host name. */
function hostOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const host = header.replace(/:\d+$/, '').replace(/\.$/, '').toLowerCase();
  return isValidHostname(host) ? host : undefined;
}

/** 308 to the same host and target on HTTPS (`httpsPort` in the URL unless 443). */
export function httpsRedirectHandler(httpsPort: number): HttpHandler {
  const port = httpsPort === 443 ? '' : `:${httpsPort}`;
  return {
    async handle(request) {
      const host = hostOf(request.header('host'));
      if (!host) return text(400, 'a Host header naming the site is needed to redirect to HTTPS\n');
      const target = request.target.startsWith('/') ? request.target : '/';
      return text(308, `https://${host}${port}${target}\n`, [['Location', `https://${host}${port}${target}`]]);
    },
  };
}
