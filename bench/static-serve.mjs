// One wmproxy static server for the benchmark: `bun|node bench/static-serve.mjs ROOT PORT [WORKERS]`.
// Bun loads the TypeScript sources (Bun.serve + Bun.file); Node loads dist/ (node:http).
import { createStaticServer } from '@wmproxy/static';

const [root, port, workers = '1'] = process.argv.slice(2);
const server = await createStaticServer({ root, listen: `127.0.0.1:${port}`, workers: Number(workers) });
process.stderr.write(`static-serve ${server.runtime} ${server.url}\n`);
const stop = () => server.close().then(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
