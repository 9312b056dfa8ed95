// Process and port helpers shared by the reverse-proxy benchmarks.
import net from 'node:net';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `--name value` from argv, or the fallback. */
export function argument(args, name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** A port on 127.0.0.1 that was free a moment ago. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolve once 127.0.0.1:port accepts connections. */
export async function waitPort(port) {
  for (let i = 0; i < 400; i++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => (socket.destroy(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(25);
  }
  throw new Error(`port ${port} never opened`);
}

/** Stop a child (continuing it first if it was stopped), SIGKILL after 3 s. */
export function stop(child, signal = 'SIGTERM') {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => clearTimeout(timer));
    child.kill('SIGCONT');
    child.kill(signal);
  });
}
