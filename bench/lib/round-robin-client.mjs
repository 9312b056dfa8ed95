// LoadClient (bench/reverse-common.mjs) taking idle connections oldest
// first: every keep-alive connection stays in use, so none sits idle long
// enough to meet the proxy's keep-alive timeout (a close racing a request is
// not what the abuse and soak benchmarks measure).
import { LoadClient } from '../reverse-common.mjs';

export class RoundRobinClient extends LoadClient {
  request(done) {
    const job = { done, start: 0 };
    const conn = this.idle.shift();
    if (conn) return this.send(conn, job);
    if (this.conns.size < this.maxConns) return this.send(this.open(), job);
    this.queue.push(job);
  }
}
