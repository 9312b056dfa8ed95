/**
 * The dashboard: one self-contained HTML page (no build step, no external
 * assets) that reads /status, /upstreams and /certs and follows /events, so that a
 * server's row changes colour the moment its health changes. It calls only
 * its own origin, with the `X-Wmproxy-Request` header the API asks of
 * mutations (guard.ts), so that a button added later passes.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wmproxy</title>
<style>
  :root { --ok: #1a7f37; --bad: #cf222e; --unk: #9a6700; --ej: #8250df; --fg: #1f2328; --muted: #656d76; --line: #d0d7de; }
  body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); margin: 0; padding: 16px 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  h2 { font-size: 16px; margin: 24px 0 8px; }
  .meta { color: var(--muted); }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-weight: 600; color: var(--muted); }
  .state { font-weight: 600; }
  tr.healthy .state { color: var(--ok); }
  tr.unhealthy .state { color: var(--bad); }
  tr.unknown .state { color: var(--unk); }
  tr.ejected .state { color: var(--ej); }
  tr.unhealthy, tr.ejected { background: #ffebe9; }
  .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 2px; }
  .dot.ok { background: var(--ok); } .dot.fail { background: var(--bad); }
  #events { max-height: 260px; overflow: auto; font-family: ui-monospace, monospace; font-size: 12px; }
  #conn { font-size: 12px; }
  #conn.live { color: var(--ok); } #conn.down { color: var(--bad); }
</style>
</head>
<body>
<h1>wmproxy <span id="version"></span></h1>
<div class="meta"><span id="runtime"></span> · up <span id="uptime"></span> · config <span id="file"></span> · reloads <span id="reloads"></span> · <span id="conn" class="down">connecting</span></div>

<h2>Services</h2>
<table id="services"><thead><tr><th>kind</th><th>name</th><th>listening on</th><th>details</th></tr></thead><tbody></tbody></table>

<h2>Upstreams</h2>
<table id="upstreams"><thead><tr><th>upstream</th><th>server</th><th>state</th><th>reason</th><th>last probes</th><th>latency</th><th>active</th><th>requests</th><th>failures</th></tr></thead><tbody></tbody></table>

<h2>Certificates</h2>
<table id="certs"><thead><tr><th>names</th><th>status</th><th>issuer</th><th>expires</th><th>next renewal</th><th>last error</th></tr></thead><tbody></tbody></table>

<h2>Events</h2>
<div id="events"></div>

<script>
(() => {
  const token = new URLSearchParams(location.search).get('token');
  const withToken = (path) => token ? path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : path;
  const headers = token ? { authorization: 'Bearer ' + token, 'x-wmproxy-request': '1' } : { 'x-wmproxy-request': '1' };
  const $ = (id) => document.getElementById(id);
  const text = (value) => value === undefined || value === null ? '' : String(value);
  function cell(row, value, className) {
    const td = document.createElement('td');
    td.textContent = text(value);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }
  async function get(path) {
    const response = await fetch(withToken(path), { headers, cache: 'no-store' });
    if (!response.ok) throw new Error(path + ': ' + response.status);
    return response.json();
  }
  async function refreshStatus() {
    const status = await get('/status');
    $('version').textContent = status.version;
    $('runtime').textContent = status.runtime + ' · pid ' + status.pid;
    $('uptime').textContent = status.uptimeSeconds + ' s';
    $('file').textContent = status.configFile;
    $('reloads').textContent = status.reloads.ok + ' ok / ' + status.reloads.failed + ' rejected';
    const body = $('services').tBodies[0];
    body.replaceChildren();
    for (const service of status.services) {
      const row = document.createElement('tr');
      cell(row, service.kind);
      cell(row, service.name);
      cell(row, (service.addresses.length ? service.addresses : service.listen).join(', '));
      const details = [];
      if (service.protocols) details.push(service.protocols.join('+'));
      if (service.openConnections !== undefined) details.push(service.openConnections + ' open');
      if (service.serverNames && service.serverNames.length) details.push(service.serverNames.join(' '));
      if (service.upstream) details.push(service.protocol + ' → ' + service.upstream);
      cell(row, details.join(' · '));
      body.appendChild(row);
    }
    for (const worker of status.workers || []) {
      const row = document.createElement('tr');
      row.dataset.worker = String(worker.index);
      cell(row, 'worker');
      cell(row, String(worker.index));
      cell(row, 'pid ' + (worker.pid ?? '-'));
      cell(row, worker.state + ' · ' + worker.openConnections + ' open · restarts ' + worker.restarts);
      body.appendChild(row);
    }
  }
  async function refreshUpstreams() {
    const view = await get('/upstreams');
    const body = $('upstreams').tBodies[0];
    body.replaceChildren();
    for (const group of view.upstreams) {
      for (const server of group.servers) {
        const row = document.createElement('tr');
        row.className = server.state;
        row.dataset.upstream = group.name;
        row.dataset.server = server.address;
        row.dataset.state = server.state;
        cell(row, group.name);
        cell(row, server.address + (server.backup ? ' (backup)' : ''));
        cell(row, server.state, 'state');
        cell(row, server.reason);
        const dots = cell(row, '');
        for (const result of server.lastResults) {
          const dot = document.createElement('span');
          dot.className = 'dot ' + (result.ok ? 'ok' : 'fail');
          dot.title = new Date(result.at).toLocaleTimeString() + ' ' + result.reason + ' (' + result.latencyMs + ' ms)';
          dots.appendChild(dot);
        }
        cell(row, server.latencyMs === undefined ? '' : server.latencyMs + ' ms');
        cell(row, server.activeRequests);
        cell(row, server.requests);
        cell(row, server.requestFailures);
        body.appendChild(row);
      }
    }
  }
  async function refreshCerts() {
    const view = await get('/certs');
    const body = $('certs').tBodies[0];
    body.replaceChildren();
    for (const cert of view.certificates) {
      const row = document.createElement('tr');
      row.className = cert.status === 'failing' ? 'unhealthy' : cert.status === 'valid' ? 'healthy' : '';
      row.dataset.names = cert.names.join(',');
      row.dataset.status = cert.status;
      cell(row, cert.names.join(', '));
      cell(row, cert.status + (cert.failures ? ' (' + cert.failures + ' failed)' : ''), 'state');
      cell(row, cert.issuer);
      cell(row, cert.notAfter ? new Date(cert.notAfter).toLocaleString() : '');
      cell(row, cert.nextRenewal ? new Date(cert.nextRenewal).toLocaleString() : '');
      cell(row, cert.lastError);
      body.appendChild(row);
    }
  }
  function logEvent(event) {
    const line = document.createElement('div');
    const time = new Date(event.at).toLocaleTimeString();
    let what = event.type;
    if (event.type === 'transition') what = event.target + ' ' + event.from + ' → ' + event.to + ' (' + event.reason + ')';
    else if (event.type === 'eject' || event.type === 'uneject') what = event.type + ' ' + event.target + ' (' + event.reason + ')';
    else if (event.type === 'reload') what = 'reload ' + (event.ok ? 'applied' : 'rejected');
    else if (event.type === 'panic') what = 'pool ' + event.pool + (event.panic ? ' in panic' : ' out of panic');
    line.textContent = time + '  ' + what;
    $('events').prepend(line);
  }
  let pending;
  function refreshSoon() {
    clearTimeout(pending);
    pending = setTimeout(() => { refreshUpstreams().catch(() => {}); refreshStatus().catch(() => {}); }, 50);
  }
  function follow() {
    const source = new EventSource(withToken('/events'));
    source.addEventListener('open', () => { $('conn').textContent = 'live'; $('conn').className = 'live'; });
    source.addEventListener('error', () => { $('conn').textContent = 'reconnecting'; $('conn').className = 'down'; });
    source.addEventListener('hello', (message) => {
      $('events').replaceChildren();
      for (const event of JSON.parse(message.data).recent) logEvent(event);
      refreshSoon();
    });
    for (const type of ['transition', 'eject', 'uneject', 'panic', 'reload', 'stop']) {
      source.addEventListener(type, (message) => { logEvent(JSON.parse(message.data)); refreshSoon(); });
    }
  }
  refreshStatus().catch(() => {});
  refreshUpstreams().catch(() => {});
  follow();
  refreshCerts().catch(() => {});
  setInterval(() => { refreshStatus().catch(() => {}); refreshCerts().catch(() => {}); }, 10000);
})();
</script>
</body>
</html>
`;
