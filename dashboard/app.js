// shoal dashboard: one EventSource, plain DOM. Text from peers is untrusted: only textContent, never innerHTML.
'use strict';
const $ = (id) => document.getElementById(id);
const COLORS = { 0: '#2b3a4a', 1: '#64748b', 2: '#f59e0b', 3: '#2dd4bf' };
const history = []; // {t, origin, peer} cumulative bytes, last 5 minutes
const WINDOW_MS = 5 * 60 * 1000;

function fmtBytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function drawMap(canvas, map) {
  const w = canvas.clientWidth || 600;
  canvas.width = w * devicePixelRatio; canvas.height = 28 * devicePixelRatio;
  const g = canvas.getContext('2d');
  const n = map.length;
  const cw = canvas.width / n;
  for (let i = 0; i < n; i++) {
    g.fillStyle = COLORS[map[i]] || COLORS[0];
    g.fillRect(Math.floor(i * cw), 0, Math.max(1, Math.ceil(cw) - (cw > 4 ? 1 : 0)), canvas.height);
  }
}

function drawChart() {
  const canvas = $('chart');
  const w = canvas.clientWidth, h = 160;
  canvas.width = w * devicePixelRatio; canvas.height = h * devicePixelRatio;
  const g = canvas.getContext('2d');
  g.scale(devicePixelRatio, devicePixelRatio);
  const rates = [];
  for (let i = 1; i < history.length; i++) {
    const dt = (history[i].t - history[i - 1].t) / 1000 || 1;
    rates.push({ t: history[i].t, peer: Math.max(0, (history[i].peer - history[i - 1].peer) / dt), origin: Math.max(0, (history[i].origin - history[i - 1].origin) / dt) });
  }
  const now = Date.now();
  const max = Math.max(1, ...rates.map((r) => r.peer + r.origin));
  g.strokeStyle = '#263341'; g.fillStyle = '#8aa0b4'; g.font = '11px system-ui';
  for (let k = 0; k <= 4; k++) {
    const y = 8 + ((h - 24) * k) / 4;
    g.beginPath(); g.moveTo(48, y); g.lineTo(w, y); g.stroke();
    g.fillText(`${fmtBytes((max * (4 - k)) / 4)}/s`, 0, y + 4);
  }
  const x = (t) => 48 + ((w - 48) * (t - (now - WINDOW_MS))) / WINDOW_MS;
  const y = (v) => 8 + (h - 24) * (1 - v / max);
  const area = (get, color) => {
    if (!rates.length) return;
    g.beginPath(); g.moveTo(x(rates[0].t), y(0));
    for (const r of rates) g.lineTo(x(r.t), y(get(r)));
    g.lineTo(x(rates[rates.length - 1].t), y(0)); g.closePath();
    g.fillStyle = color; g.globalAlpha = 0.85; g.fill(); g.globalAlpha = 1;
  };
  area((r) => r.peer + r.origin, '#2dd4bf');
  area((r) => r.origin, '#f59e0b');
}

function render(s) {
  $('site').textContent = `site ${s.site}`;
  $('peer-id').textContent = s.peerId;
  const total = s.totals.peer + s.totals.origin;
  $('savings').textContent = total ? `${((100 * s.totals.peer) / total).toFixed(1)} %` : '—';
  $('savings-sub').textContent = total ? `${fmtBytes(s.totals.peer)} of ${fmtBytes(total)} came from peers` : 'nothing received yet';
  $('from-peers').textContent = fmtBytes(s.totals.peer);
  $('from-origin').textContent = fmtBytes(s.totals.origin);
  $('uploaded').textContent = fmtBytes(s.totals.upload);
  $('cache').textContent = `${fmtBytes(s.cache.usedBytes)} / ${fmtBytes(s.cache.maxBytes)}`;
  $('cache-bar').style.width = `${Math.min(100, (100 * s.cache.usedBytes) / s.cache.maxBytes)}%`;

  // Bytes handed out by kind (native, url, apt, oci) and where they came from.
  const kinds = Object.entries(s.savings24h || {}).map(([kind, r]) => ({ kind, ...r, total: r.origin + r.peer + r.local + r.unshared })).filter((r) => r.total > 0);
  $('kinds').replaceChildren(...kinds.map((r) => el('tr', { class: `kind-${r.kind}` },
    el('td', { text: r.kind }), el('td', { text: fmtBytes(r.total) }), el('td', { text: fmtBytes(r.origin) }), el('td', { text: fmtBytes(r.peer) }),
    el('td', { text: fmtBytes(r.local) }), el('td', { text: fmtBytes(r.unshared) }), el('td', { text: `${Math.round((100 * (r.peer + r.local)) / r.total)} %` }))));
  $('no-kinds').hidden = kinds.length > 0;

  history.push({ t: s.time, origin: s.totals.origin, peer: s.totals.peer });
  while (history.length && history[0].t < s.time - WINDOW_MS) history.shift();
  drawChart();

  const byBlob = new Map(s.downloads.map((d) => [d.blob, d]));
  const box = $('fetches');
  box.replaceChildren();
  if (!s.fetches.length) box.append(el('p', { class: 'empty', text: 'No active fetches.' }));
  for (const f of s.fetches) {
    const pct = f.size ? (100 * f.held) / f.size : 0;
    const item = el('div', { class: 'fetch', 'data-fetch': f.id },
      el('div', { class: 'head' }, el('span', { class: 'name', text: `${f.name ?? 'resolving…'} ${f.version ?? ''}` }), el('span', { class: `state ${f.state}`, text: f.state }), el('span', { class: 'pct', text: `${pct.toFixed(0)} %` })),
      el('div', { class: 'meta', text: `${fmtBytes(f.held)} of ${fmtBytes(f.size)} · origin ${fmtBytes(f.bytes.origin)} · peers ${fmtBytes(f.bytes.peer)}` }));
    for (const d of s.downloads) {
      if (!byBlob.has(d.blob)) continue;
      item.append(el('div', { class: 'meta', text: `blob ${d.blob.slice(0, 12)}… · ${d.held}/${d.chunks} chunks · coordinator ${d.coordinator === s.peerId ? 'this daemon' : d.coordinator ?? '—'}` }));
      const c = el('canvas', { class: 'map' });
      item.append(c);
      requestAnimationFrame(() => drawMap(c, d.map));
    }
    box.append(item);
  }
  if (s.fetches.length) box.append(el('div', { class: 'legend' }, el('i', { class: 'peer' }), 'from peer', el('i', { class: 'origin' }), 'from origin', el('i', { class: 'cached' }), 'cached', el('i', { class: 'missing' }), 'missing'));

  const received = s.peers.reduce((n, p) => n + p.bytesFrom, 0);
  const rows = s.peers.map((p) => {
    const share = received ? (100 * p.bytesFrom) / received : 0;
    const state = p.banned ? 'banned' : p.healthy ? 'healthy' : 'down';
    const bar = el('div', { class: 'bar' }, el('div'));
    bar.firstChild.style.width = `${share}%`;
    return el('tr', {}, el('td', {}, el('code', { text: p.id })), el('td', { text: p.address }), el('td', {}, el('span', { class: `badge ${state}`, text: state })),
      el('td', {}, el('div', { class: 'share' }, bar, el('span', { text: `${share.toFixed(0)} % · ${fmtBytes(p.bytesFrom)}` }))));
  });
  $('peers').replaceChildren(...rows);
  $('no-peers').style.display = rows.length ? 'none' : '';
}

function connect() {
  const es = new EventSource('/api/v1/events');
  es.addEventListener('status', (e) => { $('conn').textContent = 'live'; $('conn').className = 'conn'; render(JSON.parse(e.data)); });
  es.onerror = () => { $('conn').textContent = 'reconnecting…'; $('conn').className = 'conn off'; };
}
connect();
