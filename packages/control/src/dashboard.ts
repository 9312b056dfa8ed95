/**
 * The dashboard: one self-contained HTML page (no build step, no external
 * assets) that reads /status (services, tunnel clients), /upstreams and /certs and follows /events, so that a
 * server's row changes colour the moment its health changes. Live charts
 * (uPlot, served by the API itself from /assets) draw the samples GET
 * /series/stream pushes (server-sent events; GET /series polled once a
 * second when the stream delivers nothing), with health transitions marked on the time
 * axis and a health timeline per server; the page follows the system's
 * light or dark theme. It calls only
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
  #conn.live, #store-state.live { color: var(--ok); } #conn.down, #store-state.down { color: var(--bad); }
  :root { --bg: #ffffff; --row-bad: #ffebe9; --grid: #eaeef2; color-scheme: light dark; }
  body { background: var(--bg); }
  @media (prefers-color-scheme: dark) {
    :root { --ok: #3fb950; --bad: #f85149; --unk: #d29922; --ej: #a371f7; --fg: #e6edf3; --muted: #8d96a0; --line: #30363d; --bg: #0d1117; --row-bad: #3b1618; --grid: #21262d; }
  }
  tr.unhealthy, tr.ejected { background: var(--row-bad); }
  #charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(440px, 1fr)); gap: 12px 20px; }
  .chart h3 { font-size: 13px; font-weight: 600; margin: 0 0 2px; color: var(--muted); }
  .uplot, .u-legend { color: var(--fg); font-size: 12px; }
  .timeline { display: grid; grid-template-columns: minmax(160px, max-content) 1fr; gap: 4px 12px; align-items: center; font-size: 12px; }
  .bar { display: flex; height: 12px; border-radius: 3px; overflow: hidden; background: var(--line); }
  .bar span { height: 100%; }
  .seg-healthy { background: var(--ok); } .seg-unhealthy { background: var(--bad); } .seg-ejected { background: var(--ej); } .seg-unknown { background: var(--unk); }
  .changes { grid-column: 2; color: var(--muted); font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>wmproxy <span id="version"></span></h1>
<div class="meta"><span id="runtime"></span> · up <span id="uptime"></span> · config <span id="file"></span> · reloads <span id="reloads"></span> · <span id="conn" class="down">connecting</span></div>

<h2>Traffic, last 15 minutes</h2>
<div id="charts"></div>
<h2>Health timeline</h2>
<div id="timeline" class="timeline"></div>

<h2>Services</h2>
<table id="services"><thead><tr><th>kind</th><th>name</th><th>listening on</th><th>details</th></tr></thead><tbody></tbody></table>

<section id="cluster-section" hidden>
<h2>Cluster</h2>
<div class="meta">store <span id="store"></span> · <span id="store-state"></span> · configuration revision <span id="store-revision"></span></div>
<table id="cluster"><thead><tr><th>instance</th><th>address</th><th>version</th><th>config revision</th><th>health</th><th>updated</th></tr></thead><tbody></tbody></table>
</section>

<h2>Upstreams</h2>
<table id="upstreams"><thead><tr><th>upstream</th><th>server</th><th>state</th><th>reason</th><th>last probes</th><th>latency</th><th>active</th><th>requests</th><th>failures</th></tr></thead><tbody></tbody></table>

<h2>Certificates</h2>
<table id="certs"><thead><tr><th>names</th><th>status</th><th>issuer</th><th>expires</th><th>next renewal</th><th>last error</th></tr></thead><tbody></tbody></table>

<section id="tunnel-section" hidden>
<h2>Tunnel</h2>
<table id="tunnel"><thead><tr><th>side</th><th>name</th><th>address</th><th>since</th><th>RTT</th><th>reconnects</th><th>mappings</th><th>streams</th><th>bytes in / out</th></tr></thead><tbody></tbody></table>
</section>

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
    // Every instance following the same configuration store, as registered there.
    const cluster = status.cluster;
    $('cluster-section').hidden = !cluster;
    if (cluster) {
      $('store').textContent = cluster.store;
      const state = $('store-state');
      state.textContent = cluster.connected ? 'store reachable' : 'store unreachable' + (cluster.lastError ? ' (' + cluster.lastError + ')' : '') + ': serving the last good configuration';
      state.className = cluster.connected ? 'live' : 'down';
      $('store-revision').textContent = String(cluster.revision);
      const members = $('cluster').tBodies[0];
      members.replaceChildren();
      for (const member of cluster.members) {
        const row = document.createElement('tr');
        row.dataset.member = member.id;
        row.className = member.configRevision === cluster.revision ? 'healthy' : 'unhealthy';
        cell(row, member.id);
        cell(row, member.address);
        cell(row, member.version);
        cell(row, member.configRevision, 'state');
        cell(row, member.health.healthy + ' healthy / ' + member.health.unhealthy + ' unhealthy');
        cell(row, member.updatedAt);
        members.appendChild(row);
      }
    }
    renderTunnel(status.tunnel);
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
  // The tunnel server's clients (one row each) and this instance's own tunnel clients.
  function renderTunnel(tunnel) {
    $('tunnel-section').hidden = !tunnel;
    const body = $('tunnel').tBodies[0];
    body.replaceChildren();
    if (!tunnel) return;
    const bytes = (n) => n >= 1048576 ? (n / 1048576).toFixed(1) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(1) + ' KiB' : n + ' B';
    const rtt = (ms) => ms === undefined || ms === null ? '' : ms.toFixed(1) + ' ms';
    const row = (side, name, values) => {
      const tr = document.createElement('tr');
      tr.dataset.side = side;
      tr.dataset.client = name;
      cell(tr, side);
      cell(tr, name);
      for (const value of values) cell(tr, value);
      body.appendChild(tr);
    };
    for (const client of (tunnel.server && tunnel.server.clients) || []) {
      const served = client.mappings.map((m) => m.name + ' (' + m.kind + ')');
      for (const refused of client.rejected) served.push(refused.name + ' refused: ' + refused.reason);
      row('server', client.name, [client.address + ':' + client.port, new Date(client.since).toLocaleString(), rtt(client.rttMs), client.reconnects, served.join(', '), client.openStreams, bytes(client.bytesIn) + ' / ' + bytes(client.bytesOut)]);
    }
    for (const client of tunnel.clients || []) {
      const results = (client.results || []).map((r) => r.name + (r.ok ? '' : ' refused: ' + r.reason));
      row('client', client.service, [client.server + (client.connected ? '' : ' (disconnected' + (client.lastError ? ': ' + client.lastError : '') + ')'), client.since ? new Date(client.since).toLocaleString() : '', rtt(client.rttMs), client.reconnects, results.join(', '), client.openStreams, '']);
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
<script>
(() => {
  // Live charts: GET /series/stream (server-sent events) pushes each new sample; GET /series?since=
  // polled once a second when the stream cannot be had. State on window.__charts for tests.
  const token = new URLSearchParams(location.search).get('token');
  const withToken = (path) => token ? path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : path;
  const headers = token ? { authorization: 'Bearer ' + token } : {};
  const CAPACITY = 900;
  const state = window.__charts = { ready: false, error: null, polls: 0, pushes: 0, transport: 'none', plots: {}, markers: 0, t: [] };
  const COUNTERS = ['limited', 'bytesOut', 'bytesIn', 'retries', 'hedgesWon', 'hedgesLost', 'connections'];
  const SERVER_FIELDS = ['requests', 'errors', 'p99Ms', 'state'];
  const data = { t: [], requests: { '1xx': [], '2xx': [], '3xx': [], '4xx': [], '5xx': [] }, limited: [], p50: [], p95: [], p99: [], bytesOut: [], bytesIn: [], retries: [], hedgesWon: [], hedgesLost: [], connections: [], servers: new Map(), transitions: [], states: [] };
  let since = 0;
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const dark = matchMedia('(prefers-color-scheme: dark)');
  const CLASS_COLOURS = { '1xx': '#8c959f', '2xx': '#2da44e', '3xx': '#0969da', '4xx': '#bf8700', '5xx': '#cf222e' };
  const PALETTE = ['#0969da', '#bf3989', '#1a7f37', '#9a6700', '#8250df', '#cf222e', '#1b7c83', '#953800'];
  function load(tag, attrs) {
    return new Promise((resolve, reject) => {
      const element = document.createElement(tag);
      Object.assign(element, attrs);
      element.onload = resolve;
      element.onerror = () => reject(new Error('could not load ' + (attrs.src || attrs.href)));
      document.head.appendChild(element);
    });
  }
  function trim(array) { if (array.length > CAPACITY) array.splice(0, array.length - CAPACITY); }
  function merge(view) {
    data.states = view.states;
    const n = view.t.length;
    for (const time of view.t) data.t.push(time);
    for (const code of Object.keys(data.requests)) for (const value of view.requests[code] || []) data.requests[code].push(value);
    const columns = { limited: view.limited, bytesOut: view.bytesOut, bytesIn: view.bytesIn, retries: view.retries, hedgesWon: view.hedges && view.hedges.won, hedgesLost: view.hedges && view.hedges.lost, connections: view.connections };
    for (const key of COUNTERS) for (let i = 0; i < n; i++) data[key].push(columns[key] ? columns[key][i] : null);
    for (const key of ['p50', 'p95', 'p99']) for (const value of view.latencyMs[key]) data[key].push(value);
    const present = new Set();
    for (const server of view.servers) {
      const key = server.upstream + ' ' + server.server;
      present.add(key);
      let entry = data.servers.get(key);
      if (!entry) {
        // A server new to the page: its past is empty (nulls) up to now.
        const pad = data.t.length - n;
        entry = { upstream: server.upstream, server: server.server };
        for (const field of SERVER_FIELDS) entry[field] = new Array(pad).fill(null);
        data.servers.set(key, entry);
      }
      for (const field of SERVER_FIELDS) for (let i = 0; i < n; i++) entry[field].push(server[field] ? server[field][i] : null);
    }
    for (const [key, entry] of data.servers) {
      if (!present.has(key) && n > 0) { data.servers.delete(key); continue; }
      for (const field of SERVER_FIELDS) trim(entry[field]);
    }
    for (const transition of view.transitions) data.transitions.push(transition);
    if (data.transitions.length > 500) data.transitions.splice(0, data.transitions.length - 500);
    for (const code of Object.keys(data.requests)) trim(data.requests[code]);
    for (const key of ['p50', 'p95', 'p99', ...COUNTERS]) trim(data[key]);
    trim(data.t);
    if (view.t.length) since = view.t[view.t.length - 1] * 1000;
    if (view.transitions.length) since = Math.max(since, view.transitions[view.transitions.length - 1].at);
  }
  // Health transitions as vertical lines on every chart's time axis.
  function markers() {
    return {
      hooks: {
        draw: [(u) => {
          const ctx = u.ctx;
          const { top, height } = u.bbox;
          let drawn = 0;
          ctx.save();
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
          for (const transition of data.transitions) {
            const x = u.valToPos(transition.at / 1000, 'x', true);
            if (!(x >= u.bbox.left && x <= u.bbox.left + u.bbox.width)) continue;
            const bad = transition.to === 'unhealthy' || transition.to === 'ejected';
            ctx.strokeStyle = bad ? css('--bad') : css('--ok');
            ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
            drawn++;
          }
          ctx.restore();
          u.__markers = drawn;
        }],
      },
    };
  }
  function options(title, series, unit) {
    const fg = css('--muted');
    const grid = { stroke: css('--grid'), width: 1 };
    return {
      width: 440, height: 180, title: undefined, plugins: [markers()],
      scales: { x: { time: true } },
      axes: [{ stroke: fg, grid, ticks: grid }, { stroke: fg, grid, ticks: grid, size: 56, values: (u, values) => values.map((value) => value == null ? '' : formatUnit(value, unit)) }],
      series: [{}, ...series.map((entry) => ({ label: entry.label, stroke: entry.colour, width: 1.5, spanGaps: false, points: { show: false }, value: (u, value) => value == null ? '-' : formatUnit(value, unit) }))],
    };
  }
  function formatUnit(value, unit) {
    if (unit === 'bytes') return value >= 1e6 ? (value / 1e6).toFixed(1) + ' MB' : value >= 1e3 ? (value / 1e3).toFixed(1) + ' kB' : Math.round(value) + ' B';
    if (unit === 'ms') return value >= 1000 ? (value / 1000).toFixed(2) + ' s' : (value < 10 ? value.toFixed(1) : Math.round(value)) + ' ms';
    return value < 10 && value % 1 ? value.toFixed(1) : String(Math.round(value));
  }
  function chart(id, title, series, unit, columns) {
    let plot = state.plots[id];
    const rows = [data.t, ...columns()];
    if (plot && plot.series.length !== series.length + 1) { plot.destroy(); plot.root.parentElement.remove(); plot = undefined; delete state.plots[id]; }
    if (!plot) {
      const box = document.createElement('div');
      box.className = 'chart';
      box.dataset.chart = id;
      const heading = document.createElement('h3');
      heading.textContent = title;
      box.appendChild(heading);
      $('charts').appendChild(box);
      plot = state.plots[id] = new uPlot(options(title, series, unit), rows, box);
    } else plot.setData(rows);
  }
  const $ = (id) => document.getElementById(id);
  function draw() {
    chart('requests', 'Requests/s by status', [...Object.keys(data.requests).map((code) => ({ label: code, colour: CLASS_COLOURS[code] })), { label: 'limited', colour: '#8250df' }], 'count',
      () => [...Object.keys(data.requests).map((code) => data.requests[code]), data.limited]);
    chart('latency', 'Request duration', [{ label: 'p50', colour: '#2da44e' }, { label: 'p95', colour: '#bf8700' }, { label: 'p99', colour: '#cf222e' }], 'ms', () => [data.p50, data.p95, data.p99]);
    chart('bytes', 'Bytes/s', [{ label: 'out', colour: '#0969da' }, { label: 'in', colour: '#1a7f37' }], 'bytes', () => [data.bytesOut, data.bytesIn]);
    chart('retries', 'Retries and request hedges/s', [{ label: 'retries', colour: '#bf8700' }, { label: 'hedges won', colour: '#1b7c83' }, { label: 'hedges lost', colour: '#8c959f' }], 'count', () => [data.retries, data.hedgesWon, data.hedgesLost]);
    chart('connections', 'Open connections', [{ label: 'open', colour: '#8250df' }], 'count', () => [data.connections]);
    const groups = new Map();
    for (const entry of data.servers.values()) {
      if (!groups.has(entry.upstream)) groups.set(entry.upstream, []);
      groups.get(entry.upstream).push(entry);
    }
    for (const [name, servers] of groups) {
      const series = [];
      const columns = [];
      servers.forEach((server, index) => {
        series.push({ label: server.server + ' req/s', colour: PALETTE[index % PALETTE.length] }, { label: server.server + ' err/s', colour: css('--bad') });
        columns.push(server.requests, server.errors);
      });
      chart('upstream:' + name, 'Upstream ' + name + ': requests and errors per server', series, 'count', () => columns);
      chart('latency:' + name, 'Upstream ' + name + ': p99 per server', servers.map((server, index) => ({ label: server.server, colour: PALETTE[index % PALETTE.length] })), 'ms', () => servers.map((server) => server.p99Ms));
    }
    for (const id of Object.keys(state.plots)) {
      const group = id.startsWith('upstream:') ? id.slice(9) : id.startsWith('latency:') ? id.slice(8) : undefined;
      if (group !== undefined && !groups.has(group)) { state.plots[id].root.parentElement.remove(); state.plots[id].destroy(); delete state.plots[id]; }
    }
    state.markers = Math.max(0, ...Object.values(state.plots).map((plot) => plot.__markers || 0));
    state.t = data.t.slice(-5);
    timeline();
  }
  function timeline() {
    const box = $('timeline');
    box.replaceChildren();
    for (const entry of data.servers.values()) {
      const label = document.createElement('div');
      label.textContent = entry.upstream + ' · ' + entry.server;
      const bar = document.createElement('div');
      bar.className = 'bar';
      bar.dataset.server = entry.server;
      let start = 0;
      for (let i = 1; i <= entry.state.length; i++) {
        if (i < entry.state.length && entry.state[i] === entry.state[start]) continue;
        const name = entry.state[start] == null ? 'none' : data.states[entry.state[start]] || 'unknown';
        const segment = document.createElement('span');
        segment.className = 'seg-' + name;
        segment.style.flexGrow = String(i - start);
        segment.title = name + ' ' + new Date(data.t[data.t.length - entry.state.length + start] * 1000).toLocaleTimeString();
        bar.appendChild(segment);
        start = i;
      }
      const changes = document.createElement('div');
      changes.className = 'changes';
      const address = entry.server;
      const mine = data.transitions.filter((transition) => transition.target === address || transition.target.endsWith('/' + address) || transition.target.includes(address));
      changes.textContent = mine.slice(-6).map((transition) => {
        const left = transition.to === 'unhealthy' || transition.to === 'ejected';
        return new Date(transition.at).toLocaleTimeString() + ' ' + (left ? 'left' : transition.from === 'unknown' ? 'up' : 'returned') + ' (' + (transition.kind === 'transition' ? transition.from + ' → ' + transition.to : transition.kind) + (transition.reason ? ': ' + transition.reason : '') + ')';
      }).join(' · ');
      box.append(label, bar, changes);
    }
  }
  async function poll() {
    const response = await fetch(withToken('/series?since=' + since), { headers, cache: 'no-store' });
    if (!response.ok) throw new Error('/series: ' + response.status);
    merge(await response.json());
    draw();
    state.polls++;
  }
  function polling() {
    state.transport = 'poll';
    const loop = () => poll().catch((error) => { state.error = String(error); }).finally(() => setTimeout(loop, 1000));
    loop();
  }
  // Pushed samples; a stream that never delivers (no EventSource, a buffering proxy in between) falls back to polling.
  function stream() {
    if (typeof EventSource !== 'function') return polling();
    const source = new EventSource(withToken('/series/stream?since=' + since));
    let got = false;
    const giveUp = () => { clearTimeout(fallback); source.close(); polling(); };
    const fallback = setTimeout(() => { if (!got) giveUp(); }, 5000);
    source.addEventListener('series', (message) => {
      got = true;
      state.transport = 'sse';
      const view = JSON.parse(message.data);
      // A reconnect asks from the last sample held; anything older is not merged twice.
      if (view.t.length && view.t[0] * 1000 <= since) return;
      merge(view);
      draw();
      state.pushes++;
    });
    source.addEventListener('error', () => {
      if (!got) return giveUp();
      // Reopen from the last sample held (the browser's own retry would repeat the first since=).
      source.close();
      clearTimeout(fallback);
      setTimeout(stream, 2000);
    });
  }
  function redrawAll() {
    for (const plot of Object.values(state.plots)) { plot.root.parentElement.remove(); plot.destroy(); }
    state.plots = {};
    draw();
  }
  load('link', { rel: 'stylesheet', href: withToken('/assets/uplot.css') })
    .then(() => load('script', { src: withToken('/assets/uplot.js') }))
    .then(async () => {
      state.ready = true;
      dark.addEventListener('change', redrawAll);
      stream();
    })
    .catch((error) => { state.error = String(error); $('charts').textContent = 'charts unavailable: ' + error.message; });
})();
</script>
</body>
</html>
`;
