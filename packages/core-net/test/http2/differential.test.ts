// HPACK against node:http2 (nghttp2) through real connections: random header
// lists go both ways over one connection each, so both dynamic tables evolve.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import fc from 'fast-check';
import { Server, parseAddress, connect, Http2Session, type Http2Stream } from '../../src/index.js';

const name = fc.stringMatching(/^x-[a-z0-9-]{1,24}$/);
// Visible ASCII and spaces inside (no leading/trailing space: RFC 9113 §8.2.1).
const value = fc.stringMatching(/^[!-~]([ -~]{0,60}[!-~])?$/);
const fields = fc.uniqueArray(fc.tuple(name, value), { maxLength: 12, selector: ([n]) => n });

describe('HPACK differential against node:http2', () => {
  test('node:http2 client → our server: every request header list arrives exactly', async () => {
    const server = await new Server({
      addresses: [parseAddress('127.0.0.1:0')],
      onConnection(conn) {
        new Http2Session(conn, 'server', {
          stream(stream: Http2Stream) {
            const got = stream.request!.headers.filter((_, i, all) => (i % 2 === 0 ? all[i]!.startsWith('x-') : all[i - 1]!.startsWith('x-')));
            stream.respond(200, ['content-type', 'application/json']);
            stream.end(new TextEncoder().encode(JSON.stringify(got)));
          },
        });
      },
    }).start();
    const port = Number(server.boundAddresses[0]!.split(':').pop());
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      await fc.assert(
        fc.asyncProperty(fields, async (list) => {
          const headers: Record<string, string> = { ':path': '/' };
          for (const [n, v] of list) headers[n] = v;
          const body = await new Promise<string>((resolve, reject) => {
            const req = client.request(headers);
            let text = '';
            req.setEncoding('utf8');
            req.on('data', (c: string) => (text += c));
            req.on('end', () => resolve(text));
            req.on('error', reject);
          });
          assert.deepEqual(JSON.parse(body), list.flat());
        }),
        { numRuns: 60 },
      );
    } finally {
      client.close();
      await server.shutdown({ deadlineMs: 100 });
    }
  });

  test('our client → node:http2 server: every request and response header list arrives exactly', async () => {
    const server = http2.createServer();
    server.on('stream', (stream, headers) => {
      const got: string[] = [];
      for (const [n, v] of Object.entries(headers)) if (n.startsWith('x-')) got.push(n, String(v));
      // Echo them back as response headers too.
      const reply: Record<string, string> = { ':status': '200' };
      for (let i = 0; i < got.length; i += 2) reply[got[i]!] = got[i + 1]!;
      stream.respond(reply);
      stream.end(JSON.stringify(got));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const session = new Http2Session(await connect({ host: '127.0.0.1', port }), 'client', {});
    try {
      await fc.assert(
        fc.asyncProperty(fields, async (list) => {
          const result = await new Promise<{ body: string; headers: string[] }>((resolve, reject) => {
            const stream = session.request({ method: 'GET', scheme: 'http', authority: `127.0.0.1:${port}`, path: '/', headers: list.flat() }, true);
            let body = '';
            stream.setHandler({
              data: (_s, c) => (body += Buffer.from(c).toString()),
              end: (s) => resolve({ body, headers: s.response!.headers }),
              close: (_s, error) => error && reject(error),
            });
          });
          const sorted = (flat: string[]): string[][] => {
            const pairs: string[][] = [];
            for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
            return pairs.sort((a, b) => a[0]!.localeCompare(b[0]!));
          };
          assert.deepEqual(sorted(JSON.parse(result.body)), sorted(list.flat()));
          assert.deepEqual(sorted(result.headers.filter((_, i, all) => all[i - (i % 2)]!.startsWith('x-'))), sorted(list.flat()));
        }),
        { numRuns: 60 },
      );
    } finally {
      session.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
