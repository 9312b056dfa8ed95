import { connect } from 'node:net';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Decode a chunked body (Bun streams some bodies that way). */
function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset < data.length) {
    const lineEnd = data.indexOf('\r\n', offset);
    const size = parseInt(data.subarray(offset, lineEnd).toString('latin1'), 16);
    if (!size) break;
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    offset = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}

/**
 * One request on a fresh raw socket, exactly as given (no URL normalisation,
 * unlike fetch), `Connection: close`, read to the end.
 */
export function request(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const data = Buffer.concat(chunks);
      const split = data.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`no response head: ${JSON.stringify(data.toString('latin1'))}`));
      const lines = data.subarray(0, split).toString('latin1').split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const out: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).toLowerCase();
        const value = line.slice(colon + 1).trim();
        out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
      }
      let body: Buffer = data.subarray(split + 4);
      if (out['transfer-encoding'] === 'chunked') body = dechunk(body);
      resolve({ status, headers: out, body });
    });
    let head = `${method} ${target} HTTP/1.1\r\nConnection: close\r\n`;
    if (!('host' in headers)) head += `Host: 127.0.0.1:${port}\r\n`;
    for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
    socket.write(Buffer.from(head + '\r\n', 'latin1'));
  });
}

/** Parse a multipart/byteranges body into its parts. */
export function parseMultipart(body: Buffer, contentType: string): Array<{ headers: Record<string, string>; data: Buffer }> {
  const match = /boundary=([^;\s]+)/.exec(contentType);
  if (!match) throw new Error(`no boundary in ${contentType}`);
  const delimiter = Buffer.from(`\r\n--${match[1]}`);
  const parts: Array<{ headers: Record<string, string>; data: Buffer }> = [];
  let offset = body.indexOf(delimiter);
  if (offset !== 0) throw new Error('multipart body must start with the delimiter');
  for (;;) {
    offset += delimiter.length;
    if (body.subarray(offset, offset + 2).toString() === '--') {
      if (body.subarray(offset + 2).toString() !== '\r\n') throw new Error('bad multipart epilogue');
      return parts;
    }
    const headEnd = body.indexOf('\r\n\r\n', offset);
    const headers: Record<string, string> = {};
    for (const line of body.subarray(offset + 2, headEnd).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
    }
    const next = body.indexOf(delimiter, headEnd + 4);
    if (next < 0) throw new Error('unterminated multipart part');
    parts.push({ headers, data: body.subarray(headEnd + 4, next) });
    offset = next;
  }
}

/** Deterministic bytes. */
export function patternBytes(length: number, seed = 7): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed + (i >> 8)) & 0xff;
  return out;
}

export const SECRET = 'TOP-SECRET-OUTSIDE-ROOT';
export const CSS = 'body { color: #333; margin: 0 auto; }\n'.repeat(40);

/** A scratch directory: `<dir>/secret.txt` outside `<dir>/root`, and a root full of cases. */
export function makeFixture(): { dir: string; root: string; data: Buffer; big: Buffer; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'wmproxy-static-'));
  const root = join(dir, 'root');
  const data = patternBytes(10_000);
  const big = patternBytes(300_000, 3);
  const files: Record<string, string | Buffer> = {
    'hello.txt': 'hello world\n',
    'data.bin': data,
    'big.bin': big,
    'index.html': '<h1>home</h1>\n',
    '404.html': '<h1>custom not found</h1>\n',
    'docs/index.html': '<h1>docs</h1>\n',
    'evil.example/index.html': 'evil dir\n',
    'nested/page.html': '<p>page</p>\n',
    'list/a<b>&c.txt': 'x',
    'list/zz.txt': 'zzzzzzzzzz',
    'list/m.txt': 'mmmmm',
    'list/.hidden': 'h',
    'list/key.key': 'k',
    'list/sub/keep.txt': 'k',
    '.secret': 'dot secret\n',
    '.well-known/security.txt': 'Contact: mailto:x@example.com\n',
    'private.key': 'KEY',
    'app.js': 'console.log("identity");\n',
    'app.js.br': 'BROTLI-BYTES',
    'app.js.gz': 'GZIP-BYTES',
    'app.js.zst': 'ZSTD-BYTES',
    'style.css': CSS,
    'assets/app.1234abcd.js': 'hashed();\n',
    'photo.png': Buffer.from([0x89, 0x50, 0x4e, 0x47]),
    'data.json': '{"a":1}',
    'unknown.xyzq': 'what',
    'custom.special': 'custom type',
    'empty.txt': '',
  };
  for (const [name, content] of Object.entries(files)) {
    const path = join(root, name);
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, content);
  }
  writeFileSync(join(dir, 'secret.txt'), SECRET);
  symlinkSync(join(dir, 'secret.txt'), join(root, 'link-out.txt'));
  symlinkSync(join(root, 'hello.txt'), join(root, 'link-in.txt'));
  return { dir, root, data, big, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The adapters to test in this runtime: node:http everywhere, Bun.serve too on Bun. */
export const ADAPTERS: Array<'bun' | 'node'> =
  typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? ['bun', 'node'] : ['node'];
