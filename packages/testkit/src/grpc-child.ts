import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

export interface GrpcChild {
  port: number;
  child: ChildProcess;
  /** SIGKILL, resolved once the process is gone. */
  kill(): Promise<void>;
}

/**
 * Run a gRPC server in a child `node` process, to be killed or paused from a
 * test: `body` is ES module code with `grpc` (@grpc/grpc-js) in scope that
 * binds a server and prints `port N` once it listens.
 */
export async function spawnGrpcChild(body: string, label: string): Promise<GrpcChild> {
  const grpcUrl = pathToFileURL(createRequire(import.meta.url).resolve('@grpc/grpc-js')).href;
  const code = `const grpc = await import(${JSON.stringify(grpcUrl)});\n${body}`;
  const child = spawn('node', ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /port (\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`${label} exited with ${code}`)));
  });
  return {
    port,
    child,
    kill: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      }),
  };
}
