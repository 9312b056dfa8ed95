import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connPair, type Conn } from '@wmproxy/core-net';
import { Bridge, WsEndpoint, encodeFrame } from '../src/index.js';

/** Records the sizes of the writes made on `conn`. */
function recordWrites(conn: Conn): number[] {
  const sizes: number[] = [];
  const write = conn.write.bind(conn);
  conn.write = (chunk) => {
    sizes.push(chunk.byteLength);
    return write(chunk);
  };
  return sizes;
}

describe('Bridge', () => {
  it('writes the payload of one WebSocket read to TCP in one write, whatever the number of frames in it', async () => {
    const [client, wsSide] = connPair(1 << 20);
    const [tcpSide, target] = connPair(1 << 20);
    const writes = recordWrites(tcpSide);
    const received: Uint8Array[] = [];
    target.setHandler({ data: (_conn, chunk) => void received.push(Uint8Array.from(chunk)), close() {} });
    const bridge = new Bridge(new WsEndpoint(wsSide, { role: 'server', maxMessageSize: 1 << 20 }), tcpSide, { encoding: 'binary', text: 'forward' });
    bridge.start();
    // Messages of every header size, a fragmented one with a ping inside it, and a text message forwarded as bytes.
    const payloads = [Buffer.alloc(5, 1), Buffer.alloc(300, 2), Buffer.alloc(70_000, 3), Buffer.alloc(1, 4), Buffer.from('text é')];
    const frames = [
      encodeFrame(2, payloads[0]!, true, true),
      encodeFrame(2, payloads[1]!, true, true),
      encodeFrame(2, payloads[2]!.subarray(0, 40_000), false, true),
      encodeFrame(0x9, Buffer.from('ping'), true, true),
      encodeFrame(0, payloads[2]!.subarray(40_000), true, true),
      encodeFrame(2, payloads[3]!, true, true),
      encodeFrame(1, payloads[4]!, true, true),
    ];
    client.write(Buffer.concat(frames));
    const expected = Buffer.concat(payloads);
    for (let i = 0; i < 100 && Buffer.concat(received).length < expected.length; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.ok(Buffer.concat(received).equals(expected));
    assert.deepEqual(writes, [expected.length]);
    bridge.abort();
  });
});
