import { ControlCommand, controlFlags } from './_control.js';
import type { StatusView, UpstreamView } from '@wmproxy/control';

export default class Status extends ControlCommand {
  static override summary = 'Show the services and upstream health of a running wmproxy.';
  static override description = 'Calls GET /status and GET /upstreams of the control API. Exit status: 0, 1 when the API cannot be reached, 2 for bad arguments.';
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --control 127.0.0.1:8837 --json'];
  static override flags = controlFlags;

  async run(): Promise<void> {
    const { flags } = await this.parseFlags(Status);
    const client = await this.client(flags);
    let status: StatusView;
    let upstreams: UpstreamView[];
    try {
      status = (await client.request<StatusView>('GET', '/status')).body;
      upstreams = (await client.request<{ upstreams: UpstreamView[] }>('GET', '/upstreams')).body.upstreams;
    } catch (error) {
      return this.fail(error);
    }
    if (flags.json) {
      this.log(JSON.stringify({ status, upstreams }, null, 2));
      return;
    }
    this.log(`wmproxy ${status.version} on ${status.runtime}, pid ${status.pid}, up ${status.uptimeSeconds} s, config ${status.configFile}, reloads ${status.reloads.ok} ok / ${status.reloads.failed} rejected`);
    for (const service of status.services) {
      this.log(`  ${service.kind.padEnd(8)} ${service.name.padEnd(12)} ${(service.addresses.length > 0 ? service.addresses : service.listen).join(', ')}`);
    }
    for (const worker of status.workers ?? []) {
      this.log(`  worker   ${String(worker.index).padEnd(12)} pid ${worker.pid ?? '-'}, ${worker.state}, since ${worker.startedAt}, restarts ${worker.restarts}, open connections ${worker.openConnections}`);
    }
    for (const group of upstreams) {
      this.log(`upstream ${group.name} (${group.policy})`);
      for (const server of group.servers) {
        const latency = server.latencyMs === undefined ? '' : ` ${server.latencyMs} ms`;
        this.log(`  ${server.state.padEnd(9)} ${server.address.padEnd(22)} ${server.reason ?? ''}${latency}  requests ${server.requests}, failures ${server.requestFailures}, active ${server.activeRequests}`);
      }
    }
  }
}
