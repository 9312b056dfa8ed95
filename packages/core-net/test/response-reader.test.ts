import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ResponseHeadReader, connectionReusable, type ResponseHead, type ResponseHeadSink } from '@wmproxy/core-net';

/** Records what a reader reports, as text. */
class Recorder implements ResponseHeadSink {
  events: string[] = [];
  final: ResponseHead | undefined;
  onInterim(head: ResponseHead): void {
    this.events.push(`interim ${head.status}`);
  }
  onFinal(head: ResponseHead, chunk: Uint8Array, start: number): void {
    this.final = head;
    this.events.push(`final ${head.status} ${head.framing} rest=${Buffer.from(chunk.subarray(start)).toString('latin1')}`);
  }
  onBadHead(reason: string): void {
    this.events.push(`bad ${reason}`);
  }
}

const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));

const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
const HINTS = 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n';
const FINAL = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';

test('interim heads are reported one by one, then the final head with the body bytes after it', () => {
  const reader = new ResponseHeadReader();
  const sink = new Recorder();
  reader.push(bytes(CONTINUE + HINTS + FINAL + 'hello'), 'GET', sink);
  assert.deepEqual(sink.events, ['interim 100', 'interim 103', 'final 200 length rest=hello']);
  assert.equal(reader.pending, 0);
});

test('a head split over reads is held until it completes, and the bytes are released with it', () => {
  const reader = new ResponseHeadReader();
  const sink = new Recorder();
  const text = FINAL + 'hello';
  reader.push(bytes(text.slice(0, 10)), 'GET', sink);
  assert.deepEqual(sink.events, []);
  assert.equal(reader.pending, 10);
  reader.push(bytes(text.slice(10, 30)), 'GET', sink);
  assert.equal(reader.pending, 30);
  reader.push(bytes(text.slice(30)), 'GET', sink);
  assert.deepEqual(sink.events, ['final 200 length rest=hello']);
  assert.equal(reader.pending, 0, 'nothing is held once the head is read');
});

test('a 101 is final (the bytes after it belong to the new protocol); HEAD makes a response bodyless', () => {
  const upgrade = new Recorder();
  new ResponseHeadReader().push(bytes('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00'), 'GET', upgrade);
  assert.equal(upgrade.final?.status, 101);
  assert.deepEqual(upgrade.events, ['final 101 none rest=\x81\x00']);
  const head = new Recorder();
  new ResponseHeadReader().push(bytes(FINAL), 'HEAD', head);
  assert.equal(head.final?.framing, 'none');
});

test('a malformed head is reported once and nothing is held', () => {
  const reader = new ResponseHeadReader();
  const sink = new Recorder();
  reader.push(bytes('HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n'), 'GET', sink);
  assert.equal(sink.events.length, 1);
  assert.match(sink.events[0]!, /^bad /);
  assert.equal(reader.pending, 0);
});

test('clear() forgets a partial head', () => {
  const reader = new ResponseHeadReader();
  const sink = new Recorder();
  reader.push(bytes('HTTP/1.1 2'), 'GET', sink);
  reader.clear();
  assert.equal(reader.pending, 0);
  reader.push(bytes(FINAL), 'GET', sink);
  assert.deepEqual(sink.events, ['final 200 length rest=']);
});

test('property: however the reads split a response, the reader reports the same heads and the same body start', () => {
  const whole = CONTINUE + HINTS + FINAL + 'hello';
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 1, max: whole.length - 1 }), { maxLength: 12 }), (cuts) => {
      const points = [0, ...cuts.sort((a, b) => a - b), whole.length];
      const reader = new ResponseHeadReader();
      const sink = new Recorder();
      let rest = '';
      for (let i = 0; i + 1 < points.length; i++) {
        const piece = whole.slice(points[i], points[i + 1]);
        if (sink.final) rest += piece; // body bytes after the head are the caller's
        else reader.push(bytes(piece), 'GET', sink);
      }
      const finalEvent = sink.events.at(-1)!;
      assert.deepEqual(sink.events.slice(0, -1), ['interim 100', 'interim 103']);
      assert.equal(finalEvent.slice(0, 'final 200 length rest='.length), 'final 200 length rest=');
      assert.equal(finalEvent.slice('final 200 length rest='.length) + rest, 'hello');
      assert.equal(reader.pending, 0);
    }),
  );
});

test('a connection is reusable only after a keep-alive response framed by its length or chunks, a whole request body, and nothing extra', () => {
  const sink = new Recorder();
  new ResponseHeadReader().push(bytes(FINAL), 'GET', sink);
  const head = sink.final!;
  assert.equal(connectionReusable(head, true, false), true);
  assert.equal(connectionReusable(head, false, false), false, 'request body still owed');
  assert.equal(connectionReusable(head, true, true), false, 'bytes beyond the framing');
  const close = new Recorder();
  new ResponseHeadReader().push(bytes('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'), 'GET', close);
  assert.equal(connectionReusable(close.final!, true, false), false);
  const unframed = new Recorder();
  new ResponseHeadReader().push(bytes('HTTP/1.1 200 OK\r\n\r\n'), 'GET', unframed);
  assert.equal(unframed.final!.framing, 'close');
  assert.equal(connectionReusable(unframed.final!, true, false), false);
});
