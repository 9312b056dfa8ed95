/** A client of the control API, for `wmproxy status|reload|stop` and scripts. */
import { DEFAULT_CONTROL_LISTEN } from '@wmproxy/config';
import { REQUEST_HEADER } from './guard.js';

export interface ControlClientOptions {
  /** `host:port` or `http://host:port` of the control API (default 127.0.0.1:8837). */
  address?: string;
  token?: string;
  /** Give up after this long (default 10 000 ms). */
  timeoutMs?: number;
}

export class ControlClientError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'ControlClientError';
  }
}

export class ControlClient {
  readonly base: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;

  constructor(options: ControlClientOptions = {}) {
    const address = options.address ?? DEFAULT_CONTROL_LISTEN;
    this.base = /^https?:\/\//.test(address) ? address.replace(/\/+$/, '') : `http://${address.startsWith(':') ? `127.0.0.1${address}` : address}`;
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** JSON body of a request; status ≥ 400 throws ControlClientError carrying the body (except `accept` statuses). */
  async request<T>(method: 'GET' | 'POST', path: string, accept: number[] = []): Promise<{ status: number; body: T }> {
    let response: Response;
    try {
      response = await fetch(this.base + path, {
        method,
        // The API refuses mutations without it (or JSON, or a token): no browser sends it on a cross-site request.
        headers: this.token ? { [REQUEST_HEADER]: '1', authorization: `Bearer ${this.token}` } : { [REQUEST_HEADER]: '1' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new ControlClientError(`cannot reach the control API at ${this.base}: ${cause}`);
    }
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    if (response.status >= 400 && !accept.includes(response.status)) {
      const reason = typeof body === 'object' && body && 'error' in body ? String((body as { error: unknown }).error) : response.statusText;
      throw new ControlClientError(`${method} ${path}: ${response.status} ${reason}`, response.status, body);
    }
    return { status: response.status, body: body as T };
  }
}
