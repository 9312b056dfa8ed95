import { trackedServer } from '@wmproxy/testkit';

/** A node:net echo server on 127.0.0.1:0. */
export function echo(): Promise<{ port: number; close(): Promise<void> }> {
  return trackedServer((socket) => socket.pipe(socket));
}
