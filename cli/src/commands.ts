import Version from './commands/version.js';
import Proxy from './commands/proxy.js';
import Check from './commands/check.js';
import Schema from './commands/schema.js';
import Convert from './commands/convert.js';
import Run from './commands/run.js';
import Status from './commands/status.js';
import Top from './commands/top.js';
import Certs from './commands/certs.js';
import Reload from './commands/reload.js';
import Stop from './commands/stop.js';
import FileServer from './commands/file-server.js';
import Probe from './commands/probe.js';
import ReverseProxyCommand from './commands/reverse-proxy.js';
import WsProxy from './commands/ws-proxy.js';
import TunnelServerCommand from './commands/tunnel/server.js';
import TunnelClientCommand from './commands/tunnel/client.js';
import ConfigPush from './commands/config/push.js';
import ConfigPull from './commands/config/pull.js';
import ServiceRegister from './commands/service/register.js';

/** Every command, by name (oclif's explicit strategy: no directory scan at start-up). */
export const commands = {
  check: Check,
  convert: Convert,
  'config:push': ConfigPush,
  'config:pull': ConfigPull,
  'service:register': ServiceRegister,
  schema: Schema,
  run: Run,
  status: Status,
  top: Top,
  certs: Certs,
  reload: Reload,
  stop: Stop,
  'file-server': FileServer,
  probe: Probe,
  'reverse-proxy': ReverseProxyCommand,
  proxy: Proxy,
  'ws-proxy': WsProxy,
  'tunnel:server': TunnelServerCommand,
  'tunnel:client': TunnelClientCommand,
  version: Version,
};
