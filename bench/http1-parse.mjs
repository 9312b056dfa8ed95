#!/usr/bin/env node
// Micro-benchmark of core-net's HTTP/1.1 head parser and chunked decoder
// against llhttp (the parser inside node:http, reached through
// process.binding('http_parser'); Bun exposes the same binding), in one run.
//
// Usage: node bench/http1-parse.mjs [--seconds 1]      (Node runs dist/: npx tsc -b first)
//        npx bun bench/http1-parse.mjs [--seconds 1]   (Bun runs the TypeScript sources)
// Prints heads per CPU-second (or MiB per CPU-second) for each case and the wmproxy/llhttp ratio.
import { parseArgs } from 'node:util';
import { ChunkedDecoder, parseRequestHead, parseResponseHead } from '@wmproxy/core-net';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '1' } } });
const seconds = Number(values.seconds);
const runtime = typeof globalThis.Bun !== 'undefined' ? `bun ${globalThis.Bun.version}` : `node ${process.version}`;

const small = Buffer.from('GET http://127.0.0.1:8080/hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n');
const browser = Buffer.from(
  [
    'GET http://www.example.com/path/to/some/resource.js?version=1.2.3&cache=false HTTP/1.1',
    'Host: www.example.com',
    'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    'Accept-Language: en-GB,en;q=0.5',
    'Accept-Encoding: gzip, deflate, br, zstd',
    'Referer: http://www.example.com/index.html',
    'Connection: keep-alive',
    'Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.1234567890.1234567890',
    'Upgrade-Insecure-Requests: 1',
    'Sec-Fetch-Dest: script',
    'Sec-Fetch-Mode: no-cors',
    'Sec-Fetch-Site: same-origin',
    'Priority: u=2',
    'Pragma: no-cache',
    'Cache-Control: no-cache',
    '',
    '',
  ].join('\r\n'),
);
const response = Buffer.from(
  'HTTP/1.1 200 OK\r\nDate: Thu, 26 Nov 2026 00:00:00 GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\nConnection: keep-alive\r\nCache-Control: max-age=3600\r\nETag: "abcdef0123456789"\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/; HttpOnly\r\nVary: Accept-Encoding\r\nServer: nginx\r\n\r\n',
);
// 1 MiB body in 16 KiB chunks, chunked-encoded.
const piece = Buffer.alloc(16 * 1024, 0x61);
const chunkedBody = Buffer.concat([...Array.from({ length: 64 }, () => Buffer.concat([Buffer.from('4000\r\n'), piece, Buffer.from('\r\n')])), Buffer.from('0\r\n\r\n')]);

/** Operations per CPU-second (user + system time of this process), run for `forSeconds` of wall time. */
function rate(fn, forSeconds) {
  let iterations = 0;
  const cpu0 = process.cpuUsage();
  const deadline = process.hrtime.bigint() + BigInt(Math.round(forSeconds * 1e9));
  while (process.hrtime.bigint() < deadline) {
    for (let i = 0; i < 500; i++) fn();
    iterations += 500;
  }
  const cpu = process.cpuUsage(cpu0);
  return iterations / ((cpu.user + cpu.system) / 1e6);
}

// The machine is shared: rates are per CPU-second, and both parsers run in
// alternating short rounds keeping each one's best, so load bursts favour neither.
const ROUNDS = 7;
function compare(ours, theirs) {
  for (let i = 0; i < 20_000; i++) ours();
  if (theirs) for (let i = 0; i < 20_000; i++) theirs();
  let best = [0, 0];
  for (let round = 0; round < ROUNDS; round++) {
    best[0] = Math.max(best[0], rate(ours, seconds / ROUNDS));
    if (theirs) best[1] = Math.max(best[1], rate(theirs, seconds / ROUNDS));
  }
  return [best[0], theirs ? best[1] : undefined];
}

let llhttp;
try {
  const emit = process.emitWarning;
  process.emitWarning = () => {};
  llhttp = process.binding('http_parser').HTTPParser;
  process.emitWarning = emit;
} catch {
  llhttp = undefined;
}

function llhttpParser(kind) {
  const parser = new llhttp();
  parser.initialize(kind === 'request' ? llhttp.REQUEST : llhttp.RESPONSE, {});
  parser[llhttp.kOnHeadersComplete] = () => 0;
  parser[llhttp.kOnBody] = () => {};
  parser[llhttp.kOnMessageComplete] = () => {};
  return parser;
}

let sink = 0;
const rows = [];
function row(name, ours, theirs, unit) {
  rows.push({ name, ours, theirs, unit });
}

for (const [name, buf] of [
  ['request head, curl-like (4 fields)', small],
  ['request head, browser-like (16 fields)', browser],
]) {
  const parser = llhttp && llhttpParser('request');
  const [ours, theirs] = compare(
    () => {
      const result = parseRequestHead(buf);
      sink += result.kind === 'ok' ? result.consumed : 0;
    },
    parser && (() => (sink += parser.execute(buf))),
  );
  row(name, ours, theirs, 'heads/s');
}
{
  const parser = llhttp && llhttpParser('response');
  // A Content-Length response: llhttp gets the head and its body so it is ready for the next.
  const full = Buffer.concat([response, Buffer.alloc(1234, 0x62)]);
  const [ours, theirs] = compare(
    () => {
      const result = parseResponseHead(response);
      sink += result.kind === 'ok' ? result.consumed : 0;
    },
    parser && (() => (sink += parser.execute(full))),
  );
  row('response head (11 fields)', ours, theirs, 'heads/s');
}
{
  const sinkObj = { onChunkData(piece) { sink += piece.length; } };
  const parser = llhttp && llhttpParser('request');
  const message = Buffer.concat([Buffer.from('POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'), chunkedBody]);
  const mib = chunkedBody.length / 1048576;
  const [ours, theirs] = compare(
    () => new ChunkedDecoder().push(chunkedBody, sinkObj),
    parser && (() => (sink += parser.execute(message))),
  );
  row('chunked body decoding (16 KiB chunks)', ours * mib, theirs === undefined ? undefined : theirs * mib, 'MiB/s');
}

console.log(`http1 parse benchmark on ${runtime}: best of ${ROUNDS} alternating rounds, ${seconds}s per case and parser`);
console.log('case'.padEnd(42) + 'wmproxy'.padStart(14) + 'llhttp'.padStart(14) + 'ratio'.padStart(8));
for (const { name, ours, theirs, unit } of rows) {
  const fmt = (v) => (v === undefined ? 'n/a' : `${(v / (unit === 'heads/s' ? 1000 : 1)).toFixed(unit === 'heads/s' ? 0 : 0)}${unit === 'heads/s' ? 'k' : ''}`);
  console.log(name.padEnd(42) + fmt(ours).padStart(14) + fmt(theirs).padStart(14) + (theirs ? (ours / theirs).toFixed(2) + 'x' : 'n/a').padStart(8) + '  ' + unit);
}
if (sink === 42) console.log('');
