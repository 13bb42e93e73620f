// shoal dashboard: one EventSource, plain DOM. Text from peers is untrusted: only textContent, never innerHTML.
'use strict';
const $ = (id) => document.getElementById(id);
const COLORS = { 0: '#2b3a4a', 1: '#64748b', 2: '#f59e0b', 3: '#2dd4bf' };
const WINDOW_MS = 10 * 60 * 1000;
/** Per-second throughput: t (ms, bucket start) → {origin, peer, upload} bytes/s. The daemon sends its history on connect. */
const rates = new Map();
let last;

// The same units and rounding as `shoal status` (manifests/units.ts formatBytes).
function fmtBytes(n) {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}
const fmtRate = (n) => `${fmtBytes(Math.round(n))}/s`;
const pct = (part, whole) => (whole ? `${Math.round((100 * part) / whole)} %` : '—');
function fmtFor(ms) {
  const s = Math.round(ms / 1000);
  return s < 90 ? `${s} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}
function clock(t) {
  const d = new Date(t);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
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
  canvas.width = w * devicePixelRatio; canvas.height = 22 * devicePixelRatio;
  const g = canvas.getContext('2d');
  const n = map.length;
  const cw = canvas.width / n;
  for (let i = 0; i < n; i++) {
    g.fillStyle = COLORS[map[i]] || COLORS[0];
    g.fillRect(Math.floor(i * cw), 0, Math.max(1, Math.ceil(cw) - (cw > 4 ? 1 : 0)), canvas.height);
  }
}

function addRates(win) {
  if (!win || !Array.isArray(win.origin)) return;
  for (let i = 0; i < win.origin.length; i++) rates.set(win.start + i * win.stepMs, { origin: win.origin[i], peer: win.peer[i], upload: win.upload[i] });
  const oldest = Date.now() - WINDOW_MS - 5000;
  for (const t of rates.keys()) if (t < oldest) rates.delete(t);
}

/** Mean of the last `n` seconds. */
function currentRate(n = 5) {
  const ts = [...rates.keys()].sort((a, b) => a - b).slice(-n);
  const sum = { origin: 0, peer: 0, upload: 0 };
  for (const t of ts) for (const k of Object.keys(sum)) sum[k] += rates.get(t)[k];
  for (const k of Object.keys(sum)) sum[k] = ts.length ? sum[k] / ts.length : 0;
  return sum;
}

function drawChart() {
  const canvas = $('chart');
  const w = canvas.clientWidth, h = 190, left = 70, bottom = 20, top = 8;
  canvas.width = w * devicePixelRatio; canvas.height = h * devicePixelRatio;
  const g = canvas.getContext('2d');
  g.scale(devicePixelRatio, devicePixelRatio);
  const ts = [...rates.keys()].sort((a, b) => a - b);
  const now = ts.length ? ts[ts.length - 1] + 1000 : Date.now();
  const series = ts.map((t) => ({ t, ...rates.get(t) }));
  const peak = Math.max(0, ...series.map((r) => Math.max(r.peer + r.origin, r.upload)));
  // A round top in the unit the labels use, so they read well (at least 1 KiB/s: an idle chart is flat, not noise).
  const unit = 1024 ** Math.max(1, Math.floor(Math.log(Math.max(1, peak)) / Math.log(1024)));
  const max = unit * ([1, 2, 4, 5, 8, 10, 20, 40, 50, 80, 100, 200, 400, 500, 800, 1024].find((m) => m * unit >= peak) ?? 1024);
  const x = (t) => left + ((w - left - 4) * (t - (now - WINDOW_MS))) / WINDOW_MS;
  const y = (v) => top + (h - top - bottom) * (1 - Math.min(1, v / max));
  g.font = '11px system-ui'; g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = (max * (4 - k)) / 4;
    g.strokeStyle = '#263341'; g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w, y(v)); g.stroke();
    g.fillStyle = '#8aa0b4'; g.fillText(fmtRate(v), 0, y(v) + 4);
  }
  // Time labels: every 2 minutes, as wall-clock time, "now" at the right edge.
  g.textAlign = 'center';
  for (let m = 0; m <= 10; m += 2) {
    const t = now - m * 60_000;
    g.strokeStyle = '#263341'; g.beginPath(); g.moveTo(x(t), top); g.lineTo(x(t), h - bottom); g.stroke();
    g.fillStyle = '#8aa0b4'; g.fillText(m === 0 ? 'now' : clock(t).slice(0, 5), Math.min(w - 14, Math.max(left + 14, x(t))), h - 5);
  }
  g.textAlign = 'start';
  const area = (get, color) => {
    if (!series.length) return;
    g.beginPath(); g.moveTo(x(series[0].t), y(0));
    for (const r of series) { g.lineTo(x(r.t), y(get(r))); g.lineTo(x(r.t + 1000), y(get(r))); }
    g.lineTo(x(series[series.length - 1].t + 1000), y(0)); g.closePath();
    g.fillStyle = color; g.globalAlpha = 0.85; g.fill(); g.globalAlpha = 1;
  };
  area((r) => r.peer + r.origin, '#2dd4bf');
  area((r) => r.origin, '#f59e0b');
  if (series.some((r) => r.upload > 0)) {
    g.strokeStyle = '#c084fc'; g.lineWidth = 1.5; g.beginPath();
    series.forEach((r, i) => (i ? g.lineTo(x(r.t + 500), y(r.upload)) : g.moveTo(x(r.t + 500), y(r.upload))));
    g.stroke();
  }
  const now5 = currentRate();
  $('rate-now').textContent = `now: received ${fmtRate(now5.peer + now5.origin)} (peers ${fmtRate(now5.peer)}, origin ${fmtRate(now5.origin)}) · served ${fmtRate(now5.upload)}`;
}

function stateLine(f) {
  if (f.state === 'failed' && f.error) return { cls: 'why bad', text: `failed: ${f.error.message} [${f.error.code}]` };
  if (f.stalled) return { cls: 'why stalled', text: `stalled for ${fmtFor(f.stalled.forMs)}: ${f.stalled.message}` };
  return undefined;
}

function blobItem(x, label) {
  const item = el('div', { class: 'blob' },
    el('div', { class: 'meta', text: `${label} · ${x.held}/${x.chunks} chunks · ${x.state === 'running' ? `coordinator ${x.coordinator ?? '—'}` : x.state}` }));
  const c = el('canvas', { class: 'map' });
  item.append(c);
  requestAnimationFrame(() => drawMap(c, x.map));
  return item;
}

function renderFetches(s) {
  const box = $('fetches');
  box.replaceChildren();
  if (!s.fetches.length && !s.downloads.length) box.append(el('p', { class: 'empty', text: 'No fetches in the last hour.' }));
  for (const f of s.fetches) {
    const done = f.state === 'done';
    const frac = done ? 1 : f.size ? f.held / f.size : 0;
    const shown = f.stalled ? 'stalled' : f.state;
    const item = el('div', { class: `fetch ${f.state}`, 'data-fetch': f.id },
      el('div', { class: 'head' }, el('span', { class: 'name', text: `${f.name ?? 'resolving…'} ${f.version ?? ''}` }), el('span', { class: 'kind', text: f.kind }),
        el('span', { class: `state ${shown}`, text: shown }), el('span', { class: 'pct', text: `${(100 * frac).toFixed(0)} %` })),
      el('div', { class: 'meta', text: `${fmtBytes(done ? f.size : f.held)} of ${fmtBytes(f.size)} · origin ${fmtBytes(f.bytes.origin)} · peers ${fmtBytes(f.bytes.peer)}${done ? ` · cache ${fmtBytes(Math.max(0, f.size - f.bytes.origin - f.bytes.peer))}` : ''} · ${f.finishedAt ? `finished ${clock(Date.parse(f.finishedAt))}` : `started ${clock(Date.parse(f.createdAt))}`}` }));
    const why = stateLine(f);
    if (why) item.append(el('div', { class: why.cls, text: why.text }));
    for (const x of f.files) item.append(blobItem(x, x.path ?? x.blob.slice(0, 12)));
    box.append(item);
  }
  for (const x of s.downloads) {
    const item = el('div', { class: `fetch ${x.state}` },
      el('div', { class: 'head' }, el('span', { class: 'name', text: `blob ${x.blob.slice(0, 16)}…` }), el('span', { class: 'kind', text: x.kind }),
        el('span', { class: `state ${x.stalled ? 'stalled' : x.state}`, text: x.stalled ? 'stalled' : x.state }), el('span', { class: 'pct', text: `${x.chunks ? Math.round((100 * x.held) / x.chunks) : 0} %` })));
    const why = stateLine(x);
    if (why) item.append(el('div', { class: why.cls, text: why.text }));
    item.append(blobItem(x, `${fmtBytes(x.size)} · origin ${fmtBytes(x.bytes.origin)} · peers ${fmtBytes(x.bytes.peer)}`));
    box.append(item);
  }
  if (s.fetches.length || s.downloads.length) box.append(el('div', { class: 'legend' }, el('i', { class: 'peer' }), 'from peer', el('i', { class: 'origin' }), 'from origin', el('i', { class: 'cached' }), 'cached', el('i', { class: 'missing' }), 'missing'));
}

const members = (n) => `${n} member${n === 1 ? '' : 's'}`;

function renderSite(s) {
  const v = s.siteView;
  const t = v.totals;
  $('site-saved').textContent = t.delivered ? `${((100 * (t.peer + t.local)) / t.delivered).toFixed(1)} %` : '—';
  const answered = v.members.filter((m) => m.totals).length;
  $('site-saved-sub').textContent = t.delivered
    ? `${fmtBytes(t.delivered - t.origin - t.unshared)} of ${fmtBytes(t.delivered)} delivered on ${answered} of ${members(v.members.length)} came from peers or caches (24 h)`
    : `nothing delivered on the site's ${members(v.members.length)} in 24 h`;
  const cells = (m) => (m.totals
    ? [fmtBytes(m.totals.delivered), fmtBytes(m.totals.origin), fmtBytes(m.totals.peer), fmtBytes(m.totals.local), fmtBytes(m.totals.unshared), pct(m.totals.peer + m.totals.local, m.totals.delivered)]
    : [m.error ? `no answer: ${m.error}` : 'asking…', '', '', '', '', '']);
  const rows = v.members.map((m) => el('tr', { class: m.self ? 'self' : '' }, el('td', {}, el('code', { text: m.peerId }), m.self ? el('span', { class: 'you', text: ' this daemon' }) : ''),
    ...cells(m).map((c) => el('td', { text: c }))));
  rows.push(el('tr', { class: 'total' }, el('td', { text: 'site' }), ...cells({ totals: t }).map((c) => el('td', { text: c }))));
  $('members').replaceChildren(...rows);
  $('site-asked').textContent = v.at ? `peers asked ${clock(v.at)}` : 'asking the peers…';
}

function render(s) {
  last = s;
  $('site').textContent = `site ${s.site}`;
  $('peer-id').textContent = s.peerId;
  $('link').textContent = s.link === 'plain' ? 'open site: plain peer links' : 'private links (TLS-PSK)';
  $('link').className = `link ${s.link === 'plain' ? 'open' : 'private'}`;
  renderSite(s);
  const total = s.totals.peer + s.totals.origin;
  $('savings').textContent = total ? `${((100 * s.totals.peer) / total).toFixed(1)} %` : '—';
  $('savings-sub').textContent = total ? `${fmtBytes(s.totals.peer)} of ${fmtBytes(total)} received since start came from peers` : 'nothing received since start';
  $('from-peers').textContent = fmtBytes(s.totals.peer);
  $('from-origin').textContent = fmtBytes(s.totals.origin);
  $('uploaded').textContent = fmtBytes(s.totals.upload);
  $('cache').textContent = `${fmtBytes(s.cache.usedBytes)} of ${fmtBytes(s.cache.maxBytes)}`;
  $('cache-sub').textContent = `${s.cache.blobs} blob(s)${s.cache.partial ? `, ${s.cache.partial} still arriving (reserved in full)` : ''}`;
  $('cache-bar').style.width = `${Math.min(100, (100 * s.cache.usedBytes) / s.cache.maxBytes)}%`;

  // Bytes handed out by kind (native, url, apt, oci) and where they came from.
  const kinds = Object.entries(s.savings24h || {}).map(([kind, r]) => ({ kind, ...r, total: r.origin + r.peer + r.local + r.unshared })).filter((r) => r.total > 0);
  $('kinds').replaceChildren(...kinds.map((r) => el('tr', { class: `kind-${r.kind}` },
    el('td', { text: r.kind }), el('td', { text: fmtBytes(r.total) }), el('td', { text: fmtBytes(r.origin) }), el('td', { text: fmtBytes(r.peer) }),
    el('td', { text: fmtBytes(r.local) }), el('td', { text: fmtBytes(r.unshared) }), el('td', { text: pct(r.peer + r.local, r.total) }))));
  $('no-kinds').hidden = kinds.length > 0;

  addRates(s.rates);
  drawChart();
  renderFetches(s);

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
  es.addEventListener('history', (e) => { addRates(JSON.parse(e.data)); drawChart(); });
  es.addEventListener('status', (e) => { $('conn').textContent = 'live'; $('conn').className = 'conn'; render(JSON.parse(e.data)); });
  es.onerror = () => { $('conn').textContent = 'reconnecting…'; $('conn').className = 'conn off'; };
}
// Canvases follow the window's width.
addEventListener('resize', () => { if (last) render(last); else drawChart(); });
connect();
