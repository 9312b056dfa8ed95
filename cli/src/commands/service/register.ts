import { Flags } from '@oclif/core';
import { WmproxyCommand } from '../../base.js';

export default class ServiceRegister extends WmproxyCommand {
  static override summary = 'Register a backend in the etcd service registry for as long as this command runs (the `etcd+` discovery of upstream groups).';
  static override description = [
    'The registration lives under a lease that this process renews: stop it (SIGTERM, SIGINT) and it is revoked at once;',
    'kill it or lose the machine and it expires after --ttl seconds. Groups with `servers = "etcd+PREFIX"` follow it.',
    'Exit status: 0 after a stop, 1 when etcd cannot be reached, 2 for bad arguments.',
  ].join('\n');
  static override examples = ['<%= config.bin %> service register --store etcd://127.0.0.1:2379 --prefix /services/app --address 10.0.0.5:8080'];
  static override flags = {
    store: Flags.string({ description: 'etcd://HOST:PORT[,HOST:PORT...] (the path is not used)', required: true, env: 'WMPROXY_STORE' }),
    prefix: Flags.string({ description: 'where the group looks: /services/NAME', required: true }),
    address: Flags.string({ description: 'host:port the proxies should reach this backend at', required: true }),
    weight: Flags.integer({ description: 'relative share of the traffic (1 to 1000)', min: 1, max: 1000 }),
    ttl: Flags.integer({ description: 'seconds the registration outlives this process if it dies', default: 10, min: 2, max: 3600 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(ServiceRegister);
    const { ServiceRegistry, StoreError, parseServiceRecord, servicePrefix } = await import('@wmproxy/cluster');
    let registry: InstanceType<typeof ServiceRegistry>;
    try {
      servicePrefix(flags.prefix);
      if (parseServiceRecord(JSON.stringify({ address: flags.address })) === undefined) throw new Error(`--address ${flags.address}: expected host:port`);
      registry = new ServiceRegistry(flags.store);
    } catch (error) {
      return this.usageError((error as Error).message);
    }
    try {
      await registry.register(flags.prefix, flags.address, { ...(flags.weight !== undefined ? { weight: flags.weight } : {}), ttlSeconds: flags.ttl });
    } catch (error) {
      await registry.close();
      if (!(error instanceof StoreError)) throw error;
      process.stderr.write(`${error.message}\n`);
      return this.exit(1);
    }
    let done!: () => void;
    const stopped = new Promise<void>((resolve) => (done = resolve));
    const stop = (): void => void registry.close().then(done);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    this.log(`registered ${flags.address} under ${flags.prefix} (lease ${flags.ttl} s)`);
    await stopped;
    this.log('deregistered');
    this.exit(0);
  }
}
