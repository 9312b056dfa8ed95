import { availableParallelism } from 'node:os';
import { Flags } from '@oclif/core';
import type { WmproxyConfig } from '@wmproxy/config';
import type { Instance } from '@wmproxy/control';
import type { ClusterMember } from '@wmproxy/cluster';
import { WmproxyCommand } from '../base.js';

export default class Run extends WmproxyCommand {
  static override summary = 'Run every service a configuration file defines (or the embedded default).';
  static override description = [
    'Without -c: the mixed forward proxy (HTTP, HTTPS, SOCKS5) on 127.0.0.1:8090 and the control API on 127.0.0.1:8837.',
    'Signals: SIGHUP reloads the file (an invalid one is rejected and the running configuration stays),',
    'SIGTERM and SIGINT stop gracefully, SIGUSR1 reopens the log files.',
    'Exit status: 0 after a graceful stop, 1 when the configuration is invalid or a port cannot be bound, 2 for bad arguments.',
  ].join('\n');
  static override examples = ['<%= config.bin %> run', '<%= config.bin %> run -c wmproxy.toml', 'kill -HUP $(pidof wmproxy)  # reload'];
  static override flags = {
    config: Flags.string({ char: 'c', description: 'configuration file (.toml, .yaml, .yml, .json; the original wmproxy format is converted)' }),
    workers: Flags.string({ description: 'processes sharing the listeners: auto (one per CPU) or N; overrides `workers` of the file (default 1)' }),
    store: Flags.string({
      description: 'follow the configuration stored in etcd (etcd://HOST:PORT[,...]/PREFIX): every change pushed there is applied like SIGHUP; with -c, that file serves when the store is unreachable at start (`[cluster] store` in the file does the same)',
      env: 'WMPROXY_STORE',
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Run);
    // Loaded here, not at the top: oclif imports every command module at start-up.
    const { ConfigError, defaultConfig, loadConfig } = await import('@wmproxy/config');
    const { Instance } = await import('@wmproxy/control');
    if (flags.workers !== undefined && flags.workers !== 'auto' && !(/^[1-9][0-9]{0,2}$/.test(flags.workers) && Number(flags.workers) <= 256)) {
      return this.usageError(`--workers ${flags.workers}: expected auto or a number from 1 to 256`);
    }
    const file = flags.config;
    let config: WmproxyConfig;
    let member: ClusterMember<WmproxyConfig> | undefined;
    try {
      if (flags.store !== undefined) {
        const { parseStoreUrl } = await import('@wmproxy/cluster');
        try {
          parseStoreUrl(flags.store);
        } catch (error) {
          return this.usageError(`--store: ${(error as Error).message}`);
        }
        const started = await this.fromStore(flags.store, file);
        if (!started) return this.exit(1);
        ({ config, member } = started);
      } else {
        config = file ? await loadConfig(file) : defaultConfig();
        // `[cluster] store` in the file: follow the store as with --store; the file serves until something is pushed there.
        if (file && config.cluster.store !== undefined) {
          const started = await this.fromStore(config.cluster.store, file);
          if (!started) return this.exit(1);
          ({ config, member } = started);
        }
      }
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      process.stderr.write(error.message + '\n');
      return this.exit(1);
    }
    const wanted = flags.workers === undefined ? config.workers : flags.workers === 'auto' ? 'auto' : Number(flags.workers);
    const workers = wanted === 'auto' ? availableParallelism() : wanted;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    let instance: Instance;
    try {
      instance = await Instance.start(config, {
        version: this.config.version,
        ...(member ? { load: () => member.latest(), cluster: member } : file ? { load: () => loadConfig(file) } : {}),
        onStopRequested: () => done(),
        workers,
      });
    } catch (error) {
      process.stderr.write(`wmproxy run: ${(error as Error).message.split('\n')[0]}\n`);
      return this.exit(1);
    }
    if (member) {
      const following = instance;
      await member.follow({
        reload: (next) => following.reload(next),
        healthSummary: () => following.healthSummary(),
        address: () => following.controlAddress ?? following.status().services[0]?.addresses[0] ?? '',
      });
    }
    for (const warning of config.warnings) process.stderr.write(`warning: ${warning}\n`);
    for (const service of instance.status().services) {
      // The configured addresses should a service not report bound ones: never an empty line.
      this.log(`${service.kind} ${service.name} listening on ${(service.addresses.length > 0 ? service.addresses : service.listen).join(', ')}`);
    }
    const stop = () => void instance.stop().then(() => member?.close()).then(done);
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      void instance.reload().then((result) => {
        if (result.ok) this.log(`reloaded: ${result.changes.length > 0 ? result.changes.join('; ') : 'no change'}`);
        else process.stderr.write(`reload rejected, the running configuration stays:\n${result.message ?? ''}\n`);
      });
    });
    process.on('SIGUSR1', () => instance.reopenLogs());
    // Only now, with the handlers in place: a supervisor may signal as soon as it reads this line.
    this.log(`wmproxy ${this.config.version} running (pid ${process.pid}${workers > 1 ? `, ${workers} worker processes` : ''})`);
    await finished;
    this.log('wmproxy stopped');
    this.exit(0);
  }

  /** The stored configuration and the membership that follows it; with `fallback`, that file when the store cannot be read. */
  private async fromStore(url: string, fallback: string | undefined): Promise<{ config: WmproxyConfig; member: ClusterMember<WmproxyConfig> } | undefined> {
    const { loadConfig, parseConfig } = await import('@wmproxy/config');
    const { ClusterMember, ConfigStore, StoreError } = await import('@wmproxy/cluster');
    const store = new ConfigStore(url);
    const member = new ClusterMember<WmproxyConfig>({
      store,
      parse: (stored) => parseConfig(stored.text, stored.format, `${store.url.display} (revision ${stored.revision})`),
      version: this.config.version,
    });
    try {
      return { config: await member.initial(), member };
    } catch (error) {
      if (!(error instanceof StoreError) || fallback === undefined) {
        if (error instanceof StoreError) process.stderr.write(`${error.message}\n`);
        else throw error;
        await store.close();
        return undefined;
      }
      process.stderr.write(`warning: ${error.message}; serving ${fallback} until the store answers\n`);
      return { config: await loadConfig(fallback), member };
    }
  }
}
