// The tunnel port under a flood: a peer that pings without reading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Conn, ConnHandler } from '@wmproxy/core-net';
import { FrameType, Mux, encodeFrame } from '../src/index.js';

/** A Conn whose peer never reads: every write reports backpressure, nothing drains. */
function stalledConn(): Conn & { written: Uint8Array[] } {
  const conn = {
    id: 1,
    remoteAddress: '127.0.0.1',
    remotePort: 1,
    localAddress: '127.0.0.1',
    localPort: 2,
    bytesRead: 0,
    bytesWritten: 0,
    closed: false,
    peerEnded: false,
    userData: undefined as unknown,
    tracker: undefined,
    written: [] as Uint8Array[],
    write(chunk: Uint8Array) {
      conn.written.push(chunk);
      return false;
    },
    end() {},
    destroy() {
      conn.closed = true;
    },
    reset() {
      conn.closed = true;
    },
    pause() {},
    resume() {},
    setNoDelay() {},
    setHandler(_handler: ConnHandler) {},
  };
  return conn as unknown as Conn & { written: Uint8Array[] };
}

test('a peer that sends PINGs without reading gets one PONG queued, not one per PING (before its handshake too)', async () => {
  const conn = stalledConn();
  const mux = new Mux(conn, { side: 'server' });
  const ping = encodeFrame(FrameType.PING, 0, 0, new Uint8Array(8));
  const burst = Buffer.concat(Array.from({ length: 4096 }, () => ping));
  // 80 000 PINGs (1.4 MiB of PONGs before): some flushes get through to the stalled connection, the rest wait.
  for (let round = 0; round < 20; round++) {
    mux.onData(burst);
    await new Promise((resolve) => setImmediate(resolve));
  }
  const queued = (mux as unknown as { control: Uint8Array[] }).control.length;
  assert.equal(mux.closed, false, 'the session lives: its answers are bounded');
  assert.ok(queued <= 1, `one PONG at most waits (${queued})`);
  assert.ok(conn.written.length <= 2, `one write before the backpressure (${conn.written.length})`);
  mux.destroy();
});
