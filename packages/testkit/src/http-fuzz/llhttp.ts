import { join } from 'node:path';
import { FUZZ_DIR, JsonChild, NODE_BINARY } from './child.js';
import type { OriginEvent } from './origins.js';
import { OriginUnavailable } from './origins.js';

/** What node:http's client (llhttp) made of a response. */
export type LlhttpResponse =
  | { ok: true; status: number; headers: string[]; body: Buffer }
  | { ok: false; code: string; partial?: boolean };

/**
 * llhttp (strict, as node:http uses it) as an oracle, in a child `node`
 * process so that it is llhttp on Bun as well: what it parses from request
 * bytes sent on one connection, and how its client reads a response.
 */
export class LlhttpOracle {
  private constructor(private readonly child: JsonChild) {}

  static async start(): Promise<LlhttpOracle> {
    if (!NODE_BINARY) throw new OriginUnavailable('no `node` binary on PATH: the llhttp oracle needs one');
    const child = new JsonChild(NODE_BINARY, [join(FUZZ_DIR, 'node-llhttp.mjs'), 'llhttp'], 'llhttp oracle');
    try {
      await child.ready;
    } catch (error) {
      await child.close();
      throw error;
    }
    return new LlhttpOracle(child);
  }

  /** The events of one connection that sent `bytes` (then half-closed): requests parsed, or the parse error. */
  async parseRequests(bytes: Buffer): Promise<OriginEvent[]> {
    const reply = await this.child.call({ cmd: 'parse', bytes: bytes.toString('base64') });
    return (reply.events as OriginEvent[] | undefined) ?? [];
  }

  /** node:http's client reading `bytes` as the answer to `method` (the server closes after sending them). */
  async parseResponse(bytes: Buffer, method: string): Promise<LlhttpResponse> {
    const reply = await this.child.call({ cmd: 'parse-response', bytes: bytes.toString('base64'), method });
    if (reply.ok === true) return { ok: true, status: reply.status as number, headers: reply.headers as string[], body: Buffer.from(reply.body as string, 'base64') };
    return { ok: false, code: String(reply.code), partial: reply.partial === true };
  }

  close(): Promise<void> {
    return this.child.close();
  }
}
