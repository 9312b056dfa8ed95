/**
 * A worker process of `workers = N`: runs the configuration's services on
 * listeners shared with the other workers, follows the primary's health
 * states (it never probes), and reports its counters. It exits when the
 * primary asks it to stop or disappears.
 */
import { parseAddress, protectLocalPort, shareListenersByDefault, silentLogger } from '@wmproxy/core-net';
import type { WmproxyConfig } from '@wmproxy/config';
import { Instance } from '../instance.js';
import type { PrimaryMessage, WorkerMessage } from './protocol.js';

/** Counters are pushed this often, so that a worker killed between two collections loses little. */
const REPORT_INTERVAL_MS = 1000;

/**
 * What worker `index` runs of a configuration: no control API (the primary
 * has it) and UDP streams only in worker 0 — UDP sessions are per client
 * address and must not be split between processes.
 */
function workerConfig(config: WmproxyConfig, index: number): WmproxyConfig {
  return {
    ...config,
    control: { ...config.control, enabled: false },
    streams: index === 0 ? config.streams : config.streams.filter((stream) => stream.protocol !== 'udp'),
  };
}

function send(message: WorkerMessage): void {
  // A primary that is going away cannot be told anything; `disconnect` stops this worker.
  if (process.connected) process.send!(message, undefined, undefined, () => undefined);
}

export function runWorker(): void {
  if (!process.send) throw new Error('a wmproxy worker must be started by its primary (no IPC channel)');
  shareListenersByDefault(true);
  let instance: Instance | undefined;
  let index = 0;
  let stopping: Promise<void> | undefined;
  let reporter: ReturnType<typeof setInterval> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (reporter) clearInterval(reporter);
      if (instance) {
        await instance.stop();
        send({ t: 'counters', counters: instance.workerCounters() });
      }
      process.disconnect?.();
      process.exit(0);
    })();
    return stopping;
  };
  // The terminal's Ctrl-C reaches the whole process group: the primary decides.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => void stop());
  process.on('SIGHUP', () => undefined);
  process.on('disconnect', () => void stop());
  process.on('message', (raw) => {
    const message = raw as PrimaryMessage;
    switch (message.t) {
      case 'start':
        index = message.index;
        // The primary serves the control API; this worker's proxies must refuse its port too.
        if (message.config.control.enabled) {
          const port = parseAddress(message.config.control.listen).port;
          if (port > 0) protectLocalPort(port);
        }
        void Instance.start(workerConfig(message.config, index), { worker: { index, health: message.health }, ...(message.quiet ? { logger: silentLogger } : {}) }).then(
          (started) => {
            instance = started;
            if (stopping) return;
            instance.events.on('event', (event) => {
              if (event.type === 'eject' || event.type === 'uneject') send({ t: 'event', event });
            });
            reporter = setInterval(() => send({ t: 'counters', counters: started.workerCounters() }), REPORT_INTERVAL_MS);
            reporter.unref();
            send({ t: 'ready', services: started.status().services });
          },
          (error: Error) => {
            send({ t: 'failed', message: error.message });
            setTimeout(() => process.exit(1), 50);
          },
        );
        return;
      case 'health':
        if (instance) for (const entry of message.entries) instance.health.applyState(entry.key, entry.state, entry.reason);
        return;
      case 'reload':
        if (!instance) return;
        void instance.reload(workerConfig(message.config, index)).then((result) => send({ t: 'reloaded', id: message.id, result, services: instance!.status().services }));
        return;
      case 'collect':
        if (instance) send({ t: 'counters', id: message.id, counters: instance.workerCounters() });
        return;
      case 'reopen-logs':
        instance?.reopenLogs();
        return;
      case 'stop':
        void stop();
        return;
    }
  });
  send({ t: 'hello' });
}
